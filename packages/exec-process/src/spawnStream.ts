import { type ChildProcess, spawn } from "node:child_process"
import { accessSync, constants as fsConstants, statSync } from "node:fs"
import { createRequire } from "node:module"
import { constants as osConstants } from "node:os"
import { delimiter, join } from "node:path"
import { ExecError, type ExecEvent, type OutputStream } from "@runlane/core"
import { type Cause, Effect, Queue, Redacted, Stream } from "effect"
import { isGroupAlive, terminateGroup } from "./processGroup.ts"

/** The PATH a child gets when its environment names none. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/** SIGTERM → SIGKILL grace when none is given. */
export const DEFAULT_KILL_GRACE_MS = 5000

/** One command for `spawnStream`: already policy-checked by the caller. */
export interface SpawnCommand {
  /** argv[0] is looked up on the child's PATH; never a shell string. */
  readonly argv: ReadonlyArray<string>
  /** The child's whole environment (plus `PATH` = `DEFAULT_PATH` when it has none). */
  readonly env?: Readonly<Record<string, string>> | undefined
  /** Added to `env`; unwrapped only here, at spawn. Win over `env` on a name clash. */
  readonly secrets?: Readonly<Record<string, Redacted.Redacted<string>>> | undefined
  readonly cwd?: string | undefined
  /** Run under a pseudo-terminal (stdout and stderr merge into `stdout`). */
  readonly tty?: boolean | undefined
  /** Kill the group (reason `timeout`) after this long. */
  readonly timeoutMs?: number | undefined
  /** SIGTERM → SIGKILL grace on interrupt or timeout. Default 5000. */
  readonly killGraceMs?: number | undefined
  /** PTY size; default 80×24. */
  readonly cols?: number | undefined
  readonly rows?: number | undefined
}

export interface SpawnOptions {
  /** The executor name reported in `ExecError`s. */
  readonly executor: string
}

/** Chunks the consumer may lag behind before the child's output is paused (backpressure). */
const HIGH_WATER_CHUNKS = 64
const LOW_WATER_CHUNKS = 16

type PtyModule = typeof import("@lydell/node-pty")
let ptyModule: PtyModule | undefined
const loadPty = (): PtyModule => {
  if (ptyModule === undefined) ptyModule = createRequire(import.meta.url)("@lydell/node-pty") as PtyModule
  return ptyModule
}

const signalNames = new Map<number, string>(
  Object.entries(osConstants.signals).map(([name, num]) => [num, name] as [number, string])
)

const errnoText: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  ENOEXEC: "not an executable format",
  ENOTDIR: "a path component is not a directory",
  EISDIR: "is a directory",
  E2BIG: "argument list or environment too long",
  ENOMEM: "out of memory",
  EAGAIN: "process limit reached"
}

const describeErrno = (code: string | undefined): string =>
  code === undefined ? "unknown error" : `${code} (${errnoText[code] ?? "spawn failed"})`

/**
 * Checks the command's shape. Messages name the field, never a value (env values may be
 * secret).
 */
const checkCommand = (command: SpawnCommand): string | undefined => {
  const { argv } = command
  if (argv.length === 0 || argv[0] === "") return "argv: needs at least a non-empty command"
  for (let i = 0; i < argv.length; i++) {
    if ((argv[i] as string).includes("\0")) return `argv[${i}]: contains a NUL byte`
  }
  const check = (kind: string, record: Readonly<Record<string, unknown>> | undefined) => {
    if (record === undefined) return undefined
    for (const [key, value] of Object.entries(record)) {
      if (key === "" || key.includes("=") || key.includes("\0")) {
        return `${kind}: the name ${JSON.stringify(key.replaceAll("\0", "\\0"))} is not a valid environment variable name`
      }
      const text = Redacted.isRedacted(value) ? Redacted.value(value as Redacted.Redacted<string>) : value
      if (typeof text !== "string" || text.includes("\0")) return `${kind}.${key}: the value contains a NUL byte`
    }
    return undefined
  }
  return check("env", command.env) ?? check("secrets", command.secrets)
}

const buildEnv = (command: SpawnCommand): Record<string, string> => {
  const env: Record<string, string> = { ...command.env }
  if (command.secrets !== undefined) {
    for (const [name, value] of Object.entries(command.secrets)) env[name] = Redacted.value(value)
  }
  if (env.PATH === undefined) env.PATH = DEFAULT_PATH
  return env
}

/** Finds argv[0] the way execvp would, so a PTY spawn failure is an error instead of exit 1. */
const resolveExecutable = (file: string, path: string, cwd: string): { path: string } | { code: string } => {
  const candidates = file.includes("/")
    ? [file.startsWith("/") ? file : join(cwd, file)]
    : path.split(delimiter).map((dir) => join(dir === "" ? "." : dir.startsWith("/") ? dir : join(cwd, dir), file))
  let code = "ENOENT"
  for (const candidate of candidates) {
    try {
      if (statSync(candidate).isDirectory()) {
        code = "EACCES"
        continue
      }
      accessSync(candidate, fsConstants.X_OK)
      return { path: candidate }
    } catch (error) {
      const errno = (error as NodeJS.ErrnoException).code
      if (errno === "EACCES") code = "EACCES"
    }
  }
  return { code }
}

/**
 * Spawns `command.argv` (no shell) as the leader of its own process group and streams its
 * events: exactly one `started` first, `output` chunks as they arrive, exactly one `exited`
 * last, after all output has been read. Does no `ExecSpec` policy checks: callers (the process
 * executor, a sandbox executor wrapping argv in `bwrap`) do those.
 *
 * - Interrupting the stream terminates the whole group (SIGTERM, then SIGKILL after
 *   `killGraceMs`) and completes only once the group is gone.
 * - `timeoutMs` does the same and then ends the stream with `exited` reason `timeout`.
 * - When the leader exits while other members of its group still run, they are terminated the
 *   same way (a `note` of kind `orphans` says so), so nothing outlives the job.
 * - A child killed by a signal reports `code: null`, `signal: "SIGKILL"`, reason `killed`.
 * - Spawn failures (ENOENT, EACCES, a missing cwd) fail the stream with `ExecError`.
 */
export const spawnStream = (command: SpawnCommand, options: SpawnOptions): Stream.Stream<ExecEvent, ExecError> =>
  Stream.callback<ExecEvent, ExecError>((queue) =>
    Effect.suspend(() => {
      const fail = (message: string) => Effect.fail(new ExecError({ executor: options.executor, message }))
      const invalid = checkCommand(command)
      if (invalid !== undefined) return fail(`invalid command: ${invalid}`)
      const argv0 = command.argv[0] as string
      if (command.cwd !== undefined) {
        let isDir = false
        try {
          isDir = statSync(command.cwd).isDirectory()
        } catch {}
        if (!isDir)
          return fail(`cannot start ${JSON.stringify(argv0)}: cwd ${JSON.stringify(command.cwd)} is not a directory`)
      }
      const graceMs = command.killGraceMs ?? DEFAULT_KILL_GRACE_MS
      let run: Started | undefined
      // The finalizer is in place before the spawn, and spawn + listeners happen in one
      // synchronous step, so no event can be missed and no child can escape an interruption.
      return Effect.addFinalizer(() => Effect.promise(() => run?.stop() ?? Promise.resolve())).pipe(
        Effect.andThen(
          Effect.suspend(() => {
            const env = buildEnv(command)
            const started = command.tty === true ? startPty(command, env, argv0) : startPipe(command, env, argv0)
            if ("error" in started) {
              const { error } = started
              return typeof error === "string" ? fail(error) : Effect.promise(() => error).pipe(Effect.flatMap(fail))
            }
            run = started
            started.attach(queue, graceMs, command.timeoutMs)
            return Effect.void
          })
        )
      )
    })
  )

type EventQueue = Queue.Queue<ExecEvent, ExecError | Cause.Done>

/** A started child, not yet wired to a queue. */
interface Started {
  readonly attach: (queue: EventQueue, graceMs: number, timeoutMs: number | undefined) => void
  /** Finalizer: terminates the group unless the child has finished; resolves when it is gone. */
  readonly stop: () => Promise<void>
}

/**
 * Shared bookkeeping of one child: emits events, applies backpressure, handles timeout,
 * orphan clean-up and the final `exited`.
 */
class Lifecycle {
  private queue: EventQueue | undefined
  private readonly startedAt = performance.now()
  private exitedAt: number | undefined
  private timer: ReturnType<typeof setTimeout> | undefined
  private reason: "exited" | "timeout" | "killed" = "exited"
  private terminating: Promise<void> | undefined
  private paused = false
  private resumeTimer: ReturnType<typeof setInterval> | undefined
  private finished = false
  graceMs = DEFAULT_KILL_GRACE_MS

  readonly pid: number
  private readonly pause: () => void
  private readonly resume: () => void

  constructor(pid: number, pause: () => void, resume: () => void) {
    this.pid = pid
    this.pause = pause
    this.resume = resume
  }

  attach(queue: EventQueue, timeoutMs: number | undefined): void {
    this.queue = queue
    Queue.offerUnsafe(queue, { _tag: "started", pid: this.pid, at: Date.now() })
    if (timeoutMs !== undefined && this.exitedAt === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined
        this.reason = "timeout"
        this.terminate()
      }, timeoutMs)
    }
  }

  output(stream: OutputStream, data: Uint8Array): void {
    const queue = this.queue
    if (queue === undefined) return
    Queue.offerUnsafe(queue, { _tag: "output", stream, data })
    if (!this.paused && Queue.sizeUnsafe(queue) >= HIGH_WATER_CHUNKS) {
      this.paused = true
      this.pause()
      this.resumeTimer = setInterval(() => {
        if (Queue.sizeUnsafe(queue) <= LOW_WATER_CHUNKS || this.finished) this.unpause()
      }, 2)
    }
  }

  private unpause(): void {
    if (!this.paused) return
    this.paused = false
    if (this.resumeTimer !== undefined) clearInterval(this.resumeTimer)
    this.resumeTimer = undefined
    this.resume()
  }

  /** Terminates the group once (SIGTERM, grace, SIGKILL). */
  terminate(): Promise<void> {
    if (this.terminating === undefined) {
      this.terminating = terminateGroup(this.pid, this.graceMs)
    }
    return this.terminating
  }

  /** The leader exited: clean up what it left running in its group. */
  leaderExited(): void {
    if (this.exitedAt !== undefined) return
    this.exitedAt = performance.now()
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    if (this.terminating === undefined && isGroupAlive(this.pid)) {
      if (this.queue !== undefined) {
        Queue.offerUnsafe(this.queue, {
          _tag: "note",
          kind: "orphans",
          message: `process ${this.pid} exited but members of its process group still ran; terminating them`
        })
      }
      this.terminate()
    }
  }

  /** All output read and the leader reaped: emit `exited` and end the stream. */
  closed(code: number | null, signal: string | null): void {
    this.leaderExited()
    this.finished = true
    this.unpause()
    const queue = this.queue
    if (queue === undefined) return
    const reason = this.reason === "timeout" ? "timeout" : signal !== null ? "killed" : "exited"
    const durationMs = Math.round(((this.exitedAt ?? performance.now()) - this.startedAt) * 1000) / 1000
    Queue.offerUnsafe(queue, { _tag: "exited", code, signal, durationMs, reason })
    Queue.endUnsafe(queue)
  }

  /** Stream finalizer. */
  async stop(): Promise<void> {
    this.unpause()
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    if (this.finished) {
      if (this.terminating !== undefined) await this.terminating
      return
    }
    this.reason = "killed"
    await this.terminate()
  }
}

const startPipe = (
  command: SpawnCommand,
  env: Record<string, string>,
  argv0: string
): Started | { error: string | Promise<string> } => {
  let child: ChildProcess
  try {
    child = spawn(argv0, command.argv.slice(1), {
      env,
      ...(command.cwd !== undefined ? { cwd: command.cwd } : {}),
      detached: true,
      stdio: ["ignore", "pipe", "pipe"],
      windowsHide: true
    })
  } catch (error) {
    return { error: `cannot start ${JSON.stringify(argv0)}: ${describeErrno((error as NodeJS.ErrnoException).code)}` }
  }
  if (child.pid === undefined) {
    // libuv failed the spawn; node reports why on the next tick.
    const failed = child
    return {
      error: new Promise<string>((resolve) =>
        failed.once("error", (error: NodeJS.ErrnoException) =>
          resolve(`cannot start ${JSON.stringify(argv0)}: ${describeErrno(error.code)}`)
        )
      )
    }
  }
  const stdout = child.stdout
  const stderr = child.stderr
  if (stdout === null || stderr === null) return { error: `cannot start ${JSON.stringify(argv0)}: no pipes` }
  const life = new Lifecycle(
    child.pid,
    () => {
      stdout.pause()
      stderr.pause()
    },
    () => {
      stdout.resume()
      stderr.resume()
    }
  )
  child.on("error", () => {})
  return {
    attach: (queue, graceMs, timeoutMs) => {
      life.graceMs = graceMs
      stdout.on("data", (chunk: Buffer) => life.output("stdout", chunk))
      stderr.on("data", (chunk: Buffer) => life.output("stderr", chunk))
      child.once("exit", () => life.leaderExited())
      child.once("close", (code, signal) => life.closed(code, signal))
      life.attach(queue, timeoutMs)
    },
    stop: async () => {
      await life.stop()
      // Pipes held open by a process that left the group would otherwise keep us attached.
      stdout.destroy()
      stderr.destroy()
      child.removeAllListeners()
      child.on("error", () => {})
    }
  }
}

const startPty = (command: SpawnCommand, env: Record<string, string>, argv0: string): Started | { error: string } => {
  const cwd = command.cwd ?? process.cwd()
  const resolved = resolveExecutable(argv0, env.PATH ?? DEFAULT_PATH, cwd)
  if ("code" in resolved) return { error: `cannot start ${JSON.stringify(argv0)}: ${describeErrno(resolved.code)}` }
  let pty: ReturnType<PtyModule["spawn"]>
  try {
    pty = loadPty().spawn(
      resolved.path,
      command.argv.slice(1) as Array<string>,
      {
        name: env.TERM ?? "xterm-256color",
        cols: command.cols ?? 80,
        rows: command.rows ?? 24,
        cwd,
        env,
        encoding: null
      } as Parameters<PtyModule["spawn"]>[2]
    )
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return {
      error: `cannot start ${JSON.stringify(argv0)} under a pty: ${code === undefined ? "pty unavailable" : describeErrno(code)}`
    }
  }
  // No backpressure under a PTY: node-pty destroys its socket 200 ms after the child exits
  // whether or not the output was read, so pausing a slow reader could lose the tail.
  const life = new Lifecycle(
    pty.pid,
    () => {},
    () => {}
  )
  const disposables: Array<{ dispose(): void }> = []
  return {
    attach: (queue, graceMs, timeoutMs) => {
      life.graceMs = graceMs
      disposables.push(pty.onData((data) => life.output("stdout", data as unknown as Uint8Array)))
      disposables.push(
        pty.onExit(({ exitCode, signal }) => {
          const signalName = signal !== undefined && signal !== 0 ? (signalNames.get(signal) ?? `SIG${signal}`) : null
          life.closed(signalName !== null ? null : exitCode, signalName)
        })
      )
      life.attach(queue, timeoutMs)
    },
    stop: async () => {
      await life.stop()
      for (const d of disposables) d.dispose()
      // No pty.destroy(): it SIGHUPs the pid after the socket closes, and by then that pid may
      // belong to someone else. node-pty closes its side itself once the child is gone.
    }
  }
}
