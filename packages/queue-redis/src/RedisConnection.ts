import { createHash, randomBytes } from "node:crypto"
import { Effect, type Scope } from "effect"
import { Redis } from "ioredis"

/** Default Redis URL (`REDIS_URL` overrides it where a program reads the environment). */
export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"

/** How an adapter reaches Redis: a URL, or a factory for ioredis clients (it may be called more than once). */
export interface RedisConnectionConfig {
  /** `redis://host:port/db`; default `redis://127.0.0.1:6379`. Ignored when `client` is given. */
  readonly url?: string
  /** Makes a new ioredis client; the adapter owns (and quits) every client it makes. */
  readonly client?: () => Redis
  /** Prefix of every key the adapter writes (default `runlane:`). */
  readonly prefix?: string
}

export const makeClient = (config: RedisConnectionConfig): Redis =>
  config.client !== undefined
    ? config.client()
    : new Redis(config.url ?? DEFAULT_REDIS_URL, { maxRetriesPerRequest: 3, enableAutoPipelining: false })

/** A client owned by the scope: quit (or disconnected) when the scope closes. */
export const scopedClient = (config: RedisConnectionConfig): Effect.Effect<Redis, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => makeClient(config)),
    (client) => closeClient(client)
  )

export const closeClient = (client: Redis): Effect.Effect<void> =>
  Effect.promise(() =>
    client.status === "end"
      ? Promise.resolve()
      : Promise.race([
          client.quit().then(
            () => undefined,
            () => undefined
          ),
          new Promise<void>((resolve) => setTimeout(resolve, 1000))
        ]).then(() => client.disconnect())
  )

/**
 * A Lua script run with EVALSHA, falling back to EVAL when the server does not know it yet
 * (a fresh or restarted Redis).
 */
export class LuaScript {
  readonly sha: string
  readonly lua: string
  constructor(lua: string) {
    this.lua = lua
    this.sha = createHash("sha1").update(lua).digest("hex")
  }

  run(client: Redis, keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>): Promise<unknown> {
    return client.evalsha(this.sha, keys.length, ...keys, ...args).catch((error: unknown) => {
      if (isNoScript(error)) return client.eval(this.lua, keys.length, ...keys, ...args)
      throw error
    })
  }

  /** Runs several calls in one pipeline (one round trip); loads the script once if missing. */
  async runMany(
    client: Redis,
    calls: ReadonlyArray<{ readonly keys: ReadonlyArray<string>; readonly args: ReadonlyArray<string | number> }>
  ): Promise<Array<unknown>> {
    if (calls.length === 0) return []
    if (calls.length === 1) return [await this.run(client, calls[0]!.keys, calls[0]!.args)]
    const send = async () => {
      const pipeline = client.pipeline()
      for (const call of calls) pipeline.evalsha(this.sha, call.keys.length, ...call.keys, ...call.args)
      return (await pipeline.exec()) ?? []
    }
    let results = await send()
    if (results.some(([error]) => error !== null && isNoScript(error))) {
      // NOSCRIPT means that call did not run: load the script and send the pipeline again.
      // Calls that did run are not repeated (only NOSCRIPT ones are resent).
      await client.script("LOAD", this.lua)
      const retry = calls.filter((_, i) => results[i]![0] !== null && isNoScript(results[i]![0]))
      const again = await (async () => {
        const pipeline = client.pipeline()
        for (const call of retry) pipeline.evalsha(this.sha, call.keys.length, ...call.keys, ...call.args)
        return (await pipeline.exec()) ?? []
      })()
      let j = 0
      results = results.map((r) => (r[0] !== null && isNoScript(r[0]) ? again[j++]! : r))
    }
    return results.map(([error, value]) => {
      if (error !== null) throw error
      return value
    })
  }
}

const isNoScript = (error: unknown): boolean => error instanceof Error && error.message.startsWith("NOSCRIPT")

/** Where a queue's keys live: `<prefix>{<queue>}:` (the hash tag keeps one queue in one cluster slot). */
export const queueBase = (prefix: string, queue: string): string => `${prefix}{${queue}}:`

/** A random string for task-token nonces (the scripts append a counter). */
export const nonceBase = (): string => randomBytes(9).toString("base64url")

/** Encodes a queue name so it can sit between dots in a token. */
export const encodeName = (name: string): string => Buffer.from(name, "utf8").toString("base64url")
export const decodeName = (encoded: string): string => Buffer.from(encoded, "base64url").toString("utf8")

export const errorMessage = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

/** Shared Lua helpers prepended to every script. */
export const LUA_PRELUDE = `
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`
