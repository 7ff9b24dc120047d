import { readFileSync } from "node:fs"
import { rootCertificates } from "node:tls"
import { type Client, createClient, type Interceptor } from "@connectrpc/connect"
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node"
import { JobEventsService, JobService } from "./gen/job/v1/job_pb.ts"

export interface AirunnerClientOptions {
  /** `https://host:port` */
  readonly baseUrl: string
  /** Bearer token; with one, every request carries `Authorization: Bearer <token>`. */
  readonly token?: string | undefined
  /**
   * Extra trusted CA certificates (PEM), added to Node's roots. Default: the file named by
   * `SSL_CERT_FILE` when set (the original trusts the system store, which Go reads from there).
   */
  readonly ca?: string | undefined
  /** Default deadline of each call. */
  readonly timeoutMs?: number | undefined
  /** Protocol (default Connect) and codec (default binary). */
  readonly useJson?: boolean
}

export interface AirunnerClients {
  readonly jobs: Client<typeof JobService>
  readonly events: Client<typeof JobEventsService>
  /** Closes the HTTP/2 connection (calls in flight fail). */
  readonly close: () => void
}

const caFromEnv = (): string | undefined => {
  const file = process.env.SSL_CERT_FILE
  if (file === undefined || file === "") return undefined
  try {
    return readFileSync(file, "utf8")
  } catch {
    return undefined
  }
}

/**
 * Connect clients for both services over HTTP/2 (one session per transport, pinged after 10 s
 * idle), binary codec, the server certificate always verified.
 */
export const createAirunnerClients = (options: AirunnerClientOptions): AirunnerClients => {
  const ca = options.ca ?? caFromEnv()
  const token = options.token
  const interceptors: Array<Interceptor> =
    token === undefined || token === ""
      ? []
      : [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${token}`)
            return next(req)
          }
        ]
  const sessionManager = new Http2SessionManager(
    options.baseUrl,
    { pingIntervalMs: 10_000, pingTimeoutMs: 10_000 },
    ca === undefined ? {} : { ca: [...rootCertificates, ca] }
  )
  const transport = createConnectTransport({
    baseUrl: options.baseUrl,
    httpVersion: "2",
    useBinaryFormat: options.useJson !== true,
    interceptors,
    sessionManager,
    ...(options.timeoutMs === undefined ? {} : { defaultTimeoutMs: options.timeoutMs })
  })
  return {
    jobs: createClient(JobService, transport),
    events: createClient(JobEventsService, transport),
    close: () => sessionManager.abort()
  }
}
