import { mkdtempSync, rmSync } from "node:fs"
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http"
import { connect, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

/**
 * The sandbox's only way out when its network is `mcp-only` or an allow-list: an HTTP proxy in
 * the runner, listening on a Unix socket that is bound into the sandbox (bridged to the
 * sandbox's loopback by socat). It forwards
 * - absolute-form requests (`GET http://host:port/...`, i.e. `http_proxy`) and `CONNECT host:port`
 *   (`https_proxy`) only to an allowed `host:port`;
 * - origin-form requests (`GET /tools`, the sandbox talking to the MCP URL directly) only to the
 *   MCP origin.
 * Every other destination is refused with 403 and reported through `onRefused`.
 */
export interface EgressProxy {
  /** Directory holding `proxy.sock` (bind it into the sandbox). */
  readonly socketDir: string
  readonly socketPath: string
  readonly close: () => Promise<void>
}

export interface EgressProxyOptions {
  /** Allowed destinations, `host:port` with the host lower-cased (IPv6 without brackets). */
  readonly allowed: ReadonlyArray<string>
  /** Where origin-form requests go (the MCP server), if any. */
  readonly origin?: { readonly host: string; readonly port: number } | undefined
  readonly onRefused: (destination: string, how: string) => void
}

const key = (host: string, port: number): string => `${host.toLowerCase().replace(/^\[(.*)\]$/, "$1")}:${port}`

const refuse = (res: ServerResponse, destination: string): void => {
  res.writeHead(403, { "content-type": "text/plain", connection: "close" })
  res.end(`runlane sandbox: connection to ${destination} refused by policy\n`)
}

const hopByHop = new Set([
  "connection",
  "proxy-connection",
  "keep-alive",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade"
])

const forward = (
  req: IncomingMessage,
  res: ServerResponse,
  host: string,
  port: number,
  path: string,
  hostHeader: string
): void => {
  const headers: Record<string, string | Array<string>> = {}
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined && !hopByHop.has(name)) headers[name] = value
  }
  headers.host = hostHeader
  const upstream = httpRequest({ host, port, method: req.method, path, headers }, (up) => {
    const out: Record<string, string | Array<string>> = {}
    for (const [name, value] of Object.entries(up.headers)) {
      if (value !== undefined && !hopByHop.has(name)) out[name] = value
    }
    res.writeHead(up.statusCode ?? 502, up.statusMessage, out)
    up.pipe(res)
  })
  upstream.on("error", (e) => {
    if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" })
    res.end(`runlane sandbox: upstream ${host}:${port} failed: ${e.message}\n`)
  })
  req.pipe(upstream)
}

export const startEgressProxy = async (options: EgressProxyOptions): Promise<EgressProxy> => {
  const allowed = new Set(
    options.allowed.map((d) => {
      const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(d)
      return m ? key(m[1] as string, Number(m[2])) : d.toLowerCase()
    })
  )
  const socketDir = mkdtempSync(join(tmpdir(), "runlane-egress-"))
  const socketPath = join(socketDir, "proxy.sock")
  const sockets = new Set<Socket>()

  const server = createServer((req, res) => {
    const raw = req.url ?? "/"
    if (raw.startsWith("/")) {
      const origin = options.origin
      if (origin === undefined) {
        options.onRefused("(direct request without a destination)", "origin-form")
        return refuse(res, "an unnamed destination")
      }
      return forward(req, res, origin.host, origin.port, raw, `${origin.host}:${origin.port}`)
    }
    let target: URL
    try {
      target = new URL(raw)
    } catch {
      res.writeHead(400, { connection: "close" })
      return res.end("bad request target\n")
    }
    const port = target.port === "" ? (target.protocol === "https:" ? 443 : 80) : Number(target.port)
    const dest = key(target.hostname, port)
    if (target.protocol !== "http:" || !allowed.has(dest)) {
      options.onRefused(dest, `${req.method ?? "GET"} ${target.protocol}//${dest}`)
      return refuse(res, dest)
    }
    forward(
      req,
      res,
      target.hostname.replace(/^\[(.*)\]$/, "$1"),
      port,
      `${target.pathname}${target.search}`,
      target.host
    )
  })

  server.on("connect", (req: IncomingMessage, client: Socket, head: Buffer) => {
    const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(req.url ?? "")
    const dest = m ? key(m[1] as string, Number(m[2])) : String(req.url)
    if (!m || !allowed.has(dest)) {
      options.onRefused(dest, `CONNECT ${dest}`)
      client.end(`HTTP/1.1 403 Forbidden\r\nconnection: close\r\n\r\n`)
      return
    }
    const upstream = connect(Number(m[2]), m[1] as string, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n")
      if (head.length > 0) upstream.write(head)
      upstream.pipe(client)
      client.pipe(upstream)
    })
    sockets.add(upstream)
    upstream.on("close", () => sockets.delete(upstream))
    upstream.on("error", () => client.destroy())
    client.on("error", () => upstream.destroy())
  })
  server.on("connection", (s: Socket) => {
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
  })

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject)
    server.listen(socketPath, () => resolve())
  })
  return {
    socketDir,
    socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy()
        server.close(() => {
          rmSync(socketDir, { recursive: true, force: true })
          resolve()
        })
      })
  }
}
