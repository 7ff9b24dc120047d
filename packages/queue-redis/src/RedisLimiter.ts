import { Limiter, LimiterError } from "@runlane/core"
import { Effect, Layer } from "effect"
import { errorMessage, LUA_PRELUDE, LuaScript, type RedisConnectionConfig, scopedClient } from "./RedisConnection.ts"

/**
 * One sorted set per key: holder → expiry (ms). Expired holders are dropped before every
 * decision, so a runner that dies holding permits blocks its key for at most `ttlMs`. The set
 * itself expires with its longest-lived holder.
 */
const acquireScript = new LuaScript(`${LUA_PRELUDE}
local k, holder, limit, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = nowMs()
redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
if not redis.call('ZSCORE', k, holder) and redis.call('ZCARD', k) >= limit then return 0 end
redis.call('ZADD', k, now + ttl, holder)
local last = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', k, tonumber(last[2]))
return 1
`)

const refreshScript = new LuaScript(`${LUA_PRELUDE}
local k, holder, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local now = nowMs()
if redis.call('ZADD', k, 'XX', 'CH', now + ttl, holder) == 0 and not redis.call('ZSCORE', k, holder) then return 0 end
local last = redis.call('ZRANGE', k, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', k, tonumber(last[2]))
return 1
`)

const countScript = new LuaScript(`${LUA_PRELUDE}
return redis.call('ZCOUNT', KEYS[1], '(' .. nowMs(), '+inf')
`)

export interface RedisLimiterConfig extends RedisConnectionConfig {
  /**
   * The Redis key of a partition key's permits. Default `<prefix>limit:{<key>}`; Repobox's
   * layout is `(userId) => \`runner:user:{${userId}}:running\``.
   */
  readonly keyFor?: (key: string) => string
}

/** Per-key concurrency permits shared by every runner that uses the same Redis and prefix. */
export const make = Effect.fnUntraced(function* (config: RedisLimiterConfig = {}) {
  const prefix = config.prefix ?? "runlane:"
  const keyFor = config.keyFor ?? ((key: string) => `${prefix}limit:{${key}}`)
  const client = yield* scopedClient(config)
  const attempt = <A>(what: string, f: () => Promise<A>) =>
    Effect.tryPromise({
      try: f,
      catch: (cause) => new LimiterError({ message: `Redis limiter ${what} failed: ${errorMessage(cause)}`, cause })
    })
  return Limiter.of({
    tryAcquire: (key, holder, { limit, ttlMs }) =>
      attempt("acquire", () =>
        acquireScript.run(
          client,
          [keyFor(key)],
          [holder, Math.max(0, Math.floor(limit)), Math.max(1, Math.floor(ttlMs))]
        )
      ).pipe(Effect.map((r) => Number(r) === 1)),
    refresh: (key, holder, ttlMs) =>
      attempt("refresh", () => refreshScript.run(client, [keyFor(key)], [holder, Math.max(1, Math.floor(ttlMs))])).pipe(
        Effect.asVoid
      ),
    release: (key, holder) => attempt("release", () => client.zrem(keyFor(key), holder)).pipe(Effect.asVoid),
    count: (key) => attempt("count", () => countScript.run(client, [keyFor(key)], [])).pipe(Effect.map(Number))
  })
})

export const layer = (config: RedisLimiterConfig = {}): Layer.Layer<Limiter> => Layer.effect(Limiter, make(config))
