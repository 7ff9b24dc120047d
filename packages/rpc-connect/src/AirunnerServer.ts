import { execFileSync } from "node:child_process"
import { createHash, X509Certificate } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import * as http2 from "node:http2"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type ConnectRouter, createContextKey, createContextValues } from "@connectrpc/connect"
import { connectNodeAdapter } from "@connectrpc/connect-node"
import { Schema } from "effect"
import type { AirunnerServices } from "./AirunnerServices.ts"
import { JobEventsService, JobService } from "./gen/job/v1/job_pb.ts"
import type { JwtVerifier } from "./JwtAuth.ts"

/** The server could not start (certificate files, self-signed generation, listen). */
export class ServerStartError extends Schema.TaggedError<ServerStartError>()("ServerStartError", {
  message: Schema.String
}) {}

export type LogFn = (
  level: "debug" | "info" | "warn" | "error",
  message: string,
  fields?: Record<string, unknown>
) => void

export interface AirunnerServerOptions {
  readonly services: AirunnerServices
  /** `host:port` (port 0 picks a free one). */
  readonly listen: string
  /** PEM files; used only when both are set. */
  readonly certFile?: string | undefined
  readonly keyFile?: string | undefined
  /** The one allowed CORS origin (compared case-insensitively; `*` is a wildcard). */
  readonly hostname?: string
  /** JWT verifier, or `undefined` for `--no-auth`. */
  readonly auth: JwtVerifier | undefined
  readonly log?: LogFn
}

export interface RunningServer {
  readonly server: http2.Http2SecureServer
  readonly port: number
  readonly url: string
  /** The PEM certificate served (the generated one when no files were given). */
  readonly certPem: string
  readonly close: () => Promise<void>
}

export interface SelfSigned {
  readonly certPem: string
  readonly keyPem: string
  readonly fingerprint: string
}

/**
 * A fresh self-signed certificate as the original makes it: RSA 2048, serial 1, CN localhost,
 * SAN IP 127.0.0.1 and ::1 only, valid 24 h, digital signature + key encipherment, server auth.
 * Made with the `openssl` CLI (no private key leaves the temp dir, which is removed at once).
 */
export const selfSignedCertificate = (): SelfSigned => {
  const dir = mkdtempSync(join(tmpdir(), "airunner-cert-"))
  try {
    const keyFile = join(dir, "key.pem")
    const certFile = join(dir, "cert.pem")
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        keyFile,
        "-out",
        certFile,
        "-days",
        "1",
        "-set_serial",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,IP:::1",
        "-addext",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "-addext",
        "extendedKeyUsage=serverAuth",
        "-addext",
        "basicConstraints=critical,CA:FALSE"
      ],
      { stdio: ["ignore", "ignore", "pipe"] }
    )
    const certPem = readFileSync(certFile, "utf8")
    const keyPem = readFileSync(keyFile, "utf8")
    const fingerprint = createHash("sha256").update(new X509Certificate(certPem).raw).digest("hex")
    return { certPem, keyPem, fingerprint }
  } catch (error) {
    throw new ServerStartError({ message: `failed to generate ssl cert: ${String(error)}` })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const ALLOWED_HEADERS = new Set([
  "content-type",
  "connect-protocol-version",
  "connect-timeout-ms",
  "grpc-timeout",
  "x-grpc-web",
  "x-user-agent",
  "authorization"
])
const EXPOSED = "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin"

const originMatches = (allowed: string, origin: string): boolean => {
  const a = allowed.toLowerCase()
  const o = origin.toLowerCase()
  const star = a.indexOf("*")
  if (star < 0) return a === o
  const head = a.slice(0, star)
  const tail = a.slice(star + 1)
  return o.length >= head.length + tail.length && o.startsWith(head) && o.endsWith(tail)
}

/** Go's percent-encoding of grpc-message (bytes outside printable ASCII and `%`). */
const grpcMessage = (message: string): string =>
  [...Buffer.from(message, "utf8")]
    .map((b) =>
      b < 0x20 || b > 0x7e || b === 0x25 ? `%${b.toString(16).toUpperCase().padStart(2, "0")}` : String.fromCharCode(b)
    )
    .join("")

const peerAddr = createContextKey("", { description: "peer address" })

/** The RPC protocol of a request, from its content type (for logs). */
const protocolOf = (contentType: string | null): string => {
  const type = (contentType ?? "").toLowerCase()
  if (type.startsWith("application/grpc-web")) return "grpcweb"
  if (type.startsWith("application/grpc")) return "grpc"
  return "connect"
}

const UNARY = new Set(["EnqueueJob", "UpdateJob", "CompleteJob", "ListJobs"].map((m) => `/job.v1.JobService/${m}`))
const STREAMING = new Set([
  "/job.v1.JobService/DequeueJob",
  "/job.v1.JobEventsService/StreamJobEvents",
  "/job.v1.JobEventsService/PublishJobEvents"
])
const GRPC_TYPES = [
  "application/grpc",
  "application/grpc+json",
  "application/grpc+proto",
  "application/grpc-web",
  "application/grpc-web+json",
  "application/grpc-web+proto"
]
const UNARY_TYPES = [...GRPC_TYPES, "application/json", "application/proto"]
const STREAM_TYPES = [...GRPC_TYPES, "application/connect+json", "application/connect+proto"]

type Req = http2.Http2ServerRequest
type Res = http2.Http2ServerResponse

/** Answers a refused request with `unauthenticated` in the caller's protocol. */
const refuse = (req: Req, res: Res, message: string) => {
  const contentType = (req.headers["content-type"] ?? "").toLowerCase()
  if (contentType.startsWith("application/grpc")) {
    // gRPC and gRPC-Web: a trailers-only response.
    res.writeHead(200, {
      "content-type": contentType.startsWith("application/grpc-web")
        ? "application/grpc-web+proto"
        : "application/grpc",
      "grpc-status": "16",
      "grpc-message": grpcMessage(message)
    })
    res.end()
    return
  }
  const error = { code: "unauthenticated", message }
  if (contentType.startsWith("application/connect+")) {
    const body = Buffer.from(JSON.stringify({ error }))
    const frame = Buffer.alloc(5 + body.length)
    frame[0] = 0b10
    frame.writeUInt32BE(body.length, 1)
    body.copy(frame, 5)
    res.writeHead(200, { "content-type": contentType })
    res.end(frame)
    return
  }
  const body = JSON.stringify(error)
  res.writeHead(401, { "content-type": "application/json" })
  res.end(body)
}

/**
 * Serves airunner's two services on one TLS port: HTTP/2 by ALPN plus HTTP/1.1, Connect, gRPC
 * and gRPC-Web, binary and JSON. Order as the original: CORS → auth (all but `/health`) → routes.
 */
export const startAirunnerServer = async (options: AirunnerServerOptions): Promise<RunningServer> => {
  const log: LogFn = options.log ?? (() => undefined)
  let certPem: string
  let keyPem: string
  if (
    options.certFile !== undefined &&
    options.certFile !== "" &&
    options.keyFile !== undefined &&
    options.keyFile !== ""
  ) {
    const read = (file: string) => {
      try {
        return readFileSync(file, "utf8")
      } catch (error) {
        // Go's text: `open <file>: no such file or directory`.
        const code = (error as NodeJS.ErrnoException).code
        const reason =
          code === "ENOENT"
            ? "no such file or directory"
            : code === "EACCES"
              ? "permission denied"
              : (error as Error).message
        throw new ServerStartError({ message: `open ${file}: ${reason}` })
      }
    }
    certPem = read(options.certFile)
    keyPem = read(options.keyFile)
  } else {
    const generated = selfSignedCertificate()
    certPem = generated.certPem
    keyPem = generated.keyPem
    log("info", "generated self-signed certificate", { fingerprint: generated.fingerprint })
  }

  const routes = (router: ConnectRouter) => {
    router.service(JobService, options.services.jobService)
    router.service(JobEventsService, options.services.jobEventsService)
  }
  const adapter = connectNodeAdapter({
    routes,
    fallback: (_req, res) => {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8", "x-content-type-options": "nosniff" })
      res.end("404 page not found\n")
    },
    contextValues: (req) =>
      createContextValues().set(peerAddr, `${req.socket?.remoteAddress ?? ""}:${req.socket?.remotePort ?? ""}`),
    interceptors: [
      // As the original's logger interceptor: `rpc call` per unary call, `rpc server stream
      // finished` / `rpc server stream error` per streaming call, with protocol, addr, duration (ms).
      (next) => async (req) => {
        const started = performance.now()
        const fields = { protocol: protocolOf(req.header.get("content-type")), addr: req.contextValues.get(peerAddr) }
        const duration = () => Number((performance.now() - started).toFixed(3))
        const streaming = req.method.methodKind !== "unary"
        const failed = (error: unknown) =>
          log("error", streaming ? "rpc server stream error" : "rpc call", {
            ...fields,
            error: String(error),
            duration: duration()
          })
        try {
          const res = await next(req)
          if (!streaming) {
            log("info", "rpc call", { ...fields, duration: duration() })
            return res
          }
          if (!res.stream) {
            log("info", "rpc server stream finished", { ...fields, duration: duration() })
            return res
          }
          const messages = res.message
          return {
            ...res,
            message: (async function* () {
              try {
                yield* messages
                log("info", "rpc server stream finished", { ...fields, duration: duration() })
              } catch (error) {
                failed(error)
                throw error
              }
            })()
          }
        } catch (error) {
          failed(error)
          throw error
        }
      }
    ]
  })
  const allowedOrigin = options.hostname ?? "localhost:8993"
  const auth = options.auth

  const handler = (req: Req, res: Res) => {
    const origin = req.headers.origin
    const method = req.method
    // CORS (rs/cors semantics): preflights never reach auth or handlers.
    if (method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
      res.setHeader("vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
      const requested = String(req.headers["access-control-request-method"]).toUpperCase()
      const requestedHeaders = req.headers["access-control-request-headers"]
      const headerList =
        requestedHeaders === undefined || requestedHeaders === ""
          ? []
          : String(requestedHeaders)
              .split(",")
              .map((h) => h.trim())
      const headersOk = headerList.every((h) => ALLOWED_HEADERS.has(h))
      if (
        origin !== undefined &&
        originMatches(allowedOrigin, origin) &&
        (requested === "GET" || requested === "POST") &&
        headersOk
      ) {
        res.setHeader("access-control-allow-origin", origin)
        res.setHeader("access-control-allow-methods", requested)
        if (headerList.length > 0) res.setHeader("access-control-allow-headers", String(requestedHeaders))
      }
      res.writeHead(204)
      res.end()
      return
    }
    res.setHeader("vary", "Origin")
    if (origin !== undefined && originMatches(allowedOrigin, origin) && (method === "GET" || method === "POST")) {
      res.setHeader("access-control-allow-origin", origin)
      res.setHeader("access-control-expose-headers", EXPOSED)
    }
    const path = (req.url ?? "/").split("?")[0]
    if (path === "/health") {
      res.writeHead(200, { "content-type": "application/json" })
      res.end('{"status":"ok"}')
      return
    }
    if (auth !== undefined) {
      const result = auth.check(req.headers.authorization)
      if (!result.ok) {
        refuse(req, res, result.message)
        return
      }
    }
    // As connect-go: procedures take POST only (nothing is idempotent) and known content types.
    const unary = UNARY.has(path ?? "")
    if (unary || STREAMING.has(path ?? "")) {
      if (method !== "POST") {
        res.writeHead(405, { allow: "POST" })
        res.end()
        return
      }
      const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()
      const accepted = unary ? UNARY_TYPES : STREAM_TYPES
      if (!accepted.includes(type)) {
        res.writeHead(415, { "accept-post": accepted.join(", ") })
        res.end()
        return
      }
    }
    adapter(req, res)
  }

  const server = http2.createSecureServer(
    { cert: certPem, key: keyPem, allowHTTP1: true, minVersion: "TLSv1.2", maxSessionMemory: 64 },
    handler
  )
  server.setTimeout(5 * 60 * 1000)
  // Plain HTTP on the TLS port gets Go's answer (no plain listener, as the original).
  server.on("tlsClientError", (error: NodeJS.ErrnoException, socket) => {
    const raw = (socket as unknown as { _parent?: import("node:net").Socket })._parent
    if (error.code === "ERR_SSL_HTTP_REQUEST" && raw !== undefined && raw.writable)
      raw.end("HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
  })
  const [host, portText] = splitHostPort(options.listen)
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        new ServerStartError({
          message:
            error.code === "EADDRINUSE"
              ? `listen tcp ${options.listen}: bind: address already in use`
              : `listen tcp ${options.listen}: ${error.message}`
        })
      )
    )
    server.listen(Number(portText), host, () => resolve())
  })
  const port = (server.address() as AddressInfo).port
  const sessions = new Set<http2.ServerHttp2Session>()
  server.on("session", (session) => {
    sessions.add(session)
    session.once("close", () => sessions.delete(session))
  })
  return {
    server,
    port,
    url: `https://${host === "" ? "localhost" : host.includes(":") ? `[${host}]` : host}:${port}`,
    certPem,
    close: () =>
      new Promise<void>((resolve) => {
        options.services.close()
        for (const session of sessions) session.destroy()
        server.close(() => resolve())
        // HTTP/1.1 keep-alive sockets
        ;(server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.()
      })
  }
}

/** Splits `host:port` (`[::1]:8993`, `:8993`). */
export const splitHostPort = (listen: string): [string, string] => {
  const colon = listen.lastIndexOf(":")
  if (colon < 0) throw new ServerStartError({ message: `listen tcp: address ${listen}: missing port in address` })
  let host = listen.slice(0, colon)
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1)
  return [host, listen.slice(colon + 1)]
}
