/**
 * Sandbox start-to-exit latency, measured interleaved in one run:
 * - `runlane-bubblewrap`: `true` through the sandbox executor's bubblewrap backend (network
 *   none), whole event stream drained;
 * - `bwrap-bare`: the very same bwrap argv spawned with `child_process.spawn`, waiting for 'close';
 * - `spawn-bare`: `true` spawned bare;
 * - `runlane-guest`: create a fresh QuickJS guest + `ExecuteAgent` round trip of a trivial agent.
 * - `spawnStream-bwrap`: the same bwrap argv through `@runlane/exec-process` spawnStream (attribution).
 * Prints one JSON line per system (median and p90 in ms, ratio against its anchor).
 */
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { spawnStream } from "@runlane/exec-process"
import { Effect, Stream } from "effect"
import { findExecutable } from "../src/Bubblewrap.ts"
import { bwrapArgv } from "../src/BwrapArgv.ts"
import { createRunCgroup, detectCgroups } from "../src/Cgroup.ts"
import { runGuestAgent } from "../src/GuestAgent.ts"
import { SandboxExecutor } from "../src/index.ts"
import { seccompFilterFile } from "../src/Seccomp.ts"

const RUNS = Number(process.env.BENCH_RUNS ?? 60)
const WARMUP = 10

const quantile = (sorted: ReadonlyArray<number>, q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN
const round = (n: number) => Math.round(n * 1000) / 1000
const time = async (f: () => Promise<unknown>): Promise<number> => {
  const start = performance.now()
  await f()
  return performance.now() - start
}
const spawnWait = (argv: ReadonlyArray<string>): Promise<void> =>
  new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), {
      stdio: ["ignore", "pipe", "pipe"],
      env: { PATH: "/usr/bin:/bin" }
    })
    child.stdout.resume()
    child.stderr.resume()
    child.once("error", reject)
    child.once("close", () => resolve())
  })

const main = async () => {
  const bwrap = findExecutable("bwrap")
  if (bwrap === undefined) throw new Error("bwrap is not installed (scripts/setup.d/20-sandbox.sh)")
  const work = mkdtempSync(join(tmpdir(), "runlane-sandbox-bench-"))
  try {
    const svc = await Effect.runPromise(SandboxExecutor.make({ backend: "bubblewrap" }))
    const viaExecutor = () =>
      Effect.runPromise(Stream.runDrain(svc.run({ argv: ["true"], cwd: work, network: { _tag: "none" } })))
    // The very argv the executor spawns: launcher joining a cgroup (one, reused, for the bare
    // runs), seccomp filter on fd 3, bwrap with the same namespaces and mounts.
    const bareCgroup = detectCgroups() !== null ? createRunCgroup({}) : undefined
    const bareArgv = bwrapArgv({
      bwrap,
      argv: ["true"],
      workingDir: work,
      seccompFile: seccompFilterFile() ?? undefined,
      launcher: bareCgroup !== undefined ? { cgroupProcs: bareCgroup.procs } : undefined
    })
    const viaBwrap = () => spawnWait(bareArgv)
    // Attribution: the same argv through exec-process's spawnStream (the executor's spawner).
    const viaSpawnStream = () =>
      Effect.runPromise(
        Stream.runDrain(spawnStream({ argv: bareArgv, env: { PATH: "/usr/bin:/bin" } }, { executor: "bench" }))
      )
    const viaSpawn = () => spawnWait(["true"])
    const agent = "function ExecuteAgent(prompt, mcpUrl) { return 'done: ' + prompt }"
    const viaGuest = () => Effect.runPromise(runGuestAgent({ source: agent, prompt: "hi" }))

    for (let i = 0; i < WARMUP; i++) {
      await viaExecutor()
      await viaBwrap()
      await viaSpawnStream()
      await viaSpawn()
      await viaGuest()
    }
    const samples = {
      executor: [] as Array<number>,
      bwrap: [] as Array<number>,
      spawnStream: [] as Array<number>,
      spawn: [] as Array<number>,
      guest: [] as Array<number>
    }
    for (let i = 0; i < RUNS; i++) {
      samples.executor.push(await time(viaExecutor))
      samples.bwrap.push(await time(viaBwrap))
      samples.spawnStream.push(await time(viaSpawnStream))
      samples.spawn.push(await time(viaSpawn))
      samples.guest.push(await time(viaGuest))
    }
    const stats = (xs: Array<number>) => {
      const s = [...xs].sort((a, b) => a - b)
      return { median_ms: round(quantile(s, 0.5)), p90_ms: round(quantile(s, 0.9)) }
    }
    const ex = stats(samples.executor)
    const bw = stats(samples.bwrap)
    const sp = stats(samples.spawn)
    const ss = stats(samples.spawnStream)
    const gu = stats(samples.guest)
    const line = (o: Record<string, unknown>) => console.log(JSON.stringify({ bench: "sandbox", ...o, runs: RUNS }))
    line({
      system: "runlane-bubblewrap",
      ...ex,
      anchor: "bwrap-bare",
      ratio: round(ex.median_ms / bw.median_ms),
      goal: "ratio <= 1.3"
    })
    line({ system: "bwrap-bare", ...bw, anchor: "spawn-bare", ratio: round(bw.median_ms / sp.median_ms) })
    line({
      system: "spawnStream-bwrap",
      ...ss,
      anchor: "bwrap-bare",
      ratio: round(ss.median_ms / bw.median_ms),
      note: "same argv via @runlane/exec-process spawnStream (attribution)"
    })
    line({ system: "spawn-bare", ...sp })
    line({
      system: "runlane-guest",
      ...gu,
      anchor: "spawn-bare",
      ratio: round(gu.median_ms / sp.median_ms),
      goal: "median_ms <= 5 (Hyperlight's published new micro-VM: 1-2 ms)"
    })
    await bareCgroup?.remove()
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

await main()
