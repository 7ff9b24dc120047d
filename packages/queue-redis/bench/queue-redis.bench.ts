/**
 * No-op jobs through each system on the same local Redis, in one run:
 * - runlane-redis-streams / runlane-redis-list: enqueueMany, then the Runner (concurrency 50,
 *   record off: the queue alone, as the anchors do no bookkeeping either);
 * - bullmq: Queue.addBulk, Worker concurrency 50, removeOnComplete;
 * - effect-persisted-queue: effect/persistence/PersistedQueue on layerStoreRedis over
 *   @effect/platform-node's NodeRedis, 50 concurrent offers, 50 takers;
 * - redis-ceiling: bare XADD pipeline, then XREADGROUP + XACK batches (no leases, no tokens).
 * Prints one JSON line per system; ratios are to the better anchor (bullmq or persisted queue).
 * Keys live under `rlbench:` prefixes and are deleted afterwards.
 */
import { NodeRedis } from "@effect/platform-node"
import { JobQueue, MemoryEventLog, MemoryJobStore, MemoryLimiter, Runner } from "@runlane/core"
import { Queue as BullQueue, Worker as BullWorker } from "bullmq"
import { Effect, Fiber, Layer, Schema } from "effect"
import * as PersistedQueue from "effect/persistence/PersistedQueue"
import { Redis } from "ioredis"
import { RedisListQueue, RedisStreamQueue } from "../src/index.ts"

const JOBS = Number(process.env.BENCH_JOBS ?? 20_000)
const CONCURRENCY = 50
const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"
const RUN = `${process.pid}-${Date.now().toString(36)}`
const PREFIX = `rlbench:${RUN}:`

interface Figures {
  readonly enqueuePerSec: number
  readonly processPerSec: number
  /** runlane only: the adapter driven by bare take/ack loops (50 leases in flight), no Runner. */
  readonly adapterLoopProcessPerSec?: number
}

const perSec = (n: number, ms: number) => Math.round((n / ms) * 1000)

const deleteKeys = async (pattern: string) => {
  const client = new Redis(REDIS_URL)
  let cursor = "0"
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", pattern, "COUNT", 1000)
    cursor = next
    if (keys.length > 0) await client.unlink(...keys)
  } while (cursor !== "0")
  client.disconnect()
}

const waitFor = (done: () => boolean) =>
  new Promise<void>((resolve) => {
    const tick = () => (done() ? resolve() : setTimeout(tick, 2))
    tick()
  })

/** A runlane queue: enqueueMany in chunks of 1,000, then the Runner until every job ran once. */
const runlane = (queueLayer: Layer.Layer<JobQueue>, queueName: string): Promise<Figures> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const queue = yield* JobQueue
      const inputs = Array.from({ length: JOBS }, (_, i) => ({ queue: queueName, payload: { i } }))
      const t0 = performance.now()
      for (let i = 0; i < inputs.length; i += 1000) yield* queue.enqueueMany(inputs.slice(i, i + 1000))
      const enqueueMs = performance.now() - t0
      let processed = 0
      const t1 = performance.now()
      const runners = Number(process.env.BENCH_RUNNERS ?? 1)
      const fiber = yield* Effect.forkChild(
        Effect.forEach(
          Array.from({ length: runners }, (_, i) => i),
          () =>
            Runner.run(
              {
                queue: queueName,
                concurrency: Math.ceil(CONCURRENCY / runners),
                record: false,
                pollWaitMs: 200,
                visibilityMs: 60_000
              },
              () =>
                Effect.sync(() => {
                  processed++
                  return {}
                })
            ),
          { concurrency: "unbounded", discard: true }
        )
      )
      yield* Effect.promise(() => waitFor(() => processed >= JOBS))
      const processMs = performance.now() - t1
      yield* Fiber.interrupt(fiber)
      const stats = yield* queue.stats(queueName)
      if (stats.ready + stats.inflight + stats.delayed + stats.dead !== 0 || processed !== JOBS)
        throw new Error(`${queueName}: not drained: ${JSON.stringify(stats)} processed=${processed}`)
      // The same adapter without the Runner: two loops, each take 25 then ack them all.
      for (let i = 0; i < inputs.length; i += 1000) yield* queue.enqueueMany(inputs.slice(i, i + 1000))
      let looped = 0
      const t2 = performance.now()
      yield* Effect.forEach(
        [0, 1],
        () =>
          Effect.gen(function* () {
            while (looped < JOBS) {
              const leases = yield* queue.take({ queue: queueName, max: 25, visibilityMs: 60_000, waitMs: 0 })
              if (leases.length === 0) break
              yield* Effect.forEach(leases, (l) => queue.ack(l.token), { concurrency: "unbounded", discard: true })
              looped += leases.length
            }
          }),
        { concurrency: "unbounded", discard: true }
      )
      const loopMs = performance.now() - t2
      return {
        enqueuePerSec: perSec(JOBS, enqueueMs),
        processPerSec: perSec(JOBS, processMs),
        adapterLoopProcessPerSec: perSec(looped, loopMs)
      }
    }).pipe(
      Effect.provide(Layer.mergeAll(queueLayer, MemoryJobStore.layer(), MemoryEventLog.layer(), MemoryLimiter.layer()))
    )
  )

const bullmq = async (): Promise<Figures> => {
  const url = new URL(REDIS_URL)
  const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null }
  const prefix = `${PREFIX}bull`
  const queue = new BullQueue("bench", { connection, prefix })
  await queue.waitUntilReady()
  const jobs = Array.from({ length: JOBS }, (_, i) => ({
    name: "noop",
    data: { i },
    opts: { removeOnComplete: true }
  }))
  const t0 = performance.now()
  for (let i = 0; i < jobs.length; i += 1000) await queue.addBulk(jobs.slice(i, i + 1000))
  const enqueueMs = performance.now() - t0
  let processed = 0
  const t1 = performance.now()
  const worker = new BullWorker(
    "bench",
    async () => {
      processed++
    },
    { connection, prefix, concurrency: CONCURRENCY }
  )
  await waitFor(() => processed >= JOBS)
  const processMs = performance.now() - t1
  await worker.close()
  await queue.close()
  return { enqueuePerSec: perSec(JOBS, enqueueMs), processPerSec: perSec(JOBS, processMs) }
}

const persistedQueue = (): Promise<Figures> =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const queue = yield* PersistedQueue.make({ name: "bench", schema: Schema.Struct({ i: Schema.Number }) })
        const t0 = performance.now()
        yield* Effect.forEach(
          Array.from({ length: JOBS }, (_, i) => i),
          (i) => queue.offer({ i }),
          { concurrency: CONCURRENCY, discard: true }
        )
        const enqueueMs = performance.now() - t0
        let processed = 0
        const t1 = performance.now()
        const takers = yield* Effect.forkChild(
          Effect.forEach(
            Array.from({ length: CONCURRENCY }, (_, i) => i),
            () =>
              Effect.forever(
                queue.take(() =>
                  Effect.sync(() => {
                    processed++
                  })
                )
              ),
            { concurrency: "unbounded", discard: true }
          )
        )
        yield* Effect.promise(() => waitFor(() => processed >= JOBS))
        const processMs = performance.now() - t1
        yield* Fiber.interrupt(takers)
        return { enqueuePerSec: perSec(JOBS, enqueueMs), processPerSec: perSec(JOBS, processMs) }
      })
    ).pipe(
      Effect.provide(
        PersistedQueue.layer.pipe(
          Layer.provide(PersistedQueue.layerStoreRedis({ prefix: `${PREFIX}effectq:`, pollInterval: "10 millis" })),
          Layer.provide(NodeRedis.layer({ url: REDIS_URL }))
        )
      )
    )
  )

/** The bare stream ceiling: XADD pipelined, then XREADGROUP COUNT 500 + one XACK per batch. */
const ceiling = async (): Promise<Figures> => {
  const client = new Redis(REDIS_URL)
  const stream = `${PREFIX}ceiling`
  await client.xgroup("CREATE", stream, "g", "0", "MKSTREAM")
  const body = JSON.stringify({ i: 0 })
  const t0 = performance.now()
  for (let i = 0; i < JOBS; i += 1000) {
    const pipeline = client.pipeline()
    for (let j = i; j < Math.min(JOBS, i + 1000); j++) pipeline.xadd(stream, "*", "j", body)
    await pipeline.exec()
  }
  const enqueueMs = performance.now() - t0
  let processed = 0
  const t1 = performance.now()
  while (processed < JOBS) {
    const reply = (await client.xreadgroup("GROUP", "g", "c", "COUNT", 500, "STREAMS", stream, ">")) as Array<
      [string, Array<[string, Array<string>]>]
    > | null
    const entries = reply?.[0]?.[1] ?? []
    if (entries.length === 0) continue
    for (const [, fields] of entries) JSON.parse(fields[1]!)
    await client.xack(stream, "g", ...entries.map((e) => e[0]))
    processed += entries.length
  }
  const processMs = performance.now() - t1
  client.disconnect()
  return { enqueuePerSec: perSec(JOBS, enqueueMs), processPerSec: perSec(JOBS, processMs) }
}

const main = async () => {
  const results: Record<string, Figures> = {}
  // BENCH_SYSTEMS=a,b runs a subset (for profiling); ratios then need both anchors.
  const only = process.env.BENCH_SYSTEMS?.split(",")
  const want = (name: string) => only === undefined || only.includes(name)
  try {
    if (want("redis-ceiling")) results["redis-ceiling"] = await ceiling()
    if (want("bullmq")) results.bullmq = await bullmq()
    if (want("effect-persisted-queue")) results["effect-persisted-queue"] = await persistedQueue()
    if (want("runlane-redis-streams"))
      results["runlane-redis-streams"] = await runlane(
        RedisStreamQueue.layer({ url: REDIS_URL, prefix: `${PREFIX}rl:` }),
        "bench-streams"
      )
    if (want("runlane-redis-list"))
      results["runlane-redis-list"] = await runlane(
        RedisListQueue.layer({ url: REDIS_URL, prefix: `${PREFIX}rl:` }),
        "bench-list"
      )
  } finally {
    await deleteKeys(`${PREFIX}*`)
  }
  const anchors = [results.bullmq, results["effect-persisted-queue"]].filter((f) => f !== undefined)
  const anchorEnqueue = Math.max(...anchors.map((f) => f.enqueuePerSec))
  const anchorProcess = Math.max(...anchors.map((f) => f.processPerSec))
  const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100
  for (const [system, figures] of Object.entries(results)) {
    const line: Record<string, unknown> = {
      bench: "queue-redis",
      system,
      jobs: JOBS,
      concurrency: CONCURRENCY,
      enqueuePerSec: figures.enqueuePerSec,
      processPerSec: figures.processPerSec,
      enqueueRatio: ratio(figures.enqueuePerSec, anchorEnqueue),
      processRatio: ratio(figures.processPerSec, anchorProcess),
      ratio: ratio(figures.processPerSec, anchorProcess)
    }
    if (figures.adapterLoopProcessPerSec !== undefined) {
      line.adapterLoopProcessPerSec = figures.adapterLoopProcessPerSec
      line.adapterLoopProcessRatio = ratio(figures.adapterLoopProcessPerSec, anchorProcess)
    }
    if (system.startsWith("runlane-") && results["redis-ceiling"] !== undefined) {
      line.enqueueOfCeiling = ratio(figures.enqueuePerSec, results["redis-ceiling"]!.enqueuePerSec)
      line.processOfCeiling = ratio(figures.processPerSec, results["redis-ceiling"]!.processPerSec)
    }
    console.log(JSON.stringify(line))
  }
  process.exit(0)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
