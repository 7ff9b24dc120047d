/**
 * runlane's PostgreSQL queue through the Runner against Graphile Worker 0.18, side by side on
 * the local PostgreSQL: 20,000 no-op jobs, concurrency 50, a fresh database per system.
 *
 * - enqueuePerSec: 20,000 jobs added in batches of 1,000 (runlane `enqueueMany`, Graphile `addJobs`).
 * - processPerSec: from starting the workers until every job's completion is committed
 *   (runlane: the 20,000th ack and an empty table; Graphile: its jobs table is empty).
 * - pgCpuMsPer1k / clientCpuMsPer1k: CPU used while processing, per 1,000 jobs, by the
 *   PostgreSQL backends of the bench database (from /proc) and by this process. Less noisy than
 *   the rates on a shared machine.
 *
 * Lines: graphile-worker-batched (the anchor), graphile-worker-unbatched, runlane-postgres
 * (Runner, `prefetch` 1000, default confirmed acks), runlane-postgres-write-behind-acks,
 * runlane-postgres-direct (the queue alone: 50 fibers take and ack, no Runner), and
 * runner-over-array-queue (the Runner over an in-memory array: its own ceiling in this run).
 * runlane lines carry `ratio` (process) and `enqueueRatio` against Graphile batched.
 * Each system runs in its own child process, first 2,000 jobs unmeasured (warm-up). BENCH_SKIP_UNBATCHED=1 skips the slow unbatched run; BENCH_ONLY=runlane|graphile.
 */

import { spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { PgClient } from "@effect/sql-pg"
import {
  type EnqueueInput,
  JobQueue,
  MemoryEventLog,
  MemoryJobStore,
  MemoryLimiter,
  Runner,
  toJobSpec
} from "@runlane/core"
import { Deferred, Effect, Exit, Fiber, Layer } from "effect"
import { Logger, makeWorkerUtils, run as runGraphile, runMigrations } from "graphile-worker"
import pg from "pg"
import { PostgresQueue } from "../src/index.ts"

const MEASURED_JOBS = Number(process.env.BENCH_JOBS ?? 20_000)
/** Jobs per run: a short warm-up run of each system first (JIT, caches), then the measured ones. */
let JOBS = MEASURED_JOBS
const CONCURRENCY = 50
const ADD_BATCH = 1000
const HOST = "127.0.0.1"
const PORT = Number(process.env.BENCH_PG_PORT ?? 5432)

const adminQuery = async (text: string) => {
  const client = new pg.Client({ host: HOST, port: PORT, user: "postgres", database: "postgres" })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

const withDatabase = async <A>(tag: string, use: (name: string) => Promise<A>): Promise<A> => {
  const name = `rl_bench_${tag}_${process.pid}_${Date.now().toString(36)}`
  await adminQuery(`CREATE DATABASE ${name}`)
  try {
    return await use(name)
  } finally {
    // Let pools finish closing (forcing would make their clients emit errors), then force.
    let dropped = false
    for (let i = 0; i < 50 && !dropped; i++) {
      dropped = await adminQuery(`DROP DATABASE IF EXISTS ${name}`).then(
        () => true,
        () => new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 100))
      )
    }
    if (!dropped) await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  }
}

interface Figures {
  readonly enqueuePerSec: number
  readonly processPerSec: number
  /** CPU spent while processing, per 1,000 jobs: PostgreSQL backends of the bench database, and this process. */
  readonly pgCpuMsPer1k: number
  readonly clientCpuMsPer1k: number
}

/** CPU time (ms) of each PostgreSQL backend connected to `database`, from /proc (Linux). */
const backendCpu = async (database: string): Promise<Map<number, number>> => {
  const client = new pg.Client({ host: HOST, port: PORT, user: "postgres", database: "postgres" })
  await client.connect()
  try {
    const { rows } = await client.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1", [
      database
    ])
    const cpu = new Map<number, number>()
    for (const { pid } of rows) {
      try {
        const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? []
        cpu.set(pid, ((Number(fields[11]) + Number(fields[12])) * 1000) / 100)
      } catch {
        // gone, or not on this host
      }
    }
    return cpu
  } finally {
    await client.end()
  }
}

/** Measures the CPU of the backends and of this process between `start()` and `stop()`. */
const cpuMeter = async (database: string) => {
  const before = await backendCpu(database)
  const client = process.cpuUsage()
  return async () => {
    const clientUsed = process.cpuUsage(client)
    const after = await backendCpu(database)
    let pgMs = 0
    for (const [pid, ms] of after) pgMs += ms - (before.get(pid) ?? 0)
    return {
      pgCpuMsPer1k: Math.round((pgMs * 1000) / JOBS),
      clientCpuMsPer1k: Math.round(((clientUsed.user + clientUsed.system) / 1000) * (1000 / JOBS))
    }
  }
}

const perSec = (n: number, ms: number) => Math.round((n * 1000) / ms)

const silent = new Logger(() => () => {})

const graphile = (batched: boolean): Promise<Figures> =>
  withDatabase(batched ? "gwb" : "gwu", async (database) => {
    const connectionString = `postgres://postgres@${HOST}:${PORT}/${database}`
    await runMigrations({ connectionString, logger: silent })
    const utils = await makeWorkerUtils({ connectionString, logger: silent })
    const t0 = performance.now()
    try {
      for (let i = 0; i < JOBS; i += ADD_BATCH) {
        const specs = Array.from({ length: Math.min(ADD_BATCH, JOBS - i) }, (_, j) => ({
          identifier: "noop",
          payload: { i: i + j }
        }))
        await utils.addJobs(specs)
      }
    } finally {
      await utils.release()
    }
    const t1 = performance.now()
    const pool = new pg.Pool({ connectionString, max: 1 })
    let processMs = 1
    let cpu = { pgCpuMsPer1k: 0, clientCpuMsPer1k: 0 }
    let done = 0
    const meter = await cpuMeter(database)
    const t2 = performance.now()
    const runner = await runGraphile({
      connectionString,
      concurrency: CONCURRENCY,
      noHandleSignals: true,
      pollInterval: 1000,
      logger: silent,
      taskList: {
        noop: async () => {
          done++
        }
      },
      ...(batched
        ? { preset: { worker: { localQueue: { size: 1000 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } } }
        : {})
    })
    try {
      while (done < JOBS) await new Promise((resolve) => setTimeout(resolve, 5))
      // Completions are committed when the jobs table is empty.
      for (;;) {
        const { rows } = await pool.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs")
        if (rows[0].n === 0) break
        await new Promise((resolve) => setTimeout(resolve, 5))
      }
    } finally {
      processMs = performance.now() - t2
      cpu = await meter()
      await runner.stop()
      await pool.end()
    }
    return { enqueuePerSec: perSec(JOBS, t1 - t0), processPerSec: perSec(JOBS, processMs), ...cpu }
  })

/**
 * runlane's queue at concurrency 50. `runner`: through core's Runner (the figure the issue asks
 * for). `direct`: 50 fibers each taking one lease and acking it, no Runner: what the queue
 * itself sustains, to tell its cost from the Runner's.
 */
const runlane = (mode: "runner" | "direct", writeBehindAcks: boolean): Promise<Figures> =>
  withDatabase(`rl_${mode}${writeBehindAcks ? "_wb" : ""}`, (database) => {
    const program = Effect.gen(function* () {
      const queue = yield* JobQueue
      const t0 = performance.now()
      for (let i = 0; i < JOBS; i += ADD_BATCH) {
        const inputs: Array<EnqueueInput> = Array.from({ length: Math.min(ADD_BATCH, JOBS - i) }, (_, j) => ({
          queue: "bench",
          payload: { i: i + j }
        }))
        yield* queue.enqueueMany(inputs)
      }
      const t1 = performance.now()

      // Count committed acks: the 20,000th one ends the measurement.
      let acked = 0
      const allAcked = Deferred.makeUnsafe<void>()
      const counted = (token: string) =>
        queue.ack(token).pipe(
          Effect.tap(() =>
            Effect.sync(() => {
              if (++acked === JOBS) Deferred.doneUnsafe(allAcked, Exit.void)
            })
          )
        )
      const meter = yield* Effect.promise(() => cpuMeter(database))
      const t2 = performance.now()
      const workers =
        mode === "runner"
          ? yield* Runner.run(
              {
                queue: "bench",
                concurrency: CONCURRENCY,
                batchSize: CONCURRENCY,
                record: false,
                shutdownGraceMs: 1000
              },
              () => Effect.succeed({})
            ).pipe(Effect.provideService(JobQueue, JobQueue.of({ ...queue, ack: counted })), Effect.forkChild)
          : yield* Effect.forEach(
              Array.from({ length: CONCURRENCY }),
              () =>
                queue.take({ queue: "bench", max: 1, visibilityMs: 30_000, waitMs: 1000 }).pipe(
                  Effect.flatMap((leases) =>
                    Effect.forEach(leases, (lease) => counted(lease.token), { discard: true })
                  ),
                  Effect.forever
                ),
              { concurrency: "unbounded", discard: true }
            ).pipe(Effect.forkChild)
      yield* Deferred.await(allAcked)
      // Done when every ack is committed: with write-behind acks, when the table is empty.
      for (;;) {
        const stats = yield* queue.stats("bench")
        if (stats.ready + stats.delayed + stats.dead !== 0) {
          return yield* Effect.die(new Error(`jobs left after the run: ${JSON.stringify(stats)}`))
        }
        if (stats.inflight === 0) break
        yield* Effect.sleep(5)
      }
      const t3 = performance.now()
      const cpu = yield* Effect.promise(meter)
      yield* Fiber.interrupt(workers)
      return { enqueuePerSec: perSec(JOBS, t1 - t0), processPerSec: perSec(JOBS, t3 - t2), ...cpu }
    })
    const layer = Layer.mergeAll(
      // Read-ahead of 1,000 leases (as Graphile's localQueue.size); acks and enqueues batch by
      // default. Optionally write-behind acks, which free a Runner slot without waiting for the
      // DELETE (as Graphile's batched completion frees its worker).
      PostgresQueue.layer({ schema: "runlane", prefetch: { size: 1000 }, writeBehindAcks }),
      MemoryJobStore.layer(),
      MemoryEventLog.layer(),
      MemoryLimiter.layer()
    ).pipe(
      Layer.provideMerge(
        PgClient.layer({ host: HOST, port: PORT, username: "postgres", database, multiplex: true, maxConnections: 10 })
      )
    )
    return Effect.runPromise(program.pipe(Effect.provide(layer)))
  })

/**
 * The Runner's own ceiling in this run: the same 20,000 no-op jobs at concurrency 50 through the
 * Runner over a trivial in-bench queue (an array, nothing persisted, every ack succeeds at once).
 */
const runnerCeiling = (): Promise<{ readonly processPerSec: number; readonly clientCpuMsPer1k: number }> => {
  let next = 0
  let acked = 0
  const allAcked = Deferred.makeUnsafe<void>()
  const jobs = Array.from({ length: JOBS }, (_, i) => toJobSpec({ queue: "bench", payload: { i } }))
  const queue = JobQueue.of({
    enqueue: () => Effect.die("unused"),
    enqueueMany: () => Effect.die("unused"),
    take: (options) =>
      Effect.sync(() => {
        const leases = jobs.slice(next, next + options.max).map((job, i) => ({
          job,
          token: String(next + i),
          attempt: 1,
          expiresAt: Date.now() + options.visibilityMs
        }))
        next += leases.length
        return leases
      }),
    ack: () =>
      Effect.sync(() => {
        if (++acked === JOBS) Deferred.doneUnsafe(allAcked, Exit.void)
      }),
    nack: () => Effect.void,
    extend: (_token, visibilityMs) => Effect.succeed(Date.now() + visibilityMs),
    recover: () => Effect.succeed(0),
    stats: (name) => Effect.succeed({ queue: name, ready: JOBS - next, delayed: 0, inflight: 0, dead: 0 }),
    peek: () => Effect.succeed([])
  })
  const program = Effect.gen(function* () {
    const cpu = process.cpuUsage()
    const t0 = performance.now()
    const runner = yield* Runner.run(
      { queue: "bench", concurrency: CONCURRENCY, batchSize: CONCURRENCY, record: false, shutdownGraceMs: 1000 },
      () => Effect.succeed({})
    ).pipe(Effect.forkChild)
    yield* Deferred.await(allAcked)
    const t1 = performance.now()
    const used = process.cpuUsage(cpu)
    yield* Fiber.interrupt(runner)
    return {
      processPerSec: perSec(JOBS, t1 - t0),
      clientCpuMsPer1k: Math.round(((used.user + used.system) / 1000) * (1000 / JOBS))
    }
  })
  return Effect.runPromise(
    program.pipe(
      Effect.provideService(JobQueue, queue),
      Effect.provide(Layer.mergeAll(MemoryJobStore.layer(), MemoryEventLog.layer(), MemoryLimiter.layer()))
    )
  )
}

const line = (system: string, figures: Figures, extra: Record<string, number> = {}) =>
  console.log(
    JSON.stringify({ bench: "queue-postgres", system, jobs: JOBS, concurrency: CONCURRENCY, ...figures, ...extra })
  )

/** One system, measured in this process after a 2,000-job warm-up of the same code path. */
const systems: Record<
  string,
  () => Promise<Figures | { readonly processPerSec: number; readonly clientCpuMsPer1k: number }>
> = {
  "graphile-worker-batched": () => graphile(true),
  "graphile-worker-unbatched": () => graphile(false),
  "runlane-postgres": () => runlane("runner", false),
  "runlane-postgres-write-behind-acks": () => runlane("runner", true),
  "runlane-postgres-direct": () => runlane("direct", false),
  "runner-over-array-queue": () => runnerCeiling()
}

const measureHere = async (system: string) => {
  const run = systems[system]
  if (run === undefined) throw new Error(`unknown system ${system}`)
  JOBS = 2_000
  await run()
  JOBS = MEASURED_JOBS
  process.stdout.write(`${JSON.stringify(await run())}\n`)
}

/** Each system runs in its own process: no JIT state, timers or pools carried from one to the next. */
const measureApart = (system: string): Promise<Figures> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
      env: { ...process.env, BENCH_SYSTEM: system },
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString()
    })
    child.on("error", reject)
    child.on("close", (code) => {
      const last = out
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .at(-1)
      if (code !== 0 || last === undefined) reject(new Error(`${system}: exit ${code}`))
      else resolve(JSON.parse(last) as Figures)
    })
  })

const main = async () => {
  if (process.env.BENCH_SYSTEM !== undefined) return measureHere(process.env.BENCH_SYSTEM)
  const only = process.env.BENCH_ONLY
  const batched = only === undefined || only === "graphile" ? await measureApart("graphile-worker-batched") : undefined
  if (batched !== undefined) line("graphile-worker-batched", batched)
  if (only === undefined && process.env.BENCH_SKIP_UNBATCHED !== "1") {
    line("graphile-worker-unbatched", await measureApart("graphile-worker-unbatched"))
  }
  const ratios = (figures: Figures): Record<string, number> =>
    batched === undefined
      ? {}
      : {
          ratio: Math.round((figures.processPerSec / batched.processPerSec) * 100) / 100,
          enqueueRatio: Math.round((figures.enqueuePerSec / batched.enqueuePerSec) * 100) / 100
        }
  if (only === undefined || only === "runlane") {
    // The default (confirmed acks), then write-behind acks (as Graphile's batched completion, an
    // ack frees the Runner slot before its DELETE commits), the queue alone, the Runner alone.
    for (const system of ["runlane-postgres", "runlane-postgres-write-behind-acks", "runlane-postgres-direct"]) {
      const figures = await measureApart(system)
      line(system, figures, ratios(figures))
    }
    const ceiling = await measureApart("runner-over-array-queue")
    console.log(
      JSON.stringify({
        bench: "queue-postgres",
        system: "runner-over-array-queue",
        jobs: JOBS,
        concurrency: CONCURRENCY,
        processPerSec: ceiling.processPerSec,
        clientCpuMsPer1k: ceiling.clientCpuMsPer1k
      })
    )
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
