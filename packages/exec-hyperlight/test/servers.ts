import { createServer, type IncomingMessage, type Server } from "node:http"
import type { AddressInfo } from "node:net"

export interface RecordedRequest {
  readonly method: string
  readonly url: string
  readonly contentType: string | undefined
  readonly body: string
}

export interface TestServer {
  readonly url: string
  readonly port: number
  readonly requests: Array<RecordedRequest>
  readonly close: () => Promise<void>
}

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    req.on("error", reject)
  })

const listen = async (server: Server, requests: Array<RecordedRequest>): Promise<TestServer> => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

/** An MCP-style server: GET /tools lists tools, POST /tools/{name} echoes its JSON arguments. */
export const startMcpServer = async (): Promise<TestServer> => {
  const requests: Array<RecordedRequest> = []
  const server = createServer(async (req, res) => {
    const body = await readBody(req)
    requests.push({ method: req.method ?? "", url: req.url ?? "", contentType: req.headers["content-type"], body })
    if (req.method === "GET" && req.url === "/tools") {
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify({ tools: [{ name: "echo" }, { name: "add" }] }))
    } else if (req.method === "POST" && req.url?.startsWith("/tools/")) {
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify({ tool: decodeURIComponent(req.url.slice(7)), args: JSON.parse(body || "null") }))
    } else {
      res.writeHead(404)
      res.end("not found")
    }
  })
  return listen(server, requests)
}

/** A server the sandbox must never reach: it records every request it gets. */
export const startForbiddenServer = async (): Promise<TestServer> => {
  const requests: Array<RecordedRequest> = []
  const server = createServer(async (req, res) => {
    const body = await readBody(req)
    requests.push({ method: req.method ?? "", url: req.url ?? "", contentType: req.headers["content-type"], body })
    res.writeHead(200)
    res.end("FORBIDDEN-SERVER-REACHED")
  })
  return listen(server, requests)
}
