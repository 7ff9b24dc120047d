import { PgClient } from "@effect/sql-pg"
import { type EnqueueInput, JobQueue } from "@runlane/core"
import { PostgresQueue } from "@runlane/queue-postgres"
import { Config, Effect, Layer, Option, type Redacted } from "effect"
import { Command, Flag } from "effect/cli"
import { UsageError } from "../ExitCode.ts"

/**
 * `runlane pg-queue <enqueue|stats|peek|recover>`: the PostgreSQL queue from the command line.
 * The connection URL comes from `--url` or `RUNLANE_PG_URL` and is never printed.
 */
const shared = {
  url: Flag.Redacted("url").pipe(
    Flag.withDescription("PostgreSQL URL (default: $RUNLANE_PG_URL)"),
    Flag.withFallbackConfig(Config.Redacted("RUNLANE_PG_URL"))
  ),
  schema: Flag.String("schema").pipe(
    Flag.withDescription("PostgreSQL schema of the queue tables"),
    Flag.withDefault("runlane")
  ),
  queue: Flag.String("queue").pipe(Flag.withDescription("queue name"))
}

const withQueue = <A, E>(
  flags: { readonly url: Redacted.Redacted<string>; readonly schema: string },
  use: (queue: JobQueue["Service"]) => Effect.Effect<A, E>
) =>
  Effect.flatMap(Effect.service(JobQueue), use).pipe(
    Effect.provide(
      PostgresQueue.layer({ schema: flags.schema }).pipe(Layer.provide(PgClient.layer({ url: flags.url })))
    )
  )

const printJson = (value: unknown) => Effect.sync(() => process.stdout.write(`${JSON.stringify(value)}\n`))

const parsePayload = (text: string): Effect.Effect<unknown, UsageError> =>
  Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: () => new UsageError("--payload must be JSON")
  })

const enqueue = Command.make(
  "enqueue",
  {
    ...shared,
    payload: Flag.String("payload").pipe(Flag.withDescription("job payload as JSON"), Flag.withDefault("null")),
    priority: Flag.Int("priority").pipe(Flag.withDescription("higher runs first"), Flag.optional),
    delay: Flag.Int("delay-ms").pipe(Flag.withDescription("do not deliver before this many ms"), Flag.optional),
    requestId: Flag.String("request-id").pipe(Flag.withDescription("idempotency key"), Flag.optional),
    key: Flag.String("key").pipe(Flag.withDescription("partition key (per-key limits)"), Flag.optional)
  },
  (flags) =>
    Effect.gen(function* () {
      const payload = yield* parsePayload(flags.payload)
      const input: EnqueueInput = {
        queue: flags.queue,
        payload,
        ...(Option.isSome(flags.priority) ? { priority: flags.priority.value } : {}),
        ...(Option.isSome(flags.delay) ? { delayMs: flags.delay.value } : {}),
        ...(Option.isSome(flags.requestId) ? { requestId: flags.requestId.value } : {}),
        ...(Option.isSome(flags.key) ? { key: flags.key.value } : {})
      }
      const result = yield* withQueue(flags, (q) => q.enqueue(input))
      yield* printJson(result)
    })
).pipe(Command.withDescription("add a job; prints {jobId, duplicate}"))

const stats = Command.make("stats", shared, (flags) =>
  withQueue(flags, (q) => q.stats(flags.queue)).pipe(Effect.flatMap(printJson))
).pipe(Command.withDescription("print ready, delayed, inflight and dead counts as JSON"))

const peek = Command.make(
  "peek",
  {
    ...shared,
    state: Flag.Literals("state", ["ready", "delayed", "inflight", "dead"]).pipe(
      Flag.withDescription("which jobs"),
      Flag.withDefault("ready" as const)
    ),
    limit: Flag.Int("limit").pipe(Flag.withDescription("at most this many"), Flag.withDefault(20))
  },
  (flags) =>
    withQueue(flags, (q) => q.peek(flags.queue, { state: flags.state, limit: flags.limit })).pipe(
      Effect.flatMap((entries) => Effect.forEach(entries, printJson, { discard: true }))
    )
).pipe(Command.withDescription("print jobs in one state, one JSON line each"))

const recover = Command.make("recover", shared, (flags) =>
  withQueue(flags, (q) => q.recover(flags.queue)).pipe(Effect.flatMap((n) => printJson({ recovered: n })))
).pipe(Command.withDescription("return expired leases to the queue now"))

export const pgQueueCommand = Command.make("pg-queue").pipe(
  Command.withDescription("the PostgreSQL job queue (@runlane/queue-postgres)"),
  Command.withSubcommands([enqueue, stats, peek, recover])
)
