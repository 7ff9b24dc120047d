import { Context, type Effect, Schema } from "effect"
import type { EnqueueInput, JobSpec } from "./JobSpec.ts"

/** A job handed to one runner for a limited time. Only `token` can ack, nack or extend it. */
export interface Lease {
  readonly job: JobSpec
  /** Opaque task token; changes at every delivery. */
  readonly token: string
  /** 1 for the first delivery; counts deliveries that ended in failure or lease expiry. */
  readonly attempt: number
  /** Epoch milliseconds at which the lease expires unless extended. */
  readonly expiresAt: number
}

export interface EnqueueResult {
  readonly jobId: string
  /** True when `requestId` matched an earlier enqueue and no new job was created. */
  readonly duplicate: boolean
}

export interface TakeOptions {
  readonly queue: string
  /** At most this many leases (a batch). */
  readonly max: number
  /** Lease duration. */
  readonly visibilityMs: number
  /** Long-poll: wait up to this long for a first job when none is ready (0 = return at once). */
  readonly waitMs: number
  /** Identifies the runner holding the leases (used by queues that track runners). */
  readonly consumer?: string
}

/**
 * What to do with a job whose attempt did not succeed:
 * - `retry`: back to the queue after `delayMs`, the attempt counted;
 * - `release`: back to the queue after `delayMs`, the attempt not counted (for example a
 *   runner shutting down, or a per-key limit that is full);
 * - `dead`: to the dead-letter set with `reason`.
 */
export type NackDecision =
  | { readonly _tag: "retry"; readonly delayMs: number; readonly error?: string }
  | { readonly _tag: "release"; readonly delayMs: number }
  | { readonly _tag: "dead"; readonly reason: string }

export type LeaseState = "ready" | "delayed" | "inflight" | "dead"

export interface QueueStats {
  readonly queue: string
  readonly ready: number
  readonly delayed: number
  readonly inflight: number
  readonly dead: number
}

export interface PeekEntry {
  readonly state: LeaseState
  /** The job; `undefined` only for a malformed entry a queue could not decode. */
  readonly job?: JobSpec
  readonly attempt: number
  /** Dead-letter reason, or the last error of a retried job. */
  readonly reason?: string
  /** The raw stored value of a malformed entry, kept as it arrived. */
  readonly raw?: string
}

/** The lease is not (or no longer) held by this token: expired, acked, or never valid. */
export class LeaseLost extends Schema.TaggedError<LeaseLost>()("LeaseLost", {
  message: Schema.String
}) {}

/** The queue backend failed (connection, protocol, ...). */
export class QueueError extends Schema.TaggedError<QueueError>()("QueueError", {
  message: Schema.String,
  cause: Schema.optionalKey(Schema.Defect())
}) {}

/**
 * At-least-once delivery through leases. Adapters: memory, Redis Streams, Redis reliable
 * list, PostgreSQL. Every adapter passes the same contract suite.
 */
export class JobQueue extends Context.Service<
  JobQueue,
  {
    readonly enqueue: (input: EnqueueInput) => Effect.Effect<EnqueueResult, QueueError>
    readonly enqueueMany: (
      inputs: ReadonlyArray<EnqueueInput>
    ) => Effect.Effect<ReadonlyArray<EnqueueResult>, QueueError>
    readonly take: (options: TakeOptions) => Effect.Effect<ReadonlyArray<Lease>, QueueError>
    readonly ack: (token: string) => Effect.Effect<void, LeaseLost | QueueError>
    readonly nack: (token: string, decision: NackDecision) => Effect.Effect<void, LeaseLost | QueueError>
    readonly extend: (token: string, visibilityMs: number) => Effect.Effect<number, LeaseLost | QueueError>
    /** Returns expired (or orphaned) leases to the queue now; resolves to how many. */
    readonly recover: (queue: string) => Effect.Effect<number, QueueError>
    readonly stats: (queue: string) => Effect.Effect<QueueStats, QueueError>
    readonly peek: (
      queue: string,
      options: { readonly state: LeaseState; readonly limit: number }
    ) => Effect.Effect<ReadonlyArray<PeekEntry>, QueueError>
  }
>()("@runlane/core/JobQueue") {}
