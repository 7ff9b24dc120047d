import { userInfo } from "node:os"
import { type ExecSpec, Executor, UnsupportedSpec } from "@runlane/core"
import { Effect, Layer, Stream } from "effect"
import { DEFAULT_KILL_GRACE_MS, spawnStream } from "./spawnStream.ts"

/** The executor name in events and errors. */
export const name = "process"

export interface Config {
  /**
   * Start from the runner's own environment (then `spec.env`, then secrets). Default false:
   * the child gets exactly `spec.env` + secrets + a minimal `PATH` when `spec.env` has none.
   */
  readonly inheritEnv?: boolean | undefined
  /** SIGTERM → SIGKILL grace on interrupt or timeout. Default 5000 ms. */
  readonly killGraceMs?: number | undefined
  /** PTY size when `spec.tty` is set. Default 80×24. */
  readonly cols?: number | undefined
  readonly rows?: number | undefined
}

const refuse = (field: string, message: string) => Effect.fail(new UnsupportedSpec({ executor: name, field, message }))

let currentUser: { readonly name: string; readonly uid: number } | undefined
const whoami = () => {
  if (currentUser === undefined) {
    try {
      const info = userInfo()
      currentUser = { name: info.username, uid: info.uid }
    } catch {
      currentUser = { name: "", uid: process.getuid?.() ?? -1 }
    }
  }
  return currentUser
}

/**
 * Refuses what a local process cannot honour: an `image`, a `network` policy other than host
 * (absent means host here), `mounts`, `resources`, and a `user` other than the one running the
 * executor. Labels are metadata and always accepted.
 */
export const validate = (spec: ExecSpec): Effect.Effect<void, UnsupportedSpec> => {
  if (spec.image !== undefined) {
    return refuse(
      "image",
      `the process executor runs commands on the host and cannot use image "${spec.image}"; use a container executor`
    )
  }
  if (spec.network !== undefined && spec.network._tag !== "host") {
    return refuse(
      "network",
      `the process executor cannot restrict the network (policy "${spec.network._tag}"); only "host" is supported`
    )
  }
  if (spec.mounts !== undefined && spec.mounts.length > 0) {
    return refuse(
      "mounts",
      "the process executor cannot mount paths; the child sees the host filesystem (use cwd, or a sandbox/container executor)"
    )
  }
  if (spec.resources !== undefined) {
    const asked = Object.keys(spec.resources).filter(
      (key) => spec.resources?.[key as keyof typeof spec.resources] !== undefined
    )
    if (asked.length > 0) {
      return refuse(
        `resources.${asked[0]}`,
        `the process executor cannot enforce resource limits (${asked.join(", ")}); use a container or sandbox executor`
      )
    }
  }
  if (spec.user !== undefined) {
    const me = whoami()
    if (spec.user !== me.name && spec.user !== String(me.uid)) {
      return refuse(
        "user",
        `the process executor runs as the current user "${me.name}" (uid ${me.uid}) and cannot switch to "${spec.user}"`
      )
    }
  }
  return Effect.void
}

const runnerEnv = (): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) env[key] = value
  return env
}

/** The `Executor` service value; `layer` provides it. */
export const make = (config: Config = {}): Executor["Service"] => {
  const killGraceMs = config.killGraceMs ?? DEFAULT_KILL_GRACE_MS
  const run = (spec: ExecSpec) => {
    const env = config.inheritEnv === true ? { ...runnerEnv(), ...spec.env } : spec.env
    return spawnStream(
      {
        argv: spec.argv,
        env,
        secrets: spec.secrets,
        cwd: spec.cwd,
        tty: spec.tty,
        timeoutMs: spec.timeoutMs,
        killGraceMs,
        cols: config.cols,
        rows: config.rows
      },
      { executor: name }
    )
  }
  return Executor.of({
    name,
    run: (spec) => Stream.unwrap(Effect.as(validate(spec), run(spec)))
  })
}

/** Provides `Executor` running local processes (pipe mode, or a PTY when `spec.tty`). */
export const layer = (config: Config = {}): Layer.Layer<Executor> => Layer.succeed(Executor, make(config))
