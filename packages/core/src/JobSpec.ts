import { Schema } from "effect"

/** Identifier of a job; unique across queues. */
export const JobId = Schema.NonEmptyString
export type JobId = typeof JobId.Type

/** Lifecycle states of a job record. */
export const JobStatus = Schema.Literals(["queued", "running", "succeeded", "failed", "cancelled", "timed_out", "dead"])
export type JobStatus = typeof JobStatus.Type

/** States after which a job will not run again. */
export const terminalStatuses: ReadonlySet<JobStatus> = new Set([
  "succeeded",
  "failed",
  "cancelled",
  "timed_out",
  "dead"
])

/** String labels attached to jobs, records and executor resources. */
export const Labels = Schema.Record(Schema.String, Schema.String)
export type Labels = typeof Labels.Type

/**
 * A job as it travels through a queue. `payload` is opaque to the queue and parsed by the
 * handler at its own boundary. `key` is the partition key (for example a user id) used for
 * per-key concurrency limits. Higher `priority` is taken first; equal priorities are FIFO.
 */
export const JobSpec = Schema.Struct({
  id: JobId,
  queue: Schema.NonEmptyString,
  payload: Schema.Unknown,
  key: Schema.optionalKey(Schema.String),
  priority: Schema.Int,
  maxAttempts: Schema.Int.check(Schema.isGreaterThan(0)),
  timeoutMs: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThan(0))),
  labels: Labels,
  requestId: Schema.optionalKey(Schema.String),
  enqueuedAt: Schema.Number
})
export type JobSpec = typeof JobSpec.Type

/** What a producer gives to `JobQueue.enqueue`; the queue fills in the rest. */
export const EnqueueInput = Schema.Struct({
  queue: Schema.NonEmptyString,
  payload: Schema.Unknown,
  id: Schema.optionalKey(JobId),
  key: Schema.optionalKey(Schema.String),
  priority: Schema.optionalKey(Schema.Int),
  maxAttempts: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThan(0))),
  timeoutMs: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThan(0))),
  labels: Schema.optionalKey(Labels),
  /** Idempotency key: a second enqueue with the same request id returns the first job. */
  requestId: Schema.optionalKey(Schema.String),
  /** Do not deliver before this many milliseconds have passed. */
  delayMs: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThan(-1)))
})
export type EnqueueInput = typeof EnqueueInput.Type

export const DEFAULT_MAX_ATTEMPTS = 3

const processTag = Math.random().toString(36).slice(2, 7).padEnd(5, "0")
let counter = 0
let lastMs = 0
let lastMsText = ""
/**
 * A unique job id that sorts by creation time: milliseconds in base 36, a per-process random
 * tag and a process-local counter (cheap enough for hundreds of thousands of jobs a second).
 */
export const makeJobId = (): string => {
  const now = Date.now()
  if (now !== lastMs) {
    lastMs = now
    lastMsText = now.toString(36)
  }
  counter = (counter + 1) % 2_176_782_336
  return `${lastMsText}${processTag}${counter.toString(36).padStart(6, "0")}`
}

/** Fills the defaults of an enqueue input into a full `JobSpec`. */
export const toJobSpec = (input: EnqueueInput, now: number = Date.now()): JobSpec => {
  const spec: {
    -readonly [K in keyof JobSpec]: JobSpec[K]
  } = {
    id: input.id ?? makeJobId(),
    queue: input.queue,
    payload: input.payload,
    priority: input.priority ?? 0,
    maxAttempts: input.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    labels: input.labels ?? {},
    enqueuedAt: now
  }
  if (input.key !== undefined) spec.key = input.key
  if (input.timeoutMs !== undefined) spec.timeoutMs = input.timeoutMs
  if (input.requestId !== undefined) spec.requestId = input.requestId
  return spec
}

/** The stored record of a job: its status and outcome. */
export const JobRecord = Schema.Struct({
  id: JobId,
  queue: Schema.String,
  key: Schema.optionalKey(Schema.String),
  status: JobStatus,
  attempts: Schema.Int,
  maxAttempts: Schema.Int,
  labels: Labels,
  createdAt: Schema.Number,
  updatedAt: Schema.Number,
  startedAt: Schema.optionalKey(Schema.Number),
  finishedAt: Schema.optionalKey(Schema.Number),
  exitCode: Schema.optionalKey(Schema.NullOr(Schema.Int)),
  error: Schema.optionalKey(Schema.String),
  result: Schema.optionalKey(Schema.Unknown)
})
export type JobRecord = typeof JobRecord.Type
