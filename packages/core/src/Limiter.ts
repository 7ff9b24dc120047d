import { Context, type Effect, Schema } from "effect"

export class LimiterError extends Schema.TaggedError<LimiterError>()("LimiterError", {
  message: Schema.String,
  cause: Schema.optionalKey(Schema.Defect())
}) {}

/**
 * Keyed concurrency permits shared by every runner. A permit is held by `holder` (a lease
 * token or runner-scoped id) and expires after `ttlMs` unless refreshed, so a runner that
 * dies while holding permits does not block the key forever.
 */
export class Limiter extends Context.Service<
  Limiter,
  {
    /** Takes one of `limit` permits for `key`; false when all are held. */
    readonly tryAcquire: (
      key: string,
      holder: string,
      options: { readonly limit: number; readonly ttlMs: number }
    ) => Effect.Effect<boolean, LimiterError>
    readonly refresh: (key: string, holder: string, ttlMs: number) => Effect.Effect<void, LimiterError>
    readonly release: (key: string, holder: string) => Effect.Effect<void, LimiterError>
    /** Permits currently held for `key`. */
    readonly count: (key: string) => Effect.Effect<number, LimiterError>
  }
>()("@runlane/core/Limiter") {}
