import {
  JobNotFound,
  type JobPage,
  type JobPatch,
  JobRecord,
  JobStatus,
  JobStore,
  JobStoreError,
  type ListFilter
} from "@runlane/core"
import { Effect, Layer, Result, Schema } from "effect"
import { errorMessage, LuaScript, type RedisConnectionConfig, scopedClient } from "./RedisConnection.ts"

/**
 * Keys (all under the store's hash tag `{jobs}`, so multi-key scripts stay in one cluster slot):
 * - `r:<id>`        hash: `json` (the record), `s` status, `q` queue, `k` key, `n` insertion number, `v` version
 * - `seq`           insertion counter (listing order: newest first)
 * - `idx:all`, `idx:s:<status>`, `idx:q:<queue>`, `idx:k:<key>`  sorted sets id → insertion number
 */
const LIB = `
local function idx(base, kind, value) return base .. 'idx:' .. kind .. ':' .. value end
local function index(base, id, n, s, q, k)
  redis.call('ZADD', base .. 'idx:all', n, id)
  redis.call('ZADD', idx(base, 's', s), n, id)
  redis.call('ZADD', idx(base, 'q', q), n, id)
  if k ~= '' then redis.call('ZADD', idx(base, 'k', k), n, id) end
end
`

const createScript = new LuaScript(`${LIB}
local base, id, json, s, q, k = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local r = base .. 'r:' .. id
if redis.call('EXISTS', r) == 1 then return 0 end
local n = redis.call('INCR', base .. 'seq')
redis.call('HSET', r, 'json', json, 's', s, 'q', q, 'k', k, 'n', n, 'v', 1)
index(base, id, n, s, q, k)
return 1
`)

/** Writes a merged record if nobody changed it since it was read (version check). */
const updateScript = new LuaScript(`${LIB}
local base, id, version, json, s, q, k = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local r = base .. 'r:' .. id
local cur = redis.call('HMGET', r, 'v', 's', 'q', 'k', 'n')
if not cur[1] then return 0 end
if cur[1] ~= version then return -1 end
local n = cur[5]
if cur[2] ~= s then redis.call('ZREM', idx(base, 's', cur[2]), id) end
if cur[3] ~= q then redis.call('ZREM', idx(base, 'q', cur[3]), id) end
if cur[4] ~= k and cur[4] ~= '' then redis.call('ZREM', idx(base, 'k', cur[4]), id) end
redis.call('HSET', r, 'json', json, 's', s, 'q', q, 'k', k, 'v', tonumber(version) + 1)
index(base, id, n, s, q, k)
return 1
`)

/** One page, newest first, from the most selective index; other filters checked per record. */
const listScript = new LuaScript(`${LIB}
local base, index, limit, cursor, s, q, k = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local budget = limit * 20 + 200
local out = {''}
local found = 0
local lastItem, lastScanned = nil, nil
local more, exhausted = false, false
local max = '+inf'
if cursor ~= '' then max = '(' .. cursor end
while not more do
  if budget <= 0 then
    exhausted = true
    break
  end
  local batch = redis.call('ZREVRANGEBYSCORE', index, max, '-inf', 'WITHSCORES', 'LIMIT', 0, math.min(budget, 500))
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local id, n = batch[i], batch[i + 1]
    budget = budget - 1
    max = '(' .. n
    local f = redis.call('HMGET', base .. 'r:' .. id, 'json', 's', 'q', 'k')
    if f[1] and (s == '' or f[2] == s) and (q == '' or f[3] == q) and (k == '' or f[4] == k) then
      if found >= limit then
        more = true
        break
      end
      found = found + 1
      out[#out + 1] = f[1]
      lastItem = n
    end
    lastScanned = n
  end
end
if more then
  out[1] = lastItem
elseif exhausted then
  if found >= limit then out[1] = lastItem else out[1] = lastScanned or '' end
end
return out
`)

export interface RedisJobStoreConfig extends RedisConnectionConfig {}

const decodeRecord = Schema.decodeResult(JobRecord)

export const make = Effect.fnUntraced(function* (config: RedisJobStoreConfig = {}) {
  const base = `${config.prefix ?? "runlane:"}{jobs}:`
  const client = yield* scopedClient(config)
  const attempt = <A>(what: string, f: () => Promise<A>) =>
    Effect.tryPromise({
      try: f,
      catch: (cause) => new JobStoreError({ message: `Redis job store ${what} failed: ${errorMessage(cause)}`, cause })
    })
  const parse = (json: string): Effect.Effect<JobRecord, JobStoreError> =>
    Effect.suspend(() => {
      let value: unknown
      try {
        value = JSON.parse(json)
      } catch (cause) {
        return Effect.fail(new JobStoreError({ message: "stored job record is not JSON", cause }))
      }
      const decoded = decodeRecord(value as typeof JobRecord.Encoded)
      return Result.isSuccess(decoded)
        ? Effect.succeed(decoded.success)
        : Effect.fail(new JobStoreError({ message: `stored job record is malformed: ${decoded.failure.message}` }))
    })

  const read = (jobId: string): Effect.Effect<{ record: JobRecord; version: string }, JobStoreError | JobNotFound> =>
    attempt("get", () => client.hmget(`${base}r:${jobId}`, "json", "v")).pipe(
      Effect.flatMap(
        ([json, version]): Effect.Effect<{ record: JobRecord; version: string }, JobStoreError | JobNotFound> =>
          json === null || json === undefined || version === null || version === undefined
            ? Effect.fail(new JobNotFound({ jobId }))
            : Effect.map(parse(json), (record) => ({ record, version }))
      )
    )

  const update = (jobId: string, patch: JobPatch): Effect.Effect<JobRecord, JobStoreError | JobNotFound> =>
    Effect.gen(function* () {
      for (let round = 0; round < 50; round++) {
        const { record, version } = yield* read(jobId)
        const next = { ...record, ...patch, updatedAt: patch.updatedAt ?? Date.now() } as JobRecord
        const written = yield* attempt("update", () =>
          updateScript.run(
            client,
            [`${base}r:${jobId}`],
            [base, jobId, version, JSON.stringify(next), next.status, next.queue, next.key ?? ""]
          )
        )
        if (Number(written) === 1) return next
        if (Number(written) === 0) return yield* new JobNotFound({ jobId })
      }
      return yield* new JobStoreError({ message: `update of job ${jobId} kept conflicting with concurrent updates` })
    })

  return JobStore.of({
    create: (record) =>
      attempt("create", () =>
        createScript.run(
          client,
          [`${base}r:${record.id}`],
          [base, record.id, JSON.stringify(record), record.status, record.queue, record.key ?? ""]
        )
      ).pipe(Effect.asVoid),
    update,
    get: (jobId) => Effect.map(read(jobId), ({ record }) => record),
    list: (filter: ListFilter) =>
      Effect.gen(function* () {
        const limit = Math.max(1, Math.min(filter.limit ?? 50, 1000))
        const index =
          filter.key !== undefined
            ? `${base}idx:k:${filter.key}`
            : filter.queue !== undefined
              ? `${base}idx:q:${filter.queue}`
              : filter.status !== undefined
                ? `${base}idx:s:${filter.status}`
                : `${base}idx:all`
        const cursor = filter.cursor === undefined ? "" : Buffer.from(filter.cursor, "base64url").toString()
        if (cursor !== "" && !/^\d+$/.test(cursor)) return yield* new JobStoreError({ message: "invalid cursor" })
        const out = (yield* attempt("list", () =>
          listScript.run(
            client,
            [index],
            [base, index, limit, cursor, filter.status ?? "", filter.queue ?? "", filter.key ?? ""]
          )
        )) as Array<string>
        const items = yield* Effect.forEach(out.slice(1), parse)
        const next = out[0] ?? ""
        return { items, nextCursor: next === "" ? null : Buffer.from(next).toString("base64url") } satisfies JobPage
      })
  })
})

export const layer = (config: RedisJobStoreConfig = {}): Layer.Layer<JobStore> => Layer.effect(JobStore, make(config))

/**
 * Jobs of `queue` per status, counted on the store's indexes (`ZINTERCARD` of the status and
 * queue sets), without reading any record. Redis-specific: the `JobStore` port has no count.
 */
export const countByStatus = (
  config: RedisJobStoreConfig,
  queue: string
): Effect.Effect<Record<JobStatus, number>, JobStoreError> =>
  Effect.scoped(
    Effect.gen(function* () {
      const base = `${config.prefix ?? "runlane:"}{jobs}:`
      const client = yield* scopedClient(config)
      const statuses = JobStatus.literals
      const replies = yield* Effect.tryPromise({
        try: async () => {
          const pipeline = client.pipeline()
          for (const status of statuses)
            pipeline.call("ZINTERCARD", 2, `${base}idx:s:${status}`, `${base}idx:q:${queue}`)
          return (await pipeline.exec()) ?? []
        },
        catch: (cause) => new JobStoreError({ message: `Redis job store count failed: ${errorMessage(cause)}`, cause })
      })
      const counts = {} as Record<JobStatus, number>
      statuses.forEach((status, i) => {
        counts[status] = Number(replies[i]?.[1] ?? 0)
      })
      return counts
    })
  )
