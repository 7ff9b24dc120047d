import { constants } from "node:os"
import {
  EventLog,
  type ExecPayload,
  type Executor,
  execHandler,
  type JobEvent,
  type JobHandler,
  JobQueue,
  type JobRecord,
  JobStore,
  MemoryEventLog,
  MemoryJobStore,
  MemoryLimiter,
  Runner
} from "@runlane/core"
import { MemoryQueue } from "@runlane/queue-memory"
import { Effect, Fiber, Layer, Stream } from "effect"
import { UsageError } from "./ExitCode.ts"
import { chooseExecutor } from "./executors.ts"
import type { RunOptions } from "./RunOptions.ts"
import { repositoryJobWrapper } from "./repositoryJob.ts"
import { readSecrets } from "./secrets.ts"

/** The process exit code `runlane run` ends with for a finished job. */
export const exitCodeOf = (record: JobRecord, events: ReadonlyArray<JobEvent>): number => {
  if (record.status === "succeeded") return 0
  if (typeof record.exitCode === "number" && record.exitCode !== 0) return record.exitCode
  if (record.status === "timed_out") return 124
  const exited = events.findLast((e) => e._tag === "process-exited")
  if (exited?._tag === "process-exited" && exited.signal !== null) {
    const signo = constants.signals[exited.signal as keyof typeof constants.signals]
    if (signo !== undefined) return 128 + signo
  }
  if (events.some((e) => e._tag === "process-error")) return 127
  return 1
}

const formatSummary = (record: JobRecord, code: number): string => {
  const seconds =
    record.startedAt !== undefined && record.finishedAt !== undefined
      ? ((record.finishedAt - record.startedAt) / 1000).toFixed(2)
      : "0.00"
  const error = record.status === "succeeded" || record.error === undefined ? "" : ` (${record.error})`
  return `runlane: job ${record.id} ${record.status}, exit code ${code}, ${seconds}s, attempt ${record.attempts}${error}\n`
}

/** Wraps the handler for job kinds beyond a plain command (repository jobs, agents, ...). */
export type HandlerWrapper = (options: RunOptions, handler: JobHandler<Executor>) => JobHandler<Executor> | undefined

export const handlerWrappers: Array<HandlerWrapper> = [repositoryJobWrapper]

/**
 * Runs one command as a job through the Runner with the in-process queue and the chosen
 * executor, printing its masked output live (or its events as NDJSON) and a summary line.
 * Resolves to the exit code the CLI ends with.
 */
export const runLocally = (options: RunOptions): Effect.Effect<number, unknown> =>
  Effect.gen(function* () {
    const choice = chooseExecutor(options)
    const command = choice.command ?? options.command
    if (command.length === 0) throw new UsageError("missing command: runlane run [flags] -- <command> [args...]")
    const secrets = readSecrets(options.secretNames)
    const payload: { -readonly [K in keyof ExecPayload]: ExecPayload[K] } = {
      argv: command as [string, ...Array<string>],
      env: { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", ...options.env },
      cwd: process.cwd()
    }
    if (options.tty) payload.tty = true
    if (options.secretNames.length > 0) payload.secretNames = options.secretNames
    const base = execHandler({
      secrets,
      prepare: (spec) => (choice.refine === undefined ? spec : choice.refine(spec))
    })
    let handler: JobHandler<Executor> = base
    for (const wrap of handlerWrappers) handler = wrap(options, handler) ?? handler

    const layer = Layer.mergeAll(
      MemoryQueue.layer(),
      MemoryJobStore.layer(),
      MemoryEventLog.layer(),
      MemoryLimiter.layer(),
      choice.layer
    )
    return yield* Effect.gen(function* () {
      const queue = yield* JobQueue
      const store = yield* JobStore
      const eventLog = yield* EventLog
      const enqueue: Parameters<typeof queue.enqueue>[0] = {
        queue: "local",
        payload,
        maxAttempts: options.retries + 1,
        ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs })
      }
      const { jobId } = yield* queue.enqueue(enqueue)
      const printer = yield* eventLog.follow(jobId).pipe(
        Stream.runForEach((event) =>
          Effect.sync(() => {
            if (options.json) process.stdout.write(`${JSON.stringify(event)}\n`)
            else if (event._tag === "output")
              (event.stream === "stdout" ? process.stdout : process.stderr).write(event.data)
          })
        ),
        Effect.forkChild
      )
      yield* Runner.run(
        {
          queue: "local",
          concurrency: 1,
          pollWaitMs: 100,
          stopWhenIdle: true,
          shutdownGraceMs: 2000,
          backoff: { baseMs: 500 }
        },
        (ctx) => handler(ctx)
      )
      yield* Fiber.join(printer)
      const record = yield* store.get(jobId)
      const events = yield* eventLog.read(jobId)
      const code = exitCodeOf(record, events)
      if (!options.json) process.stderr.write(formatSummary(record, code))
      return code
    }).pipe(Effect.provide(layer))
  })
