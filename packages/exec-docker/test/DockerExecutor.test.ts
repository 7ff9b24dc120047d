import { spawn } from "node:child_process"
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { type AddressInfo, createServer, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { type ExecEvent, Executor, maskStream, SecretMasker } from "@runlane/core"
import { type DockerExecSpec, DockerExecutor } from "@runlane/exec-docker"
import { requireService, tcpReachable } from "@runlane/testkit"
import type Docker from "dockerode"
import { Cause, Deferred, Effect, Exit, Fiber, Redacted, Stream } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import {
  BUSYBOX,
  BUSYBOX_NOUSER,
  baseConfig,
  collect,
  containersWithLabel,
  dockerAvailable,
  dockerCli,
  exitedOf,
  NODE,
  runnerId,
  runSpec,
  text,
  uniqueJob
} from "./support.ts"

const available = await dockerAvailable()
const REGISTRY = "127.0.0.1:5055"
const registry =
  available &&
  (await requireService(`the loopback registry ${REGISTRY} (scripts/setup.d/10-docker.sh)`, () => tcpReachable(5055)))

const failureOf = (exit: Exit.Exit<unknown, unknown>): unknown => {
  if (Exit.isSuccess(exit)) throw new Error("expected a failure")
  const error = Cause.squash(exit.cause)
  return error
}

describe.skipIf(!available)("DockerExecutor on a real engine", () => {
  const tempDirs: Array<string> = []
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "runlane-exec-docker-"))
    tempDirs.push(dir)
    return dir
  }
  afterAll(async () => {
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
    // nothing of this file's runner may be left behind
    const left = await containersWithLabel(`runlane.runner=${runnerId}`)
    if (left.length > 0) await dockerCli("rm", "-f", ...left)
    expect(left).toEqual([])
  })

  describe("exit codes and streams", () => {
    it("reports the container's exit code, started first and exited last", async () => {
      const ok = await collect({ argv: ["true"], image: BUSYBOX })
      expect(ok[0]?._tag).toBe("started")
      expect(exitedOf(ok)).toMatchObject({ code: 0, signal: null, reason: "exited" })
      const failed = await collect({ argv: ["sh", "-c", "exit 42"], image: BUSYBOX })
      expect(exitedOf(failed)).toMatchObject({ code: 42, signal: null, reason: "exited" })
      expect(failed.filter((e) => e._tag === "started" || e._tag === "exited")).toHaveLength(2)
    })

    it("an unknown command exits 127 with the reason on stderr", async () => {
      const events = await collect({ argv: ["/no/such/binary"], image: BUSYBOX })
      expect(exitedOf(events)).toMatchObject({ code: 127, reason: "exited" })
      expect(text(events, "stderr")).toContain("/no/such/binary")
    })

    it("keeps stdout and stderr apart, each in order", async () => {
      const script = "i=1; while [ $i -le 200 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done"
      const events = await collect({ argv: ["sh", "-c", script], image: BUSYBOX })
      const expected = (p: string) => Array.from({ length: 200 }, (_, i) => `${p}${i + 1}\n`).join("")
      expect(text(events, "stdout")).toBe(expected("out"))
      expect(text(events, "stderr")).toBe(expected("err"))
    })

    it("delivers 100 MB of output completely before exited", async () => {
      const pattern = new TextEncoder().encode("abcdefghijklmno\n")
      const total = 100 * 1024 * 1024
      const expected = Buffer.alloc(4 * 1024 * 1024 + 16)
      for (let i = 0; i < expected.length; i++) expected[i] = pattern[i % 16] ?? 0
      let received = 0
      let mismatch = -1
      let exited: ExecEvent | undefined
      let afterExit = 0
      const program = Effect.gen(function* () {
        const executor = yield* Executor
        yield* Stream.runForEach(
          executor.run({
            argv: [
              "sh",
              "-c",
              `yes abcdefghijklmno | head -c 1048576 > /tmp/p; i=0; while [ $i -lt ${total / 1048576} ]; do cat /tmp/p; i=$((i+1)); done`
            ],
            image: BUSYBOX
          }),
          (e) =>
            Effect.sync(() => {
              if (e._tag === "output") {
                if (exited !== undefined) afterExit++
                if (e.stream !== "stdout") return
                const offset = received % 16
                const data = Buffer.from(e.data.buffer, e.data.byteOffset, e.data.length)
                if (
                  mismatch < 0 &&
                  (data.length > expected.length - 16 || !data.equals(expected.subarray(offset, offset + data.length)))
                ) {
                  mismatch = received
                }
                received += e.data.length
              } else if (e._tag === "exited") exited = e
            })
        )
      }).pipe(Effect.provide(DockerExecutor.layer(baseConfig())))
      await Effect.runPromise(program)
      expect(received).toBe(total)
      expect(mismatch).toBe(-1)
      expect(afterExit).toBe(0)
      expect(exited).toMatchObject({ _tag: "exited", code: 0 })
    })

    it("TTY mode: the command sees a terminal, output arrives on stdout", async () => {
      const script = "if [ -t 1 ]; then echo is-a-tty; else echo not-a-tty; fi"
      const tty = await collect({ argv: ["sh", "-c", script], image: BUSYBOX, tty: true })
      expect(text(tty, "stdout")).toBe("is-a-tty\r\n")
      expect(tty.some((e) => e._tag === "output" && e.stream === "stderr")).toBe(false)
      const pipe = await collect({ argv: ["sh", "-c", script], image: BUSYBOX })
      expect(text(pipe, "stdout")).toBe("not-a-tty\n")
    })

    it("passes env and runs JavaScript in the Node image", async () => {
      const events = await collect({
        argv: ["node", "-e", "console.log(process.version.split('.')[0], process.env.GREETING)"],
        image: NODE,
        env: { GREETING: "hello world" }
      })
      expect(text(events, "stdout")).toBe("v24 hello world\n")
    })
  })

  describe("workspace", () => {
    it("mounts the workspace at /job (files visible, artifacts written back)", async () => {
      const ws = tempDir()
      mkdirSync(join(ws, "src"))
      mkdirSync(join(ws, "artifacts"))
      writeFileSync(join(ws, "src", "input.txt"), "from the host\n")
      chmodSync(ws, 0o777)
      chmodSync(join(ws, "artifacts"), 0o777)
      const events = await collect({
        argv: ["sh", "-c", "pwd; cat /job/src/input.txt; echo built > /job/artifacts/out.txt"],
        image: BUSYBOX,
        cwd: ws
      })
      expect(exitedOf(events).code).toBe(0)
      expect(text(events, "stdout")).toBe("/job\nfrom the host\n")
      expect(readFileSync(join(ws, "artifacts", "out.txt"), "utf8")).toBe("built\n")
    })

    it("extra mounts honour readOnly", async () => {
      const ro = tempDir()
      writeFileSync(join(ro, "data.txt"), "read me\n")
      const events = await collect({
        argv: ["sh", "-c", "cat /data/data.txt; touch /data/new 2>/dev/null && echo wrote || echo refused"],
        image: BUSYBOX,
        mounts: [{ source: ro, target: "/data", readOnly: true }],
        user: "0"
      })
      expect(text(events, "stdout")).toBe("read me\nrefused\n")
    })
  })

  describe("timeout and interruption", () => {
    it("timeout: SIGTERM stops it, reason timeout, container removed", async () => {
      const job = uniqueJob("timeout")
      const events = await collect({
        argv: ["sleep", "30"],
        image: BUSYBOX,
        timeoutMs: 300,
        labels: { "runlane.job": job }
      })
      expect(exitedOf(events)).toMatchObject({ reason: "timeout", signal: "SIGTERM", code: 143 })
      expect(await containersWithLabel(`runlane.job=${job}`)).toEqual([])
    })

    it("timeout: a process that ignores SIGTERM is killed after the grace period", async () => {
      const job = uniqueJob("timeout-kill")
      const events = await collect(
        {
          argv: ["sh", "-c", "trap '' TERM; echo armed; while true; do sleep 1; done"],
          image: BUSYBOX,
          timeoutMs: 1500,
          labels: { "runlane.job": job }
        },
        { stopGraceMs: 700 }
      )
      expect(text(events, "stdout")).toBe("armed\n")
      expect(exitedOf(events)).toMatchObject({ reason: "timeout", signal: "SIGKILL", code: 137 })
      expect(await containersWithLabel(`runlane.job=${job}`)).toEqual([])
    })

    it("interrupting the stream removes the container before the interruption completes", async () => {
      const job = uniqueJob("interrupt")
      let seenRunning: Array<string> = []
      const program = Effect.gen(function* () {
        const executor = yield* Executor
        const up = yield* Deferred.make<void>()
        const fiber = yield* Effect.forkChild(
          Stream.runForEach(
            executor.run({ argv: ["sh", "-c", "echo up; sleep 30"], image: BUSYBOX, labels: { "runlane.job": job } }),
            (e) =>
              e._tag === "output"
                ? Effect.promise(async () => {
                    seenRunning = await containersWithLabel(`runlane.job=${job}`)
                  }).pipe(Effect.andThen(Deferred.succeed(up, undefined)))
                : Effect.void
          )
        )
        yield* Deferred.await(up)
        yield* Fiber.interrupt(fiber)
        // the interruption has completed: nothing may be left
        return yield* Effect.promise(() => containersWithLabel(`runlane.job=${job}`))
      }).pipe(Effect.provide(DockerExecutor.layer(baseConfig({ stopGraceMs: 500 }))))
      const leftAfterInterrupt = await Effect.runPromise(program)
      expect(seenRunning).toHaveLength(1)
      expect(leftAfterInterrupt).toEqual([])
    })

    it("ending the stream early (take) also removes the container", async () => {
      const job = uniqueJob("take")
      const events = await Effect.runPromise(
        Effect.gen(function* () {
          const executor = yield* Executor
          return yield* Stream.runCollect(
            executor
              .run({ argv: ["sh", "-c", "echo one; sleep 30"], image: BUSYBOX, labels: { "runlane.job": job } })
              .pipe(Stream.take(2))
          )
        }).pipe(Effect.provide(DockerExecutor.layer(baseConfig({ stopGraceMs: 500 }))))
      )
      expect(events.map((e) => e._tag)).toEqual(["started", "output"])
      expect(await containersWithLabel(`runlane.job=${job}`)).toEqual([])
    })

    it("a runner killed mid-job leaves a labelled container that its successor reaps", async () => {
      const dead = `dead-${runnerId}`
      const job = uniqueJob("dead-runner")
      const fixture = fileURLToPath(new URL("./fixtures/runner-that-dies.ts", import.meta.url))
      const child = spawn(process.execPath, ["--conditions=source", fixture, dead, job], {
        stdio: ["ignore", "pipe", "inherit"]
      })
      await new Promise<void>((resolve, reject) => {
        child.stdout.on("data", (d: Buffer) => d.toString().includes("running") && resolve())
        child.on("exit", (code) => reject(new Error(`fixture exited early (${code})`)))
      })
      child.kill("SIGKILL")
      await new Promise((resolve) => child.once("close", resolve))
      try {
        // SIGKILL runs no finalizer: the container outlives its runner
        expect(await containersWithLabel(`runlane.job=${job}`)).toHaveLength(1)
        await Effect.runPromise(
          Effect.gen(function* () {
            yield* Executor
          }).pipe(Effect.provide(DockerExecutor.layer(baseConfig({ runnerId: dead, reapOrphans: true }))))
        )
        expect(await containersWithLabel(`runlane.job=${job}`)).toEqual([])
      } finally {
        const left = await containersWithLabel(`runlane.runner=${dead}`)
        if (left.length > 0) await dockerCli("rm", "-f", ...left)
      }
    })

    it("reaps this runner's orphans at start-up, and only this runner's", async () => {
      const mine = `orphan-owner-${runnerId}`
      const other = `other-owner-${runnerId}`
      const a = (await dockerCli("create", "--label", `runlane.runner=${mine}`, BUSYBOX, "sleep", "30")).trim()
      await dockerCli("start", a)
      const b = (await dockerCli("create", "--label", `runlane.runner=${mine}`, BUSYBOX, "true")).trim()
      const c = (await dockerCli("create", "--label", `runlane.runner=${other}`, BUSYBOX, "true")).trim()
      try {
        await Effect.runPromise(
          Effect.gen(function* () {
            yield* Executor
          }).pipe(Effect.provide(DockerExecutor.layer(baseConfig({ runnerId: mine, reapOrphans: true }))))
        )
        expect(await containersWithLabel(`runlane.runner=${mine}`)).toEqual([])
        expect(await containersWithLabel(`runlane.runner=${other}`)).toEqual([c.slice(0, 12)])
      } finally {
        await dockerCli("rm", "-f", a, b, c).catch(() => "")
      }
    })
  })

  describe("hardened defaults", () => {
    it("verified from inside: only lo, read-only rootfs, writable /tmp, no capabilities, no-new-privileges, non-root", async () => {
      const script = [
        "echo net=$(ls /sys/class/net | tr '\\n' ' ')",
        "echo devnet=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')",
        "touch /rootfs-probe 2>/dev/null && echo rootfs=writable || echo rootfs=readonly",
        "touch /tmp/probe && echo tmp=writable",
        "grep CapEff /proc/self/status",
        "grep NoNewPrivs /proc/self/status",
        "echo uid=$(id -u)",
        "ls /dev"
      ].join("; ")
      const events = await collect({ argv: ["sh", "-c", script], image: BUSYBOX })
      const out = text(events, "stdout")
      expect(out).toMatch(/^net=lo$/m)
      expect(out).toMatch(/^devnet=lo$/m)
      expect(out).toContain("rootfs=readonly\n")
      expect(out).toContain("tmp=writable\n")
      expect(out).toMatch(/CapEff:\s+0000000000000000\n/)
      expect(out).toMatch(/NoNewPrivs:\s+1\n/)
      expect(out).toContain("uid=1000\n")
      // only the standard pseudo devices, no host devices
      expect(out).not.toMatch(/\b(sd[a-z]|vd[a-z]|nvme\d|kvm|mem)\b/)
    })

    it("uses the fallback user (nobody) when the image declares none, root only when asked", async () => {
      const fallback = await collect({ argv: ["id", "-u"], image: BUSYBOX_NOUSER })
      expect(text(fallback, "stdout")).toBe("65534\n")
      const asked = await collect({ argv: ["id", "-u"], image: BUSYBOX_NOUSER, user: "0" })
      expect(text(asked, "stdout")).toBe("0\n")
      // even root has no capabilities
      const caps = await collect({ argv: ["grep", "CapEff", "/proc/self/status"], image: BUSYBOX_NOUSER, user: "0" })
      expect(text(caps, "stdout")).toMatch(/CapEff:\s+0000000000000000/)
    })

    it("cannot exceed the PIDs limit", async () => {
      // the spawning subshell dies when fork fails; counting uses a glob (no fork needed)
      const script =
        "(i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done); n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo procs=$n"
      const events = await collect({ argv: ["sh", "-c", script], image: BUSYBOX, resources: { pids: 12 } })
      const procs = Number(/procs=(\d+)/.exec(text(events, "stdout"))?.[1])
      expect(procs).toBeGreaterThan(0)
      expect(procs).toBeLessThanOrEqual(12)
      expect(text(events, "stderr")).toMatch(/fork/i)
    })

    it("reports an OOM kill as reason oom", async () => {
      const hog = "const a = []; for (;;) a.push(Buffer.alloc(4 * 1024 * 1024, 1))"
      const events = await collect({
        argv: ["node", "-e", hog],
        image: NODE,
        resources: { memoryBytes: 64 * 1024 * 1024 }
      })
      expect(exitedOf(events)).toMatchObject({ reason: "oom", code: 137, signal: "SIGKILL" })
    })

    it("verified from docker inspect; secrets absent from inspect, present in the process, masked in output", async () => {
      const job = uniqueJob("inspect")
      const secret = `s3cr3t-${Math.random().toString(36).slice(2)}-value`
      const secretDir = tempDir()
      let inspected = ""
      const spec = {
        argv: ["sh", "-c", 'echo "token=$API_TOKEN"; sleep 2'],
        image: BUSYBOX,
        env: { PLAIN: "visible" },
        secrets: { API_TOKEN: Redacted.make(secret) },
        resources: { memoryBytes: 256 * 1024 * 1024, cpus: 0.5, pids: 64 },
        labels: { "runlane.job": job, team: "ci" }
      }
      const masker = new SecretMasker([secret])
      let raw = ""
      let masked = ""
      await Effect.runPromise(
        Effect.gen(function* () {
          const executor = yield* Executor
          const events = executor.run(spec)
          yield* Stream.runForEach(events, (e) =>
            e._tag === "output"
              ? Effect.promise(async () => {
                  raw += new TextDecoder().decode(e.data)
                  if (inspected === "") {
                    const [id] = await containersWithLabel(`runlane.job=${job}`)
                    inspected = await dockerCli("inspect", id ?? "none")
                  }
                })
              : Effect.void
          )
          masked = new TextDecoder().decode(
            Buffer.concat(
              yield* Stream.runCollect(
                Stream.make(new TextEncoder().encode(raw.slice(0, 9)), new TextEncoder().encode(raw.slice(9))).pipe(
                  maskStream(masker)
                )
              )
            )
          )
        }).pipe(Effect.provide(DockerExecutor.layer(baseConfig({ secretDir }))))
      )
      expect(raw).toBe(`token=${secret}\n`)
      expect(masked).toBe("token=***\n")
      expect(inspected).not.toBe("")
      expect(inspected).not.toContain(secret)
      expect(inspected).not.toContain(Buffer.from(secret).toString("base64"))
      const [info] = JSON.parse(inspected) as Array<Docker.ContainerInspectInfo>
      const host = info?.HostConfig
      expect(host?.NetworkMode).toBe("none")
      expect(host?.ReadonlyRootfs).toBe(true)
      expect(host?.CapDrop).toEqual(["ALL"])
      expect(host?.CapAdd ?? []).toEqual([])
      expect(host?.SecurityOpt).toEqual(["no-new-privileges:true"])
      expect(host?.Privileged).toBe(false)
      expect(host?.Devices ?? []).toEqual([])
      expect(host?.Tmpfs).toEqual({ "/tmp": "rw,nosuid,nodev,size=128m" })
      expect(host?.Memory).toBe(256 * 1024 * 1024)
      expect(host?.NanoCpus).toBe(500_000_000)
      expect(host?.PidsLimit).toBe(64)
      expect(info?.Config.User).toBe("runner")
      expect(info?.Config.Env).toContain("PLAIN=visible")
      expect(info?.Config.Labels).toMatchObject({ "runlane.runner": runnerId, "runlane.job": job, team: "ci" })
      expect((info?.Mounts ?? []).every((m) => !m.Source.includes("docker.sock"))).toBe(true)
      // the FIFO that carried the secret is gone with the job
      expect(readdirSync(secretDir)).toEqual([])
      expect(await containersWithLabel(`runlane.job=${job}`)).toEqual([])
    })

    it("secrets also reach a TTY job (the FIFO, not stdin, carries them)", async () => {
      const secret = "tty-secret-with 'quotes' and $dollar"
      const events = await collect({
        argv: ["sh", "-c", 'printf "%s|" "$TTY_SECRET"'],
        image: BUSYBOX,
        tty: true,
        secrets: { TTY_SECRET: Redacted.make(secret) }
      })
      expect(text(events, "stdout")).toBe(`${secret}|`)
    })

    it("refuses an invalid variable name", async () => {
      const exit = await runSpec({ argv: ["true"], image: BUSYBOX, secrets: { "BAD-NAME": Redacted.make("x") } })
      expect(failureOf(exit)).toMatchObject({ _tag: "UnsupportedSpec", field: "secrets" })
      const exit2 = await runSpec({ argv: ["true"], image: BUSYBOX, env: { "A=B": "x" } })
      expect(failureOf(exit2)).toMatchObject({ _tag: "UnsupportedSpec", field: "env" })
    })

    it("applies the configured default limits when the spec has none", async () => {
      const job = uniqueJob("defaults")
      let inspected = ""
      await Effect.runPromise(
        Effect.gen(function* () {
          const executor = yield* Executor
          yield* Stream.runForEach(
            executor.run({ argv: ["sh", "-c", "echo x; sleep 1"], image: BUSYBOX, labels: { "runlane.job": job } }),
            (e) =>
              e._tag === "output"
                ? Effect.promise(async () => {
                    const [id] = await containersWithLabel(`runlane.job=${job}`)
                    inspected = await dockerCli("inspect", "-f", "{{json .HostConfig}}", id ?? "none")
                  })
                : Effect.void
          )
        }).pipe(
          Effect.provide(
            DockerExecutor.layer(
              baseConfig({ defaultResources: { memoryBytes: 128 * 1024 * 1024, cpus: 1.5, pids: 99 } })
            )
          )
        )
      )
      const host = JSON.parse(inspected) as Docker.HostConfig
      expect(host.Memory).toBe(128 * 1024 * 1024)
      expect(host.NanoCpus).toBe(1_500_000_000)
      expect(host.PidsLimit).toBe(99)
    })

    it("host networking only when the spec asks for it", async () => {
      const events = await collect({
        argv: ["sh", "-c", "ls /sys/class/net | wc -l"],
        image: BUSYBOX,
        network: { _tag: "host" }
      })
      expect(Number(text(events, "stdout").trim())).toBeGreaterThan(1)
    })
  })

  describe.skipIf(!registry)("pulls from the loopback registry", () => {
    const image = `${REGISTRY}/runlane-test/busybox:1`
    const notesOf = (events: ReadonlyArray<ExecEvent>) =>
      events.flatMap((e, i) => (e._tag === "note" ? [{ ...e, index: i }] : []))

    it("if-not-present: pulls a missing image, reporting progress as note events before started", async () => {
      await dockerCli("rmi", "-f", image).catch(() => "")
      const events = await collect({ argv: ["sh", "-c", "echo pulled-and-ran"], image })
      const notes = notesOf(events)
      expect(notes.length).toBeGreaterThan(0)
      expect(notes.every((n) => n.kind === "pull" && n.message.startsWith(`${image}: `))).toBe(true)
      expect(notes.map((n) => n.message).join("\n")).toContain("Downloaded newer image")
      const started = events.findIndex((e) => e._tag === "started")
      expect(Math.max(...notes.map((n) => n.index))).toBeLessThan(started)
      expect(text(events, "stdout")).toBe("pulled-and-ran\n")
      // present now: if-not-present does not pull again
      expect(notesOf(await collect({ argv: ["true"], image }))).toEqual([])
    })

    it("always: pulls even a present image", async () => {
      const events = await collect({ argv: ["true"], image }, { imagePolicy: "always" })
      expect(
        notesOf(events)
          .map((n) => n.message)
          .join("\n")
      ).toContain("Image is up to date")
      expect(exitedOf(events).code).toBe(0)
    })
  })

  describe("refusals and errors", () => {
    const refused = async (spec: DockerExecSpec, field: string) => {
      const job = uniqueJob("refused")
      const exit = await runSpec({ ...spec, labels: { "runlane.job": job } })
      const error = failureOf(exit) as { _tag: string; field: string; message: string }
      expect(error._tag).toBe("UnsupportedSpec")
      expect(error.field).toBe(field)
      expect(await containersWithLabel(`runlane.job=${job}`)).toEqual([])
      return error
    }

    it("refuses a privileged request", async () => {
      await refused({ argv: ["true"], image: BUSYBOX, docker: { privileged: true } }, "privileged")
      await refused({ argv: ["true"], image: BUSYBOX, privileged: true } as DockerExecSpec, "privileged")
    })

    it("refuses an allow-list network and mounting the engine socket or host devices", async () => {
      await refused(
        { argv: ["true"], image: BUSYBOX, network: { _tag: "allow", destinations: ["127.0.0.1:1"] } },
        "network"
      )
      const e = await refused(
        { argv: ["true"], image: BUSYBOX, mounts: [{ source: "/var/run/docker.sock", target: "/docker.sock" }] },
        "mounts"
      )
      expect(e.message).toContain("docker.sock")
      await refused({ argv: ["true"], image: BUSYBOX, mounts: [{ source: "/dev", target: "/hostdev" }] }, "mounts")
    })

    it("image policy never: a missing image is an ExecError naming it", async () => {
      const exit = await runSpec({ argv: ["true"], image: "runlane-test/absent:0" }, { imagePolicy: "never" })
      const error = failureOf(exit) as { _tag: string; message: string }
      expect(error._tag).toBe("ExecError")
      expect(error.message).toContain("runlane-test/absent:0")
      expect(error.message).toContain("never")
    })

    it("a failed pull is an ExecError naming the image", async () => {
      const image = `${REGISTRY}/runlane-test/absent:0`
      const exit = await runSpec({ argv: ["true"], image })
      const error = failureOf(exit) as { _tag: string; message: string }
      expect(error._tag).toBe("ExecError")
      expect(error.message).toContain(`pulling image ${image} failed`)
    })

    it("a container that cannot start is an ExecError and is removed", async () => {
      const job = uniqueJob("bad-user")
      const exit = await runSpec({
        argv: ["true"],
        image: BUSYBOX,
        user: "no-such-user",
        labels: { "runlane.job": job }
      })
      const error = failureOf(exit) as { _tag: string; message: string }
      expect(error._tag).toBe("ExecError")
      expect(error.message).toContain("starting the container")
      expect(error.message).toContain("no-such-user")
      expect(await containersWithLabel(`runlane.job=${job}`)).toEqual([])
    })

    it("connects through DOCKER_HOST", async () => {
      const saved = process.env.DOCKER_HOST
      try {
        process.env.DOCKER_HOST = "unix:///var/run/docker.sock"
        const ok = await collect({ argv: ["true"], image: BUSYBOX })
        expect(exitedOf(ok).code).toBe(0)
        process.env.DOCKER_HOST = "unix:///nonexistent/runlane-docker.sock"
        const exit = await Effect.runPromiseExit(
          Effect.gen(function* () {
            yield* Executor
          }).pipe(Effect.provide(DockerExecutor.layer(baseConfig())))
        )
        const error = failureOf(exit) as { _tag: string; message: string }
        expect(error._tag).toBe("ExecError")
        expect(error.message).toContain("Docker Engine unreachable at unix:///nonexistent/runlane-docker.sock")
      } finally {
        if (saved === undefined) delete process.env.DOCKER_HOST
        else process.env.DOCKER_HOST = saved
      }
    })

    it("an engine that never answers is an ExecError after connectTimeoutMs", async () => {
      const sockets: Array<Socket> = []
      const silent = createServer((socket) => sockets.push(socket))
      await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve))
      const port = (silent.address() as AddressInfo).port
      try {
        const exit = await Effect.runPromiseExit(
          Effect.gen(function* () {
            yield* Executor
          }).pipe(
            Effect.provide(
              DockerExecutor.layer(
                baseConfig({ connection: { host: "127.0.0.1", port, protocol: "http" }, connectTimeoutMs: 300 })
              )
            )
          )
        )
        const error = failureOf(exit) as { _tag: string; message: string }
        expect(error._tag).toBe("ExecError")
        expect(error.message).toBe(`Docker Engine unreachable at http://127.0.0.1:${port}: no answer within 300 ms`)
      } finally {
        for (const socket of sockets) socket.destroy()
        await new Promise((resolve) => silent.close(resolve))
      }
    })

    it("an unreachable engine is a clear ExecError", async () => {
      const dir = tempDir()
      const exit = await Effect.runPromiseExit(
        Effect.gen(function* () {
          yield* Executor
        }).pipe(
          Effect.provide(DockerExecutor.layer(baseConfig({ connection: { socketPath: join(dir, "no-docker.sock") } })))
        )
      )
      const error = failureOf(exit) as { _tag: string; message: string }
      expect(error._tag).toBe("ExecError")
      expect(error.message).toContain("Docker Engine unreachable at unix://")
      expect(error.message).toContain("no-docker.sock")
    })
  })
})
