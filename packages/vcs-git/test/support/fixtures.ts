/** Real git repositories in temp dirs, made with the git CLI (not through the adapter). */
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"

const gitEnv = (home: string): NodeJS.ProcessEnv => ({
  PATH: process.env.PATH,
  HOME: home,
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_AUTHOR_NAME: "Fixture",
  GIT_AUTHOR_EMAIL: "fixture@example.test",
  GIT_COMMITTER_NAME: "Fixture",
  GIT_COMMITTER_EMAIL: "fixture@example.test",
  LANG: "C"
})

export interface Sandbox {
  readonly root: string
  readonly git: (cwd: string, ...args: Array<string>) => string
  readonly write: (file: string, content: string) => void
  readonly path: (...segments: Array<string>) => string
  readonly cleanup: () => void
}

export const makeSandbox = (prefix: string): Sandbox => {
  const root = mkdtempSync(join(tmpdir(), `runlane-vcs-git-${prefix}-`))
  const home = join(root, ".home")
  mkdirSync(home)
  return {
    root,
    git: (cwd, ...args) =>
      execFileSync("git", args, { cwd, env: gitEnv(home), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim(),
    write: (file, content) => {
      mkdirSync(dirname(file), { recursive: true })
      writeFileSync(file, content)
    },
    path: (...segments) => join(root, ...segments),
    cleanup: () => rmSync(root, { recursive: true, force: true })
  }
}

export interface OriginRepo {
  /** The bare repository (what clients clone and push to). */
  readonly bare: string
  readonly commits: ReadonlyArray<string>
  readonly featureCommit: string
  readonly tagCommit: string
}

/**
 * A bare repository `<name>.git` under `dir` with three commits on `main`, a branch `feature`
 * (one more commit off the second) and an annotated tag `v1` on the first commit.
 */
export const makeOrigin = (sb: Sandbox, dir: string, name = "origin"): OriginRepo => {
  const bare = join(dir, `${name}.git`)
  mkdirSync(dir, { recursive: true })
  sb.git(dir, "init", "-q", "--bare", "-b", "main", bare)
  const work = join(sb.root, `.seed-${name}`)
  sb.git(sb.root, "init", "-q", "-b", "main", work)
  const commits: Array<string> = []
  for (let i = 1; i <= 3; i++) {
    sb.write(join(work, "README.md"), `version ${i}\n`)
    sb.write(join(work, `file${i}.txt`), `content ${i}\n`)
    sb.git(work, "add", "-A")
    sb.git(work, "commit", "-q", "-m", `commit ${i}`)
    commits.push(sb.git(work, "rev-parse", "HEAD"))
  }
  sb.git(work, "tag", "-a", "v1", "-m", "v1", commits[0]!)
  sb.git(work, "checkout", "-q", "-b", "feature", commits[1]!)
  sb.write(join(work, "feature.txt"), "feature\n")
  sb.git(work, "add", "-A")
  sb.git(work, "commit", "-q", "-m", "feature")
  const featureCommit = sb.git(work, "rev-parse", "HEAD")
  sb.git(work, "push", "-q", bare, "main", "feature", "v1")
  return { bare, commits, featureCommit, tagCommit: commits[0]! }
}

/** Every regular file under `dir` whose bytes contain `needle`. */
export const filesContaining = (dir: string, needle: string): Array<string> => {
  const hits: Array<string> = []
  const walk = (d: string) => {
    for (const entry of readdirSync(d)) {
      const p = join(d, entry)
      const st = statSync(p, { throwIfNoEntry: false })
      if (st === undefined) continue
      if (st.isDirectory()) walk(p)
      else if (st.isFile() && readFileSync(p).includes(needle)) hits.push(p)
    }
  }
  walk(dir)
  return hits
}

/** The argv of every process visible in /proc whose command line contains `needle`. */
export const processesWithArg = (needle: string): Array<string> => {
  const hits: Array<string> = []
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`).toString().split("\0").join(" ")
      if (cmdline.includes(needle)) hits.push(`${pid}: ${cmdline}`)
    } catch {
      // the process ended meanwhile
    }
  }
  return hits
}

export const exists = (p: string): boolean => statSync(p, { throwIfNoEntry: false }) !== undefined
