import { hostname } from "node:os"
import { type JobSpec, LeaseLost, type PeekEntry, QueueError } from "@runlane/core"
import { Effect, Exit } from "effect"
import type { Redis } from "ioredis"
import { decodeJob } from "./JobCodec.ts"
import { closeClient, errorMessage, makeClient, type RedisConnectionConfig } from "./RedisConnection.ts"

/** Options shared by both Redis `JobQueue` adapters. */
export interface RedisQueueConfig extends RedisConnectionConfig {
  /** Consumer (runner) name used when `take` is called without `consumer` (default host-pid-random). */
  readonly consumer?: string
  /** How long a request id is remembered for idempotent enqueue (default 24 h, as the memory queue). */
  readonly idempotencyTtlMs?: number
  /** A long-polling `take` re-checks at least this often for expired leases and other priority levels (default 1000 ms). */
  readonly pollIntervalMs?: number
}

export const DEFAULT_IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000
/** Largest batch one `take` hands out (bounds the Lua script's work per call). */
export const MAX_TAKE = 1000

export const defaultConsumer = (): string => `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`

export const queueError = (what: string) => (cause: unknown) =>
  new QueueError({ message: `Redis ${what} failed: ${errorMessage(cause)}`, cause })

export const leaseLost = (message: string) => new LeaseLost({ message })

export const tryRedis = <A>(what: string, f: () => Promise<A>): Effect.Effect<A, QueueError> =>
  Effect.tryPromise({ try: f, catch: queueError(what) })

/**
 * Connections for blocking reads (`XREAD BLOCK`, `BLMOVE`): one per concurrent long poll, kept
 * for reuse; a connection whose blocking call was interrupted is dropped (it may still be blocked).
 */
export const makeBlockerPool = (config: RedisConnectionConfig) => {
  const idle: Array<Redis> = []
  const all = new Set<Redis>()
  let closed = false
  const use = <A>(what: string, f: (client: Redis) => Promise<A>): Effect.Effect<A, QueueError> =>
    Effect.acquireUseRelease(
      Effect.sync(() => {
        const existing = idle.pop()
        if (existing !== undefined) return existing
        const client = makeClient(config)
        all.add(client)
        return client
      }),
      (client) => tryRedis(what, () => f(client)),
      (client, exit) =>
        Effect.sync(() => {
          if (Exit.isSuccess(exit) && !closed) idle.push(client)
          else {
            all.delete(client)
            client.disconnect()
          }
        })
    )
  const close = Effect.suspend(() => {
    closed = true
    const clients = [...all]
    all.clear()
    idle.length = 0
    return Effect.forEach(clients, closeClient, { concurrency: "unbounded", discard: true })
  })
  return { use, close }
}

/** Builds a `PeekEntry` from what a script returned: the job JSON (or raw value), attempt and reason. */
export const peekEntry = (
  state: PeekEntry["state"],
  queue: string,
  jobJson: string,
  attempt: number,
  reason: string,
  raw: string,
  decodeOther?: (raw: string) => JobSpec | undefined
): PeekEntry => {
  const entry: { -readonly [K in keyof PeekEntry]: PeekEntry[K] } = { state, attempt }
  if (jobJson !== "") {
    const decoded = decodeJob(jobJson, queue)
    if (decoded.ok) entry.job = decoded.job
    else {
      const other = decodeOther?.(jobJson)
      if (other !== undefined) entry.job = other
      else entry.raw = jobJson
    }
  }
  if (raw !== "") entry.raw = raw
  if (reason !== "") entry.reason = reason
  return entry
}

/**
 * Coalesces calls made in the same event-loop turn into one batch (at most `maxBatch` items):
 * concurrent acks from a runner's jobs become one script call instead of one each.
 */
export const makeBatcher = <I, O>(
  runBatch: (items: ReadonlyArray<I>) => Promise<ReadonlyArray<O>>,
  maxBatch = 500
): ((item: I) => Promise<O>) => {
  let pending: Array<{ item: I; resolve: (o: O) => void; reject: (e: unknown) => void }> = []
  let scheduled = false
  const flush = () => {
    scheduled = false
    while (pending.length > 0) {
      const batch = pending.slice(0, maxBatch)
      pending = pending.slice(batch.length)
      runBatch(batch.map((p) => p.item)).then(
        (results) => {
          for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results[i]!)
        },
        (error) => {
          for (const p of batch) p.reject(error)
        }
      )
    }
  }
  return (item) =>
    new Promise<O>((resolve, reject) => {
      pending.push({ item, resolve, reject })
      if (!scheduled) {
        scheduled = true
        setImmediate(flush)
      }
    })
}
