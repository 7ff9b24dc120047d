/**
 * airunner benchmark: jobs per second through the RPC server (EnqueueJob → DequeueJob →
 * CompleteJob; no command is run, this measures the RPC path) with 8 concurrent clients, one
 * HTTP/2 connection each, binary codec, auth on; and p50/p99 latency of a unary EnqueueJob.
 * The anchor is runlane's memory queue driven directly (enqueue → take → ack) in the same run.
 * The server runs in its own process (the real `rpc-server` command), as it would deployed.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { generateKeyPairSync, randomUUID, X509Certificate } from "node:crypto"
import { createServer } from "node:net"
import { connect } from "node:tls"
import { fileURLToPath } from "node:url"
import { MemoryEventLog } from "@runlane/core"
import { makeMemoryQueue } from "@runlane/queue-memory"
import {
  createAirunnerClients,
  JwtVerifier,
  makeAirunnerServices,
  parsePrivateKey,
  parsePublicKey,
  signToken,
  startAirunnerServer
} from "@runlane/rpc-connect"
import { Effect } from "effect"

const CLIENTS = 8
const JOBS = Number(process.env.AIRUNNER_BENCH_JOBS ?? 1600)
const LATENCY_SAMPLES = Number(process.env.AIRUNNER_BENCH_SAMPLES ?? 1000)

const fromSource = import.meta.url.endsWith(".ts")
const bin = fileURLToPath(new URL(fromSource ? "../src/bin.ts" : "../src/bin.js", import.meta.url))

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

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0
const round = (n: number, digits = 3) => Number(n.toFixed(digits))

/** The measured load against a server at `baseUrl`. */
const drive = async (baseUrl: string, token: string, ca: string) => {
  const clients = Array.from({ length: CLIENTS }, () => createAirunnerClients({ baseUrl, token, ca }))
  const queue = `bench-${randomUUID()}`
  // Warm up every connection.
  await Promise.all(clients.map((c) => c.jobs.listJobs({ queue: "warmup" })))
  const cycle = async (c: (typeof clients)[number], q: string) => {
    const { jobId } = await c.jobs.enqueueJob({ requestId: randomUUID(), queue: q, jobParams: { command: "true" } })
    let taskToken = ""
    for await (const m of c.jobs.dequeueJob({ queue: q, maxJobs: 1, visibilityTimeoutSeconds: 300 }))
      taskToken = m.taskToken
    await c.jobs.completeJob({ taskToken, jobResult: { jobId, success: true } })
  }
  // Each client cycles on its own queue (so a dequeue never waits for another client's job).
  const perClient = Math.ceil(JOBS / CLIENTS)
  for (const [i, c] of clients.entries()) for (let j = 0; j < 10; j++) await cycle(c, `${queue}-warm-${i}`)
  const started = performance.now()
  await Promise.all(
    clients.map(async (c, i) => {
      for (let j = 0; j < perClient; j++) await cycle(c, `${queue}-${i}`)
    })
  )
  const seconds = (performance.now() - started) / 1000
  const latencies: Array<number> = []
  const one = clients[0]!
  for (let i = 0; i < LATENCY_SAMPLES; i++) {
    const t = performance.now()
    await one.jobs.enqueueJob({ requestId: randomUUID(), queue: `${queue}-lat`, jobParams: { command: "true" } })
    latencies.push(performance.now() - t)
  }
  latencies.sort((a, b) => a - b)
  for (const c of clients) c.close()
  return {
    jobsPerSec: (perClient * CLIENTS) / seconds,
    jobs: perClient * CLIENTS,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99)
  }
}

const keys = () => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" })
  const publicPem = publicKey.export({ type: "spki", format: "pem" }).toString()
  const token = signToken(parsePrivateKey(privateKey.export({ type: "sec1", format: "pem" }).toString()), "bench", 3600)
  return { publicPem, token }
}

/** The same load against the server started in this process (no cross-process scheduling). */
const benchRpcInProcess = async () => {
  const { publicPem, token } = keys()
  const services = makeAirunnerServices(makeMemoryQueue(), MemoryEventLog.makeMemoryEventLog())
  const server = await startAirunnerServer({
    services,
    listen: "127.0.0.1:0",
    auth: new JwtVerifier(parsePublicKey(publicPem))
  })
  try {
    return await drive(server.url, token, server.certPem)
  } finally {
    await server.close()
  }
}

const benchRpc = async () => {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" })
  const port = await freePort()
  const server: ChildProcess = spawn(
    process.execPath,
    [...(fromSource ? ["--conditions=source"] : []), bin, "rpc-server", "--listen", `127.0.0.1:${port}`],
    {
      env: { ...process.env, JWT_PUBLIC_KEY: publicKey.export({ type: "spki", format: "pem" }).toString() },
      stdio: ["ignore", "ignore", "ignore"]
    }
  )
  try {
    let ca: string | undefined
    for (let i = 0; i < 300 && ca === undefined; i++) {
      ca = await fetchCert(port)
      if (ca === undefined) await new Promise((r) => setTimeout(r, 100))
    }
    if (ca === undefined) throw new Error("rpc-server did not start")
    const token = signToken(
      parsePrivateKey(privateKey.export({ type: "sec1", format: "pem" }).toString()),
      "bench",
      3600
    )
    return await drive(`https://127.0.0.1:${port}`, token, ca)
  } finally {
    server.kill("SIGKILL")
  }
}

const benchMemory = async () => {
  const queue = makeMemoryQueue()
  const name = `bench-${randomUUID()}`
  const cycle = async (q: string) => {
    await Effect.runPromise(queue.enqueue({ queue: q, payload: null, requestId: randomUUID() }))
    const [lease] = await Effect.runPromise(queue.take({ queue: q, max: 1, visibilityMs: 300_000, waitMs: 0 }))
    await Effect.runPromise(queue.ack(lease!.token))
  }
  const perClient = Math.ceil(JOBS / CLIENTS)
  const started = performance.now()
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, i) => {
      for (let j = 0; j < perClient; j++) await cycle(`${name}-${i}`)
    })
  )
  const seconds = (performance.now() - started) / 1000
  const latencies: Array<number> = []
  for (let i = 0; i < LATENCY_SAMPLES; i++) {
    const t = performance.now()
    await Effect.runPromise(queue.enqueue({ queue: `${name}-lat`, payload: null, requestId: randomUUID() }))
    latencies.push(performance.now() - t)
  }
  latencies.sort((a, b) => a - b)
  return {
    jobsPerSec: (perClient * CLIENTS) / seconds,
    jobs: perClient * CLIENTS,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99)
  }
}

const memory = await benchMemory()
const rpc = await benchRpc()
const inProcess = await benchRpcInProcess()
console.log(
  JSON.stringify({
    bench: "airunner",
    system: "runlane-memory-queue",
    jobsPerSec: Math.round(memory.jobsPerSec),
    jobs: memory.jobs,
    clients: CLIENTS,
    enqueueP50Ms: round(memory.p50, 4),
    enqueueP99Ms: round(memory.p99, 4)
  })
)
console.log(
  JSON.stringify({
    bench: "airunner",
    system: "runlane-airunner-rpc",
    jobsPerSec: Math.round(rpc.jobsPerSec),
    jobs: rpc.jobs,
    clients: CLIENTS,
    codec: "binary",
    auth: true,
    enqueueP50Ms: round(rpc.p50),
    enqueueP99Ms: round(rpc.p99),
    goalJobsPerSec: 5000,
    goalEnqueueP99Ms: 5,
    ratio: round(rpc.jobsPerSec / memory.jobsPerSec, 4),
    rpcOverhead: round(memory.jobsPerSec / rpc.jobsPerSec, 1)
  })
)
console.log(
  JSON.stringify({
    bench: "airunner",
    system: "runlane-airunner-rpc-inprocess",
    jobsPerSec: Math.round(inProcess.jobsPerSec),
    jobs: inProcess.jobs,
    clients: CLIENTS,
    codec: "binary",
    auth: true,
    enqueueP50Ms: round(inProcess.p50),
    enqueueP99Ms: round(inProcess.p99),
    ratio: round(inProcess.jobsPerSec / memory.jobsPerSec, 4),
    rpcOverhead: round(memory.jobsPerSec / inProcess.jobsPerSec, 1)
  })
)
