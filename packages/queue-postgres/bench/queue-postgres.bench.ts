/**
 * runlane's PostgreSQL queue through the Runner against Graphile Worker 0.18, side by side on
 * the local PostgreSQL: 20,000 no-op jobs, concurrency 50, a fresh database per system.
 *
 * - enqueuePerSec: 20,000 jobs added in batches of 1,000 (runlane `enqueueMany`, Graphile `addJobs`).
 * - processPerSec: from starting the workers until every job's completion is committed
 *   (runlane: the 20,000th successful ack; Graphile: its jobs table is empty).
 *
 * Prints one JSON line per system; the runlane line carries `ratio` (process, against
 * Graphile batched) and `enqueueRatio`.
 */
import { PgClient } from "@effect/sql-pg"
import { type EnqueueInput, JobQueue, MemoryEventLog, MemoryJobStore, MemoryLimiter, Runner } from "@runlane/core"
import { Deferred, Effect, Exit, Fiber, Layer } from "effect"
import { Logger, makeWorkerUtils, run as runGraphile, runMigrations } from "graphile-worker"
import pg from "pg"
import { PostgresQueue } from "../src/index.ts"

const JOBS = Number(process.env.BENCH_JOBS ?? 20_000)
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
    await adminQuery(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)
  }
}

interface Figures {
  readonly enqueuePerSec: number
  readonly processPerSec: number
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
    let done = 0
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
      const t3 = performance.now()
      await runner.stop()
      await pool.end()
      ;(globalThis as { lastGraphileMs?: number }).lastGraphileMs = t3 - t2
    }
    const processMs = (globalThis as { lastGraphileMs?: number }).lastGraphileMs ?? 1
    return { enqueuePerSec: perSec(JOBS, t1 - t0), processPerSec: perSec(JOBS, processMs) }
  })

/**
 * runlane's queue at concurrency 50. `runner`: through core's Runner (the figure the issue asks
 * for). `direct`: 50 fibers each taking one lease and acking it, no Runner: what the queue
 * itself sustains, to tell its cost from the Runner's.
 */
const runlane = (mode: "runner" | "direct", writeBehindAcks: boolean): Promise<Figures> =>
  withDatabase(`rl_${mode}`, (database) => {
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
      yield* Fiber.interrupt(workers)
      return { enqueuePerSec: perSec(JOBS, t1 - t0), processPerSec: perSec(JOBS, t3 - t2) }
    })
    const layer = Layer.mergeAll(
      // Read-ahead of 1,000 leases (as Graphile's localQueue.size); acks and enqueues batch by
      // default; write-behind acks free a Runner slot without waiting for the DELETE (as
      // Graphile's batched completion frees its worker).
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

const line = (system: string, figures: Figures, extra: Record<string, number> = {}) =>
  console.log(
    JSON.stringify({ bench: "queue-postgres", system, jobs: JOBS, concurrency: CONCURRENCY, ...figures, ...extra })
  )

const main = async () => {
  const only = process.env.BENCH_ONLY
  const batched = only === undefined || only === "graphile" ? await graphile(true) : undefined
  if (batched !== undefined) line("graphile-worker-batched", batched)
  if (only === undefined && process.env.BENCH_SKIP_UNBATCHED !== "1") {
    line("graphile-worker-unbatched", await graphile(false))
  }
  const ratios = (figures: Figures): Record<string, number> =>
    batched === undefined
      ? {}
      : {
          ratio: Math.round((figures.processPerSec / batched.processPerSec) * 100) / 100,
          enqueueRatio: Math.round((figures.enqueuePerSec / batched.enqueuePerSec) * 100) / 100
        }
  if (only === undefined || only === "runlane") {
    const figures = await runlane("runner", true)
    line("runlane-postgres", figures, ratios(figures))
    const confirmed = await runlane("runner", false)
    line("runlane-postgres-confirmed-acks", confirmed, ratios(confirmed))
    const direct = await runlane("direct", false)
    line("runlane-postgres-direct-confirmed-acks", direct, ratios(direct))
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
