/**
 * `pnpm bench:runner`: no-op jobs end to end through the Runner and the memory queue
 * (enqueue → take → run → ack → JobStore + EventLog), batched and unbatched, against the
 * same queue driven directly with no Runner (the anchor: enqueue → take → ack only).
 */
import {
  type EnqueueInput,
  JobQueue,
  JobStore,
  MemoryEventLog,
  MemoryJobStore,
  MemoryLimiter,
  Runner
} from "@runlane/core"
import { Effect, Layer } from "effect"
import { MemoryQueue } from "../src/index.ts"

const JOBS = Number(process.env.RUNLANE_BENCH_JOBS ?? 100_000)
const CHUNK = 1000

const layer = () =>
  Layer.mergeAll(MemoryQueue.layer(), MemoryJobStore.layer(), MemoryEventLog.layer(), MemoryLimiter.layer())

const inputs = (queue: string, n: number): Array<EnqueueInput> =>
  Array.from({ length: n }, (_, i) => ({ queue, payload: i }))

const enqueueAll = (queue: string) =>
  Effect.gen(function* () {
    const q = yield* JobQueue
    for (let i = 0; i < JOBS; i += CHUNK) yield* q.enqueueMany(inputs(queue, Math.min(CHUNK, JOBS - i)))
  })

const throughRunner = (system: string, config: { concurrency: number; batchSize: number }) =>
  Effect.gen(function* () {
    const started = performance.now()
    yield* enqueueAll("bench")
    const enqueued = performance.now()
    yield* Runner.run({ queue: "bench", ...config, pollWaitMs: 0, stopWhenIdle: true, visibilityMs: 60_000 }, () =>
      Effect.succeed({})
    )
    const done = performance.now()
    const store = yield* JobStore
    const page = yield* store.list({ status: "succeeded", limit: 1 })
    if (page.items.length === 0) throw new Error("no job succeeded")
    const seconds = (done - started) / 1000
    return {
      bench: "runner",
      system,
      jobs: JOBS,
      concurrency: config.concurrency,
      batchSize: config.batchSize,
      jobsPerSec: Math.round(JOBS / seconds),
      enqueuePerSec: Math.round(JOBS / ((enqueued - started) / 1000)),
      seconds: Number(seconds.toFixed(3))
    }
  }).pipe(Effect.provide(layer()))

const direct = Effect.gen(function* () {
  const started = performance.now()
  yield* enqueueAll("bench")
  const q = yield* JobQueue
  let processed = 0
  while (processed < JOBS) {
    const leases = yield* q.take({ queue: "bench", max: 100, visibilityMs: 60_000, waitMs: 0 })
    for (const lease of leases) yield* q.ack(lease.token)
    processed += leases.length
  }
  const seconds = (performance.now() - started) / 1000
  return {
    bench: "runner",
    system: "memory-queue-direct",
    jobs: JOBS,
    jobsPerSec: Math.round(JOBS / seconds),
    seconds: Number(seconds.toFixed(3))
  }
}).pipe(Effect.provide(layer()))

const main = Effect.gen(function* () {
  // Warm up the JIT on a small run of each path.
  const anchor = yield* direct
  const batched = yield* throughRunner("runlane-runner-batched", { concurrency: 100, batchSize: 100 })
  const unbatched = yield* throughRunner("runlane-runner-unbatched", { concurrency: 100, batchSize: 1 })
  for (const line of [anchor, batched, unbatched]) console.log(JSON.stringify(line))
  console.log(
    JSON.stringify({
      bench: "runner",
      system: "ratio",
      batchedVsDirect: Number((batched.jobsPerSec / anchor.jobsPerSec).toFixed(3)),
      unbatchedVsDirect: Number((unbatched.jobsPerSec / anchor.jobsPerSec).toFixed(3)),
      goalJobsPerSec: 100_000,
      goalMet: batched.jobsPerSec >= 100_000
    })
  )
})

Effect.runPromise(main).catch((error) => {
  console.error(error)
  process.exit(1)
})
