/**
 * Clone + checkout of a local repository (2,000 files, 500 commits) through GitVcs against the
 * `git clone` CLI, in the same run, alternating, median of RUNS each.
 *
 *   pnpm bench:vcs-git
 *
 * Prints one JSON line per system: `runlane-vcs-git` (with `ratio` = its median / the CLI's,
 * and `minRatio` of the fastest runs, steadier on a busy machine) and `git-cli`.
 */
import { spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Vcs } from "@runlane/core"
import { Effect, ManagedRuntime } from "effect"
import * as GitVcs from "../src/GitVcs.ts"

const FILES = 2_000
const COMMITS = 500
const RUNS = Number(process.env.BENCH_RUNS ?? 9)

const env = {
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  HOME: tmpdir(),
  LANG: "C",
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_TERMINAL_PROMPT: "0"
}

const git = (args: ReadonlyArray<string>, options: { cwd?: string; input?: string } = {}): Promise<void> =>
  new Promise((resolve, reject) => {
    const child = spawn("git", args, {
      cwd: options.cwd,
      env,
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"]
    })
    let stderr = ""
    child.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString()
    })
    child.stdout?.resume()
    child.on("error", reject)
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`git ${args[0]} failed: ${stderr}`))))
    if (options.input !== undefined) child.stdin?.end(options.input)
  })

/** A repository with FILES files and COMMITS commits, written with `git fast-import`. */
const makeRepo = async (dir: string): Promise<void> => {
  await git(["init", "-q", "-b", "main", dir])
  const lines: Array<string> = []
  const fileName = (i: number) => `src/d${Math.floor(i / 100)}/file${i}.txt`
  for (let c = 1; c <= COMMITS; c++) {
    const message = `commit ${c}`
    lines.push(
      "commit refs/heads/main",
      `mark :${c}`,
      `committer Bench <bench@example.test> ${1_700_000_000 + c} +0000`
    )
    lines.push(`data ${Buffer.byteLength(message)}`, message)
    if (c > 1) lines.push(`from :${c - 1}`)
    const touched =
      c === 1 ? Array.from({ length: FILES }, (_, i) => i) : [0, 1, 2, 3].map((k) => (c * 7 + k * 499) % FILES)
    for (const i of touched) {
      const content = `file ${i}\nrevision ${c}\n${"x".repeat(200)}\n`
      lines.push(`M 644 inline ${fileName(i)}`, `data ${Buffer.byteLength(content)}`, content)
    }
  }
  await git(["fast-import", "--quiet"], { cwd: dir, input: `${lines.join("\n")}\n` })
  await git(["checkout", "-q", "main"], { cwd: dir })
  await git(["gc", "-q"], { cwd: dir })
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}
const round = (x: number) => Math.round(x * 100) / 100

const main = async () => {
  const root = mkdtempSync(join(tmpdir(), "runlane-bench-vcs-git-"))
  const runtime = ManagedRuntime.make(GitVcs.layer())
  try {
    const source = join(root, "source")
    await makeRepo(source)
    mkdirSync(join(root, "out"))
    const vcs = await runtime.runPromise(
      Effect.gen(function* () {
        return yield* Vcs
      })
    )
    const adapter: Array<number> = []
    const cli: Array<number> = []
    const timeAdapter = async (into: string) => {
      const t0 = performance.now()
      await runtime.runPromise(vcs.checkout({ url: source, into }))
      adapter.push(performance.now() - t0)
    }
    const timeCli = async (into: string) => {
      const t0 = performance.now()
      await git(["clone", "--", source, into])
      cli.push(performance.now() - t0)
    }
    // One warm-up of each (page cache), then alternate which goes first.
    await timeAdapter(join(root, "out", "warm-a"))
    await timeCli(join(root, "out", "warm-c"))
    adapter.length = 0
    cli.length = 0
    for (let i = 0; i < RUNS; i++) {
      const a = join(root, "out", `a${i}`)
      const c = join(root, "out", `c${i}`)
      if (i % 2 === 0) {
        await timeAdapter(a)
        await timeCli(c)
      } else {
        await timeCli(c)
        await timeAdapter(a)
      }
      rmSync(a, { recursive: true, force: true })
      rmSync(c, { recursive: true, force: true })
    }
    const a = median(adapter)
    const c = median(cli)
    const common = { bench: "vcs-git", files: FILES, commits: COMMITS, runs: RUNS }
    console.log(
      JSON.stringify({
        ...common,
        system: "runlane-vcs-git",
        medianMs: round(a),
        minMs: round(Math.min(...adapter)),
        ratio: round(a / c),
        minRatio: round(Math.min(...adapter) / Math.min(...cli))
      })
    )
    console.log(JSON.stringify({ ...common, system: "git-cli", medianMs: round(c), minMs: round(Math.min(...cli)) }))
  } finally {
    await runtime.dispose()
    rmSync(root, { recursive: true, force: true })
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
