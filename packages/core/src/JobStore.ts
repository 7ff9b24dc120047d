import { Context, type Effect, Schema } from "effect"
import type { JobRecord, JobStatus } from "./JobSpec.ts"

export class JobStoreError extends Schema.TaggedError<JobStoreError>()("JobStoreError", {
  message: Schema.String,
  cause: Schema.optionalKey(Schema.Defect())
}) {}

export class JobNotFound extends Schema.TaggedError<JobNotFound>()("JobNotFound", {
  jobId: Schema.String
}) {}

export interface ListFilter {
  readonly status?: JobStatus
  readonly queue?: string
  readonly key?: string
  /** Page size (default 50). */
  readonly limit?: number
  /** Opaque cursor from a previous page's `nextCursor`. */
  readonly cursor?: string
}

export interface JobPage {
  readonly items: ReadonlyArray<JobRecord>
  readonly nextCursor: string | null
}

export type JobPatch = Partial<Omit<JobRecord, "id" | "createdAt">>

/** Job records, newest first in listings. */
export class JobStore extends Context.Service<
  JobStore,
  {
    /** Inserts the record unless one with that id exists (then leaves it as it is). */
    readonly create: (record: JobRecord) => Effect.Effect<void, JobStoreError>
    readonly update: (jobId: string, patch: JobPatch) => Effect.Effect<JobRecord, JobStoreError | JobNotFound>
    readonly get: (jobId: string) => Effect.Effect<JobRecord, JobStoreError | JobNotFound>
    readonly list: (filter: ListFilter) => Effect.Effect<JobPage, JobStoreError>
  }
>()("@runlane/core/JobStore") {}
