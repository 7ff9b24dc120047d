import { EventLog, EventLogError, JobEvent, type JobEventInput } from "@runlane/core"
import { Effect, Layer, Option, Result, Schema, Stream } from "effect"
import type { Redis } from "ioredis"
import {
  closeClient,
  errorMessage,
  LuaScript,
  makeClient,
  type RedisConnectionConfig,
  scopedClient
} from "./RedisConnection.ts"

/**
 * A job's events live in one stream whose entry ids are `<seq>-0` (so `XRANGE` from a sequence
 * is a range read), numbered by a counter key beside it; both share the job's hash tag.
 */
const appendScript = new LuaScript(`
local stream, counter, maxlen, ttl = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2])
local n = (#ARGV - 2) / 2
local first = redis.call('INCRBY', counter, n) - n
for i = 1, n do
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, (first + i) .. '-0', 'at', ARGV[1 + i * 2], 'e', ARGV[2 + i * 2])
end
if ttl > 0 then
  redis.call('PEXPIRE', stream, ttl)
  redis.call('PEXPIRE', counter, ttl)
end
return first + 1
`)

export interface RedisEventLogConfig extends RedisConnectionConfig {
  /** Keep about this many events per job (`XADD MAXLEN ~`; default 100,000). */
  readonly maxEventsPerJob?: number
  /** Expire a job's events this long after its last append (default: never). */
  readonly retentionMs?: number
}

const decodeEvent = Schema.decodeResult(JobEvent)

const toEvent = (jobId: string, id: string, fields: ReadonlyArray<string>): Result.Result<JobEvent, EventLogError> => {
  const map: Record<string, string> = {}
  for (let i = 0; i + 1 < fields.length; i += 2) map[fields[i]!] = fields[i + 1]!
  const seq = Number(id.split("-")[0])
  try {
    const body = JSON.parse(map.e ?? "") as Record<string, unknown>
    const decoded = decodeEvent({ ...body, jobId, seq, at: Number(map.at) } as typeof JobEvent.Encoded)
    if (Result.isSuccess(decoded)) return Result.succeed(decoded.success)
    return Result.fail(
      new EventLogError({ message: `event ${seq} of job ${jobId} is malformed: ${decoded.failure.message}` })
    )
  } catch (cause) {
    return Result.fail(new EventLogError({ message: `event ${seq} of job ${jobId} is not JSON`, cause }))
  }
}

/** `EventLog` on Redis Streams: `XADD` with a cap, replay with `XRANGE`, live follow with blocking `XREAD`. */
export const make = Effect.fnUntraced(function* (config: RedisEventLogConfig = {}) {
  const prefix = config.prefix ?? "runlane:"
  const maxlen = config.maxEventsPerJob ?? 100_000
  const ttl = config.retentionMs ?? 0
  const client = yield* scopedClient(config)
  const streamKey = (jobId: string) => `${prefix}events:{${jobId}}`
  const counterKey = (jobId: string) => `${prefix}events:{${jobId}}:seq`
  const fail = (what: string) => (cause: unknown) =>
    new EventLogError({ message: `Redis event log ${what} failed: ${errorMessage(cause)}`, cause })

  const decodeAll = (jobId: string, entries: ReadonlyArray<[string, Array<string>]>) =>
    Effect.forEach(entries, ([id, fields]) => Effect.fromResult(toEvent(jobId, id, fields)))

  const read = (jobId: string, options?: { readonly fromSeq?: number; readonly limit?: number }) =>
    Effect.gen(function* () {
      const from = Math.max(1, Math.floor(options?.fromSeq ?? 1))
      const entries = yield* Effect.tryPromise({
        try: () =>
          options?.limit === undefined
            ? client.xrange(streamKey(jobId), `${from}-0`, "+")
            : client.xrange(streamKey(jobId), `${from}-0`, "+", "COUNT", Math.max(0, Math.floor(options.limit))),
        catch: fail("read")
      })
      return yield* decodeAll(jobId, entries)
    })

  return EventLog.of({
    append: (jobId: string, inputs: ReadonlyArray<JobEventInput>) =>
      Effect.gen(function* () {
        if (inputs.length === 0) return []
        const now = Date.now()
        const args: Array<string | number> = [maxlen, ttl]
        const stamped = inputs.map((input) => {
          const { at, ...rest } = input as JobEventInput & { at?: number }
          const time = at ?? now
          args.push(time, JSON.stringify(rest))
          return { rest, time }
        })
        const first = yield* Effect.tryPromise({
          try: () => appendScript.run(client, [streamKey(jobId), counterKey(jobId)], args),
          catch: fail("append")
        })
        return stamped.map(({ rest, time }, i) => ({ ...rest, jobId, seq: Number(first) + i, at: time }) as JobEvent)
      }),
    read,
    follow: (jobId, options) =>
      Stream.unwrap(
        Effect.gen(function* () {
          // A follower blocks on its own connection.
          const blocking: Redis = yield* Effect.acquireRelease(
            Effect.sync(() => makeClient(config)),
            (c) => closeClient(c)
          )
          const start = Math.max(0, Math.floor(options?.fromSeq ?? 1) - 1)
          return Stream.paginate(start, (cursor: number) =>
            Effect.gen(function* () {
              const reply = yield* Effect.tryPromise({
                try: () => blocking.xread("COUNT", 1000, "BLOCK", 2000, "STREAMS", streamKey(jobId), `${cursor}-0`),
                catch: fail("follow")
              })
              const entries = reply?.[0]?.[1] ?? []
              const events = yield* decodeAll(jobId, entries)
              const end = events.findIndex((e) => e._tag === "finished")
              if (end >= 0) return [events.slice(0, end + 1), Option.none<number>()] as const
              const next = events.length > 0 ? events[events.length - 1]!.seq : cursor
              return [events, Option.some(next)] as const
            })
          )
        })
      )
  })
})

export const layer = (config: RedisEventLogConfig = {}): Layer.Layer<EventLog> => Layer.effect(EventLog, make(config))
