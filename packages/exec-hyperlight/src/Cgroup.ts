import { randomUUID } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"

/**
 * Per-run cgroups for the memory and pids limits of a bubblewrap sandbox (cgroup v2 when its
 * memory and pids controllers are available, else v1's memory and pids hierarchies). The
 * sandbox's launcher shell writes its own pid into `procs` before it execs bwrap, so every
 * process of the sandbox is counted from its first instruction.
 */
export interface RunCgroup {
  /** `cgroup.procs` files the launcher must join. */
  readonly procs: ReadonlyArray<string>
  /** True once the kernel OOM-killed something in this cgroup. */
  readonly oomKilled: () => boolean
  /** SIGKILLs every process still in the cgroup and resolves once none is left (max ~5 s). */
  readonly killAll: () => Promise<void>
  /** Removes the cgroup directories (retries while the last processes are reaped). */
  readonly remove: () => Promise<void>
}

const ROOT = "/sys/fs/cgroup"

type Layout =
  | { readonly kind: "v2"; readonly base: string }
  | { readonly kind: "v1"; readonly memory: string; readonly pids: string }

const ownPath = (controller: string): string => {
  try {
    for (const line of readFileSync("/proc/self/cgroup", "utf8").split("\n")) {
      const [, controllers, path] = line.split(":")
      if (controllers !== undefined && path !== undefined && controllers.split(",").includes(controller)) return path
    }
  } catch {}
  return "/"
}

const writable = (dir: string): boolean => {
  const probe = join(dir, `runlane-probe-${process.pid}-${randomUUID().slice(0, 8)}`)
  try {
    mkdirSync(probe)
    rmdirSync(probe)
    return true
  } catch {
    return false
  }
}

let detected: Layout | null | undefined
/** Which cgroup layout this machine offers for limits; null when none is writable. */
export const detectCgroups = (): Layout | null => {
  if (detected !== undefined) return detected
  detected = null
  const v2controllers = join(ROOT, "cgroup.controllers")
  if (existsSync(v2controllers)) {
    const controllers = readFileSync(v2controllers, "utf8").trim().split(/\s+/)
    const base = join(ROOT, ownPath(""))
    if (controllers.includes("memory") && controllers.includes("pids") && writable(base)) {
      detected = { kind: "v2", base }
    }
    return detected
  }
  const memory = join(ROOT, "memory", ownPath("memory"))
  const pids = join(ROOT, "pids", ownPath("pids"))
  if (
    existsSync(join(memory, "memory.limit_in_bytes")) &&
    existsSync(join(ROOT, "pids")) &&
    writable(memory) &&
    writable(pids)
  ) {
    detected = { kind: "v1", memory, pids }
  }
  return detected
}

const removeDir = async (dir: string): Promise<void> => {
  for (let i = 0; i < 50; i++) {
    try {
      rmdirSync(dir)
      return
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === "ENOENT") return
      await new Promise((r) => setTimeout(r, 20))
    }
  }
}

const pidsIn = (procs: string): Array<number> => {
  try {
    return readFileSync(procs, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map(Number)
  } catch {
    return []
  }
}

const killAllIn = async (procs: string): Promise<void> => {
  for (let i = 0; i < 250; i++) {
    const pids = pidsIn(procs)
    if (pids.length === 0) return
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL")
      } catch {}
    }
    await new Promise((r) => setTimeout(r, i < 10 ? 2 : 20))
  }
}

/** Creates the cgroup(s) of one run with the given limits. Throws when the layout cannot. */
export const createRunCgroup = (limits: { memoryBytes?: number | undefined; pids?: number | undefined }): RunCgroup => {
  const layout = detectCgroups()
  if (layout === null) throw new Error("no writable cgroup hierarchy with memory and pids controllers")
  const name = `runlane-${randomUUID()}`
  if (layout.kind === "v2") {
    // v2: limits need the controllers enabled for children of our own cgroup.
    try {
      writeFileSync(join(layout.base, "cgroup.subtree_control"), "+memory +pids")
    } catch {}
    const dir = join(layout.base, name)
    mkdirSync(dir)
    if (limits.memoryBytes !== undefined) {
      writeFileSync(join(dir, "memory.max"), String(limits.memoryBytes))
      try {
        writeFileSync(join(dir, "memory.swap.max"), "0")
      } catch {}
    }
    if (limits.pids !== undefined) writeFileSync(join(dir, "pids.max"), String(limits.pids))
    return {
      procs: [join(dir, "cgroup.procs")],
      oomKilled: () => {
        try {
          const m = /oom_kill (\d+)/.exec(readFileSync(join(dir, "memory.events"), "utf8"))
          return m !== null && Number(m[1]) > 0
        } catch {
          return false
        }
      },
      killAll: () => killAllIn(join(dir, "cgroup.procs")),
      remove: () => removeDir(dir)
    }
  }
  const mem = join(layout.memory, name)
  const pids = join(layout.pids, name)
  mkdirSync(mem)
  mkdirSync(pids)
  if (limits.memoryBytes !== undefined) {
    writeFileSync(join(mem, "memory.limit_in_bytes"), String(limits.memoryBytes))
    try {
      writeFileSync(join(mem, "memory.memsw.limit_in_bytes"), String(limits.memoryBytes))
    } catch {}
  }
  if (limits.pids !== undefined) writeFileSync(join(pids, "pids.max"), String(limits.pids))
  return {
    procs: [join(mem, "cgroup.procs"), join(pids, "cgroup.procs")],
    oomKilled: () => {
      try {
        const m = /oom_kill (\d+)/.exec(readFileSync(join(mem, "memory.oom_control"), "utf8"))
        return m !== null && Number(m[1]) > 0
      } catch {
        return false
      }
    },
    killAll: () => killAllIn(join(pids, "cgroup.procs")),
    remove: async () => {
      await removeDir(mem)
      await removeDir(pids)
    }
  }
}
