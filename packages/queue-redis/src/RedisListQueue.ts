import {
  DEFAULT_MAX_ATTEMPTS,
  type EnqueueInput,
  type EnqueueResult,
  JobQueue,
  type JobSpec,
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
import { type Decoded, decodeForeignJob, decodeJob, encodeJob } from "./JobCodec.ts"
import {
  DEFAULT_IDEMPOTENCY_TTL_MS,
  defaultConsumer,
  leaseLost,
  MAX_TAKE,
  makeBlockerPool,
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
 * - `jobs`            the main list (priority 0): producers `LPUSH`, runners move from its right end
 * - `l:<p>`           the list of priority level `p` ≠ 0; `prios` sorted set of levels in use
 * - `proc:<runner>`   the runner's processing list (`LMOVE`/`BLMOVE` target); ack = `LREM`
 * - `hb:<runner>`     the runner's heartbeat key (TTL); `consumers` set of runner names
 * - `lease`           hash nonce → lease (runner, expiry, attempt, level, max attempts, element)
 * - `leasexp`         sorted set nonce → lease expiry
 * - `delayed`/`djobs` sorted set id → due time / hash id → element to push when due
 * - `dead`/`deadidx`  dead letters (reason, attempt, element or raw value) / id → time
 * - `req:<id>`        request id → job id, with a TTL
 *
 * An element is either runlane's envelope `{"rl":1,"a":attempts,"m":maxAttempts,"p":priority,
 * "e"?:lastError,"job":"<JobSpec JSON>"}` or a foreign job pushed by another program in the
 * seed's format (`{"id": "...", ...}`), which is wrapped as `{"rl":1,...,"raw":"<as pushed>"}`
 * only when it has to be requeued.
 */
const LIST_LUA = `${LUA_PRELUDE}
local function levelKey(base, main, p)
  if p == '0' or p == 0 then return main end
  return base .. 'l:' .. p
end
local function envelope(v, defaultMax)
  local ok, t = pcall(cjson.decode, v)
  if ok and type(t) == 'table' and t.rl == 1 then
    return {own = true, t = t, a = tonumber(t.a) or 0, m = tonumber(t.m) or defaultMax, p = tostring(t.p or 0)}
  end
  return {own = false, a = 0, m = defaultMax, p = '0'}
end
local function rebuild(v, info, a, e)
  local t = info.t
  if not info.own then t = {rl = 1, m = info.m, p = 0, raw = v} end
  t.a = a
  if e ~= nil and e ~= '' then t.e = e end
  return cjson.encode(t)
end
local function addDead(base, id, now, rec)
  redis.call('HSET', base .. 'dead', id, cjson.encode(rec))
  redis.call('ZADD', base .. 'deadidx', now, id)
end
local function push(base, main, p, v, delay, now, member)
  if delay > 0 then
    redis.call('ZADD', base .. 'delayed', now + delay, member)
    redis.call('HSET', base .. 'djobs', member, cjson.encode({p = p, v = v}))
  else
    if p ~= '0' then redis.call('ZADD', base .. 'prios', 'NX', p, p) end
    redis.call('LPUSH', levelKey(base, main, p), v)
  end
end
local function promoteDue(base, main, now)
  local due = redis.call('ZRANGEBYSCORE', base .. 'delayed', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    local d = redis.call('HGET', base .. 'djobs', id)
    redis.call('ZREM', base .. 'delayed', id)
    redis.call('HDEL', base .. 'djobs', id)
    if d then
      local t = cjson.decode(d)
      push(base, main, tostring(t.p), t.v, 0, now, id)
    end
  end
end
local function dropLease(base, nonce, l)
  redis.call('LREM', base .. 'proc:' .. l.c, 1, l.v)
  redis.call('HDEL', base .. 'lease', nonce)
  redis.call('ZREM', base .. 'leasexp', nonce)
end
-- A lease that ended without an outcome (expired, or its runner is gone): back to ready, counted.
local function expire(base, main, nonce, l, now, why)
  dropLease(base, nonce, l)
  local info = envelope(l.v, l.m)
  if l.a >= l.m then
    addDead(base, nonce, now, {reason = why .. ' on attempt ' .. l.a .. ' of ' .. l.m, attempt = l.a, v = l.v})
  else
    push(base, main, tostring(l.p), rebuild(l.v, info, l.a, why), 0, now, nonce)
  end
end
local function reclaimExpired(base, main, now, limit)
  local n = 0
  for _, nonce in ipairs(redis.call('ZRANGEBYSCORE', base .. 'leasexp', '-inf', now, 'LIMIT', 0, limit)) do
    local raw = redis.call('HGET', base .. 'lease', nonce)
    if raw then
      expire(base, main, nonce, cjson.decode(raw), now, 'lease expired')
      n = n + 1
    else
      redis.call('ZREM', base .. 'leasexp', nonce)
    end
  end
  return n
end
local function holder(base, nonce, now)
  local raw = redis.call('HGET', base .. 'lease', nonce)
  if not raw then return nil, 0 end
  local l = cjson.decode(raw)
  if l.e <= now then return nil, -1 end
  return l
end
`

const enqueueScript = new LuaScript(`${LIST_LUA}
local base, main, n, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = nowMs()
local out = {}
local i = 5
for k = 1, n do
  local id, req, p, delay, v = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3]), ARGV[i + 4]
  i = i + 5
  local dup = false
  if req ~= '' then
    local rk = base .. 'req:' .. req
    if not redis.call('SET', rk, id, 'NX', 'PX', ttl) then
      out[k] = redis.call('GET', rk) or id
      dup = true
    end
  end
  if not dup then
    push(base, main, p, v, delay, now, id)
    out[k] = ''
  end
end
return out
`)

/** Takes up to `max` elements (after registering `landed`, an element a BLMOVE already moved). */
const takeScript = new LuaScript(`${LIST_LUA}
local base, main, consumer, max, vis, nb, defaultMax, hbTtl, landed =
  ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9]
local now = nowMs()
redis.call('SET', base .. 'hb:' .. consumer, now, 'PX', hbTtl)
redis.call('SADD', base .. 'consumers', consumer)
redis.call('ZADD', base .. 'prios', 'NX', 0, '0')
promoteDue(base, main, now)
reclaimExpired(base, main, now, 1000)
local exp = now + vis
local proc = base .. 'proc:' .. consumer
local out = {exp, -1, 0}
local count = 0
local function grant(v, p)
  count = count + 1
  local nonce = nb .. count
  local info = envelope(v, defaultMax)
  local attempt = info.a + 1
  redis.call('HSET', base .. 'lease', nonce, cjson.encode({c = consumer, e = exp, a = attempt, p = p, m = info.m, v = v}))
  redis.call('ZADD', base .. 'leasexp', exp, nonce)
  out[#out + 1] = nonce
  out[#out + 1] = attempt
  out[#out + 1] = v
end
if landed ~= '' then grant(landed, '0') end
for _, p in ipairs(redis.call('ZREVRANGE', base .. 'prios', 0, -1)) do
  if count >= max then break end
  local src = levelKey(base, main, p)
  while count < max do
    local v = redis.call('LMOVE', src, proc, 'RIGHT', 'LEFT')
    if not v then break end
    grant(v, p)
  end
end
out[3] = count
if count == 0 then
  local nd = redis.call('ZRANGE', base .. 'delayed', 0, 0, 'WITHSCORES')
  out[2] = nd[2] or -1
end
return out
`)

/** Acks several leases of one queue: ARGV base, then nonces; a code per lease. */
const ackScript = new LuaScript(`${LIST_LUA}
local base = ARGV[1]
local now = nowMs()
local out = {}
for i = 2, #ARGV do
  local l, code = holder(base, ARGV[i], now)
  if l then
    dropLease(base, ARGV[i], l)
    code = 1
  end
  out[#out + 1] = code
end
return out
`)

const nackScript = new LuaScript(`${LIST_LUA}
local base, main, nonce, kind, delay, text, raw = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
local now = nowMs()
local l, code = holder(base, nonce, now)
if not l then return code end
dropLease(base, nonce, l)
if kind == 'dead' then
  local rec = {reason = text, attempt = l.a, v = l.v}
  if raw ~= '' then rec.raw = raw end
  addDead(base, nonce, now, rec)
  return 1
end
local info = envelope(l.v, l.m)
local a = l.a
local err = nil
if kind == 'release' then
  a = math.max(0, l.a - 1)
  if info.own then err = info.t.e end
else
  err = text
end
push(base, main, tostring(l.p), rebuild(l.v, info, a, err), delay, now, nonce)
return 1
`)

const extendScript = new LuaScript(`${LIST_LUA}
local base, nonce, vis, hbTtl = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = nowMs()
local l, code = holder(base, nonce, now)
if not l then return code end
l.e = now + vis
redis.call('HSET', base .. 'lease', nonce, cjson.encode(l))
redis.call('ZADD', base .. 'leasexp', l.e, nonce)
redis.call('SET', base .. 'hb:' .. l.c, now, 'PX', hbTtl)
return l.e
`)

/** Expired leases back to ready; then every processing entry of a runner whose heartbeat is gone. */
const recoverScript = new LuaScript(`${LIST_LUA}
local base, main = ARGV[1], ARGV[2]
local now = nowMs()
promoteDue(base, main, now)
local count = reclaimExpired(base, main, now, 100000)
for _, c in ipairs(redis.call('SMEMBERS', base .. 'consumers')) do
  if redis.call('EXISTS', base .. 'hb:' .. c) == 0 then
    local cursor = '0'
    repeat
      local r = redis.call('HSCAN', base .. 'lease', cursor, 'COUNT', 1000)
      cursor = r[1]
      for i = 1, #r[2], 2 do
        local l = cjson.decode(r[2][i + 1])
        if l.c == c then
          expire(base, main, r[2][i], l, now, 'runner gone')
          count = count + 1
        end
      end
    until cursor == '0'
    -- Entries moved by a BLMOVE whose lease was never registered were never delivered.
    local proc = base .. 'proc:' .. c
    while true do
      local v = redis.call('LMOVE', proc, main, 'LEFT', 'RIGHT')
      if not v then break end
      count = count + 1
    end
    redis.call('SREM', base .. 'consumers', c)
  end
end
return count
`)

const statsScript = new LuaScript(`${LIST_LUA}
local base, main = ARGV[1], ARGV[2]
local ready = redis.call('LLEN', main)
for _, p in ipairs(redis.call('ZRANGE', base .. 'prios', 0, -1)) do
  if p ~= '0' then ready = ready + redis.call('LLEN', base .. 'l:' .. p) end
end
return {ready, redis.call('ZCARD', base .. 'delayed'), redis.call('HLEN', base .. 'lease'), redis.call('ZCARD', base .. 'deadidx')}
`)

const peekScript = new LuaScript(`${LIST_LUA}
local base, main, state, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local out = {}
local function add(v, attempt, reason, raw)
  out[#out + 1] = v or ''
  out[#out + 1] = tonumber(attempt) or 0
  out[#out + 1] = reason or ''
  out[#out + 1] = raw or ''
end
if state == 'ready' then
  local levels = redis.call('ZREVRANGE', base .. 'prios', 0, -1)
  if #levels == 0 then levels = {'0'} end
  for _, p in ipairs(levels) do
    local n = #out / 4
    if n >= limit then break end
    local items = redis.call('LRANGE', levelKey(base, main, p), -(limit - n), -1)
    for k = #items, 1, -1 do
      local info = envelope(items[k], 0)
      local e = nil
      if info.own then e = info.t.e end
      add(items[k], info.a, e, nil)
    end
  end
elseif state == 'inflight' then
  local cursor = '0'
  repeat
    local r = redis.call('HSCAN', base .. 'lease', cursor, 'COUNT', limit)
    cursor = r[1]
    for i = 1, #r[2], 2 do
      if #out / 4 >= limit then break end
      local l = cjson.decode(r[2][i + 1])
      add(l.v, l.a, nil, nil)
    end
  until cursor == '0' or #out / 4 >= limit
elseif state == 'delayed' then
  for _, id in ipairs(redis.call('ZRANGE', base .. 'delayed', 0, limit - 1)) do
    local d = redis.call('HGET', base .. 'djobs', id)
    if d then
      local t = cjson.decode(d)
      local info = envelope(t.v, 0)
      local e = nil
      if info.own then e = info.t.e end
      add(t.v, info.a, e, nil)
    end
  end
else
  for _, id in ipairs(redis.call('ZRANGE', base .. 'deadidx', 0, limit - 1)) do
    local d = redis.call('HGET', base .. 'dead', id)
    if d then
      local t = cjson.decode(d)
      add(t.v, t.attempt, t.reason, t.raw)
    end
  end
end
return out
`)

const TOKEN_VERSION = "l1"
const encodeToken = (queue: string, nonce: string) => `${TOKEN_VERSION}.${encodeName(queue)}.${nonce}`
const decodeToken = (token: string): { readonly queue: string; readonly nonce: string } | undefined => {
  const parts = token.split(".")
  if (parts.length !== 3 || parts[0] !== TOKEN_VERSION || parts[2] === "") return undefined
  return { queue: decodeName(parts[1]!), nonce: parts[2]! }
}

export interface RedisListQueueConfig extends RedisQueueConfig {
  /**
   * Key of a queue's main list (priority 0), where other programs `LPUSH` jobs in the seed's
   * JSON format. Default `<prefix>{<queue>}:jobs`. A key without the queue's hash tag works on a
   * single Redis but not on a cluster.
   */
  readonly mainListKey?: (queue: string) => string
  /** `maxAttempts` of a foreign job (pushed without runlane's envelope); default 3. */
  readonly foreignMaxAttempts?: number
  /**
   * TTL of a runner's heartbeat key (default 15 s). While the layer is alive it refreshes the
   * key of every runner name it has taken for, every third of this; `recover` treats a runner
   * whose key has expired as gone and returns all its processing entries, whatever their
   * visibility timeout.
   */
  readonly heartbeatTtlMs?: number
}

/** runlane's envelope around a job in a list. */
export const encodeElement = (job: JobSpec, attempts = 0): string =>
  JSON.stringify({ rl: 1, a: attempts, m: job.maxAttempts, p: job.priority, job: encodeJob(job) })

/** Decodes a list element: runlane's envelope or a foreign job in the seed's format. */
export const decodeElement = (
  element: string,
  queue: string,
  options: { readonly foreignMaxAttempts?: number; readonly now?: number } = {}
): Decoded => {
  const defaults = { maxAttempts: options.foreignMaxAttempts ?? DEFAULT_MAX_ATTEMPTS, now: options.now ?? Date.now() }
  let parsed: unknown
  try {
    parsed = JSON.parse(element)
  } catch {
    return decodeForeignJob(element, queue, defaults)
  }
  if (typeof parsed === "object" && parsed !== null && (parsed as { rl?: unknown }).rl === 1) {
    const env = parsed as { job?: unknown; raw?: unknown }
    if (typeof env.job === "string") return decodeJob(env.job, queue)
    if (typeof env.raw === "string") return decodeForeignJob(env.raw, queue, defaults)
    return { ok: false, reason: "runlane envelope without `job`" }
  }
  return decodeForeignJob(element, queue, defaults)
}

/**
 * A `JobQueue` on Redis lists, the reliable-queue pattern: jobs move from the main list into
 * the runner's processing list (`LMOVE`, or `BLMOVE` when long-polling); ack = `LREM`; nack and
 * expiry move the job back; `recover` also returns every processing entry of a runner whose
 * heartbeat key has expired. Accepts jobs other programs `LPUSH` in the seed's JSON format.
 */
export const make = Effect.fnUntraced(function* (config: RedisListQueueConfig = {}) {
  const prefix = config.prefix ?? "runlane:"
  const ttl = config.idempotencyTtlMs ?? DEFAULT_IDEMPOTENCY_TTL_MS
  const pollMs = config.pollIntervalMs ?? 1000
  const hbTtl = Math.max(100, config.heartbeatTtlMs ?? 15_000)
  const foreignMax = config.foreignMaxAttempts ?? DEFAULT_MAX_ATTEMPTS
  const defaultName = config.consumer ?? defaultConsumer()
  const client = yield* Effect.acquireRelease(
    Effect.sync(() => makeClient(config)),
    (c) => closeClient(c)
  )
  const blockers = makeBlockerPool(config)
  yield* Effect.addFinalizer(() => blockers.close)
  const base = (queue: string) => queueBase(prefix, queue)
  const mainKey = (queue: string) => config.mainListKey?.(queue) ?? `${base(queue)}jobs`

  // The heartbeat: this process is alive, so the runners it takes for are alive.
  const heartbeatKeys = new Set<string>()
  yield* Effect.acquireRelease(
    Effect.sync(() => {
      const timer = setInterval(
        () => {
          if (heartbeatKeys.size === 0) return
          const pipeline = client.pipeline()
          for (const key of heartbeatKeys) pipeline.set(key, Date.now(), "PX", hbTtl)
          pipeline.exec().catch(() => undefined)
        },
        Math.max(30, Math.floor(hbTtl / 3))
      )
      timer.unref()
      return timer
    }),
    (timer) =>
      Effect.suspend(() => {
        clearInterval(timer)
        // A clean shutdown: this runner is gone now, not after the TTL.
        const keys = [...heartbeatKeys]
        return keys.length === 0 ? Effect.void : Effect.promise(() => client.del(...keys).catch(() => 0))
      })
  )

  const enqueueAll = (inputs: ReadonlyArray<EnqueueInput>) =>
    Effect.suspend(() => {
      const now = Date.now()
      const calls: Array<{ keys: Array<string>; args: Array<string | number>; jobs: Array<string> }> = []
      const placement: Array<{ call: number; index: number }> = []
      const open = new Map<string, number>()
      for (const input of inputs) {
        const job = toJobSpec(input, now)
        let callIndex = open.get(job.queue)
        if (callIndex === undefined || calls[callIndex]!.jobs.length >= 500) {
          const b = base(job.queue)
          callIndex = calls.length
          calls.push({ keys: [mainKey(job.queue)], args: [b, mainKey(job.queue), 0, ttl], jobs: [] })
          open.set(job.queue, callIndex)
        }
        const call = calls[callIndex]!
        placement.push({ call: callIndex, index: call.jobs.length })
        call.jobs.push(job.id)
        call.args.push(job.id, job.requestId ?? "", job.priority, input.delayMs ?? 0, encodeElement(job))
      }
      for (const call of calls) call.args[2] = call.jobs.length
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

  const takeOnce = (options: TakeOptions, consumer: string, max: number, landed: string) =>
    Effect.gen(function* () {
      const b = base(options.queue)
      const main = mainKey(options.queue)
      const vis = Math.max(1, Math.floor(options.visibilityMs))
      const out = (yield* tryRedis("take", () =>
        takeScript.run(client, [main], [b, main, consumer, max, vis, nonceBase(), foreignMax, hbTtl, landed])
      )) as Array<string | number>
      const expiresAt = Number(out[0])
      const granted = Number(out[2])
      const leases: Array<Lease> = []
      const malformed: Array<{ nonce: string; reason: string; raw: string }> = []
      const now = Date.now()
      for (let n = 0, i = 3; n < granted; n++, i += 3) {
        const nonce = String(out[i])
        const attempt = Number(out[i + 1])
        const element = String(out[i + 2])
        const decoded = decodeElement(element, options.queue, { foreignMaxAttempts: foreignMax, now })
        if (decoded.ok) leases.push({ job: decoded.job, token: encodeToken(options.queue, nonce), attempt, expiresAt })
        else malformed.push({ nonce, reason: `malformed entry: ${decoded.reason}`, raw: element })
      }
      if (malformed.length > 0)
        yield* tryRedis("dead-letter", () =>
          nackScript.runMany(
            client,
            malformed.map(({ nonce, reason, raw }) => ({
              keys: [main],
              args: [b, main, nonce, "dead", 0, reason, raw]
            }))
          )
        )
      return { leases, granted, nextDue: Number(out[1]) }
    })

  const takeLeases = (options: TakeOptions): Effect.Effect<ReadonlyArray<Lease>, QueueError> =>
    Effect.gen(function* () {
      const consumer = options.consumer ?? defaultName
      heartbeatKeys.add(`${base(options.queue)}hb:${consumer}`)
      const max = Math.max(0, Math.min(MAX_TAKE, Math.floor(options.max)))
      if (max === 0) return []
      const deadline = Date.now() + Math.max(0, options.waitMs)
      let landed = ""
      while (true) {
        const { leases, granted, nextDue } = yield* takeOnce(options, consumer, max, landed)
        landed = ""
        if (leases.length > 0 || options.waitMs <= 0) return leases
        if (granted > 0) continue // only malformed entries this round: look again
        const now = Date.now()
        if (now >= deadline) return leases
        let blockMs = Math.min(deadline - now, pollMs)
        if (nextDue >= 0) blockMs = Math.min(blockMs, Math.max(1, nextDue - now + 2))
        const seconds = Math.max(0.01, blockMs / 1000)
        const main = mainKey(options.queue)
        const proc = `${base(options.queue)}proc:${consumer}`
        // BLMOVE lands the element in this runner's processing list; the next take script
        // registers its lease. If this process dies in between, `recover` returns it once the
        // runner's heartbeat key expires.
        const moved = yield* blockers.use("take (wait)", (c) => c.blmove(main, proc, "RIGHT", "LEFT", seconds))
        if (moved !== null) landed = moved
      }
    })

  const withToken = <A>(token: string, f: (queue: string, nonce: string) => Effect.Effect<A, QueueError | LeaseLost>) =>
    Effect.suspend(() => {
      const t = decodeToken(token)
      if (t === undefined) return Effect.fail(leaseLost("unknown or malformed task token"))
      return f(t.queue, t.nonce)
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
    ack: (token) =>
      withToken(token, (queue, nonce) => {
        const b = base(queue)
        return tryRedis("ack", () => ackScript.run(client, [mainKey(queue)], [b, nonce])).pipe(
          Effect.flatMap(checkCode)
        )
      }),
    nack: (token: string, decision: NackDecision) =>
      withToken(token, (queue, nonce) => {
        const b = base(queue)
        const main = mainKey(queue)
        const delay = decision._tag === "dead" ? 0 : Math.max(0, Math.floor(decision.delayMs))
        const text =
          decision._tag === "dead" ? decision.reason : decision._tag === "retry" ? (decision.error ?? "") : ""
        return tryRedis("nack", () =>
          nackScript.run(client, [main], [b, main, nonce, decision._tag, delay, text, ""])
        ).pipe(Effect.flatMap(checkCode))
      }),
    extend: (token, visibilityMs) =>
      withToken(token, (queue, nonce) => {
        const b = base(queue)
        return tryRedis("extend", () =>
          extendScript.run(client, [mainKey(queue)], [b, nonce, Math.max(1, Math.floor(visibilityMs)), hbTtl])
        ).pipe(Effect.flatMap((code) => Effect.as(checkCode(code), Number(code))))
      }),
    recover: (queue) =>
      Effect.suspend(() => {
        const main = mainKey(queue)
        return tryRedis("recover", () => recoverScript.run(client, [main], [base(queue), main])).pipe(
          Effect.map(Number)
        )
      }),
    stats: (queue) =>
      Effect.suspend(() => {
        const main = mainKey(queue)
        return tryRedis("stats", () => statsScript.run(client, [main], [base(queue), main])).pipe(
          Effect.map((r): QueueStats => {
            const [ready, delayed, inflight, dead] = (r as Array<number>).map(Number) as [
              number,
              number,
              number,
              number
            ]
            return { queue, ready, delayed, inflight, dead }
          })
        )
      }),
    peek: (queue, options: { readonly state: LeaseState; readonly limit: number }) =>
      Effect.suspend(() => {
        const main = mainKey(queue)
        const limit = Math.max(0, Math.min(10_000, Math.floor(options.limit)))
        if (limit === 0) return Effect.succeed([])
        return tryRedis("peek", () => peekScript.run(client, [main], [base(queue), main, options.state, limit])).pipe(
          Effect.map((r) => {
            const out = r as Array<string | number>
            const entries: Array<PeekEntry> = []
            const now = Date.now()
            for (let i = 0; i + 3 < out.length; i += 4) {
              const element = String(out[i])
              const entry: { -readonly [K in keyof PeekEntry]: PeekEntry[K] } = {
                state: options.state,
                attempt: Number(out[i + 1])
              }
              if (element !== "") {
                const decoded = decodeElement(element, queue, { foreignMaxAttempts: foreignMax, now })
                if (decoded.ok) entry.job = decoded.job
                else entry.raw = element
              }
              if (String(out[i + 3]) !== "") entry.raw = String(out[i + 3])
              if (String(out[i + 2]) !== "") entry.reason = String(out[i + 2])
              entries.push(entry)
            }
            return entries
          })
        )
      })
  })
})

/** Layer providing `JobQueue` on Redis reliable lists. */
export const layer = (config: RedisListQueueConfig = {}): Layer.Layer<JobQueue> => Layer.effect(JobQueue, make(config))
