import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { promisify } from "node:util"
import type { ExecEvent, ExecSpec } from "@runlane/core"
import { Executor } from "@runlane/core"
import { DockerExecutor, type DockerExecutorConfig } from "@runlane/exec-docker"
import { requireService } from "@runlane/testkit"
import Docker from "dockerode"
import { Effect, Exit, Stream } from "effect"

export const BUSYBOX = "runlane-test/busybox:1"
export const BUSYBOX_NOUSER = "runlane-test/busybox-nouser:1"
export const NODE = "runlane-test/node:24"

export const dockerAvailable = () =>
  requireService("Docker Engine with the runlane-test images (scripts/setup.d/10-docker.sh)", async () => {
    try {
      const docker = new Docker()
      await docker.ping()
      await docker.getImage(BUSYBOX).inspect()
      await docker.getImage(NODE).inspect()
      return true
    } catch {
      return false
    }
  })

/** A runner id unique to this test file run (containers are labelled with it). */
export const runnerId = `test-${process.pid}-${randomBytes(4).toString("hex")}`
export const uniqueJob = (name: string) => `${name}-${randomBytes(4).toString("hex")}`

export const baseConfig = (overrides: Partial<DockerExecutorConfig> = {}): DockerExecutorConfig => ({
  runnerId,
  stopGraceMs: 1000,
  reapOrphans: false,
  ...overrides
})

export const runSpec = (
  spec: ExecSpec,
  config: Partial<DockerExecutorConfig> = {}
): Promise<Exit.Exit<Array<ExecEvent>, unknown>> =>
  Effect.runPromiseExit(
    Effect.gen(function* () {
      const executor = yield* Executor
      return yield* Stream.runCollect(executor.run(spec))
    }).pipe(Effect.provide(DockerExecutor.layer(baseConfig(config))))
  )

export const collect = async (spec: ExecSpec, config: Partial<DockerExecutorConfig> = {}) => {
  const exit = await runSpec(spec, config)
  if (Exit.isFailure(exit)) throw new Error(`run failed: ${String(exit.cause)}`)
  return exit.value
}

const decoder = () => new TextDecoder()
export const text = (events: ReadonlyArray<ExecEvent>, stream: "stdout" | "stderr") => {
  const d = decoder()
  let out = ""
  for (const e of events) if (e._tag === "output" && e.stream === stream) out += d.decode(e.data, { stream: true })
  return out + d.decode()
}

export const exitedOf = (events: ReadonlyArray<ExecEvent>) => {
  const last = events[events.length - 1]
  if (last?._tag !== "exited") throw new Error(`last event is not exited: ${JSON.stringify(last)}`)
  return last
}

export const dockerCli = async (...args: Array<string>): Promise<string> =>
  (await promisify(execFile)("docker", args, { maxBuffer: 64 * 1024 * 1024 })).stdout

/** Container ids (all states) carrying this label. */
export const containersWithLabel = async (label: string): Promise<Array<string>> =>
  (await dockerCli("ps", "-aq", "--filter", `label=${label}`)).split("\n").filter((l) => l !== "")
