/**
 * A tiny authenticated git HTTP server for tests: `git http-backend` (CGI) behind a Node HTTP
 * server on 127.0.0.1 that checks Basic auth. A wrong or missing token gets 401, like GitHub.
 */
import { spawn } from "node:child_process"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"

export interface GitHttpServer {
  readonly port: number
  /** `http://127.0.0.1:<port>/<name>` for a bare repository `<root>/<name>`. */
  readonly url: (name: string) => string
  /** Every Authorization header value the server received (to check what git sent). */
  readonly authorizations: Array<string>
  /** Every request path (with query) the server received. */
  readonly requests: Array<string>
  /**
   * Installs a gate: the next request whose path matches waits until the returned `release`
   * is called; `reached` resolves when such a request arrived (git is running and waiting).
   */
  readonly hold: (match: RegExp) => { readonly reached: Promise<void>; readonly release: () => void }
  readonly close: () => Promise<void>
}

interface Gate {
  readonly match: RegExp
  readonly arrived: () => void
  readonly released: Promise<void>
}

export const startGitHttpServer = async (options: {
  readonly root: string
  readonly username: string
  readonly token: string
  readonly home: string
}): Promise<GitHttpServer> => {
  const expected = `Basic ${Buffer.from(`${options.username}:${options.token}`).toString("base64")}`
  const authorizations: Array<string> = []
  const requests: Array<string> = []
  const gates: Array<Gate> = []

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1")
    requests.push(`${req.method} ${url.pathname}${url.search}`)
    const auth = req.headers.authorization
    if (auth !== undefined) authorizations.push(auth)
    if (auth !== expected) {
      res.writeHead(401, { "WWW-Authenticate": 'Basic realm="runlane-test"', "Content-Type": "text/plain" })
      res.end("unauthorized\n")
      req.resume()
      return
    }
    const gateIndex = gates.findIndex((g) => g.match.test(`${url.pathname}${url.search}`))
    if (gateIndex >= 0) {
      const gate = gates.splice(gateIndex, 1)[0]!
      gate.arrived()
      await gate.released
    }
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: options.home,
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_PROJECT_ROOT: options.root,
      GIT_HTTP_EXPORT_ALL: "1",
      REMOTE_USER: options.username,
      REMOTE_ADDR: "127.0.0.1",
      GATEWAY_INTERFACE: "CGI/1.1",
      REQUEST_METHOD: req.method ?? "GET",
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ""),
      CONTENT_TYPE: req.headers["content-type"] ?? ""
    }
    const encoding = req.headers["content-encoding"]
    if (typeof encoding === "string") env.HTTP_CONTENT_ENCODING = encoding
    const protocol = req.headers["git-protocol"]
    if (typeof protocol === "string") env.GIT_PROTOCOL = protocol
    const length = req.headers["content-length"]
    if (typeof length === "string") env.CONTENT_LENGTH = length

    const cgi = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "pipe"] })
    req.pipe(cgi.stdin)
    let stderr = ""
    cgi.stderr.on("data", (d: Buffer) => {
      stderr += d.toString()
    })
    let head = Buffer.alloc(0)
    let headersDone = false
    cgi.stdout.on("data", (chunk: Buffer) => {
      if (headersDone) {
        res.write(chunk)
        return
      }
      head = Buffer.concat([head, chunk])
      const end = head.indexOf("\r\n\r\n")
      const endLf = head.indexOf("\n\n")
      const cut = end >= 0 ? end : endLf
      if (cut < 0) return
      const sepLength = end >= 0 ? 4 : 2
      const lines = head.subarray(0, cut).toString().split(/\r?\n/)
      let status = 200
      const headers: Record<string, string> = {}
      for (const line of lines) {
        const i = line.indexOf(":")
        if (i < 0) continue
        const name = line.slice(0, i).trim()
        const value = line.slice(i + 1).trim()
        if (name.toLowerCase() === "status") status = Number.parseInt(value, 10)
        else headers[name] = value
      }
      res.writeHead(status, headers)
      headersDone = true
      const rest = head.subarray(cut + sepLength)
      if (rest.length > 0) res.write(rest)
    })
    await new Promise<void>((resolve) => {
      cgi.on("close", (code) => {
        if (!headersDone) {
          res.writeHead(500, { "Content-Type": "text/plain" })
          res.end(`http-backend failed (${code}): ${stderr}`)
        } else res.end()
        resolve()
      })
    })
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500)
      res.end(String(error))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    url: (name) => `http://127.0.0.1:${port}/${name}`,
    authorizations,
    requests,
    hold: (match) => {
      let arrived!: () => void
      let release!: () => void
      const reached = new Promise<void>((resolve) => {
        arrived = resolve
      })
      const released = new Promise<void>((resolve) => {
        release = resolve
      })
      gates.push({ match, arrived, released })
      return { reached, release }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}
