import { accessSync, constants } from "node:fs"
import { delimiter, join } from "node:path"
import { create } from "@bufbuild/protobuf"
import { durationFromMs, timestampFromMs, timestampNow } from "@bufbuild/protobuf/wkt"
import { Code, ConnectError } from "@connectrpc/connect"
import {
  EventLog,
  type ExecPayload,
  JobNotFound,
  JobQueue,
  type JobRecord,
  JobStore,
  type Lease,
  LeaseLost,
  QueueError
} from "@runlane/core"
import { Effect, Layer } from "effect"
import type { AirunnerClients } from "./AirunnerClient.ts"
import type { LogFn } from "./AirunnerServer.ts"
import {
  EventType,
  type Job,
  type JobEvent,
  JobEventSchema,
  ProcessType,
  type PublishJobEventsRequest
} from "./gen/job/v1/job_pb.ts"

export interface WorkerBridgeOptions {
  readonly clients: AirunnerClients
  /** airunner queue to poll. */
  readonly queue: string
  /** Lease asked at dequeue and at every UpdateJob (seconds). */
  readonly visibilityTimeoutSeconds: number
  /** Bounds each call and the PublishJobEvents stream (default 5 min). */
  readonly clientTimeoutMs?: number
  /** Deadline of one DequeueJob long poll (default 90 s). */
  readonly dequeueTimeoutMs?: number
  /** Output flush period (default 3 s) and size (default 1 KiB). */
  readonly flushMs?: number
  readonly flushBytes?: number
  /** Waits (defaults as the original: 5 s after errors, 1 s after a job, backoff 1 s ×1.5 up to 10 s). */
  readonly errorWaitMs?: number
  readonly afterJobWaitMs?: number
  readonly backoffMaxMs?: number
  readonly debug?: boolean
  readonly log?: LogFn
}

/** An async iterable fed by `push`, ended by `end` (the PublishJobEvents request stream). */
class Feed<T> implements AsyncIterable<T> {
  private readonly items: Array<T> = []
  private waiting: ((result: IteratorResult<T>) => void) | undefined
  private done = false
  push(item: T): void {
    if (this.done) return
    const wake = this.waiting
    if (wake !== undefined) {
      this.waiting = undefined
      wake({ value: item, done: false })
    } else this.items.push(item)
  }
  end(): void {
    this.done = true
    const wake = this.waiting
    this.waiting = undefined
    wake?.({ value: undefined, done: true })
  }
  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const item = this.items.shift()
        if (item !== undefined) return Promise.resolve({ value: item, done: false })
        if (this.done) return Promise.resolve({ value: undefined, done: true })
        return new Promise((resolve) => {
          this.waiting = resolve
        })
      },
      return: () => {
        this.end()
        return Promise.resolve({ value: undefined, done: true })
      },
      throw: (error: unknown) => {
        this.end()
        return Promise.reject(error)
      }
    }
  }
}

interface Running {
  readonly job: Job
  readonly taskToken: string
  readonly command: string
  readonly feed: Feed<PublishJobEventsRequest>
  readonly published: Promise<void>
  sequence: bigint
  pid: number
  output: Array<Uint8Array>
  outputBytes: number
  timer: ReturnType<typeof setTimeout> | undefined
  exitCode: number | undefined
  error: string | undefined
  closed: boolean
}

const int32 = (n: number): number => Math.max(-2147483648, Math.min(2147483647, Math.trunc(n)))

/** Looks `command` up on the worker's own PATH (the child's environment may have none). */
export const resolveCommand = (command: string, path: string | undefined = process.env.PATH): string => {
  if (command.includes("/")) return command
  for (const dir of (path ?? "").split(delimiter)) {
    if (dir === "") continue
    const candidate = join(dir, command)
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  return command
}

/** The OS error as Go's os/exec words it, for a command that could not start. */
export const goStartError = (command: string, message: string): string => {
  if (!command.includes("/") && resolveCommand(command) === command)
    return `exec: "${command}": executable file not found in $PATH`
  if (/ENOENT/.test(message)) return `fork/exec ${resolveCommand(command)}: no such file or directory`
  if (/EACCES/.test(message)) return `fork/exec ${resolveCommand(command)}: permission denied`
  return message
}

/** The `ExecPayload` a dequeued airunner job runs as (PTY unless PIPE; environment exact when given). */
export const execPayloadOf = (job: Job): ExecPayload => {
  const params = job.jobParams
  const command = params?.command ?? ""
  const environment = params?.environment ?? {}
  const env: Record<string, string> = {}
  if (Object.keys(environment).length > 0) Object.assign(env, environment)
  else for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v
  return {
    argv: [resolveCommand(command), ...(params?.args ?? [])],
    env,
    tty: params?.processType !== ProcessType.PIPE
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * The worker side of airunner as runlane ports, so `Runner.run` drives it: `take` is a
 * DequeueJob long poll, `extend` an UpdateJob, `ack`/`nack` a CompleteJob with the real
 * outcome; the `EventLog` turns the executor's events into airunner events (sequence from 1)
 * on one PublishJobEvents stream per job; the `JobStore` only captures each job's exit code
 * and error for CompleteJob.
 */
export const makeWorkerBridge = (options: WorkerBridgeOptions) => {
  const { clients } = options
  const log: LogFn = options.log ?? (() => undefined)
  const clientTimeoutMs = options.clientTimeoutMs ?? 5 * 60_000
  const dequeueTimeoutMs = options.dequeueTimeoutMs ?? 90_000
  const flushMs = options.flushMs ?? 3000
  const flushBytes = options.flushBytes ?? 1024
  const errorWaitMs = options.errorWaitMs ?? 5000
  const afterJobWaitMs = options.afterJobWaitMs ?? 1000
  const backoffMaxMs = options.backoffMaxMs ?? 10_000
  const byToken = new Map<string, Running>()
  const byJob = new Map<string, Running>()
  let backoff = 1000
  let ranJob = false

  const publish = (running: Running, event: Omit<JobEvent, "$typeName" | "sequence" | "timestamp">) => {
    running.sequence += 1n
    running.feed.push({
      $typeName: "job.v1.PublishJobEventsRequest",
      taskToken: running.taskToken,
      events: [create(JobEventSchema, { ...event, sequence: running.sequence, timestamp: timestampNow() })]
    })
  }

  const flush = (running: Running) => {
    if (running.timer !== undefined) clearTimeout(running.timer)
    running.timer = undefined
    if (running.outputBytes === 0) return
    const output = Buffer.concat(running.output)
    running.output = []
    running.outputBytes = 0
    publish(running, {
      eventType: EventType.OUTPUT,
      eventData: { case: "output", value: { $typeName: "job.v1.OutputEvent", output } }
    })
  }

  const closeEvents = async (running: Running) => {
    if (running.closed) return
    running.closed = true
    flush(running)
    running.feed.end()
    await running.published
  }

  const dequeue = async (signal: AbortSignal): Promise<ReadonlyArray<Lease>> => {
    if (ranJob) {
      ranJob = false
      backoff = 1000
      await sleep(afterJobWaitMs)
    }
    if (options.debug === true) log("debug", "Looking for jobs...")
    const found: Array<{ job: Job; taskToken: string }> = []
    try {
      for await (const message of clients.jobs.dequeueJob(
        { queue: options.queue, maxJobs: 1, visibilityTimeoutSeconds: options.visibilityTimeoutSeconds },
        { timeoutMs: dequeueTimeoutMs, signal }
      )) {
        if (message.job !== undefined) found.push({ job: message.job, taskToken: message.taskToken })
      }
    } catch (error) {
      if (signal.aborted) return []
      if (error instanceof ConnectError && error.code === Code.DeadlineExceeded) return []
      log("error", "Error processing job", { error: `stream error: ${String(error)}` })
      await sleep(errorWaitMs)
      return []
    }
    if (found.length === 0) {
      const wait = backoff * (0.5 + Math.random())
      backoff = Math.min(backoffMaxMs, backoff * 1.5)
      await sleep(wait)
      return []
    }
    const leases: Array<Lease> = []
    for (const { job, taskToken } of found) {
      log("info", "Job dequeued", { job_id: job.jobId, repository: job.jobParams?.repository ?? "" })
      const command = job.jobParams?.command ?? ""
      if (command === "") {
        log("error", "No command specified for job", { job_id: job.jobId })
        await sleep(errorWaitMs)
        continue
      }
      const feed = new Feed<PublishJobEventsRequest>()
      const published = clients.events.publishJobEvents(feed, { timeoutMs: clientTimeoutMs }).then(
        () => undefined,
        (error) => log("error", "Failed to close event stream", { job_id: job.jobId, error: String(error) })
      )
      const running: Running = {
        job,
        taskToken,
        command,
        feed,
        published,
        sequence: 0n,
        pid: 0,
        output: [],
        outputBytes: 0,
        timer: undefined,
        exitCode: undefined,
        error: undefined,
        closed: false
      }
      byToken.set(taskToken, running)
      byJob.set(job.jobId, running)
      leases.push({
        job: {
          id: job.jobId,
          queue: options.queue === "" ? "(empty)" : options.queue,
          payload: execPayloadOf(job),
          priority: 0,
          maxAttempts: 1,
          labels: {},
          enqueuedAt: job.createdAt === undefined ? Date.now() : Number(job.createdAt.seconds) * 1000
        },
        token: taskToken,
        attempt: 1,
        expiresAt: Date.now() + options.visibilityTimeoutSeconds * 1000
      })
    }
    return leases
  }

  const complete = async (running: Running, success: boolean, exitCode: number, errorMessage: string) => {
    await closeEvents(running)
    byToken.delete(running.taskToken)
    byJob.delete(running.job.jobId)
    ranJob = true
    if (errorMessage !== "") log("error", "Job execution failed", { job_id: running.job.jobId, error: errorMessage })
    else log("info", "Job executed successfully", { job_id: running.job.jobId, exit_code: exitCode })
    try {
      await clients.jobs.completeJob(
        {
          taskToken: running.taskToken,
          jobResult: {
            jobId: running.job.jobId,
            success,
            exitCode: int32(exitCode),
            errorMessage,
            ...(running.job.updatedAt === undefined ? {} : { startedAt: running.job.updatedAt }),
            completedAt: timestampNow()
          }
        },
        { timeoutMs: clientTimeoutMs }
      )
      log("info", "Job completed", { job_id: running.job.jobId, success })
    } catch (error) {
      log("error", "Error processing job", {
        job_id: running.job.jobId,
        error: `failed to complete job: ${String(error)}`
      })
      await sleep(errorWaitMs)
    }
  }

  const runningOf = (token: string): Effect.Effect<Running, LeaseLost> => {
    const running = byToken.get(token)
    return running === undefined
      ? Effect.fail(new LeaseLost({ message: "unknown task token" }))
      : Effect.succeed(running)
  }

  const queue = JobQueue.of({
    enqueue: () => Effect.fail(new QueueError({ message: "the airunner worker does not enqueue" })),
    enqueueMany: () => Effect.fail(new QueueError({ message: "the airunner worker does not enqueue" })),
    take: () => Effect.promise((signal) => dequeue(signal)),
    ack: (token) =>
      runningOf(token).pipe(
        Effect.flatMap((running) =>
          Effect.promise(() => {
            const code = running.exitCode ?? 0
            return complete(running, code === 0, code, "")
          })
        )
      ),
    nack: (token, decision) =>
      runningOf(token).pipe(
        Effect.flatMap((running) => {
          if (decision._tag === "release") {
            // Interrupted (shutdown): leave the job leased; it comes back after its lease.
            return Effect.promise(async () => {
              await closeEvents(running)
              byToken.delete(token)
              byJob.delete(running.job.jobId)
            })
          }
          const reason = decision._tag === "dead" ? decision.reason : (decision.error ?? "failed")
          return Effect.promise(() =>
            running.exitCode !== undefined
              ? complete(running, running.exitCode === 0, running.exitCode, "")
              : complete(running, false, 1, `job execution failed: ${running.error ?? reason}`)
          )
        })
      ),
    extend: (token, visibilityMs) =>
      runningOf(token).pipe(
        Effect.flatMap((running) =>
          Effect.tryPromise({
            try: () =>
              clients.jobs.updateJob(
                {
                  queue: options.queue,
                  taskToken: running.taskToken,
                  visibilityTimeoutSeconds: options.visibilityTimeoutSeconds
                },
                { timeoutMs: clientTimeoutMs }
              ),
            catch: (error) => {
              log("error", "Failed to extend visibility timeout", { error: String(error) })
              return new QueueError({ message: `failed to update job: ${String(error)}` })
            }
          })
        ),
        Effect.tap(() => Effect.sync(() => log("debug", "Extended visibility timeout"))),
        Effect.as(Date.now() + visibilityMs)
      ),
    recover: () => Effect.succeed(0),
    stats: (q) => Effect.succeed({ queue: q, ready: 0, delayed: 0, inflight: byToken.size, dead: 0 }),
    peek: () => Effect.succeed([])
  })

  const eventLog = EventLog.of({
    append: (jobId, events) =>
      Effect.sync(() => {
        const running = byJob.get(jobId)
        if (running === undefined) return []
        for (const event of events) {
          switch (event._tag) {
            case "process-started":
              running.pid = int32(event.pid ?? 0)
              publish(running, {
                eventType: EventType.PROCESS_START,
                eventData: {
                  case: "processStart",
                  value: {
                    $typeName: "job.v1.ProcessStartEvent",
                    pid: running.pid,
                    startedAt: timestampFromMs(event.at ?? Date.now())
                  }
                }
              })
              break
            case "output": {
              const bytes = Buffer.from(event.data, "utf8")
              running.output.push(bytes)
              running.outputBytes += bytes.length
              if (running.outputBytes >= flushBytes) flush(running)
              else if (running.timer === undefined) running.timer = setTimeout(() => flush(running), flushMs)
              break
            }
            case "process-exited":
              flush(running)
              running.exitCode = event.code ?? -1
              publish(running, {
                eventType: EventType.PROCESS_END,
                eventData: {
                  case: "processEnd",
                  value: {
                    $typeName: "job.v1.ProcessEndEvent",
                    pid: running.pid,
                    exitCode: int32(running.exitCode),
                    runDuration: durationFromMs(Math.round(event.durationMs))
                  }
                }
              })
              break
            case "process-error":
              flush(running)
              running.error = `failed to start process ${running.command}: ${goStartError(running.command, event.message)}`
              publish(running, {
                eventType: EventType.PROCESS_ERROR,
                eventData: {
                  case: "processError",
                  value: { $typeName: "job.v1.ProcessErrorEvent", errorMessage: running.error }
                }
              })
              break
            default:
              break
          }
        }
        return []
      }),
    read: () => Effect.succeed([]),
    follow: () => {
      throw new Error("the airunner worker does not follow events")
    }
  })

  const store = JobStore.of({
    create: () => Effect.void,
    update: (jobId, patch) =>
      Effect.suspend(() => {
        const running = byJob.get(jobId)
        if (
          running !== undefined &&
          patch.error !== undefined &&
          running.error === undefined &&
          running.exitCode === undefined
        )
          running.error = patch.error
        const now = Date.now()
        const record: JobRecord = {
          id: jobId,
          queue: options.queue,
          status: patch.status ?? "running",
          attempts: 1,
          maxAttempts: 1,
          labels: {},
          createdAt: now,
          updatedAt: now
        }
        return running === undefined ? Effect.fail(new JobNotFound({ jobId })) : Effect.succeed(record)
      }),
    get: (jobId) => Effect.fail(new JobNotFound({ jobId })),
    list: () => Effect.succeed({ items: [], nextCursor: null })
  })

  return {
    queue,
    eventLog,
    store,
    layer: Layer.mergeAll(
      Layer.succeed(JobQueue, queue),
      Layer.succeed(EventLog, eventLog),
      Layer.succeed(JobStore, store)
    )
  }
}
