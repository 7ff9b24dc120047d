import { Effect, Layer } from "effect"
import { Limiter } from "../Limiter.ts"

/** The in-process `Limiter`: permits per key with expiry, for runners in one process. */
export const makeMemoryLimiter = (): Limiter["Service"] => {
  const permits = new Map<string, Map<string, number>>()

  const live = (key: string, now: number): Map<string, number> => {
    let holders = permits.get(key)
    if (holders === undefined) {
      holders = new Map()
      permits.set(key, holders)
    }
    for (const [holder, expiresAt] of holders) if (expiresAt <= now) holders.delete(holder)
    return holders
  }

  return Limiter.of({
    tryAcquire: (key, holder, { limit, ttlMs }) =>
      Effect.sync(() => {
        const now = Date.now()
        const holders = live(key, now)
        if (!holders.has(holder) && holders.size >= limit) return false
        holders.set(holder, now + ttlMs)
        return true
      }),
    refresh: (key, holder, ttlMs) =>
      Effect.sync(() => {
        const holders = permits.get(key)
        if (holders?.has(holder)) holders.set(holder, Date.now() + ttlMs)
      }),
    release: (key, holder) =>
      Effect.sync(() => {
        const holders = permits.get(key)
        if (holders === undefined) return
        holders.delete(holder)
        if (holders.size === 0) permits.delete(key)
      }),
    count: (key) => Effect.sync(() => live(key, Date.now()).size)
  })
}

export const layer = (): Layer.Layer<Limiter> => Layer.sync(Limiter, makeMemoryLimiter)
