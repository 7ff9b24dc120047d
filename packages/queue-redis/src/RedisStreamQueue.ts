import {
  type EnqueueInput,
  type EnqueueResult,
  JobQueue,
  type Lease,
  type LeaseLost,
  type LeaseState,
  type NackDecision,
  type PeekEntry,
  type QueueError,
  type QueueStats,
  type TakeOptions,
  toJobSpec
} from "@runlane/core"
import { Effect, Layer } from "effect"
import { decodeJob, encodeJob } from "./JobCodec.ts"
import {
  DEFAULT_IDEMPOTENCY_TTL_MS,
  defaultConsumer,
  leaseLost,
  MAX_TAKE,
  makeBatcher,
  makeBlockerPool,
  peekEntry,
  type RedisQueueConfig,
  tryRedis
} from "./QueueSupport.ts"
import {
  closeClient,
  decodeName,
  encodeName,
  LUA_PRELUDE,
  LuaScript,
  makeClient,
  nonceBase,
  queueBase
} from "./RedisConnection.ts"

/**
 * Keys of one queue `Q` (base `<prefix>{Q}:`, one cluster slot per queue):
 * - `s:<p>`     stream of priority level `p` (consumer group `runlane`); entry fields
 *               `i` job id, `j` job JSON, `a` attempts counted before this entry, `m` max attempts, `e` last error
 * - `prios`     sorted set of the priority levels in use
 * - `lease`     hash `<p>:<entryId>` → `nonce|expiresAt|attempt|maxAttempts|consumer` (the lease's task token)
 * - `delayed`   sorted set job id → due time; `djobs` hash job id → the entry to add when due
 * - `dead`      hash id → dead letter (reason, attempt, job JSON or raw value); `deadidx` sorted set id → time
 * - `req:<id>`  request id → job id, with a TTL (idempotent enqueue)
 *
 * A lease's expiry is the pending entry's idle time: every delivery and `extend` sets the
 * entry's delivery time to `expiresAt - HORIZON` (`XCLAIM ... TIME`), so `XAUTOCLAIM` with
 * min-idle-time `HORIZON` claims exactly the entries whose lease has expired.
 */
const STREAM_LUA = `${LUA_PRELUDE}
local G = 'runlane'
local H = 2592000000
local ensured = {}
local function ensureLevel(base, p)
  local stream = base .. 's:' .. p
  if ensured[stream] then return stream end
  if redis.call('ZADD', base .. 'prios', 'NX', p, p) == 1 or redis.call('EXISTS', stream) == 0 then
    redis.pcall('XGROUP', 'CREATE', stream, G, '0', 'MKSTREAM')
  end
  ensured[stream] = true
  return stream
end
local function toMap(f)
  local m = {}
  for i = 1, #f, 2 do m[f[i]] = f[i + 1] end
  return m
end
local function parseLease(v)
  local nonce, exp, attempt, m, consumer = string.match(v, '^([^|]*)|(%d+)|(%d+)|(%d+)|(.*)$')
  return nonce, tonumber(exp), tonumber(attempt), tonumber(m), consumer
end
local function addDead(base, id, now, rec)
  redis.call('HSET', base .. 'dead', id, cjson.encode(rec))
  redis.call('ZADD', base .. 'deadidx', now, id)
end
local function addEntry(base, p, id, j, a, m, e)
  local stream = ensureLevel(base, p)
  if e ~= nil and e ~= '' then
    redis.call('XADD', stream, '*', 'i', id, 'j', j, 'a', a, 'm', m, 'e', e)
  else
    redis.call('XADD', stream, '*', 'i', id, 'j', j, 'a', a, 'm', m)
  end
end
local function requeue(base, p, id, j, a, m, e, delay, now)
  if delay > 0 then
    redis.call('ZADD', base .. 'delayed', now + delay, id)
    redis.call('HSET', base .. 'djobs', id, cjson.encode({p = p, a = a, m = m, e = e, j = j}))
  else
    addEntry(base, p, id, j, a, m, e)
  end
end
local function promoteDue(base, now)
  local due = redis.call('ZRANGEBYSCORE', base .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    local v = redis.call('HGET', base .. 'djobs', id)
    redis.call('ZREM', base .. 'delayed', id)
    redis.call('HDEL', base .. 'djobs', id)
    if v then
      local d = cjson.decode(v)
      addEntry(base, tostring(d.p), id, d.j, d.a, d.m, d.e)
    end
  end
end
-- A lease whose token is ARGV-given: returns stream, lease key, parsed lease; or nil, code.
local function holder(base, p, id, nonce, now)
  local lk = p .. ':' .. id
  local v = redis.call('HGET', base .. 'lease', lk)
  if not v then return nil, 0 end
  local n, exp, attempt, m, consumer = parseLease(v)
  if n ~= nonce then return nil, 0 end
  if exp <= now then return nil, -1 end
  return {stream = base .. 's:' .. p, lk = lk, attempt = attempt, m = m, consumer = consumer}
end
local function finish(base, h, id)
  redis.call('XACK', h.stream, G, id)
  redis.call('XDEL', h.stream, id)
  redis.call('HDEL', base .. 'lease', h.lk)
end
`

const enqueueScript = new LuaScript(`${STREAM_LUA}
local base, n, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local now = nowMs()
local out = {}
local i = 4
for k = 1, n do
  local id, req, p, m, delay, j = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4]), ARGV[i + 5]
  i = i + 6
  local dup = false
  if req ~= '' then
    local rk = base .. 'req:' .. req
    if not redis.call('SET', rk, id, 'NX', 'PX', ttl) then
      out[k] = redis.call('GET', rk) or id
      dup = true
    end
  end
  if not dup then
    requeue(base, p, id, j, 0, m, nil, delay, now)
    out[k] = ''
  end
end
return out
`)

const take = new LuaScript(`${STREAM_LUA}
local base, consumer, max, vis, nb, claimEvery = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local now = nowMs()
promoteDue(base, now)
local exp = now + vis
local leaseKey = base .. 'lease'
local out = {exp, -1, 0}
local count = 0
-- XAUTOCLAIM scans the pending list; do it at most every claimEvery ms per queue, continuing
-- from where the last scan stopped (per level), so a long pending list is covered in turns.
local claim = redis.call('SET', base .. 'claimtick', now, 'NX', 'PX', claimEvery)
local function grant(p, id, f, attempt, m, ids, fields)
  count = count + 1
  local nonce = nb .. count
  fields[#fields + 1] = p .. ':' .. id
  fields[#fields + 1] = nonce .. '|' .. exp .. '|' .. attempt .. '|' .. m .. '|' .. consumer
  ids[#ids + 1] = id
  local raw = ''
  if f.j == nil then raw = cjson.encode(f) end
  out[#out + 1] = p
  out[#out + 1] = id
  out[#out + 1] = nonce
  out[#out + 1] = attempt
  out[#out + 1] = f.j or ''
  out[#out + 1] = raw
end
local levels = redis.call('ZREVRANGE', base .. 'prios', 0, -1)
for _, p in ipairs(levels) do
  if count >= max then break end
  local stream = base .. 's:' .. p
  local ids, fields = {}, {}
  if claim then
    local cursorKey = base .. 'cc:' .. p
    local cursor = redis.call('GET', cursorKey) or '0-0'
    local r = redis.pcall('XAUTOCLAIM', stream, G, consumer, H, cursor, 'COUNT', max - count)
    if r['err'] then
      ensureLevel(base, p)
    else
      redis.call('SET', cursorKey, r[1])
      if r[3] then
        for _, id in ipairs(r[3]) do
          redis.call('XACK', stream, G, id)
          redis.call('HDEL', leaseKey, p .. ':' .. id)
        end
      end
      for _, e in ipairs(r[2]) do
        local id, f = e[1], toMap(e[2])
        local m = tonumber(f.m) or 3
        local attempt = (tonumber(f.a) or 0) + 1
        local old = redis.call('HGET', leaseKey, p .. ':' .. id)
        if old then
          local _, _, oa = parseLease(old)
          attempt = oa + 1
        end
        if attempt > m then
          redis.call('XACK', stream, G, id)
          redis.call('XDEL', stream, id)
          redis.call('HDEL', leaseKey, p .. ':' .. id)
          addDead(base, f.i or ('entry:' .. p .. ':' .. id), now,
            {reason = 'lease expired on attempt ' .. (attempt - 1) .. ' of ' .. m, attempt = attempt - 1, j = f.j, raw = (f.j == nil) and cjson.encode(f) or nil})
        else
          grant(p, id, f, attempt, m, ids, fields)
        end
      end
    end
  end
  if count < max then
    local rr = redis.pcall('XREADGROUP', 'GROUP', G, consumer, 'COUNT', max - count, 'STREAMS', stream, '>')
    if type(rr) == 'table' and rr['err'] then
      ensureLevel(base, p)
    elseif rr then
      for _, e in ipairs(rr[1][2]) do
        local f = toMap(e[2])
        grant(p, e[1], f, (tonumber(f.a) or 0) + 1, tonumber(f.m) or 3, ids, fields)
      end
    end
  end
  if #ids > 0 then
    redis.call('HSET', leaseKey, unpack(fields))
    -- The lease expires when the entry's idle time reaches H (see XAUTOCLAIM above).
    local args = {stream, G, consumer, 0}
    for _, id in ipairs(ids) do args[#args + 1] = id end
    args[#args + 1] = 'TIME'
    args[#args + 1] = exp - H
    args[#args + 1] = 'JUSTID'
    redis.call('XCLAIM', unpack(args))
  end
end
out[3] = count
if count == 0 then
  -- What a long poll should watch: the next due time and each level's last id.
  local nd = redis.call('ZRANGE', base .. 'delayed', 0, 0, 'WITHSCORES')
  out[2] = nd[2] or -1
  for _, p in ipairs(levels) do
    local info = redis.pcall('XINFO', 'STREAM', base .. 's:' .. p)
    if not info['err'] then
      local m = toMap(info)
      out[#out + 1] = p
      out[#out + 1] = m['last-generated-id']
    end
  end
end
return out
`)

const ackScript = new LuaScript(`${STREAM_LUA}
local base = ARGV[1]
local now = nowMs()
local out = {}
-- One HMGET for every token's lease (what holder() checks one by one).
local lks = {}
for i = 2, #ARGV, 3 do lks[#lks + 1] = ARGV[i] .. ':' .. ARGV[i + 1] end
local leases = redis.call('HMGET', base .. 'lease', unpack(lks))
local byStream, fields = {}, {}
local k = 0
for i = 2, #ARGV, 3 do
  k = k + 1
  local code = 0
  local v = leases[k]
  if v then
    local n, exp = parseLease(v)
    if n == ARGV[i + 2] then
      if exp <= now then
        code = -1
      else
        local stream = base .. 's:' .. ARGV[i]
        local ids = byStream[stream]
        if not ids then
          ids = {}
          byStream[stream] = ids
        end
        ids[#ids + 1] = ARGV[i + 1]
        fields[#fields + 1] = lks[k]
        code = 1
      end
    end
  end
  out[k] = code
end
for stream, ids in pairs(byStream) do
  redis.call('XACK', stream, G, unpack(ids))
  redis.call('XDEL', stream, unpack(ids))
end
if #fields > 0 then redis.call('HDEL', base .. 'lease', unpack(fields)) end
return out
`)

const nackScript = new LuaScript(`${STREAM_LUA}
local base, p, id, nonce, kind, delay, text, raw = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8]
local now = nowMs()
local h, code = holder(base, p, id, nonce, now)
if not h then return code end
local e = redis.call('XRANGE', h.stream, id, id)
local f = {}
if e[1] then f = toMap(e[1][2]) end
finish(base, h, id)
local jobId = f.i or ('entry:' .. p .. ':' .. id)
if kind == 'dead' then
  local rec = {reason = text, attempt = h.attempt, j = f.j}
  if raw ~= '' then rec.raw = raw end
  if f.j == nil and raw == '' then rec.raw = cjson.encode(f) end
  addDead(base, jobId, now, rec)
  return 1
end
if f.j == nil then return 1 end
local a = h.attempt
local err = f.e
if kind == 'release' then
  a = h.attempt - 1
  if a < 0 then a = 0 end
elseif text ~= '' then
  err = text
end
requeue(base, p, jobId, f.j, a, h.m, err, delay, now)
return 1
`)

const extendScript = new LuaScript(`${STREAM_LUA}
local base, p, id, nonce, vis = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local now = nowMs()
local h, code = holder(base, p, id, nonce, now)
if not h then return code end
local exp = now + vis
local claimed = redis.call('XCLAIM', h.stream, G, h.consumer, 0, id, 'TIME', exp - H, 'JUSTID')
if #claimed == 0 then return 0 end
redis.call('HSET', base .. 'lease', h.lk, nonce .. '|' .. exp .. '|' .. h.attempt .. '|' .. h.m .. '|' .. h.consumer)
return exp
`)

const recoverScript = new LuaScript(`${STREAM_LUA}
local base = ARGV[1]
local now = nowMs()
promoteDue(base, now)
local leaseKey = base .. 'lease'
local count = 0
local levels = redis.call('ZREVRANGE', base .. 'prios', 0, -1)
for _, p in ipairs(levels) do
  local stream = base .. 's:' .. p
  local cursor = '0-0'
  for round = 1, 1000 do
    local r = redis.pcall('XAUTOCLAIM', stream, G, '__recover', H, cursor, 'COUNT', 100)
    if r['err'] then break end
    if r[3] then
      for _, id in ipairs(r[3]) do
        redis.call('XACK', stream, G, id)
        redis.call('HDEL', leaseKey, p .. ':' .. id)
      end
    end
    for _, e in ipairs(r[2]) do
      local id, f = e[1], toMap(e[2])
      local m = tonumber(f.m) or 3
      local attempt = (tonumber(f.a) or 0) + 1
      local old = redis.call('HGET', leaseKey, p .. ':' .. id)
      if old then
        local _, _, oa = parseLease(old)
        attempt = oa
      end
      redis.call('XACK', stream, G, id)
      redis.call('XDEL', stream, id)
      redis.call('HDEL', leaseKey, p .. ':' .. id)
      count = count + 1
      local jobId = f.i or ('entry:' .. p .. ':' .. id)
      if f.j == nil then
        addDead(base, jobId, now, {reason = 'malformed entry (no job field)', attempt = attempt, raw = cjson.encode(f)})
      elseif attempt >= m then
        addDead(base, jobId, now, {reason = 'lease expired on attempt ' .. attempt .. ' of ' .. m, attempt = attempt, j = f.j})
      else
        addEntry(base, p, jobId, f.j, attempt, m, 'lease expired')
      end
    end
    cursor = r[1]
    if cursor == '0-0' then break end
  end
  redis.pcall('XGROUP', 'DELCONSUMER', stream, G, '__recover')
end
return count
`)

const statsScript = new LuaScript(`${STREAM_LUA}
local base = ARGV[1]
local total = 0
for _, p in ipairs(redis.call('ZRANGE', base .. 'prios', 0, -1)) do
  total = total + redis.call('XLEN', base .. 's:' .. p)
end
local inflight = redis.call('HLEN', base .. 'lease')
return {total - inflight, redis.call('ZCARD', base .. 'delayed'), inflight, redis.call('ZCARD', base .. 'deadidx')}
`)

const peekScript = new LuaScript(`${STREAM_LUA}
local base, state, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
local function add(j, attempt, reason, raw)
  out[#out + 1] = j or ''
  out[#out + 1] = tonumber(attempt) or 0
  out[#out + 1] = reason or ''
  out[#out + 1] = raw or ''
end
if state == 'ready' then
  for _, p in ipairs(redis.call('ZREVRANGE', base .. 'prios', 0, -1)) do
    local n = #out / 4
    if n >= limit then break end
    local stream = base .. 's:' .. p
    local last = '0-0'
    local groups = redis.pcall('XINFO', 'GROUPS', stream)
    if not groups['err'] then
      for _, g in ipairs(groups) do
        local m = toMap(g)
        if m['name'] == G then last = m['last-delivered-id'] end
      end
    end
    for _, e in ipairs(redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', limit - n)) do
      local f = toMap(e[2])
      add(f.j, f.a, f.e, (f.j == nil) and cjson.encode(f) or nil)
    end
  end
elseif state == 'inflight' then
  local cursor = '0'
  repeat
    local r = redis.call('HSCAN', base .. 'lease', cursor, 'COUNT', limit)
    cursor = r[1]
    for i = 1, #r[2], 2 do
      if #out / 4 >= limit then break end
      local p, id = string.match(r[2][i], '^(-?%d+):(.*)$')
      local _, _, attempt = parseLease(r[2][i + 1])
      local e = redis.call('XRANGE', base .. 's:' .. p, id, id)
      local f = {}
      if e[1] then f = toMap(e[1][2]) end
      add(f.j, attempt, f.e, (f.j == nil) and cjson.encode(f) or nil)
    end
  until cursor == '0' or #out / 4 >= limit
elseif state == 'delayed' then
  local ids = redis.call('ZRANGE', base .. 'delayed', 0, limit - 1)
  for _, id in ipairs(ids) do
    local v = redis.call('HGET', base .. 'djobs', id)
    if v then
      local d = cjson.decode(v)
      add(d.j, d.a, d.e, nil)
    end
  end
else
  local ids = redis.call('ZRANGE', base .. 'deadidx', 0, limit - 1)
  for _, id in ipairs(ids) do
    local v = redis.call('HGET', base .. 'dead', id)
    if v then
      local d = cjson.decode(v)
      add(d.j, d.attempt, d.reason, d.raw)
    end
  end
end
return out
`)

interface StreamToken {
  readonly queue: string
  readonly priority: string
  readonly entryId: string
  readonly nonce: string
}

const TOKEN_VERSION = "s1"
// Queue names are few: their token encodings are kept (bounded) instead of redone per lease.
const encodedNames = new Map<string, string>()
const decodedNames = new Map<string, string>()
const cached = (cache: Map<string, string>, key: string, f: (key: string) => string) => {
  let value = cache.get(key)
  if (value === undefined) {
    value = f(key)
    if (cache.size >= 1000) cache.clear()
    cache.set(key, value)
  }
  return value
}
const encodeToken = (t: StreamToken) =>
  `${TOKEN_VERSION}.${cached(encodedNames, t.queue, encodeName)}.${t.priority}.${t.entryId}.${t.nonce}`
const decodeToken = (token: string): StreamToken | undefined => {
  const parts = token.split(".")
  if (parts.length !== 5 || parts[0] !== TOKEN_VERSION) return undefined
  const [, queue, priority, entryId, nonce] = parts as [string, string, string, string, string]
  if (!/^-?\d+$/.test(priority) || !/^\d+-\d+$/.test(entryId) || nonce === "") return undefined
  return { queue: cached(decodedNames, queue, decodeName), priority, entryId, nonce }
}

export interface RedisStreamQueueConfig extends RedisQueueConfig {
  /**
   * `take` scans the pending entries for expired leases (`XAUTOCLAIM`) at most this often per
   * queue (default 100 ms), continuing where the last scan stopped; `recover` always scans all.
   */
  readonly reclaimIntervalMs?: number
}

/**
 * A `JobQueue` on Redis Streams: one stream per queue and priority level read by a consumer
 * group (`XREADGROUP`), ack = `XACK` + `XDEL`, expired leases reclaimed with `XAUTOCLAIM`,
 * delayed jobs in a sorted set moved into the stream when due. Every state change is one Lua
 * script (atomic); `take` with max N is one round trip.
 */
export const make = Effect.fnUntraced(function* (config: RedisStreamQueueConfig = {}) {
  const prefix = config.prefix ?? "runlane:"
  const ttl = config.idempotencyTtlMs ?? DEFAULT_IDEMPOTENCY_TTL_MS
  const pollMs = config.pollIntervalMs ?? 1000
  const reclaimEveryMs = Math.max(1, config.reclaimIntervalMs ?? 100)
  const defaultName = config.consumer ?? defaultConsumer()
  const client = yield* Effect.acquireRelease(
    Effect.sync(() => makeClient(config)),
    (c) => closeClient(c)
  )
  // Acks travel on their own connection, so a take's reply never queues behind a burst of acks.
  const ackClient = yield* Effect.acquireRelease(
    Effect.sync(() => makeClient(config)),
    (c) => closeClient(c)
  )
  const blockers = makeBlockerPool(config)
  yield* Effect.addFinalizer(() => blockers.close)
  const base = (queue: string) => queueBase(prefix, queue)

  const enqueueAll = (inputs: ReadonlyArray<EnqueueInput>) =>
    Effect.suspend(() => {
      const now = Date.now()
      // One script call per queue and chunk of 500, all in one pipeline.
      const calls: Array<{ keys: Array<string>; args: Array<string | number>; jobs: Array<string> }> = []
      const placement: Array<{ call: number; index: number }> = []
      const open = new Map<string, number>()
      for (const input of inputs) {
        const job = toJobSpec(input, now)
        let callIndex = open.get(job.queue)
        if (callIndex === undefined || calls[callIndex]!.jobs.length >= 500) {
          const b = base(job.queue)
          callIndex = calls.length
          calls.push({ keys: [`${b}prios`], args: [b, 0, ttl], jobs: [] })
          open.set(job.queue, callIndex)
        }
        const call = calls[callIndex]!
        placement.push({ call: callIndex, index: call.jobs.length })
        call.jobs.push(job.id)
        call.args.push(job.id, job.requestId ?? "", job.priority, job.maxAttempts, input.delayMs ?? 0, encodeJob(job))
      }
      for (const call of calls) call.args[1] = call.jobs.length
      return tryRedis("enqueue", () => enqueueScript.runMany(client, calls)).pipe(
        Effect.map((results) =>
          placement.map(({ call, index }): EnqueueResult => {
            const dupOf = (results[call] as Array<string>)[index] ?? ""
            return dupOf === ""
              ? { jobId: calls[call]!.jobs[index]!, duplicate: false }
              : { jobId: dupOf, duplicate: true }
          })
        )
      )
    })

  const takeOnce = (options: TakeOptions, consumer: string) =>
    Effect.gen(function* () {
      const b = base(options.queue)
      const max = Math.max(0, Math.min(MAX_TAKE, Math.floor(options.max)))
      if (max === 0) return { leases: [] as Array<Lease>, wait: undefined }
      const out = (yield* tryRedis("take", () =>
        take.run(
          client,
          [`${b}prios`],
          [b, consumer, max, Math.max(1, Math.floor(options.visibilityMs)), nonceBase(), reclaimEveryMs]
        )
      )) as Array<string | number>
      const expiresAt = Number(out[0])
      const leases: Array<Lease> = []
      const malformed: Array<{ token: string; reason: string; raw: string }> = []
      const granted = Number(out[2])
      let i = 3
      for (let n = 0; n < granted; n++) {
        const priority = String(out[i])
        const entryId = String(out[i + 1])
        const nonce = String(out[i + 2])
        const attempt = Number(out[i + 3])
        const json = String(out[i + 4])
        const raw = String(out[i + 5])
        const token = encodeToken({ queue: options.queue, priority, entryId, nonce })
        if (json === "") malformed.push({ token, reason: "malformed entry: no job field `j`", raw })
        else {
          const decoded = decodeJob(json, options.queue)
          if (decoded.ok) leases.push({ job: decoded.job, token, attempt, expiresAt })
          else malformed.push({ token, reason: `malformed entry: ${decoded.reason}`, raw: json })
        }
        i += 6
      }
      if (malformed.length > 0) yield* deadLetterMalformed(malformed)
      if (granted > 0) return { leases, wait: undefined }
      const watch: Array<[string, string]> = []
      for (let k = 3; k + 1 < out.length; k += 2) watch.push([`${b}s:${out[k]}`, String(out[k + 1])])
      return { leases, wait: { nextDue: Number(out[1]), watch } }
    })

  const deadLetterMalformed = (items: ReadonlyArray<{ token: string; reason: string; raw: string }>) =>
    tryRedis("dead-letter", () =>
      nackScript.runMany(
        client,
        items.flatMap(({ token, reason, raw }) => {
          const t = decodeToken(token)
          if (t === undefined) return []
          const b = base(t.queue)
          return [{ keys: [`${b}lease`], args: [b, t.priority, t.entryId, t.nonce, "dead", 0, reason, raw] }]
        })
      )
    ).pipe(Effect.asVoid)

  const takeLeases = (options: TakeOptions): Effect.Effect<ReadonlyArray<Lease>, QueueError> =>
    Effect.gen(function* () {
      const consumer = options.consumer ?? defaultName
      const deadline = Date.now() + Math.max(0, options.waitMs)
      while (true) {
        const { leases, wait } = yield* takeOnce(options, consumer)
        if (leases.length > 0 || wait === undefined) {
          if (leases.length > 0 || options.waitMs <= 0) return leases
          continue // only malformed entries this round: look again
        }
        const now = Date.now()
        if (now >= deadline) return leases
        let blockMs = Math.min(deadline - now, pollMs)
        if (wait.nextDue >= 0) blockMs = Math.min(blockMs, Math.max(1, wait.nextDue - now + 2))
        blockMs = Math.max(1, Math.ceil(blockMs))
        const watch = wait.watch.length > 0 ? wait.watch : [[`${base(options.queue)}s:0`, "0-0"] as [string, string]]
        yield* blockers.use("take (wait)", (c) =>
          c.xread("BLOCK", blockMs, "STREAMS", ...watch.map((w) => w[0]), ...watch.map((w) => w[1]))
        )
      }
    })

  // Acks issued in the same event-loop turn share one script call per queue.
  const ackBatched = makeBatcher<StreamToken, number>(async (tokens) => {
    const byQueue = new Map<string, Array<number>>()
    tokens.forEach((t, i) => {
      const list = byQueue.get(t.queue)
      if (list === undefined) byQueue.set(t.queue, [i])
      else list.push(i)
    })
    const groups = [...byQueue.entries()]
    const replies = await ackScript.runMany(
      ackClient,
      groups.map(([queue, indexes]) => {
        const b = base(queue)
        const args: Array<string> = [b]
        for (const i of indexes) args.push(tokens[i]!.priority, tokens[i]!.entryId, tokens[i]!.nonce)
        return { keys: [`${b}lease`], args }
      })
    )
    const codes: Array<number> = new Array(tokens.length)
    groups.forEach(([, indexes], g) => {
      const reply = replies[g] as Array<number>
      indexes.forEach((i, k) => {
        codes[i] = Number(reply[k])
      })
    })
    return codes
  })

  const withToken = <A>(token: string, f: (t: StreamToken, b: string) => Effect.Effect<A, QueueError | LeaseLost>) =>
    Effect.suspend(() => {
      const t = decodeToken(token)
      if (t === undefined) return Effect.fail(leaseLost("unknown or malformed task token"))
      return f(t, base(t.queue))
    })

  const checkCode = (code: unknown) =>
    Number(code) === 0
      ? Effect.fail(leaseLost("unknown or spent task token"))
      : Number(code) === -1
        ? Effect.fail(leaseLost("lease expired"))
        : Effect.void

  return JobQueue.of({
    enqueue: (input) => Effect.map(enqueueAll([input]), (r) => r[0]!),
    enqueueMany: enqueueAll,
    take: takeLeases,
    ack: (token) => withToken(token, (t) => tryRedis("ack", () => ackBatched(t)).pipe(Effect.flatMap(checkCode))),
    nack: (token: string, decision: NackDecision) =>
      withToken(token, (t, b) => {
        const delay = decision._tag === "dead" ? 0 : Math.max(0, Math.floor(decision.delayMs))
        const text =
          decision._tag === "dead" ? decision.reason : decision._tag === "retry" ? (decision.error ?? "") : ""
        return tryRedis("nack", () =>
          nackScript.run(client, [`${b}lease`], [b, t.priority, t.entryId, t.nonce, decision._tag, delay, text, ""])
        ).pipe(Effect.flatMap(checkCode))
      }),
    extend: (token, visibilityMs) =>
      withToken(token, (t, b) =>
        tryRedis("extend", () =>
          extendScript.run(
            client,
            [`${b}lease`],
            [b, t.priority, t.entryId, t.nonce, Math.max(1, Math.floor(visibilityMs))]
          )
        ).pipe(Effect.flatMap((code) => Effect.as(checkCode(code), Number(code))))
      ),
    recover: (queue) =>
      Effect.suspend(() => {
        const b = base(queue)
        return tryRedis("recover", () => recoverScript.run(client, [`${b}prios`], [b])).pipe(Effect.map(Number))
      }),
    stats: (queue) =>
      Effect.suspend(() => {
        const b = base(queue)
        return tryRedis("stats", () => statsScript.run(client, [`${b}prios`], [b])).pipe(
          Effect.map((r): QueueStats => {
            const [ready, delayed, inflight, dead] = (r as Array<number>).map(Number) as [
              number,
              number,
              number,
              number
            ]
            return { queue, ready: Math.max(0, ready), delayed, inflight, dead }
          })
        )
      }),
    peek: (queue, options: { readonly state: LeaseState; readonly limit: number }) =>
      Effect.suspend(() => {
        const b = base(queue)
        const limit = Math.max(0, Math.min(10_000, Math.floor(options.limit)))
        if (limit === 0) return Effect.succeed([])
        return tryRedis("peek", () => peekScript.run(client, [`${b}prios`], [b, options.state, limit])).pipe(
          Effect.map((r) => {
            const out = r as Array<string | number>
            const entries: Array<PeekEntry> = []
            for (let i = 0; i + 3 < out.length; i += 4)
              entries.push(
                peekEntry(
                  options.state,
                  queue,
                  String(out[i]),
                  Number(out[i + 1]),
                  String(out[i + 2]),
                  String(out[i + 3])
                )
              )
            return entries
          })
        )
      })
  })
})

/** Layer providing `JobQueue` on Redis Streams. */
export const layer = (config: RedisStreamQueueConfig = {}): Layer.Layer<JobQueue> =>
  Layer.effect(JobQueue, make(config))
