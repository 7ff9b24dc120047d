import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir, userInfo } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { type ExecEvent, type ExecSpec, Executor } from "@runlane/core"
import { Deferred, Effect, Fiber, Redacted, Stream } from "effect"
import { afterAll } from "vitest"
import { ProcessExecutor, spawnStream } from "../src/index.ts"

const tmp = mkdtempSync(join(tmpdir(), "runlane-exec-process-"))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

/**
 * True when `pid` runs. Checked through `kill(pid, 0)` and, because PID 1 on this machine
 * does not reap orphans, /proc: a zombie has exited and only waits to be reaped.
 */
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
  } catch {
    return false
  }
}

const decoder = new TextDecoder()
const text = (events: ReadonlyArray<ExecEvent>, stream: "stdout" | "stderr" = "stdout") =>
  events
    .filter((e): e is Extract<ExecEvent, { _tag: "output" }> => e._tag === "output" && e.stream === stream)
    .map((e) => decoder.decode(e.data))
    .join("")

const exitOf = (events: ReadonlyArray<ExecEvent>) => {
  const last = events[events.length - 1]
  if (last?._tag !== "exited") throw new Error(`last event is ${last?._tag}, not exited`)
  return last
}

/** Checks the event contract: one `started` first, one `exited` last. */
const checkShape = (events: ReadonlyArray<ExecEvent>) => {
  expect(events[0]?._tag).toBe("started")
  expect(events.filter((e) => e._tag === "started")).toHaveLength(1)
  expect(events.filter((e) => e._tag === "exited")).toHaveLength(1)
  exitOf(events)
}

const runWith = (spec: ExecSpec, config?: ProcessExecutor.Config) =>
  Effect.gen(function* () {
    const executor = yield* Executor
    const events = yield* Stream.runCollect(executor.run(spec))
    return Array.from(events)
  }).pipe(Effect.provide(ProcessExecutor.layer(config)))

const run = (spec: ExecSpec) => runWith(spec)

const failureOf = (spec: ExecSpec, config?: ProcessExecutor.Config) =>
  Effect.gen(function* () {
    const executor = yield* Executor
    return yield* Effect.flip(Stream.runDrain(executor.run(spec)))
  }).pipe(Effect.provide(ProcessExecutor.layer(config)))

describe("ProcessExecutor: pipe mode", () => {
  it.live("reports started (with pid), then exit code 0", () =>
    Effect.gen(function* () {
      const events = yield* run({ argv: ["true"] })
      checkShape(events)
      const started = events[0]
      expect(started?._tag === "started" && typeof started.pid === "number" && started.pid > 0).toBe(true)
      expect(exitOf(events)).toMatchObject({ code: 0, signal: null, reason: "exited" })
      expect(exitOf(events).durationMs).toBeGreaterThanOrEqual(0)
    })
  )

  it.live("reports a non-zero exit code", () =>
    Effect.gen(function* () {
      const events = yield* run({ argv: ["sh", "-c", "exit 7"] })
      checkShape(events)
      expect(exitOf(events)).toMatchObject({ code: 7, signal: null, reason: "exited" })
    })
  )

  it.live("reports the signal that killed the child", () =>
    Effect.gen(function* () {
      const events = yield* run({ argv: ["sh", "-c", "echo before; kill -KILL $$; echo after"] })
      checkShape(events)
      expect(text(events)).toBe("before\n")
      expect(exitOf(events)).toMatchObject({ code: null, signal: "SIGKILL", reason: "killed" })
    })
  )

  it.live("keeps stdout and stderr apart", () =>
    Effect.gen(function* () {
      const events = yield* run({ argv: ["sh", "-c", "printf out1; printf err1 >&2; printf out2; printf err2 >&2"] })
      checkShape(events)
      expect(text(events, "stdout")).toBe("out1out2")
      expect(text(events, "stderr")).toBe("err1err2")
    })
  )

  it.live("passes argv verbatim, never through a shell", () =>
    Effect.gen(function* () {
      const events = yield* run({ argv: ["printf", "%s|", "a b", "$HOME", "`id`", "; rm -rf /"] })
      expect(text(events)).toBe("a b|$HOME|`id`|; rm -rf /|")
    })
  )

  it.live("streams output while the child still runs", () =>
    Effect.gen(function* () {
      const executor = yield* Executor
      let pid = 0
      let aliveAtFirstChunk = false
      const events = yield* executor.run({ argv: ["sh", "-c", "echo first; exec sleep 300"] }).pipe(
        Stream.tap((e) =>
          Effect.sync(() => {
            if (e._tag === "started") pid = e.pid ?? 0
            if (e._tag === "output") aliveAtFirstChunk = alive(pid)
          })
        ),
        Stream.takeUntil((e) => e._tag === "output"),
        Stream.runCollect
      )
      expect(text(Array.from(events))).toBe("first\n")
      expect(aliveAtFirstChunk).toBe(true)
      // Leaving the stream early interrupted it: the child is gone.
      expect(alive(pid)).toBe(false)
    }).pipe(Effect.provide(ProcessExecutor.layer()))
  )

  it.live("delivers large output completely and in order, to a slow reader too", () =>
    Effect.gen(function* () {
      const executor = yield* Executor
      const expected = `${Array.from({ length: 200_000 }, (_, i) => i + 1).join("\n")}\n`
      const events = Array.from(
        yield* executor.run({ argv: ["seq", "1", "200000"] }).pipe(
          // A reader slower than the child: backpressure pauses the pipe instead of buffering all.
          Stream.tap(() => Effect.yieldNow),
          Stream.runCollect
        )
      )
      checkShape(events)
      expect(text(events)).toBe(expected)
      const bytes = yield* run({ argv: ["sh", "-c", "head -c 16777216 /dev/zero; head -c 1048576 /dev/zero >&2"] })
      const size = (stream: "stdout" | "stderr") =>
        bytes.reduce((n, e) => n + (e._tag === "output" && e.stream === stream ? e.data.length : 0), 0)
      expect(size("stdout")).toBe(16 * 1024 * 1024)
      expect(size("stderr")).toBe(1024 * 1024)
      expect(exitOf(bytes).code).toBe(0)
    }).pipe(Effect.provide(ProcessExecutor.layer()))
  )

  it.live("interruption kills the whole process group: no orphan", () =>
    Effect.gen(function* () {
      const executor = yield* Executor
      let leader = 0
      const events = Array.from(
        yield* executor.run({ argv: ["sh", "-c", "sleep 300 & echo $!; wait"] }).pipe(
          Stream.tap((e) =>
            Effect.sync(() => {
              if (e._tag === "started") leader = e.pid ?? 0
            })
          ),
          Stream.takeUntil((e) => e._tag === "output"),
          Stream.runCollect
        )
      )
      const grandchild = Number(text(events).trim())
      expect(leader).toBeGreaterThan(0)
      expect(grandchild).toBeGreaterThan(0)
      expect(alive(leader)).toBe(false)
      expect(alive(grandchild)).toBe(false)
    }).pipe(Effect.provide(ProcessExecutor.layer()))
  )

  it.live("escalates to SIGKILL when the group ignores SIGTERM", () =>
    Effect.gen(function* () {
      const executor = yield* Executor
      let leader = 0
      const events = Array.from(
        yield* executor.run({ argv: ["sh", "-c", "trap '' TERM; sleep 300 & echo $!; wait; wait"] }).pipe(
          Stream.tap((e) =>
            Effect.sync(() => {
              if (e._tag === "started") leader = e.pid ?? 0
            })
          ),
          Stream.takeUntil((e) => e._tag === "output"),
          Stream.runCollect
        )
      )
      const grandchild = Number(text(events).trim())
      expect(alive(leader)).toBe(false)
      expect(alive(grandchild)).toBe(false)
    }).pipe(Effect.provide(ProcessExecutor.layer({ killGraceMs: 300 })))
  )

  it.live("interrupting the consuming fiber kills the group", () =>
    Effect.gen(function* () {
      const executor = yield* Executor
      const pids: Array<number> = []
      const bothKnown = yield* Deferred.make<void>()
      const fiber = yield* executor.run({ argv: ["sh", "-c", "sleep 300 & echo $!; wait"] }).pipe(
        Stream.runForEach((e) => {
          if (e._tag === "started") pids.push(e.pid ?? 0)
          if (e._tag === "output") pids.push(Number(decoder.decode(e.data).trim()))
          return pids.length === 2 ? Deferred.succeed(bothKnown, undefined) : Effect.void
        }),
        Effect.forkChild
      )
      yield* Deferred.await(bothKnown)
      expect(pids.map(alive)).toEqual([true, true])
      yield* Fiber.interrupt(fiber)
      expect(pids.map(alive)).toEqual([false, false])
    }).pipe(Effect.provide(ProcessExecutor.layer()))
  )

  it.live("terminates what the child left running when it exits", () =>
    Effect.gen(function* () {
      const events = yield* run({ argv: ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"] })
      checkShape(events)
      expect(exitOf(events)).toMatchObject({ code: 0, reason: "exited" })
      expect(events.some((e) => e._tag === "note" && e.kind === "orphans")).toBe(true)
      expect(alive(Number(text(events).trim()))).toBe(false)
    })
  )

  it.live("timeout kills the group and reports reason timeout", () =>
    Effect.gen(function* () {
      const events = yield* run({ argv: ["sh", "-c", "echo $$; sleep 300 & echo $!; wait"], timeoutMs: 500 })
      checkShape(events)
      expect(exitOf(events)).toMatchObject({ code: null, signal: "SIGTERM", reason: "timeout" })
      for (const pid of text(events).trim().split("\n").map(Number)) expect(alive(pid)).toBe(false)
    })
  )
})

describe("ProcessExecutor: PTY mode", () => {
  it.live("the child sees a terminal (and does not in pipe mode)", () =>
    Effect.gen(function* () {
      const argv = ["sh", "-c", "if test -t 1; then echo tty; else echo notty; fi; exit 4"]
      const pty = yield* run({ argv, tty: true })
      checkShape(pty)
      expect(text(pty).trim()).toBe("tty")
      expect(exitOf(pty)).toMatchObject({ code: 4, signal: null, reason: "exited" })
      expect(text(yield* run({ argv })).trim()).toBe("notty")
    })
  )

  it.live("merges stderr into stdout and reports signals", () =>
    Effect.gen(function* () {
      const events = yield* run({ argv: ["sh", "-c", "echo out; echo err >&2; kill -KILL $$"], tty: true })
      checkShape(events)
      expect(events.some((e) => e._tag === "output" && e.stream === "stderr")).toBe(false)
      expect(text(events).replaceAll("\r\n", "\n")).toBe("out\nerr\n")
      expect(exitOf(events)).toMatchObject({ code: null, signal: "SIGKILL", reason: "killed" })
    })
  )

  it.live("delivers large output completely, also to a slow reader", () =>
    Effect.gen(function* () {
      const executor = yield* Executor
      const expected = `${Array.from({ length: 100_000 }, (_, i) => i + 1).join("\n")}\n`
      const events = Array.from(
        yield* executor.run({ argv: ["seq", "1", "100000"], tty: true }).pipe(
          Stream.tap(() => Effect.yieldNow),
          Stream.runCollect
        )
      )
      checkShape(events)
      expect(text(events).replaceAll("\r\n", "\n")).toBe(expected)
    }).pipe(Effect.provide(ProcessExecutor.layer()))
  )

  it.live("uses the configured terminal size", () =>
    Effect.gen(function* () {
      const events = yield* runWith({ argv: ["stty", "size"], tty: true }, { cols: 132, rows: 40 })
      expect(text(events).trim()).toBe("40 132")
    })
  )

  it.live("interruption kills the whole group", () =>
    Effect.gen(function* () {
      const executor = yield* Executor
      let leader = 0
      const events = Array.from(
        yield* executor.run({ argv: ["sh", "-c", "sleep 300 & echo $!; wait"], tty: true }).pipe(
          Stream.tap((e) =>
            Effect.sync(() => {
              if (e._tag === "started") leader = e.pid ?? 0
            })
          ),
          Stream.takeUntil((e) => e._tag === "output"),
          Stream.runCollect
        )
      )
      const grandchild = Number(text(events).trim())
      expect(grandchild).toBeGreaterThan(0)
      expect(alive(leader)).toBe(false)
      expect(alive(grandchild)).toBe(false)
    }).pipe(Effect.provide(ProcessExecutor.layer()))
  )

  it.live("timeout works under a PTY", () =>
    Effect.gen(function* () {
      const events = yield* run({ argv: ["sleep", "300"], tty: true, timeoutMs: 200 })
      checkShape(events)
      expect(exitOf(events)).toMatchObject({ signal: "SIGTERM", reason: "timeout" })
    })
  )
})

describe("ProcessExecutor: environment", () => {
  const RUNNER_VAR = "RUNLANE_EXEC_PROCESS_TEST_RUNNER_ONLY"
  process.env[RUNNER_VAR] = "from-the-runner"

  const envOf = (events: ReadonlyArray<ExecEvent>) =>
    Object.fromEntries(
      text(events)
        .split("\0")
        .filter((line) => line !== "")
        .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)])
    )

  it.live("the child gets exactly spec.env, secrets and a minimal PATH", () =>
    Effect.gen(function* () {
      const env = envOf(
        yield* run({
          argv: ["env", "-0"],
          env: { GREETING: "hello world" },
          secrets: { API_TOKEN: Redacted.make("tok-3f9a") }
        })
      )
      expect(env).toEqual({ GREETING: "hello world", API_TOKEN: "tok-3f9a", PATH: expect.any(String) })
      expect(env.PATH).toContain("/usr/bin")
      expect(env[RUNNER_VAR]).toBeUndefined()
    })
  )

  it.live("a PATH in spec.env wins; secrets reach a PTY child too", () =>
    Effect.gen(function* () {
      const events = yield* run({
        argv: ["/bin/sh", "-c", 'printf "%s|%s" "$PATH" "$API_TOKEN"'],
        env: { PATH: "/nowhere:/bin" },
        secrets: { API_TOKEN: Redacted.make("tok-pty") },
        tty: true
      })
      expect(text(events)).toBe("/nowhere:/bin|tok-pty")
    })
  )

  it.live("inheritEnv: true starts from the runner's environment", () =>
    Effect.gen(function* () {
      const env = envOf(yield* runWith({ argv: ["env", "-0"], env: { EXTRA: "1" } }, { inheritEnv: true }))
      expect(env[RUNNER_VAR]).toBe("from-the-runner")
      expect(env.EXTRA).toBe("1")
    })
  )

  it.live("runs in spec.cwd", () =>
    Effect.gen(function* () {
      expect(text(yield* run({ argv: ["pwd"], cwd: tmp })).trim()).toBe(tmp)
    })
  )
})

describe("ProcessExecutor: refusals and failures", () => {
  const refused = (spec: Partial<ExecSpec>, field: string) =>
    Effect.gen(function* () {
      const error = yield* failureOf({ argv: ["true"], ...spec })
      expect(error._tag).toBe("UnsupportedSpec")
      if (error._tag !== "UnsupportedSpec") return
      expect(error.executor).toBe("process")
      expect(error.field).toBe(field)
      expect(error.message.length).toBeGreaterThan(20)
    })

  it.live("refuses image, non-host network, mounts, resources and another user", () =>
    Effect.gen(function* () {
      yield* refused({ image: "alpine:3" }, "image")
      yield* refused({ network: { _tag: "none" } }, "network")
      yield* refused({ network: { _tag: "allow", destinations: ["127.0.0.1:80"] } }, "network")
      yield* refused({ mounts: [{ source: "/tmp", target: "/data" }] }, "mounts")
      yield* refused({ resources: { memoryBytes: 1 << 20 } }, "resources.memoryBytes")
      yield* refused({ resources: { pids: 10 } }, "resources.pids")
      yield* refused({ user: "runlane-nobody-here" }, "user")
    })
  )

  it.live("accepts host network, empty mounts, labels and the current user", () =>
    Effect.gen(function* () {
      const me = userInfo()
      for (const spec of [
        { network: { _tag: "host" as const } },
        { mounts: [] },
        { labels: { team: "ci" } },
        { user: me.username },
        { user: String(me.uid) }
      ]) {
        expect(exitOf(yield* run({ argv: ["true"], ...spec })).code).toBe(0)
      }
    })
  )

  it.live("a missing command is an ExecError (pipe and PTY)", () =>
    Effect.gen(function* () {
      for (const tty of [false, true]) {
        const error = yield* failureOf({ argv: ["runlane-no-such-command-here"], tty })
        expect(error._tag).toBe("ExecError")
        expect(error.message).toContain("runlane-no-such-command-here")
        expect(error.message).toContain("ENOENT")
      }
    })
  )

  it.live("a file without execute permission is EACCES", () =>
    Effect.gen(function* () {
      const script = join(tmp, "not-executable.sh")
      writeFileSync(script, "#!/bin/sh\necho hi\n")
      chmodSync(script, 0o644)
      for (const tty of [false, true]) {
        const error = yield* failureOf({ argv: [script], tty })
        expect(error._tag).toBe("ExecError")
        expect(error.message).toContain("EACCES")
      }
    })
  )

  it.live("a missing cwd is an ExecError naming it", () =>
    Effect.gen(function* () {
      const error = yield* failureOf({ argv: ["true"], cwd: join(tmp, "missing") })
      expect(error._tag).toBe("ExecError")
      expect(error.message).toContain("cwd")
    })
  )

  it.live("malformed env is an ExecError that never shows the secret", () =>
    Effect.gen(function* () {
      const error = yield* failureOf({ argv: ["true"], secrets: { TOKEN: Redacted.make("sekrit-value\0tail") } })
      expect(error._tag).toBe("ExecError")
      expect(error.message).toContain("secrets.TOKEN")
      expect(JSON.stringify(error)).not.toContain("sekrit")
      const badName = yield* failureOf({ argv: ["true"], env: { "A=B": "x" } })
      expect(badName.message).toContain("env")
    })
  )
})

describe("spawnStream", () => {
  it.live("runs a command without ExecSpec policy checks", () =>
    Effect.gen(function* () {
      const events = Array.from(
        yield* Stream.runCollect(
          spawnStream({ argv: ["sh", "-c", "echo $X"], env: { X: "raw" } }, { executor: "sandbox" })
        )
      )
      checkShape(events)
      expect(text(events)).toBe("raw\n")
      const error = yield* Effect.flip(Stream.runDrain(spawnStream({ argv: [] }, { executor: "sandbox" })))
      expect(error.executor).toBe("sandbox")
    })
  )
})
