import { readFileSync } from "node:fs"
import {
  type EnqueueInput,
  EventLog,
  type ExecPayload,
  execHandler,
  type JobEvent,
  JobQueue,
  type JobRecord,
  JobStatus,
  JobStore,
  type Limiter,
  MemoryEventLog,
  MemoryJobStore,
  MemoryLimiter,
  Runner
} from "@runlane/core"
import { ProcessExecutor } from "@runlane/exec-process"
import { MemoryQueue } from "@runlane/queue-memory"
import {
  DEFAULT_REDIS_URL,
  RedisEventLog,
  RedisJobStore,
  RedisLimiter,
  RedisListQueue,
  RedisStreamQueue
} from "@runlane/queue-redis"
import { Config, Effect, Layer, Option, Redacted, Result, Schema, Stream } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { UsageError } from "../ExitCode.ts"

/**
 * `runlane worker|enqueue|stats|peek|recover|logs|status`: queues on Redis (Streams or reliable
 * lists) or in memory, with the job store and event log on Redis. The Redis URL comes from
 * `--redis-url` or `REDIS_URL` (default redis://127.0.0.1:6379) and is never printed.
 */
const BACKENDS = ["redis-streams", "redis-list", "memory"] as const
type Backend = (typeof BACKENDS)[number]

const redisUrl = Flag.Redacted("redis-url").pipe(
  Flag.withDescription("Redis URL (default: $REDIS_URL or redis://127.0.0.1:6379)"),
  Flag.withFallbackConfig(Config.Redacted("REDIS_URL").pipe(Config.withDefault(Redacted.make(DEFAULT_REDIS_URL))))
)
const prefix = Flag.String("prefix").pipe(
  Flag.withDescription("prefix of every Redis key"),
  Flag.withDefault("runlane:")
)
const queueFlags = {
  queue: Flag.String("queue").pipe(Flag.withDescription("queue name")),
  backend: Flag.Literals("backend", BACKENDS).pipe(
    Flag.withDescription("redis-streams (default), redis-list or memory"),
    Flag.withDefault("redis-streams" as Backend)
  ),
  redisUrl,
  prefix
}

interface Connection {
  readonly redisUrl: Redacted.Redacted<string>
  readonly prefix: string
}

const connection = (flags: Connection) => ({ url: Redacted.value(flags.redisUrl), prefix: flags.prefix })

const queueLayer = (backend: Backend, flags: Connection): Layer.Layer<JobQueue> =>
  backend === "redis-list"
    ? RedisListQueue.layer(connection(flags))
    : backend === "memory"
      ? MemoryQueue.layer()
      : RedisStreamQueue.layer(connection(flags))

/** Store, event log and limiter: on Redis, or in this process for the memory backend. */
const recordLayers = (backend: Backend, flags: Connection): Layer.Layer<JobStore | EventLog | Limiter> =>
  backend === "memory"
    ? Layer.mergeAll(MemoryJobStore.layer(), MemoryEventLog.layer(), MemoryLimiter.layer())
    : Layer.mergeAll(
        RedisJobStore.layer(connection(flags)),
        RedisEventLog.layer(connection(flags)),
        RedisLimiter.layer(connection(flags))
      )

const sharedQueueOnly = (backend: Backend) =>
  backend === "memory"
    ? Effect.fail(new UsageError("the memory backend lives inside one process: use it with `runlane worker` or `run`"))
    : Effect.void

const printJson = (value: unknown) => Effect.sync(() => process.stdout.write(`${JSON.stringify(value)}\n`))

/** One line of a `--from-file` NDJSON file. */
const JobLine = Schema.Struct({
  argv: Schema.Array(Schema.String).check(Schema.isMinLength(1)),
  env: Schema.optionalKey(Schema.Record(Schema.String, Schema.String)),
  key: Schema.optionalKey(Schema.String),
  requestId: Schema.optionalKey(Schema.String)
})
const decodeJobLine = Schema.decodeResult(JobLine)

/** Parses every line first: one bad line fails the whole file, naming its line number. */
export const parseJobsFile = (
  text: string,
  file: string,
  queue: string
): Result.Result<Array<EnqueueInput>, string> => {
  const inputs: Array<EnqueueInput> = []
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim()
    if (line === "") continue
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch {
      return Result.fail(`${file}:${i + 1}: not JSON`)
    }
    const decoded = decodeJobLine(value as typeof JobLine.Encoded)
    if (Result.isFailure(decoded)) return Result.fail(`${file}:${i + 1}: ${decoded.failure.message}`)
    const job = decoded.success
    const payload: ExecPayload = job.env === undefined ? { argv: job.argv } : { argv: job.argv, env: job.env }
    inputs.push({
      queue,
      payload,
      ...(job.key === undefined ? {} : { key: job.key }),
      ...(job.requestId === undefined ? {} : { requestId: job.requestId })
    })
  }
  if (inputs.length === 0) return Result.fail(`${file}: no jobs`)
  return Result.succeed(inputs)
}

const workerCommand = Command.make(
  "worker",
  {
    ...queueFlags,
    concurrency: Flag.Int("concurrency").pipe(Flag.withDescription("jobs run at once"), Flag.withDefault(10)),
    maxPerKey: Flag.Int("max-per-key").pipe(
      Flag.withDescription("jobs with the same --key running at once across all workers"),
      Flag.optional
    ),
    visibility: Flag.Int("visibility-ms").pipe(
      Flag.withDescription("lease duration, extended while a job runs"),
      Flag.withDefault(30_000)
    )
  },
  (flags) =>
    Runner.run(
      {
        queue: flags.queue,
        concurrency: flags.concurrency,
        visibilityMs: flags.visibility,
        ...(Option.isSome(flags.maxPerKey) ? { maxPerKey: flags.maxPerKey.value } : {})
      },
      execHandler()
    ).pipe(
      Effect.provide(
        Layer.mergeAll(queueLayer(flags.backend, flags), recordLayers(flags.backend, flags), ProcessExecutor.layer())
      )
    )
).pipe(Command.withDescription("run jobs from a queue (command jobs: argv, env) until interrupted"))

const enqueueCommand = Command.make(
  "enqueue",
  {
    ...queueFlags,
    key: Flag.String("key").pipe(Flag.withDescription("partition key (per-key limits)"), Flag.optional),
    requestId: Flag.String("request-id").pipe(Flag.withDescription("idempotency key"), Flag.optional),
    fromFile: Flag.String("from-file").pipe(
      Flag.withDescription("NDJSON file, one job a line: {argv, env?, key?, requestId?}"),
      Flag.optional
    ),
    command: Argument.String("command").pipe(Argument.withDescription("-- <command> [args...]"), Argument.variadic())
  },
  (flags) =>
    Effect.gen(function* () {
      yield* sharedQueueOnly(flags.backend)
      let inputs: Array<EnqueueInput>
      if (Option.isSome(flags.fromFile)) {
        if (flags.command.length > 0)
          return yield* Effect.fail(new UsageError("give either --from-file or -- <command>, not both"))
        const file = flags.fromFile.value
        const text = yield* Effect.try({
          try: () => readFileSync(file, "utf8"),
          catch: () => new UsageError(`cannot read ${file}`)
        })
        const parsed = parseJobsFile(text, file, flags.queue)
        if (Result.isFailure(parsed))
          return yield* Effect.fail(new UsageError(`${parsed.failure} (nothing was enqueued)`))
        inputs = parsed.success
      } else {
        if (flags.command.length === 0)
          return yield* Effect.fail(new UsageError("nothing to enqueue: give -- <command> or --from-file"))
        inputs = [
          {
            queue: flags.queue,
            payload: { argv: flags.command } satisfies ExecPayload,
            ...(Option.isSome(flags.key) ? { key: flags.key.value } : {}),
            ...(Option.isSome(flags.requestId) ? { requestId: flags.requestId.value } : {})
          }
        ]
      }
      const queue = yield* JobQueue
      const store = yield* JobStore
      const events = yield* EventLog
      const results = yield* queue.enqueueMany(inputs)
      const now = Date.now()
      for (let i = 0; i < results.length; i++) {
        const result = results[i]!
        if (!result.duplicate) {
          const input = inputs[i]!
          const record: JobRecord = {
            id: result.jobId,
            queue: flags.queue,
            status: "queued",
            attempts: 0,
            maxAttempts: input.maxAttempts ?? 3,
            labels: {},
            createdAt: now,
            updatedAt: now,
            ...(input.key === undefined ? {} : { key: input.key })
          }
          yield* store.create(record)
          yield* events.append(result.jobId, [{ _tag: "enqueued", queue: flags.queue }])
        }
        yield* printJson(result)
      }
    }).pipe(Effect.provide(Layer.mergeAll(queueLayer(flags.backend, flags), recordLayers(flags.backend, flags))))
).pipe(Command.withDescription("add a command job (or every job of an NDJSON file); prints {jobId, duplicate}"))

const statsCommand = Command.make(
  "stats",
  { ...queueFlags, json: Flag.Boolean("json").pipe(Flag.withDescription("print JSON"), Flag.withDefault(false)) },
  (flags) =>
    Effect.gen(function* () {
      yield* sharedQueueOnly(flags.backend)
      const queue = yield* JobQueue
      const stats = yield* queue.stats(flags.queue)
      const statuses = yield* RedisJobStore.countByStatus(connection(flags), flags.queue)
      // Job counts per status (from the store), then the queue's own counts; `deadLetters` is
      // the queue's dead-letter set, which also holds malformed entries that never had a record.
      const all = {
        queue: flags.queue,
        ...statuses,
        ready: stats.ready,
        delayed: stats.delayed,
        inflight: stats.inflight,
        deadLetters: stats.dead
      }
      if (flags.json) return yield* printJson(all)
      yield* Effect.sync(() =>
        process.stdout.write(
          `queue ${flags.queue}: ready ${stats.ready}, delayed ${stats.delayed}, inflight ${stats.inflight}, dead ${stats.dead}\n` +
            `jobs: ${JobStatus.literals.map((s) => `${s} ${statuses[s]}`).join(", ")}\n`
        )
      )
    }).pipe(Effect.provide(queueLayer(flags.backend, flags)))
).pipe(Command.withDescription("queue counts and job counts per status (--json: one JSON object)"))

const peekCommand = Command.make(
  "peek",
  {
    ...queueFlags,
    state: Flag.Literals("state", ["ready", "delayed", "inflight", "dead"]).pipe(
      Flag.withDescription("which jobs"),
      Flag.withDefault("ready" as const)
    ),
    limit: Flag.Int("limit").pipe(Flag.withDescription("at most this many"), Flag.withDefault(20))
  },
  (flags) =>
    Effect.gen(function* () {
      yield* sharedQueueOnly(flags.backend)
      const queue = yield* JobQueue
      const entries = yield* queue.peek(flags.queue, { state: flags.state, limit: flags.limit })
      yield* Effect.forEach(entries, printJson, { discard: true })
    }).pipe(Effect.provide(queueLayer(flags.backend, flags)))
).pipe(Command.withDescription("print jobs in one state, one JSON line each"))

const recoverCommand = Command.make("recover", queueFlags, (flags) =>
  Effect.gen(function* () {
    yield* sharedQueueOnly(flags.backend)
    const queue = yield* JobQueue
    yield* printJson({ recovered: yield* queue.recover(flags.queue) })
  }).pipe(Effect.provide(queueLayer(flags.backend, flags)))
).pipe(Command.withDescription("return expired leases (and a gone runner's jobs) to the queue now"))

const printEvent = (event: JobEvent, json: boolean) =>
  Effect.sync(() => {
    if (json) process.stdout.write(`${JSON.stringify(event)}\n`)
    else if (event._tag === "output") (event.stream === "stderr" ? process.stderr : process.stdout).write(event.data)
    else {
      const { _tag, jobId: _jobId, seq, at: _at, ...rest } = event
      process.stderr.write(`# ${seq} ${_tag} ${JSON.stringify(rest)}\n`)
    }
  })

const logsCommand = Command.make(
  "logs",
  {
    redisUrl,
    prefix,
    follow: Flag.Boolean("follow").pipe(
      Flag.withDescription("keep printing until the job finishes"),
      Flag.withDefault(false)
    ),
    fromSeq: Flag.Int("from-seq").pipe(Flag.withDescription("start at this event number"), Flag.withDefault(1)),
    json: Flag.Boolean("json").pipe(Flag.withDescription("every event as one JSON line"), Flag.withDefault(false)),
    jobId: Argument.String("job-id")
  },
  (flags) =>
    Effect.gen(function* () {
      const log = yield* EventLog
      if (flags.follow)
        yield* Stream.runForEach(log.follow(flags.jobId, { fromSeq: flags.fromSeq }), (e) => printEvent(e, flags.json))
      else
        yield* Effect.forEach(
          yield* log.read(flags.jobId, { fromSeq: flags.fromSeq }),
          (e) => printEvent(e, flags.json),
          {
            discard: true
          }
        )
    }).pipe(Effect.provide(RedisEventLog.layer(connection(flags))))
).pipe(Command.withDescription("print a job's output and events (stored on Redis)"))

const statusCommand = Command.make("status", { redisUrl, prefix, jobId: Argument.String("job-id") }, (flags) =>
  Effect.gen(function* () {
    const store = yield* JobStore
    const record = yield* store
      .get(flags.jobId)
      .pipe(Effect.catchTag("JobNotFound", () => Effect.fail(new UsageError(`no job ${flags.jobId}`))))
    yield* printJson(record)
  }).pipe(Effect.provide(RedisJobStore.layer(connection(flags))))
).pipe(Command.withDescription("print a job's record (status, attempts, exit code) as JSON"))

/** The Redis-backed queue commands, each a top-level `runlane` subcommand. */
export const redisQueueCommands = [
  workerCommand,
  enqueueCommand,
  statsCommand,
  peekCommand,
  recoverCommand,
  logsCommand,
  statusCommand
] as const
