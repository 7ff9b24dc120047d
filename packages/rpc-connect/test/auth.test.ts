import { generateKeyPairSync, randomUUID, sign } from "node:crypto"
import * as http2 from "node:http2"
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect"
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  createAirunnerClients,
  JobService,
  JobState,
  JwtKeyError,
  JwtVerifier,
  parsePrivateKey,
  parsePublicKey,
  signToken
} from "../src/index.ts"
import { type Harness, makeKeys, startHarness } from "./helpers.ts"

let h: Harness
beforeAll(async () => {
  h = await startHarness()
})
afterAll(async () => {
  await h.server.close()
})

interface RawResponse {
  readonly status: number
  readonly headers: http2.IncomingHttpHeaders
  readonly body: Buffer
  readonly trailers: http2.IncomingHttpHeaders
}

/** One raw HTTP/2 request over TLS (certificate verified against the server's). */
const raw = (path: string, headers: Record<string, string>, body?: Buffer | string): Promise<RawResponse> =>
  new Promise((resolve, reject) => {
    const session = http2.connect(h.server.url, { ca: h.server.certPem })
    session.on("error", reject)
    const req = session.request({ ":path": path, ":method": "POST", ...headers })
    const chunks: Array<Buffer> = []
    let status = 0
    let responseHeaders: http2.IncomingHttpHeaders = {}
    let trailers: http2.IncomingHttpHeaders = {}
    req.on("response", (h2) => {
      status = Number(h2[":status"])
      responseHeaders = h2
    })
    req.on("trailers", (t) => {
      trailers = t
    })
    req.on("data", (c: Buffer) => chunks.push(c))
    req.on("end", () => {
      session.close()
      resolve({ status, headers: responseHeaders, body: Buffer.concat(chunks), trailers })
    })
    req.on("error", reject)
    req.end(body)
  })

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url")
const es256 = (header: unknown, claims: unknown) => {
  const input = `${b64(header)}.${b64(claims)}`
  const signature = sign("sha256", Buffer.from(input), { key: h.privateKey, dsaEncoding: "ieee-p1363" })
  return `${input}.${signature.toString("base64url")}`
}
const now = () => Math.floor(Date.now() / 1000)

const unary = (authorization?: string) =>
  raw(
    "/job.v1.JobService/ListJobs",
    {
      "content-type": "application/json",
      ...(authorization === undefined ? {} : { authorization })
    },
    JSON.stringify({ queue: `empty-${randomUUID()}` })
  )

const withToken: Interceptor = (next) => (req) => {
  req.header.set("authorization", `Bearer ${h.token}`)
  return next(req)
}

describe("JWT ES256 auth (as the original)", () => {
  it("serves /health without a token", async () => {
    const res = await raw("/health", {})
    expect(res.status).toBe(200)
    expect(res.headers["content-type"]).toBe("application/json")
    expect(res.body.toString()).toBe('{"status":"ok"}')
  })

  it("serves HTTP/1.1 too (ALPN), and the JSON codec through a Connect client", async () => {
    const { request } = await import("node:https")
    const body = await new Promise<string>((resolve, reject) => {
      const req = request(`${h.server.url}/health`, { ca: h.server.certPem }, (res) => {
        let text = ""
        res.on("data", (c) => {
          text += c
        })
        res.on("end", () => resolve(`${res.httpVersion} ${res.statusCode} ${text}`))
      })
      req.on("error", reject)
      req.end()
    })
    expect(body).toBe('1.1 200 {"status":"ok"}')
    const json = createAirunnerClients({ baseUrl: h.server.url, token: h.token, ca: h.server.certPem, useJson: true })
    const queue = `json-${randomUUID()}`
    const { jobId } = await json.jobs.enqueueJob({ requestId: randomUUID(), queue, jobParams: { command: "x" } })
    const listed = await json.jobs.listJobs({ queue })
    json.close()
    expect(listed.jobs.map((j) => [j.jobId, j.jobParams?.command])).toEqual([[jobId, "x"]])
  })

  it("refuses Connect unary calls with 401 and the original's messages", async () => {
    const cases: Array<[string | undefined, string]> = [
      [undefined, "missing bearer token"],
      [`Basic ${h.token}`, "missing bearer token"],
      ["Bearer invalid.token.string", "invalid token"],
      [`Bearer ${es256({ alg: "ES256", typ: "JWT" }, { sub: "x", exp: now() - 10 })}`, "invalid token"],
      [`Bearer ${es256({ alg: "ES256", typ: "JWT" }, { sub: "x" })}`, "token missing exp"],
      [
        `Bearer ${es256({ alg: "ES256", typ: "JWT" }, { sub: "x", exp: now() + 60, nbf: now() + 60 })}`,
        "invalid token"
      ],
      [`Bearer ${es256({ alg: "none", typ: "JWT" }, { sub: "x", exp: now() + 60 })}`, "invalid token"]
    ]
    for (const [authorization, message] of cases) {
      const res = await unary(authorization)
      expect([res.status, res.headers["content-type"], JSON.parse(res.body.toString())]).toEqual([
        401,
        "application/json",
        { code: "unauthenticated", message }
      ])
    }
    // HS256 signed with the public key's bytes (the classic confusion attack) is refused.
    const { createHmac } = await import("node:crypto")
    const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: "x", exp: now() + 60 })}`
    const mac = createHmac("sha256", h.publicPem).update(input).digest("base64url")
    expect(JSON.parse((await unary(`Bearer ${input}.${mac}`)).body.toString()).message).toBe("invalid token")
    // A valid token in any case of "bearer".
    const ok = await unary(`bEaReR ${h.token}`)
    expect(ok.status).toBe(200)
    expect(JSON.parse(ok.body.toString())).toEqual({ lastPage: 1 })
  })

  it("refuses in the caller's protocol: Connect streaming end frame, gRPC and gRPC-Web status 16", async () => {
    const stream = await raw(
      "/job.v1.JobService/DequeueJob",
      { "content-type": "application/connect+proto", "connect-protocol-version": "1" },
      Buffer.from([0, 0, 0, 0, 0])
    )
    expect(stream.status).toBe(200)
    expect(stream.body[0]).toBe(2)
    expect(JSON.parse(stream.body.subarray(5).toString())).toEqual({
      error: { code: "unauthenticated", message: "missing bearer token" }
    })
    const grpc = await raw("/job.v1.JobService/EnqueueJob", { "content-type": "application/grpc", te: "trailers" })
    expect([grpc.status, grpc.headers["grpc-status"], grpc.headers["grpc-message"]]).toEqual([
      200,
      "16",
      "missing bearer token"
    ])
    // Real gRPC and gRPC-Web clients see `unauthenticated`.
    for (const transport of [
      createGrpcTransport({ baseUrl: h.server.url, nodeOptions: { ca: h.server.certPem } }),
      createGrpcWebTransport({ baseUrl: h.server.url, httpVersion: "2", nodeOptions: { ca: h.server.certPem } })
    ]) {
      const client = createClient(JobService, transport)
      const error = await client.listJobs({}).then(
        () => undefined,
        (e) => ConnectError.from(e)
      )
      expect([error?.code, error?.rawMessage]).toEqual([Code.Unauthenticated, "missing bearer token"])
    }
    // Auth runs before the body is read: a malformed body without a token is unauthenticated.
    const malformed = await raw("/job.v1.JobService/EnqueueJob", { "content-type": "application/proto" }, "\xff\xff")
    expect(malformed.status).toBe(401)
  })

  it("procedures take POST only (405 Allow: POST) and known content types (415 Accept-Post)", async () => {
    const authorization = `Bearer ${h.token}`
    const get = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const session = http2.connect(h.server.url, { ca: h.server.certPem })
      const req = session.request({ ":path": "/job.v1.JobService/ListJobs", ":method": "GET", authorization })
      req.on("response", (headers) => {
        session.close()
        resolve(headers)
      })
      req.on("error", reject)
      req.end()
    })
    expect([get[":status"], get.allow]).toEqual([405, "POST"])
    const text = await raw("/job.v1.JobService/ListJobs", { "content-type": "text/plain", authorization }, "x")
    expect(text.status).toBe(415)
    expect(String(text.headers["accept-post"])).toContain("application/proto")
    const streamAsUnary = await raw(
      "/job.v1.JobService/DequeueJob",
      { "content-type": "application/proto", authorization },
      ""
    )
    expect(streamAsUnary.status).toBe(415)
  })

  it("plain HTTP on the TLS port gets 400 Bad Request", async () => {
    const { connect } = await import("node:net")
    const answer = await new Promise<string>((resolve) => {
      let got = ""
      const socket = connect(h.server.port, "127.0.0.1", () => socket.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n"))
      socket.on("data", (d) => {
        got += d.toString()
      })
      socket.on("close", () => resolve(got))
      socket.on("error", () => resolve(got))
    })
    expect(answer).toBe("HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
  })

  it("unknown paths: 401 without a token, 404 with one", async () => {
    expect((await raw("/nope", {})).status).toBe(401)
    const found = await raw("/nope", { authorization: `Bearer ${h.token}` })
    expect([found.status, found.body.toString()]).toEqual([404, "404 page not found\n"])
  })

  it("gRPC and gRPC-Web clients with a token run the workflow", async () => {
    for (const transport of [
      createGrpcTransport({
        baseUrl: h.server.url,
        nodeOptions: { ca: h.server.certPem },
        interceptors: [withToken]
      }),
      createGrpcWebTransport({
        baseUrl: h.server.url,
        httpVersion: "2",
        nodeOptions: { ca: h.server.certPem },
        interceptors: [withToken]
      })
    ]) {
      const client = createClient(JobService, transport)
      const queue = `grpc-${randomUUID()}`
      const { jobId } = await client.enqueueJob({ requestId: randomUUID(), queue, jobParams: { command: "true" } })
      const taken = []
      for await (const m of client.dequeueJob({ queue, maxJobs: 1 }, { timeoutMs: 5000 })) taken.push(m)
      expect(taken.map((m) => m.job?.jobId)).toEqual([jobId])
      await client.completeJob({ taskToken: taken[0]!.taskToken, jobResult: { jobId, success: true } })
      const listed = await client.listJobs({ queue, state: JobState.COMPLETED })
      expect(listed.jobs.map((j) => j.jobId)).toEqual([jobId])
    }
  })

  it("a Connect client with an expired token gets unauthenticated", async () => {
    const expired = signToken(h.privateKey, "old", -5)
    const clients = createAirunnerClients({ baseUrl: h.server.url, token: expired, ca: h.server.certPem })
    const error = await clients.jobs.listJobs({}).then(
      () => undefined,
      (e) => ConnectError.from(e)
    )
    clients.close()
    expect([error?.code, error?.rawMessage]).toEqual([Code.Unauthenticated, "invalid token"])
  })

  it("answers CORS preflights before auth", async () => {
    const res = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
      const session = http2.connect(h.server.url, { ca: h.server.certPem })
      const req = session.request({
        ":path": "/job.v1.JobService/ListJobs",
        ":method": "OPTIONS",
        origin: "localhost:8993",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type"
      })
      req.on("response", (headers) => {
        session.close()
        resolve(headers)
      })
      req.on("error", reject)
      req.end()
    })
    expect(res[":status"]).toBe(204)
    expect(res["access-control-allow-origin"]).toBe("localhost:8993")
    expect(res["access-control-allow-methods"]).toBe("POST")
    expect(res.vary).toBe("Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
  })
})

describe("keys", () => {
  it("parses PKIX P-256 public keys and refuses empty, invalid and non-P-256 keys", () => {
    const { publicPem, privatePem } = makeKeys()
    expect(() => parsePublicKey(publicPem)).not.toThrow()
    expect(() => parsePublicKey("")).toThrow(new JwtKeyError({ message: "JWT public key not provided" }))
    expect(() => parsePublicKey("invalid pem")).toThrow(JwtKeyError)
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).publicKey.export({ type: "spki", format: "pem" })
    expect(() => parsePublicKey(rsa.toString())).toThrow(JwtKeyError)
    // SEC1 and PKCS#8 private keys both sign tokens the verifier accepts, with sub kept.
    const sec1 = parsePrivateKey(privatePem)
    const pkcs8 = parsePrivateKey(sec1.export({ type: "pkcs8", format: "pem" }).toString())
    const verifier = new JwtVerifier(parsePublicKey(publicPem))
    for (const key of [sec1, pkcs8]) {
      const token = signToken(key, "user123", 60)
      expect(verifier.check(`Bearer ${token}`)).toEqual({ ok: true, subject: "user123" })
      const [header, claims] = token.split(".")
      expect(JSON.parse(Buffer.from(header!, "base64url").toString())).toEqual({ alg: "ES256", typ: "JWT" })
      expect(Object.keys(JSON.parse(Buffer.from(claims!, "base64url").toString()))).toEqual([
        "iss",
        "sub",
        "exp",
        "iat"
      ])
    }
    expect(() => parsePrivateKey("nope")).toThrow(JwtKeyError)
  })
})
