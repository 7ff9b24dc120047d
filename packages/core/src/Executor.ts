import { Context, Schema, type Stream } from "effect"
import type { ExecSpec } from "./ExecSpec.ts"
import type { OutputStream } from "./JobEvent.ts"

/**
 * What an executor yields while it runs one `ExecSpec`: exactly one `started` (before any
 * output), output chunks as raw bytes, and exactly one `exited` as the last element.
 */
export type ExecEvent =
  | { readonly _tag: "started"; readonly pid?: number; readonly at: number }
  | { readonly _tag: "output"; readonly stream: OutputStream; readonly data: Uint8Array }
  | { readonly _tag: "note"; readonly kind: string; readonly message: string }
  | {
      readonly _tag: "exited"
      readonly code: number | null
      readonly signal: string | null
      readonly durationMs: number
      /** `timeout` when the spec's timeout killed it, `oom` when the memory limit did. */
      readonly reason: "exited" | "timeout" | "oom" | "killed"
    }

/** The spec asks for something this executor cannot honour (it never silently ignores it). */
export class UnsupportedSpec extends Schema.TaggedError<UnsupportedSpec>()("UnsupportedSpec", {
  executor: Schema.String,
  field: Schema.String,
  message: Schema.String
}) {}

/** The process, container, pod or VM could not be started or followed. */
export class ExecError extends Schema.TaggedError<ExecError>()("ExecError", {
  executor: Schema.String,
  message: Schema.String,
  cause: Schema.optionalKey(Schema.Defect())
}) {}

/**
 * Runs one `ExecSpec`. Interrupting the stream kills and cleans up everything it started
 * (process group, container, pod, VM) before the interruption completes.
 */
export class Executor extends Context.Service<
  Executor,
  {
    readonly name: string
    readonly run: (spec: ExecSpec) => Stream.Stream<ExecEvent, ExecError | UnsupportedSpec>
  }
>()("@runlane/core/Executor") {}
