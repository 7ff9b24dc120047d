import { Context, type Effect, Schema, type Stream } from "effect"
import type { JobEvent, JobEventInput } from "./JobEvent.ts"

export class EventLogError extends Schema.TaggedError<EventLogError>()("EventLogError", {
  message: Schema.String,
  cause: Schema.optionalKey(Schema.Defect())
}) {}

/**
 * Job events with a per-job monotonic `seq` (from 1). `follow` replays from a sequence and
 * then delivers live events, each exactly once and in order, ending after `finished`.
 */
export class EventLog extends Context.Service<
  EventLog,
  {
    readonly append: (
      jobId: string,
      events: ReadonlyArray<JobEventInput>
    ) => Effect.Effect<ReadonlyArray<JobEvent>, EventLogError>
    readonly read: (
      jobId: string,
      options?: { readonly fromSeq?: number; readonly limit?: number }
    ) => Effect.Effect<ReadonlyArray<JobEvent>, EventLogError>
    readonly follow: (jobId: string, options?: { readonly fromSeq?: number }) => Stream.Stream<JobEvent, EventLogError>
  }
>()("@runlane/core/EventLog") {}
