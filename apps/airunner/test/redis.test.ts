import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomUUID, X509Certificate } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { connect } from "node:tls"
import { fileURLToPath } from "node:url"
import { requireService, tcpReachable } from "@runlane/testkit"
import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const bin = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "bin.ts")
const available = await requireService("Redis at 127.0.0.1:6379", () => tcpReachable(6379))

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer()
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })

const fetchCert = (port: number) =>
  new Promise<string | undefined>((resolve) => {
    const socket = connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
      const raw = socket.getPeerCertificate().raw
      socket.end()
      resolve(raw === undefined ? undefined : new X509Certificate(raw).toString())
    })
    socket.on("error", () => resolve(undefined))
  })

const env = (): NodeJS.ProcessEnv => {
  const e = { ...process.env }
  delete e.JWT_PUBLIC_KEY
  delete e.AIRUNNER_TOKEN
  return e
}

describe.skipIf(!available)("rpc-server --queue-backend redis (runlane decision 5)", () => {
  const prefix = `airunner-cli-test:${randomUUID()}:`
  let dir: string
  let server: ChildProcess
  let worker: ChildProcess
  let url: string

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "airunner-redis-"))
    const port = await freePort()
    url = `https://127.0.0.1:${port}`
    server = spawn(
      process.execPath,
      [
        "--conditions=source",
        bin,
        "rpc-server",
        "--no-auth",
        "--listen",
        `127.0.0.1:${port}`,
        "--queue-backend",
        "redis",
        "--redis-prefix",
        prefix
      ],
      { env: env(), stdio: "ignore" }
    )
    let cert: string | undefined
    for (let i = 0; i < 200 && cert === undefined; i++) {
      cert = await fetchCert(port)
      if (cert === undefined) await new Promise((r) => setTimeout(r, 100))
    }
    writeFileSync(join(dir, "ca.pem"), cert ?? "")
    worker = spawn(process.execPath, ["--conditions=source", bin, "worker", "--server", url], {
      env: { ...env(), SSL_CERT_FILE: join(dir, "ca.pem") },
      stdio: "ignore"
    })
  }, 60_000)

  afterAll(async () => {
    worker?.kill("SIGKILL")
    server?.kill("SIGKILL")
    rmSync(dir, { recursive: true, force: true })
    const redis = new Redis("redis://127.0.0.1:6379")
    let cursor = "0"
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== "0")
    await redis.quit()
  })

  it("runs a submitted job through the worker with jobs and events in Redis", async () => {
    const out = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(
        process.execPath,
        [
          "--conditions=source",
          bin,
          "submit",
          "--server",
          url,
          "--process-type=pipe",
          "--command=echo",
          "--args=via-redis",
          "r"
        ],
        { env: { ...env(), SSL_CERT_FILE: join(dir, "ca.pem") }, timeout: 60_000 },
        (error, stdout) => resolve({ code: error === null ? 0 : Number(error.code ?? -1), stdout })
      )
    })
    expect(out.code).toBe(0)
    expect(out.stdout).toContain("via-redis\n")
    expect(out.stdout).toMatch(/✅ SUCCESS Process ended/)
    const redis = new Redis("redis://127.0.0.1:6379")
    let found = 0
    let cursor = "0"
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000)
      cursor = next
      found += keys.length
    } while (cursor !== "0")
    await redis.quit()
    expect(found).toBeGreaterThan(0)
  }, 60_000)
})
