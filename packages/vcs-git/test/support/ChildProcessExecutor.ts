/**
 * A test-only Executor over child_process (no shell, argv as given), standing in for
 * @runlane/exec-process while that package is written. It honours argv, env, secrets, cwd and
 * timeoutMs and refuses every other ExecSpec field.
 */
import { spawn } from "node:child_process"
import { type ExecEvent, type ExecSpec, Executor, UnsupportedSpec } from "@runlane/core"
import { Effect, Layer, Queue, Redacted, Stream } from "effect"

const UNSUPPORTED = ["mounts", "image", "resources", "network", "tty", "user"] as const

const run = (spec: ExecSpec): Stream.Stream<ExecEvent, UnsupportedSpec> => {
  for (const field of UNSUPPORTED) {
    if (spec[field] !== undefined) {
      return Stream.fail(
        new UnsupportedSpec({ executor: "test-child-process", field, message: `${field} is not honoured` })
      )
    }
  }
  return Stream.callback<ExecEvent, UnsupportedSpec>((queue) =>
    Effect.gen(function* () {
      const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin", ...spec.env }
      for (const [k, v] of Object.entries(spec.secrets ?? {})) env[k] = Redacted.value(v)
      const startedAt = Date.now()
      const [command, ...args] = spec.argv
      const child = spawn(command!, args, {
        cwd: spec.cwd,
        env,
        stdio: ["ignore", "pipe", "pipe"],
        detached: true
      })
      let timedOut = false
      const timer =
        spec.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              timedOut = true
              child.kill("SIGKILL")
            }, spec.timeoutMs)
      Queue.offerUnsafe(
        queue,
        child.pid === undefined
          ? { _tag: "started", at: startedAt }
          : { _tag: "started", pid: child.pid, at: startedAt }
      )
      child.stdout.on("data", (d: Buffer) =>
        Queue.offerUnsafe(queue, { _tag: "output", stream: "stdout", data: new Uint8Array(d) })
      )
      child.stderr.on("data", (d: Buffer) =>
        Queue.offerUnsafe(queue, { _tag: "output", stream: "stderr", data: new Uint8Array(d) })
      )
      const finish = (code: number | null, signal: string | null) => {
        if (timer !== undefined) clearTimeout(timer)
        Queue.offerUnsafe(queue, {
          _tag: "exited",
          code,
          signal,
          durationMs: Date.now() - startedAt,
          reason: timedOut ? "timeout" : signal === null ? "exited" : "killed"
        })
        Queue.endUnsafe(queue)
      }
      child.on("error", (e) => {
        Queue.offerUnsafe(queue, { _tag: "output", stream: "stderr", data: new TextEncoder().encode(`${e.message}\n`) })
        finish(127, null)
      })
      child.on("close", (code, signal) => finish(code, signal))
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (timer !== undefined) clearTimeout(timer)
          if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
            try {
              process.kill(-child.pid, "SIGKILL")
            } catch {
              // already gone
            }
          }
        })
      )
    })
  )
}

export const layer: Layer.Layer<Executor> = Layer.succeed(Executor, Executor.of({ name: "test-child-process", run }))
