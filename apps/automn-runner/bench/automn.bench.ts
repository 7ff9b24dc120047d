/**
 * `pnpm bench:automn`: the Automn runner service against bare Node, measured in the same run.
 *
 * - latency: `POST /api/run` → result frame for a shell script echoing one line, 200 runs, at
 *   concurrency 1 and at the cap (AUTOMN_RUNNER_LOCAL_MAX_CONCURRENCY, default 4). Anchor: a bare
 *   `child_process.spawn("bash", [file])` of the same script, waiting for `close`, at the same
 *   concurrency.
 * - throughput: a script printing 100,000 lines; frames/s and lines/s received by the client.
 *   Anchor: the same script spawned bare, its stdout split into lines.
 *
 * One JSON line per measured system on stdout.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const RUNS = Number(process.env.BENCH_RUNS ?? 200)
const CAP = Number(process.env.BENCH_CAP ?? 4)
const LINES = 100_000
const SECRET = "bench-secret-0123456789"
const MAIN = fileURLToPath(new URL("../src/main.js", import.meta.url))
const ECHO = "echo hello"
const MANY = `i=0; while [ $i -lt ${LINES} ]; do echo "line $i"; i=$((i+1)); done`

const tmp = mkdtempSync(join(tmpdir(), "runlane-automn-bench-"))

const freePort = async () => {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN
}
const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits

/** POST /api/run; resolves when the result frame has arrived, with frame and line counts. */
const postRun = async (url: string, code: string) => {
  const res = await fetch(`${url}/api/run`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-automn-runner-secret": SECRET },
    body: JSON.stringify({ script: { language: "shell", code } })
  })
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`)
  const reader = res.body?.getReader()
  const decoder = new TextDecoder()
  let buffer = ""
  let frames = 0
  let lines = 0
  let done = false
  while (!done && reader !== undefined) {
    const chunk = await reader.read()
    if (chunk.done) break
    buffer += decoder.decode(chunk.value, { stream: true })
    let nl = buffer.indexOf("\n")
    while (nl !== -1) {
      const frame = JSON.parse(buffer.slice(0, nl)) as { type: string; line?: string }
      buffer = buffer.slice(nl + 1)
      if (frame.type === "log") {
        frames++
        for (let i = (frame.line ?? "").indexOf("\n"); i !== -1; i = (frame.line ?? "").indexOf("\n", i + 1)) lines++
      } else if (frame.type === "result") done = true
      nl = buffer.indexOf("\n")
    }
  }
  await reader?.cancel().catch(() => undefined)
  return { frames, lines }
}

/** The anchor: the same script file spawned bare; counts stdout lines. */
const bareRun = (file: string) =>
  new Promise<{ lines: number }>((resolve, reject) => {
    const child = spawn("bash", [file], { stdio: ["ignore", "pipe", "pipe"] })
    let lines = 0
    let rest = ""
    child.stdout.setEncoding("utf8")
    child.stdout.on("data", (text: string) => {
      const parts = (rest + text).split("\n")
      rest = parts.pop() ?? ""
      lines += parts.length
    })
    child.stderr.resume()
    child.once("error", reject)
    child.once("close", () => resolve({ lines }))
  })

const timed = async (f: () => Promise<unknown>) => {
  const start = performance.now()
  await f()
  return performance.now() - start
}

/** `runs` calls of `f`, `concurrency` at a time; per-call latencies. */
const latencies = async (runs: number, concurrency: number, f: () => Promise<unknown>) => {
  const out: number[] = []
  let next = 0
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < runs) {
        next++
        out.push(await timed(f))
      }
    })
  )
  return out
}

const main = async () => {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      AUTOMN_RUNNER_PORT: String(port),
      AUTOMN_RUNNER_DATA_DIR: tmp,
      AUTOMN_RUNNER_SECRET: SECRET,
      AUTOMN_RUNNER_LOCAL_MAX_CONCURRENCY: String(CAP),
      AUTOMN_RUNNER_HEARTBEAT_MS: "-1"
    },
    stdio: ["ignore", "ignore", "inherit"]
  })
  try {
    for (let i = 0; i < 200; i++) {
      try {
        if ((await fetch(`${url}/status`)).ok) break
      } catch {}
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const echoFile = join(tmp, "echo.sh")
    writeFileSync(echoFile, `#!/bin/sh\n${ECHO}\n`)

    // warm-up
    await latencies(20, 1, () => postRun(url, ECHO))
    await latencies(20, 1, () => bareRun(echoFile))

    for (const concurrency of [1, CAP]) {
      const bare = await latencies(RUNS, concurrency, () => bareRun(echoFile))
      const runner = await latencies(RUNS, concurrency, () => postRun(url, ECHO))
      const anchor = { p50: percentile(bare, 50), p99: percentile(bare, 99) }
      const mine = { p50: percentile(runner, 50), p99: percentile(runner, 99) }
      console.log(
        JSON.stringify({
          bench: "automn-latency",
          system: "node-child_process-spawn",
          concurrency,
          runs: RUNS,
          p50Ms: round(anchor.p50),
          p99Ms: round(anchor.p99)
        })
      )
      console.log(
        JSON.stringify({
          bench: "automn-latency",
          system: "runlane-automn",
          concurrency,
          runs: RUNS,
          p50Ms: round(mine.p50),
          p99Ms: round(mine.p99),
          ratio: round(mine.p50 / anchor.p50),
          goalP50Ms: 20
        })
      )
    }

    // throughput: interleaved rounds (the machine is shared), medians reported
    const median = (values: number[]) => percentile(values, 50)
    for (const [name, code] of [
      ["shell-loop", MANY],
      ["seq", `seq 1 ${LINES}`]
    ] as const) {
      const file = join(tmp, `${name}.sh`)
      writeFileSync(file, `#!/bin/sh\n${code}\n`)
      const bareRates: number[] = []
      const lineRates: number[] = []
      const frameRates: number[] = []
      let frames = 0
      for (let round = 0; round < 3; round++) {
        let bareLines = 0
        const bareMs = await timed(async () => {
          bareLines = (await bareRun(file)).lines
        })
        bareRates.push(bareLines / (bareMs / 1000))
        let counts = { frames: 0, lines: 0 }
        const runnerMs = await timed(async () => {
          counts = await postRun(url, code)
        })
        if (counts.lines !== LINES || bareLines !== LINES) throw new Error(`lost lines: ${counts.lines} / ${bareLines}`)
        frames = counts.frames
        lineRates.push(counts.lines / (runnerMs / 1000))
        frameRates.push(counts.frames / (runnerMs / 1000))
      }
      const anchor = median(bareRates)
      const lines = median(lineRates)
      console.log(
        JSON.stringify({
          bench: "automn-throughput",
          system: "node-spawn-line-split",
          script: name,
          lines: LINES,
          linesPerSec: Math.round(anchor)
        })
      )
      console.log(
        JSON.stringify({
          bench: "automn-throughput",
          system: "runlane-automn",
          script: name,
          lines: LINES,
          frames,
          framesPerSec: Math.round(median(frameRates)),
          linesPerSec: Math.round(lines),
          ratio: round(lines / anchor),
          goalLinesPerSec: 50_000
        })
      )
    }
  } finally {
    child.kill("SIGTERM")
    await new Promise((resolve) => child.once("exit", resolve))
    rmSync(tmp, { recursive: true, force: true })
  }
}

await main()
