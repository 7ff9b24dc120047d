// pnpm bench:docker — needs the engine and images of scripts/setup.d/10-docker.sh.
// 1. Median time to run `true` (create → attach → start → wait → remove) through the executor
//    against `docker run --rm <image> true` via the CLI, interleaved in the same run.
// 2. 20 containers at concurrency 4: total wall time, executor against the CLI.
import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { promisify } from "node:util"
import { Effect, Stream } from "effect"
import { make } from "../src/DockerExecutor.ts"

const IMAGE = process.env.RUNLANE_BENCH_IMAGE ?? "runlane-test/busybox:1"
const RUNS = Number(process.env.RUNLANE_BENCH_RUNS ?? 15)
const run = promisify(execFile)

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2
}
const round = (x: number) => Math.round(x * 100) / 100

const executor = await Effect.runPromise(make({ runnerId: `bench-${randomBytes(4).toString("hex")}` }))

const viaExecutor = async () => {
  const events = await Effect.runPromise(Stream.runCollect(executor.run({ argv: ["true"], image: IMAGE })))
  const last = events[events.length - 1]
  if (last?._tag !== "exited" || last.code !== 0) throw new Error(`executor run failed: ${JSON.stringify(last)}`)
}
const viaCli = async () => {
  await run("docker", ["run", "--rm", IMAGE, "true"])
}
// the same hardening the executor applies by default, as CLI flags (context: what the defaults cost the CLI)
const HARDENED = [
  "--network=none",
  "--read-only",
  "--tmpfs=/tmp:rw,nosuid,nodev,size=128m",
  "--cap-drop=ALL",
  "--security-opt=no-new-privileges:true",
  "--init",
  "--memory=1g",
  "--memory-swap=1g",
  "--cpus=1",
  "--pids-limit=512",
  "--user=runner"
]
const viaCliHardened = async () => {
  await run("docker", ["run", "--rm", ...HARDENED, IMAGE, "true"])
}
const timed = async (f: () => Promise<void>) => {
  const t0 = performance.now()
  await f()
  return performance.now() - t0
}

// warm up both paths (image cache, connection pool, page cache)
for (let i = 0; i < 3; i++) {
  await viaExecutor()
  await viaCli()
  await viaCliHardened()
}

const ex: Array<number> = []
const cli: Array<number> = []
const cliHardened: Array<number> = []
for (let i = 0; i < RUNS; i++) {
  // interleaved so both see the same background load
  ex.push(await timed(viaExecutor))
  cli.push(await timed(viaCli))
  cliHardened.push(await timed(viaCliHardened))
}
const exMedian = median(ex)
const cliMedian = median(cli)
console.log(JSON.stringify({ bench: "docker", system: "docker-cli", medianMs: round(cliMedian), runs: RUNS }))
console.log(
  JSON.stringify({
    bench: "docker",
    system: "docker-cli-hardened",
    medianMs: round(median(cliHardened)),
    runs: RUNS,
    note: "docker run --rm with the executor's default hardening flags"
  })
)
console.log(
  JSON.stringify({
    bench: "docker",
    system: "runlane-docker",
    medianMs: round(exMedian),
    runs: RUNS,
    ratio: round(exMedian / cliMedian),
    goal: 0.8
  })
)

const TOTAL = 20
const CONCURRENCY = 4
const pool = async (f: () => Promise<void>) => {
  let next = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < TOTAL) {
        next++
        await f()
      }
    })
  )
  return performance.now() - t0
}
const cliWall = await pool(viaCli)
const exWall = await pool(viaExecutor)
console.log(
  JSON.stringify({
    bench: "docker-concurrent",
    system: "docker-cli",
    containers: TOTAL,
    concurrency: CONCURRENCY,
    wallMs: round(cliWall)
  })
)
console.log(
  JSON.stringify({
    bench: "docker-concurrent",
    system: "runlane-docker",
    containers: TOTAL,
    concurrency: CONCURRENCY,
    wallMs: round(exWall),
    ratio: round(exWall / cliWall)
  })
)
