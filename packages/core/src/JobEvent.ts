import { Schema } from "effect"
import { JobStatus } from "./JobSpec.ts"

const base = {
  jobId: Schema.String,
  /** Per-job monotonic sequence number, starting at 1. */
  seq: Schema.Int,
  /** Milliseconds since the epoch. */
  at: Schema.Number
}

export const OutputStream = Schema.Literals(["stdout", "stderr"])
export type OutputStream = typeof OutputStream.Type

export const Enqueued = Schema.TaggedStruct("enqueued", { ...base, queue: Schema.String })
export const Started = Schema.TaggedStruct("started", {
  ...base,
  attempt: Schema.Int,
  runner: Schema.String
})
export const ProcessStarted = Schema.TaggedStruct("process-started", {
  ...base,
  pid: Schema.optionalKey(Schema.Int),
  executor: Schema.String
})
export const Output = Schema.TaggedStruct("output", {
  ...base,
  stream: OutputStream,
  /** Masked output text (UTF-8). */
  data: Schema.String
})
export const ProcessExited = Schema.TaggedStruct("process-exited", {
  ...base,
  code: Schema.NullOr(Schema.Int),
  signal: Schema.NullOr(Schema.String),
  durationMs: Schema.Number,
  reason: Schema.optionalKey(Schema.Literals(["exited", "timeout", "oom", "killed"]))
})
export const ProcessError = Schema.TaggedStruct("process-error", { ...base, message: Schema.String })
export const StatusChanged = Schema.TaggedStruct("status-changed", {
  ...base,
  from: Schema.NullOr(JobStatus),
  to: JobStatus
})
export const Finished = Schema.TaggedStruct("finished", {
  ...base,
  status: JobStatus,
  exitCode: Schema.optionalKey(Schema.NullOr(Schema.Int)),
  error: Schema.optionalKey(Schema.String)
})
/** A free-form note from a handler or adapter (pull progress, proxy refusals, ...). */
export const Note = Schema.TaggedStruct("note", {
  ...base,
  kind: Schema.String,
  message: Schema.String
})

export const JobEvent = Schema.Union([
  Enqueued,
  Started,
  ProcessStarted,
  Output,
  ProcessExited,
  ProcessError,
  StatusChanged,
  Finished,
  Note
])
export type JobEvent = typeof JobEvent.Type

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never
/** An event before the event log assigns its `seq` (and, when absent, `at`). */
export type JobEventInput = DistributiveOmit<JobEvent, "seq" | "at" | "jobId"> & { readonly at?: number }

export const isFinished = (event: JobEvent): boolean => event._tag === "finished"
