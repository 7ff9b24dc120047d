import { readdirSync, readFileSync } from "node:fs"

/**
 * Process-group helpers. Every child this package starts leads its own process group
 * (pipe mode: `detached: true`; PTY mode: the pty helper calls `setsid`), so `-pid` names the
 * whole tree the child started, unless a descendant deliberately left the group (`setsid`).
 */

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Sends `signal` to every member of process group `pgid`. False when the group is gone. */
export const signalGroup = (pgid: number, signal: NodeJS.Signals): boolean => {
  try {
    process.kill(-pgid, signal)
    return true
  } catch {
    return false
  }
}

/**
 * The pid's state letter from /proc (`Z` for a zombie); undefined when the pid does not exist
 * or /proc is not there.
 */
const procState = (pid: number): { readonly state: string; readonly pgrp: number } | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
    // pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return { state: fields[0] ?? "", pgrp: Number(fields[2]) }
  } catch {
    return undefined
  }
}

const hasProc = (() => {
  let cached: boolean | undefined
  return () => {
    if (cached === undefined) {
      try {
        readdirSync("/proc/self")
        cached = true
      } catch {
        cached = false
      }
    }
    return cached
  }
})()

/** True when `pid` exists and is not a zombie (a zombie has already exited; it only waits to be reaped). */
export const isProcessAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
  if (!hasProc()) return true
  const info = procState(pid)
  return info !== undefined && info.state !== "Z"
}

/**
 * True when process group `pgid` has a member that is still running. A zombie member does
 * not count: where PID 1 does not reap orphans (some containers and micro-VMs), killed
 * grandchildren stay zombies forever, and `kill(-pgid, 0)` still succeeds for them.
 */
export const isGroupAlive = (pgid: number): boolean => {
  try {
    process.kill(-pgid, 0)
  } catch (error) {
    // EPERM: members exist that we may not signal (such as zombies); /proc tells which.
    if ((error as NodeJS.ErrnoException).code !== "EPERM" || !hasProc()) return false
  }
  if (!hasProc()) return true
  let entries: Array<string>
  try {
    entries = readdirSync("/proc")
  } catch {
    return true
  }
  for (const entry of entries) {
    const c = entry.charCodeAt(0)
    if (c < 48 || c > 57) continue
    const info = procState(Number(entry))
    if (info !== undefined && info.pgrp === pgid && info.state !== "Z") return true
  }
  return false
}

/** Waits up to `ms` for group `pgid` to have no running member. True when it emptied. */
export const waitGroupGone = async (pgid: number, ms: number): Promise<boolean> => {
  const deadline = performance.now() + ms
  let interval = 2
  for (;;) {
    if (!isGroupAlive(pgid)) return true
    const left = deadline - performance.now()
    if (left <= 0) return false
    await sleep(Math.min(interval, left))
    interval = Math.min(interval * 2, 50)
  }
}

/**
 * Terminates process group `pgid`: SIGTERM, then SIGKILL to whatever still runs after
 * `graceMs`, then waits (bounded) for the group to be gone. Resolves when done; never rejects.
 */
export const terminateGroup = async (pgid: number, graceMs: number): Promise<void> => {
  if (!signalGroup(pgid, "SIGTERM")) return
  if (await waitGroupGone(pgid, graceMs)) return
  if (!signalGroup(pgid, "SIGKILL")) return
  // SIGKILL cannot be caught; the kernel needs only a moment to tear the processes down.
  await waitGroupGone(pgid, 2000)
}
