import { type Effect, Schema } from "effect"
import type { JobEventInput } from "./JobEvent.ts"
import type { JobSpec } from "./JobSpec.ts"
import type { SecretMasker } from "./SecretMasker.ts"

/** The job failed; retried with backoff while attempts remain and `retryable` is not false. */
export class JobFailed extends Schema.TaggedError<JobFailed>()("JobFailed", {
  message: Schema.String,
  exitCode: Schema.optionalKey(Schema.NullOr(Schema.Int)),
  retryable: Schema.optionalKey(Schema.Boolean)
}) {}

/** The payload cannot be run at all: dead-lettered at once with the reason, never retried. */
export class InvalidPayload extends Schema.TaggedError<InvalidPayload>()("InvalidPayload", {
  message: Schema.String
}) {}

/** What a successful handler returns. */
export interface JobOutcome {
  readonly exitCode?: number | null
  readonly result?: unknown
}

/** What a handler receives for one attempt of one job. */
export interface JobContext {
  readonly job: JobSpec
  readonly attempt: number
  readonly runnerId: string
  /** Masks this job's output and messages; handlers register the job's secrets here first. */
  readonly masker: SecretMasker
  /** Appends events to the job's event log (assigning their sequence numbers). */
  readonly emit: (events: ReadonlyArray<JobEventInput>) => Effect.Effect<void>
}

export type JobHandler<R = never> = (context: JobContext) => Effect.Effect<JobOutcome, JobFailed | InvalidPayload, R>
