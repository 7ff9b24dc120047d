/**
 * Spawn-to-exit latency of `true`: through the process executor (pipe mode, whole event
 * stream drained) against Node's bare `child_process.spawn` waiting for 'close', measured
 * interleaved in the same run. Prints one JSON line per system.
 */
import { spawn } from "node:child_process"
import { Effect, Stream } from "effect"
import { ProcessExecutor } from "../src/index.ts"

const RUNS = Number(process.env.BENCH_RUNS ?? 200)
const WARMUP = 30

const executor = ProcessExecutor.make()
const viaExecutor = (): Promise<void> => Effect.runPromise(Stream.runDrain(executor.run({ argv: ["true"] })))

const viaNode = (): Promise<void> =>
  new Promise((resolve, reject) => {
    const child = spawn("true")
    child.once("error", reject)
    child.once("close", () => resolve())
  })

const time = async (f: () => Promise<void>): Promise<number> => {
  const start = performance.now()
  await f()
  return performance.now() - start
}

const quantile = (sorted: ReadonlyArray<number>, q: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN

const round = (n: number) => Math.round(n * 1000) / 1000

const main = async () => {
  for (let i = 0; i < WARMUP; i++) {
    await viaExecutor()
    await viaNode()
  }
  const ours: Array<number> = []
  const bare: Array<number> = []
  for (let i = 0; i < RUNS; i++) {
    // Interleaved (and alternating which goes first) so machine noise hits both alike.
    if (i % 2 === 0) {
      ours.push(await time(viaExecutor))
      bare.push(await time(viaNode))
    } else {
      bare.push(await time(viaNode))
      ours.push(await time(viaExecutor))
    }
  }
  ours.sort((a, b) => a - b)
  bare.sort((a, b) => a - b)
  const oursMedian = quantile(ours, 0.5)
  const bareMedian = quantile(bare, 0.5)
  const ratio = round(oursMedian / bareMedian)
  const line = (system: string, sorted: ReadonlyArray<number>, extra: Record<string, unknown>) =>
    console.log(
      JSON.stringify({
        bench: "exec-process",
        system,
        runs: RUNS,
        medianMs: round(quantile(sorted, 0.5)),
        p90Ms: round(quantile(sorted, 0.9)),
        ...extra
      })
    )
  line("runlane-exec-process", ours, { ratio, goalRatio: 1.2 })
  line("node-spawn", bare, {})
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
