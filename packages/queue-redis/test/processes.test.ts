/**
 * Process-level tests: real runner processes (test/fixtures/worker.ts running the core Runner
 * over the Redis adapters) killed with SIGKILL, racing on one key, and a Redis of our own that
 * is shut down with SHUTDOWN NOSAVE mid-run and restarted from its AOF.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { JobQueue, type QueueStats } from "@runlane/core"
import { inCI } from "@runlane/testkit"
import { Effect, type Layer, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import { afterAll, afterEach, describe, expect, it } from "vitest"
import { RedisListQueue, RedisStreamQueue } from "../src/index.ts"
import { cleanupPrefix, REDIS_URL, redisAvailable, uniquePrefix } from "./helpers.ts"

const WORKER = fileURLToPath(new URL("./fixtures/worker.ts", import.meta.url))
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const redisServerInstalled = spawnSync("redis-server", ["--version"]).status === 0
if (!redisServerInstalled) {
  if (inCI())
    throw new Error("redis-server is not installed: in CI every suite must run (scripts/services.sh installs it)")
  console.warn("\n*** SKIPPING the Redis restart test: redis-server is not installed. ***\n")
}

const children = new Set<ChildProcess>()
const prefixes: Array<string> = []
afterEach(() => {
  for (const child of children) child.kill("SIGKILL")
  children.clear()
})
afterAll(async () => {
  if (!redisAvailable) return
  for (const prefix of prefixes) await cleanupPrefix(prefix)
})

type Backend = "streams" | "list"

const startWorker = (env: Record<string, string>): Promise<ChildProcess> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--conditions=source", WORKER], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    children.add(child)
    let out = ""
    let err = ""
    const timer = setTimeout(() => reject(new Error(`worker did not start: ${err}`)), 30_000)
    child.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString()
      if (out.includes("ready")) {
        clearTimeout(timer)
        resolve(child)
      }
    })
    child.stderr!.on("data", (chunk: Buffer) => {
      err = (err + chunk.toString()).slice(-4000)
    })
    child.once("exit", (code) => {
      children.delete(child)
      clearTimeout(timer)
      if (!out.includes("ready")) reject(new Error(`worker exited with ${code}: ${err}`))
    })
  })

const kill9 = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGKILL")
  })

const waitUntil = async (what: string, check: () => Promise<boolean>, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await sleep(100)
  }
  throw new Error(`timed out waiting for ${what}`)
}

const queueLayer = (backend: Backend, url: string, prefix: string): Layer.Layer<JobQueue> =>
  backend === "list" ? RedisListQueue.layer({ url, prefix }) : RedisStreamQueue.layer({ url, prefix })

const withQueue = async <A>(
  backend: Backend,
  url: string,
  prefix: string,
  f: (run: <B, E>(effect: Effect.Effect<B, E, JobQueue>) => Promise<B>, queue: JobQueue["Service"]) => Promise<A>
): Promise<A> => {
  const runtime = ManagedRuntime.make(queueLayer(backend, url, prefix))
  try {
    const run = <B, E>(effect: Effect.Effect<B, E, JobQueue>) => runtime.runPromise(effect)
    return await f(run, await run(Effect.service(JobQueue)))
  } finally {
    await runtime.dispose()
  }
}

const drained = (s: QueueStats) => s.ready + s.delayed + s.inflight === 0

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

describe.skipIf(!redisAvailable)("runner processes over the Redis queues", () => {
  for (const backend of ["streams", "list"] as const) {
    describe(backend, () => {
      it("a runner SIGKILLed mid-job: the job is delivered again after the visibility timeout and completes", async () => {
        const prefix = uniquePrefix(`kill-${backend}`)
        prefixes.push(prefix)
        const base = { REDIS_URL, PREFIX: prefix, QUEUE: "work", BACKEND: backend, VISIBILITY_MS: "1500" }
        const raw = new Redis(REDIS_URL)
        try {
          const { jobId } = await withQueue(backend, REDIS_URL, prefix, (run, queue) =>
            run(queue.enqueue({ queue: "work", payload: {} }))
          )
          const doomed = await startWorker({ ...base, RUNNER_ID: "doomed", JOB_MS: "60000" })
          await waitUntil(
            "the job to start",
            async () => (await raw.hget(`${prefix}started`, jobId)) === "doomed",
            20_000
          )
          await kill9(doomed)
          await startWorker({ ...base, RUNNER_ID: "survivor", JOB_MS: "0" })
          await waitUntil("the job to complete", async () => (await raw.hget(`${prefix}runs`, jobId)) === "1", 30_000)
          await waitUntil(
            "the record to say succeeded",
            async () =>
              JSON.parse((await raw.hget(`${prefix}{jobs}:r:${jobId}`, "json")) ?? "{}").status === "succeeded",
            10_000
          )
          const record = JSON.parse((await raw.hget(`${prefix}{jobs}:r:${jobId}`, "json")) ?? "{}")
          expect(record).toMatchObject({ status: "succeeded", attempts: 2 })
          expect(await raw.hget(`${prefix}started`, jobId)).toBe("survivor")
          const stats = await withQueue(backend, REDIS_URL, prefix, (run, queue) => run(queue.stats("work")))
          expect(stats).toMatchObject({ ready: 0, delayed: 0, inflight: 0, dead: 0 })
        } finally {
          raw.disconnect()
        }
      }, 90_000)

      it("the per-key limit holds across two runner processes", async () => {
        const prefix = uniquePrefix(`limit-${backend}`)
        prefixes.push(prefix)
        const raw = new Redis(REDIS_URL)
        try {
          await withQueue(backend, REDIS_URL, prefix, (run, queue) =>
            run(
              queue.enqueueMany([
                ...Array.from({ length: 12 }, () => ({
                  queue: "work",
                  key: "user-1",
                  payload: { ms: 150 },
                  maxAttempts: 50
                })),
                ...Array.from({ length: 4 }, () => ({
                  queue: "work",
                  key: "user-2",
                  payload: { ms: 150 },
                  maxAttempts: 50
                }))
              ])
            )
          )
          const base = {
            REDIS_URL,
            PREFIX: prefix,
            QUEUE: "work",
            BACKEND: backend,
            MAX_PER_KEY: "2",
            CONCURRENCY: "1"
          }
          // One job at a time per process and three processes: 3 could run a key at once, the
          // limit allows 2, and reaching 2 means two processes ran the key at the same time.
          await Promise.all(["a", "b", "c"].map((id) => startWorker({ ...base, RUNNER_ID: id })))
          await waitUntil("16 jobs to run", async () => (await raw.hlen(`${prefix}runs`)) === 16, 60_000)
          const max = await raw.hgetall(`${prefix}maxrunning`)
          expect(max["user-1"]).toBe("2")
          expect(Number(max["user-2"])).toBeGreaterThanOrEqual(1)
          expect(Number(max["user-2"])).toBeLessThanOrEqual(2)
        } finally {
          raw.disconnect()
        }
      }, 90_000)

      it("10,000 jobs through 4 runner processes with random SIGKILLs: every job succeeded exactly once in the store", async () => {
        const prefix = uniquePrefix(`soak-${backend}`)
        prefixes.push(prefix)
        const total = 10_000
        const raw = new Redis(REDIS_URL)
        try {
          const ids = await withQueue(backend, REDIS_URL, prefix, async (run, queue) => {
            const out: Array<string> = []
            for (let i = 0; i < total; i += 1000) {
              const results = await run(
                queue.enqueueMany(
                  Array.from({ length: 1000 }, (_, k) => ({ queue: "work", payload: { n: i + k }, maxAttempts: 20 }))
                )
              )
              out.push(...results.map((r) => r.jobId))
            }
            return out
          })
          const base = { REDIS_URL, PREFIX: prefix, QUEUE: "work", BACKEND: backend, CONCURRENCY: "25", JOB_MS: "1" }
          let serial = 0
          const workers = await Promise.all(
            Array.from({ length: 4 }, () => startWorker({ ...base, RUNNER_ID: `w${++serial}` }))
          )
          // Kill a random runner every 0.7-1.5 s and start a fresh one, four times.
          for (let kill = 0; kill < 4; kill++) {
            await sleep(700 + Math.random() * 800)
            const index = Math.floor(Math.random() * workers.length)
            await kill9(workers[index]!)
            workers[index] = await startWorker({ ...base, RUNNER_ID: `w${++serial}` })
          }
          await waitUntil(
            "the queue to drain",
            async () => drained(await withQueue(backend, REDIS_URL, prefix, (run, queue) => run(queue.stats("work")))),
            240_000
          )
          const stats = await withQueue(backend, REDIS_URL, prefix, (run, queue) => run(queue.stats("work")))
          expect(stats.dead).toBe(0)
          // The store: one record per job, each succeeded; the queue index holds exactly these.
          const pipeline = raw.pipeline()
          for (const id of ids) pipeline.hget(`${prefix}{jobs}:r:${id}`, "s")
          const statuses = ((await pipeline.exec()) ?? []).map(([, value]) => value)
          await waitUntil(
            "every record to be final",
            async () => {
              const p = raw.pipeline()
              for (const id of ids) p.hget(`${prefix}{jobs}:r:${id}`, "s")
              const now = ((await p.exec()) ?? []).map(([, value]) => value)
              statuses.splice(0, statuses.length, ...now)
              return now.every((s) => s === "succeeded")
            },
            30_000
          )
          expect(statuses.filter((s) => s === "succeeded").length).toBe(total)
          expect(await raw.zcard(`${prefix}{jobs}:idx:q:work`)).toBe(total)
          expect(await raw.zcard(`${prefix}{jobs}:idx:s:succeeded`)).toBe(total)
          const runs = await raw.hgetall(`${prefix}runs`)
          expect(Object.keys(runs).length).toBe(total)
          expect(ids.every((id) => Number(runs[id]) >= 1)).toBe(true)
        } finally {
          raw.disconnect()
        }
      }, 300_000)

      it.skipIf(!redisServerInstalled)(
        "a Redis restart mid-run (SHUTDOWN NOSAVE, AOF on) loses no job",
        async () => {
          const port = await freePort()
          const dir = mkdtempSync(join(tmpdir(), "rl-redis-aof-"))
          const url = `redis://127.0.0.1:${port}`
          const evidencePrefix = uniquePrefix(`restart-${backend}`)
          prefixes.push(evidencePrefix)
          const startRedis = async () => {
            const server = spawn(
              "redis-server",
              ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--appendonly", "yes"].concat([
                "--appendfsync",
                "everysec",
                "--save",
                ""
              ]),
              { stdio: "ignore" }
            )
            children.add(server)
            server.once("exit", () => children.delete(server))
            await waitUntil(
              "our Redis to answer",
              async () => {
                const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
                probe.on("error", () => undefined)
                try {
                  await probe.connect()
                  return (await probe.ping()) === "PONG"
                } catch {
                  return false
                } finally {
                  probe.disconnect()
                }
              },
              20_000
            )
            return server
          }
          const evidence = new Redis(REDIS_URL)
          let server = await startRedis()
          try {
            const total = 1500
            const ids = await withQueue(backend, url, "rl:", async (run, queue) =>
              (
                await run(
                  queue.enqueueMany(
                    Array.from({ length: total }, (_, n) => ({ queue: "work", payload: { n }, maxAttempts: 50 }))
                  )
                )
              ).map((r) => r.jobId)
            )
            const base = {
              REDIS_URL: url,
              PREFIX: "rl:",
              QUEUE: "work",
              BACKEND: backend,
              CONCURRENCY: "10",
              JOB_MS: "5",
              EVIDENCE_URL: REDIS_URL,
              EVIDENCE_PREFIX: evidencePrefix
            }
            await Promise.all([startWorker({ ...base, RUNNER_ID: "r1" }), startWorker({ ...base, RUNNER_ID: "r2" })])
            await waitUntil(
              "some jobs to finish",
              async () => (await evidence.hlen(`${evidencePrefix}runs`)) >= 200,
              60_000
            )
            // No retries: the reply never comes (the server is gone) and must not be resent.
            const stopper = new Redis(url, {
              maxRetriesPerRequest: 0,
              retryStrategy: () => null,
              autoResendUnfulfilledCommands: false
            })
            stopper.on("error", () => undefined)
            await stopper.call("SHUTDOWN", "NOSAVE").catch(() => undefined)
            stopper.disconnect()
            await new Promise<void>((resolve) =>
              server.exitCode !== null ? resolve() : server.once("exit", () => resolve())
            )
            const doneAtCrash = await evidence.hlen(`${evidencePrefix}runs`)
            expect(doneAtCrash).toBeLessThan(total)
            await sleep(1000)
            server = await startRedis()
            await waitUntil(
              "every job to run",
              async () => (await evidence.hlen(`${evidencePrefix}runs`)) === total,
              120_000
            )
            await waitUntil(
              "the queue to drain",
              async () => drained(await withQueue(backend, url, "rl:", (run, queue) => run(queue.stats("work")))),
              60_000
            )
            const stats = await withQueue(backend, url, "rl:", (run, queue) => run(queue.stats("work")))
            expect(stats.dead).toBe(0)
            const runs = await evidence.hgetall(`${evidencePrefix}runs`)
            expect(ids.every((id) => Number(runs[id]) >= 1)).toBe(true)
          } finally {
            evidence.disconnect()
            for (const child of children) child.kill("SIGKILL")
            await sleep(200)
            rmSync(dir, { recursive: true, force: true })
          }
        },
        240_000
      )
    })
  }
})
