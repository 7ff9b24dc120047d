import { Effect, Redacted, Schema, Stream } from "effect"
import { ExecSpec } from "./ExecSpec.ts"
import { Executor } from "./Executor.ts"
import type { OutputStream } from "./JobEvent.ts"
import { InvalidPayload, type JobContext, JobFailed, type JobHandler, type JobOutcome } from "./JobHandler.ts"
import type { TextMaskingState } from "./SecretMasker.ts"

const { secrets: _secrets, ...execFields } = ExecSpec.fields

/**
 * The payload of a command job as it travels through a queue: an `ExecSpec` without secret
 * values. Secrets are named in `secretNames` and resolved by the runner that executes the job,
 * so their values never reach a queue, a store or an event.
 */
export const ExecPayload = Schema.Struct({
  ...execFields,
  secretNames: Schema.optionalKey(Schema.Array(Schema.String))
})
export type ExecPayload = typeof ExecPayload.Type

export interface ExecResult {
  readonly code: number | null
  readonly signal: string | null
  readonly durationMs: number
  readonly reason: "exited" | "timeout" | "oom" | "killed"
}

/**
 * Runs one `ExecSpec` through the `Executor` in context for a job: registers the spec's secrets
 * with the job's masker, masks stdout and stderr (each with its own state) before anything is
 * emitted, and records process-started, output, process-exited / process-error events.
 */
export const runExec = (context: JobContext, given: ExecSpec): Effect.Effect<ExecResult, JobFailed, Executor> =>
  Effect.gen(function* () {
    const executor = yield* Executor
    // Executors label what they create with the job (containers, pods) so orphans can be found.
    const spec: ExecSpec = { ...given, labels: { ...given.labels, [JOB_LABEL]: context.job.id } }
    for (const value of Object.values(spec.secrets ?? {})) context.masker.add(Redacted.value(value))
    const states: Record<OutputStream, TextMaskingState> = {
      stdout: context.masker.textState(),
      stderr: context.masker.textState()
    }
    const text = (stream: OutputStream, decoded: string) =>
      decoded.length === 0 ? Effect.void : context.emit([{ _tag: "output", stream, data: decoded }])
    let result: ExecResult | undefined
    yield* executor.run(spec).pipe(
      Stream.runForEach((event) => {
        switch (event._tag) {
          case "started": {
            const started: { _tag: "process-started"; executor: string; pid?: number; at: number } = {
              _tag: "process-started",
              executor: executor.name,
              at: event.at
            }
            if (event.pid !== undefined) started.pid = event.pid
            return context.emit([started])
          }
          case "output":
            return text(event.stream, states[event.stream].push(event.data))
          case "note":
            return context.emit([{ _tag: "note", kind: event.kind, message: context.masker.maskString(event.message) }])
          case "exited":
            result = event
            return Effect.gen(function* () {
              yield* text("stdout", states.stdout.flush())
              yield* text("stderr", states.stderr.flush())
              yield* context.emit([
                {
                  _tag: "process-exited",
                  code: event.code,
                  signal: event.signal,
                  durationMs: event.durationMs,
                  reason: event.reason
                }
              ])
            })
        }
      }),
      Effect.catch((error) => {
        const message = context.masker.maskString(error.message)
        return context
          .emit([{ _tag: "process-error", message }])
          .pipe(Effect.andThen(Effect.fail(new JobFailed({ message, retryable: error._tag !== "UnsupportedSpec" }))))
      })
    )
    if (result === undefined) {
      return yield* new JobFailed({ message: `executor ${executor.name} ended without an exit event` })
    }
    return result
  })

/** Non-zero exit, a signal, a timeout or an OOM kill become a `JobFailed`; exit 0 an outcome. */
export const outcomeOf = (result: ExecResult): Effect.Effect<JobOutcome, JobFailed> => {
  if (result.code === 0 && result.reason === "exited") return Effect.succeed({ exitCode: 0 })
  const what =
    result.reason === "oom"
      ? "killed: out of memory"
      : result.reason === "timeout"
        ? "killed: timeout"
        : result.signal !== null
          ? `killed by ${result.signal}`
          : `exited with code ${result.code}`
  return Effect.fail(new JobFailed({ message: what, exitCode: result.code }))
}

/** The label every executor resource of a job carries: the job id. */
export const JOB_LABEL = "runlane.job"

const decodePayload = Schema.decodeUnknownEffect(ExecPayload)

export interface ExecHandlerOptions {
  /** Secret values by name; a job's `secretNames` must all be here. */
  readonly secrets?: Readonly<Record<string, Redacted.Redacted<string>>>
  /** Adjusts the spec before it runs (default executor settings, workspace, ...). */
  readonly prepare?: (spec: ExecSpec, context: JobContext) => ExecSpec
}

/** A handler for command jobs: decodes an `ExecPayload`, resolves its secrets, runs it. */
export const execHandler =
  (options: ExecHandlerOptions = {}): JobHandler<Executor> =>
  (context) =>
    Effect.gen(function* () {
      const payload = yield* decodePayload(context.job.payload).pipe(
        Effect.mapError((e) => new InvalidPayload({ message: e.message }))
      )
      const { secretNames, ...rest } = payload
      const secrets: Record<string, Redacted.Redacted<string>> = {}
      for (const name of secretNames ?? []) {
        const value = options.secrets?.[name]
        if (value === undefined) return yield* new InvalidPayload({ message: `unknown secret ${name}` })
        secrets[name] = value
      }
      let spec: ExecSpec = secretNames === undefined ? rest : { ...rest, secrets }
      if (options.prepare !== undefined) spec = options.prepare(spec, context)
      const result = yield* runExec(context, spec)
      return yield* outcomeOf(result)
    })
