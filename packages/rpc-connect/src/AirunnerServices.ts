import { randomUUID } from "node:crypto"
import { create, fromBinary, toBinary } from "@bufbuild/protobuf"
import { type Timestamp, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt"
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect"
import { EventLog, JobQueue, LeaseLost, type JobEvent as LogEvent } from "@runlane/core"
import { Effect, Stream } from "effect"
import {
  type CompleteJobRequest,
  type DequeueJobRequest,
  type DequeueJobResponse,
  type EnqueueJobRequest,
  type JobEvent,
  JobEventSchema,
  type JobEventsService,
  type JobParams,
  JobSchema,
  type JobService,
  JobState,
  type ListJobsRequest,
  type PublishJobEventsRequest,
  type StreamJobEventsRequest,
  type StreamJobEventsResponse,
  type UpdateJobRequest
} from "./gen/job/v1/job_pb.ts"

/** The `note` kind under which airunner events are kept in a runlane `EventLog`. */
export const EVENT_NOTE_KIND = "airunner.job.v1.JobEvent"

/** One job as the server knows it (the original's store keeps every job forever). */
export interface IndexedJob {
  readonly jobId: string
  readonly queue: string
  readonly params: JobParams | undefined
  state: JobState
  readonly createdAt: number
  updatedAt: number
  /** The task token of the current lease, if any. */
  token: string | undefined
}

interface TaskToken {
  readonly jobId: string
  readonly queue: string
  readonly leaseToken: string
  expiresAt: number
}

export interface AirunnerServicesOptions {
  /** Prefix of the runlane queue that backs airunner queue `q` (default `airunner:`; `""` is a valid airunner queue). */
  readonly queuePrefix?: string
  /** Expiry sweep period (default 30 s, as the original). */
  readonly sweepMs?: number
  /** How long one `take` long-polls before the stream checks again (default 10 s). */
  readonly pollWaitMs?: number
}

export interface AirunnerServices {
  readonly jobService: ServiceImpl<typeof JobService>
  readonly jobEventsService: ServiceImpl<typeof JobEventsService>
  /** Requeues expired leases now (what the periodic sweep does). */
  readonly sweep: () => Promise<number>
  /** Stops the periodic sweep. */
  readonly close: () => void
  /** The job index (for tests and tools). */
  readonly jobs: ReadonlyMap<string, IndexedJob>
}

const int32 = (n: number): number => Math.max(-2147483648, Math.min(2147483647, Math.trunc(n)))

const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument)

const ts = (ms: number): Timestamp => timestampFromMs(ms)

/**
 * airunner's `JobService` and `JobEventsService` over any runlane `JobQueue` + `EventLog`.
 * The queue gives FIFO order, long-polled takes, leases and requeue on expiry; the event log
 * keeps each job's events (as `note` events holding the binary `JobEvent`, so sequence, type and
 * timestamp stay exactly as published) and follows them live. Job records (state, params,
 * timestamps), request ids and task tokens are indexed in this process, as in the original.
 */
export const makeAirunnerServices = (
  queue: JobQueue["Service"],
  eventLog: EventLog["Service"],
  options: AirunnerServicesOptions = {}
): AirunnerServices => {
  const prefix = options.queuePrefix ?? "airunner:"
  const pollWaitMs = options.pollWaitMs ?? 10_000
  const jobs = new Map<string, IndexedJob>()
  const requests = new Map<string, string>()
  const tokens = new Map<string, TaskToken>()
  const queuesSeen = new Set<string>()

  const run = <A, E>(effect: Effect.Effect<A, E>, signal?: AbortSignal): Promise<A> =>
    Effect.runPromise(
      effect.pipe(
        Effect.mapError((e) => (e instanceof LeaseLost ? e : new ConnectError(String(e), Code.Internal)))
      ) as Effect.Effect<A, never>,
      signal === undefined ? undefined : { signal }
    )

  const toJob = (entry: IndexedJob) =>
    create(JobSchema, {
      jobId: entry.jobId,
      ...(entry.params === undefined ? {} : { jobParams: entry.params }),
      state: entry.state,
      createdAt: ts(entry.createdAt),
      updatedAt: ts(entry.updatedAt)
    })

  const tokenOf = (taskToken: string): TaskToken => {
    const found = tokens.get(taskToken)
    if (found === undefined) throw invalid("invalid task token")
    return found
  }

  const dropToken = (taskToken: string) => {
    const found = tokens.get(taskToken)
    if (found === undefined) return
    tokens.delete(taskToken)
    const entry = jobs.get(found.jobId)
    if (entry !== undefined && entry.token === taskToken) entry.token = undefined
  }

  /**
   * The original's expiry sweep: every lease past its airunner deadline goes back to the end of
   * its queue as SCHEDULED (`updated_at` unchanged) and its token dies. Until then the token
   * still works, even after the deadline. The runlane lease is held `2 × sweepMs` longer than the
   * airunner one, so the queue's own expiry only acts if this process stops sweeping.
   */
  const sweep = async (): Promise<number> => {
    const now = Date.now()
    let expired = 0
    for (const [taskToken, found] of [...tokens]) {
      if (found.expiresAt > now) continue
      dropToken(taskToken)
      await run(Effect.ignore(queue.nack(found.leaseToken, { _tag: "release", delayMs: 0 })))
      const entry = jobs.get(found.jobId)
      if (entry !== undefined && entry.state === JobState.RUNNING && entry.token === undefined) {
        entry.state = JobState.SCHEDULED
        expired++
      }
    }
    for (const q of queuesSeen) await run(Effect.ignore(queue.recover(prefix + q)))
    return expired
  }
  const sweepMs = options.sweepMs ?? 30_000
  const leaseMarginMs = 2 * sweepMs
  const sweepTimer = setInterval(() => void sweep().catch(() => undefined), sweepMs)
  sweepTimer.unref()

  const jobService: ServiceImpl<typeof JobService> = {
    async enqueueJob(req: EnqueueJobRequest) {
      const earlierId = requests.get(req.requestId)
      const earlier = earlierId === undefined ? undefined : jobs.get(earlierId)
      if (earlier !== undefined) return { jobId: earlier.jobId, createdAt: ts(earlier.createdAt), state: earlier.state }
      const now = Date.now()
      const entry: IndexedJob = {
        jobId: randomUUID(),
        queue: req.queue,
        params: req.jobParams,
        state: JobState.SCHEDULED,
        createdAt: now,
        updatedAt: now,
        token: undefined
      }
      // Index first (synchronously), so a concurrent duplicate sees this job.
      jobs.set(entry.jobId, entry)
      requests.set(req.requestId, entry.jobId)
      queuesSeen.add(req.queue)
      try {
        await run(queue.enqueue({ queue: prefix + req.queue, id: entry.jobId, payload: null, maxAttempts: 1_000_000 }))
      } catch (error) {
        // The queue refused it: forget the job, so a retry with the same request id enqueues again.
        jobs.delete(entry.jobId)
        if (requests.get(req.requestId) === entry.jobId) requests.delete(req.requestId)
        throw error
      }
      return { jobId: entry.jobId, createdAt: ts(now), state: entry.state }
    },

    async *dequeueJob(req: DequeueJobRequest, context: HandlerContext): AsyncGenerator<DequeueJobResponse> {
      const max = req.maxJobs <= 0 ? 1 : req.maxJobs
      const visibilityMs = (req.visibilityTimeoutSeconds <= 0 ? 300 : req.visibilityTimeoutSeconds) * 1000
      queuesSeen.add(req.queue)
      for (;;) {
        if (context.signal.aborted) return
        const polled = Date.now()
        const leases = await run(
          queue.take({
            queue: prefix + req.queue,
            max,
            visibilityMs: visibilityMs + leaseMarginMs,
            waitMs: pollWaitMs
          }),
          context.signal
        ).catch((error) => {
          if (context.signal.aborted) return []
          throw error
        })
        if (leases.length === 0) {
          // A queue that does not long-poll must not spin: poll every 100 ms, as the original.
          if (Date.now() - polled < 100) await new Promise((resolve) => setTimeout(resolve, 100))
          continue
        }
        const now = Date.now()
        const out: Array<DequeueJobResponse> = []
        for (const lease of leases) {
          let entry = jobs.get(lease.job.id)
          if (entry === undefined) {
            // A job enqueued straight into the runlane queue: index it with no params.
            entry = {
              jobId: lease.job.id,
              queue: req.queue,
              params: undefined,
              state: JobState.SCHEDULED,
              createdAt: lease.job.enqueuedAt,
              updatedAt: lease.job.enqueuedAt,
              token: undefined
            }
            jobs.set(entry.jobId, entry)
          }
          if (entry.token !== undefined) tokens.delete(entry.token)
          const taskToken = randomUUID()
          tokens.set(taskToken, {
            jobId: entry.jobId,
            queue: entry.queue,
            leaseToken: lease.token,
            expiresAt: now + visibilityMs
          })
          entry.token = taskToken
          entry.state = JobState.RUNNING
          entry.updatedAt = now
          out.push({ $typeName: "job.v1.DequeueJobResponse", job: toJob(entry), taskToken })
        }
        for (const message of out) yield message
        return
      }
    },

    async updateJob(req: UpdateJobRequest) {
      const found = tokenOf(req.taskToken)
      if (found.queue !== req.queue) throw invalid(`job does not belong to queue ${req.queue}`)
      const visibilityMs = (req.visibilityTimeoutSeconds <= 0 ? 300 : req.visibilityTimeoutSeconds) * 1000
      try {
        await run(queue.extend(found.leaseToken, visibilityMs + leaseMarginMs))
        found.expiresAt = Date.now() + visibilityMs
      } catch (error) {
        if (error instanceof LeaseLost) {
          dropToken(req.taskToken)
          throw invalid("invalid task token")
        }
        throw error
      }
      const entry = jobs.get(found.jobId)
      if (entry !== undefined) entry.updatedAt = Date.now()
      return {}
    },

    async completeJob(req: CompleteJobRequest) {
      const found = tokenOf(req.taskToken)
      const result = req.jobResult
      if (result === undefined) throw invalid("job_result is required")
      if (result.jobId !== found.jobId) throw invalid("job ID mismatch")
      try {
        await run(
          result.success
            ? queue.ack(found.leaseToken)
            : queue.nack(found.leaseToken, {
                _tag: "dead",
                reason: result.errorMessage === "" ? `exit code ${result.exitCode}` : result.errorMessage
              })
        )
      } catch (error) {
        dropToken(req.taskToken)
        if (error instanceof LeaseLost) throw invalid("invalid task token")
        throw error
      }
      dropToken(req.taskToken)
      const entry = jobs.get(found.jobId)
      if (entry !== undefined) {
        entry.state = result.success ? JobState.COMPLETED : JobState.FAILED
        entry.updatedAt = Date.now()
      }
      return {}
    },

    async listJobs(req: ListJobsRequest) {
      const pageSize = req.pageSize <= 0 ? 50 : req.pageSize
      const page = req.page <= 0 ? 1 : req.page
      const matching: Array<IndexedJob> = []
      for (const entry of jobs.values()) {
        if (req.queue !== "" && entry.queue !== req.queue) continue
        if (req.state !== JobState.UNSPECIFIED && entry.state !== req.state) continue
        matching.push(entry)
      }
      const lastPage = int32(Math.trunc((matching.length - 1) / pageSize) + 1)
      const start = (page - 1) * pageSize
      return { jobs: matching.slice(start, start + pageSize).map(toJob), lastPage }
    }
  }

  const decodeNote = (event: LogEvent): JobEvent | undefined => {
    if (event._tag !== "note" || event.kind !== EVENT_NOTE_KIND) return undefined
    try {
      return fromBinary(JobEventSchema, Buffer.from(event.message, "base64"))
    } catch {
      return undefined
    }
  }

  const jobEventsService: ServiceImpl<typeof JobEventsService> = {
    async *streamJobEvents(
      req: StreamJobEventsRequest,
      context: HandlerContext
    ): AsyncGenerator<StreamJobEventsResponse> {
      if (!jobs.has(req.jobId)) throw invalid("job not found")
      const stored = (await run(eventLog.read(req.jobId))).length
      const fromSequence = req.fromSequence
      const fromTimestamp = req.fromTimestamp
      const filter = new Set<number>(req.eventFilter)
      const replayed = (event: JobEvent): boolean => {
        if (fromSequence > 0n && event.sequence < fromSequence) return false
        if (fromTimestamp > 0n && event.timestamp !== undefined && BigInt(timestampMs(event.timestamp)) < fromTimestamp)
          return false
        if (filter.size > 0 && !filter.has(event.eventType)) return false
        return true
      }
      const iterable = Stream.toAsyncIterable(eventLog.follow(req.jobId))
      const iterator = iterable[Symbol.asyncIterator]()
      const onAbort = () => void iterator.return?.()
      context.signal.addEventListener("abort", onAbort, { once: true })
      try {
        for (;;) {
          const next = await iterator.next()
          if (next.done === true) return
          const logEvent = next.value
          const event = decodeNote(logEvent)
          if (event === undefined) continue
          if (logEvent.seq <= stored && !replayed(event)) continue
          yield { $typeName: "job.v1.StreamJobEventsResponse", event }
        }
      } finally {
        context.signal.removeEventListener("abort", onAbort)
        await iterator.return?.()
      }
    },

    async publishJobEvents(requests: AsyncIterable<PublishJobEventsRequest>) {
      for await (const req of requests) {
        const found = tokenOf(req.taskToken)
        if (req.events.length === 0) continue
        const now = Date.now()
        const notes = req.events.map((event) => {
          if (event.timestamp === undefined) event.timestamp = ts(now)
          return {
            _tag: "note" as const,
            kind: EVENT_NOTE_KIND,
            message: Buffer.from(toBinary(JobEventSchema, event)).toString("base64")
          }
        })
        await run(eventLog.append(found.jobId, notes))
      }
      return {}
    }
  }

  return {
    jobService,
    jobEventsService,
    sweep,
    close: () => clearInterval(sweepTimer),
    jobs
  }
}

/** The same, taking the ports from the Effect context. */
export const makeAirunnerServicesEffect = (options: AirunnerServicesOptions = {}) =>
  Effect.gen(function* () {
    const queue = yield* JobQueue
    const eventLog = yield* EventLog
    return makeAirunnerServices(queue, eventLog, options)
  })
