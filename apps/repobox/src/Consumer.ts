/**
 * The read loop on `jobs:stream` / `jobs:stream:runners`, the per-user counter, the reclaim
 * pass and the hand-off to at most MAX_CONCURRENT_JOBS running jobs.
 */
import { rm } from "node:fs/promises"
import { join } from "node:path"
import { ProcessExecutor } from "@runlane/exec-process"
import { GitVcs, Workspace } from "@runlane/vcs-git"
import { Deferred, Effect, Layer } from "effect"
import type { Redis } from "ioredis"
import type { RepoboxConfig } from "./Config.ts"
import { type JobContext, runJob } from "./Job.ts"
import { COUNTER_TTL_SECONDS, GROUP, jobKey, RECLAIM_IDLE_MS, STREAM, userCounterKey } from "./Keys.ts"
import type { Logger } from "./Log.ts"

// Atomic GET-compare-INCR (the original's GET then INCR, without the race between runners).
// Returns -1 over the limit; a non-integer counter raises an error.
const ACQUIRE = `
local v = redis.call('GET', KEYS[1])
local n = 0
if v then n = tonumber(v) if n == nil or math.floor(n) ~= n then return redis.error_reply('ERR value is not an integer') end end
if n >= tonumber(ARGV[1]) then return -1 end
local r = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return r`

const RELEASE = `
local r = redis.call('DECR', KEYS[1])
if r < 0 then redis.call('SET', KEYS[1], '0', 'EX', ARGV[1]) end
return r`

interface Entry {
  readonly id: string
  readonly fields: Record<string, string>
}

const toFields = (flat: ReadonlyArray<string>): Record<string, string> => {
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!
  return out
}

export interface Runner {
  /** Stops reading, waits up to `graceMs` for running jobs, then kills them (they end `failed`). */
  readonly stop: (graceMs: number) => Promise<void>
  readonly done: Promise<void>
}

export const startConsumer = async (
  config: RepoboxConfig,
  redis: Redis,
  key: Uint8Array,
  log: Logger
): Promise<Runner> => {
  const reader = redis.duplicate()
  const kill = Effect.runSync(Deferred.make<void>())
  const ctx: JobContext = { redis, config, key, log, kill }
  const layers = Layer.mergeAll(
    GitVcs.layer({ timeoutMs: config.jobTimeout * 1000 }),
    Workspace.layer({ root: config.tempDir, cleanup: false }),
    ProcessExecutor.layer({ killGraceMs: 2000 })
  )
  const running = new Map<string, Promise<void>>()
  const waiting = new Map<string, Entry>() // over the user's limit: unacked, retried when a slot frees
  let stopping = false
  let wake: (() => void) | undefined

  const ack = (entryId: string) => redis.xack(STREAM, GROUP, entryId).catch(() => 0)

  /** Returns true when the entry was taken care of (started or dropped), false to keep it waiting. */
  const handle = async (entry: Entry): Promise<boolean> => {
    const jobId = entry.fields.job_id ?? ""
    const providerId = entry.fields.provider_id ?? ""
    if (jobId === "") {
      log("ERROR", "failed to process message", { error: "missing job_id in message", message_id: entry.id })
      await ack(entry.id)
      return true
    }
    let job: Record<string, string>
    try {
      job = await redis.hgetall(jobKey(jobId))
    } catch (e) {
      log("ERROR", "failed to process message", { error: String(e), message_id: entry.id })
      await ack(entry.id)
      return true
    }
    if (Object.keys(job).length === 0) {
      log("ERROR", "failed to process message", { error: `job not found: ${jobId}`, message_id: entry.id })
      await ack(entry.id)
      return true
    }
    const userId = job.user_id ?? ""
    let got: number
    try {
      got = (await redis.eval(ACQUIRE, 1, userCounterKey(userId), config.maxJobsPerUser, COUNTER_TTL_SECONDS)) as number
    } catch (e) {
      log("ERROR", "failed to process message", { error: String(e), message_id: entry.id })
      return false
    }
    if (got < 0) return false
    log("INFO", "processing job", { worker_id: config.runnerId, job_id: jobId, user_id: userId })
    const p = Effect.runPromise(Effect.provide(runJob(ctx, jobId, providerId, job), layers))
      .catch((e) => log("ERROR", "job crashed", { job_id: jobId, error: String(e) }))
      .then(async () => {
        if (config.cleanupAfterJob) {
          await rm(join(config.tempDir, jobId), { recursive: true, force: true }).catch((e) =>
            log("ERROR", "failed to cleanup work dir", { job_id: jobId, error: String(e) })
          )
        }
        await redis.eval(RELEASE, 1, userCounterKey(userId), COUNTER_TTL_SECONDS).catch(() => 0)
        await ack(entry.id)
        log("INFO", "job completed", { job_id: jobId })
      })
      .finally(() => {
        running.delete(entry.id)
        wake?.()
      })
    running.set(entry.id, p)
    return true
  }

  const retryWaiting = async () => {
    for (const [id, entry] of [...waiting]) {
      if (stopping || running.size >= config.maxConcurrentJobs) return
      waiting.delete(id)
      if (!(await handle(entry))) waiting.set(id, entry)
    }
  }

  const reclaim = async () => {
    try {
      const pending = (await redis.xpending(STREAM, GROUP, "-", "+", 100)) as Array<[string, string, number, number]>
      for (const [id, , idle] of pending) {
        if (stopping) return
        if (idle < RECLAIM_IDLE_MS || running.has(id) || waiting.has(id)) continue
        const claimed = (await redis.xclaim(STREAM, GROUP, config.runnerId, RECLAIM_IDLE_MS, id)) as Array<
          [string, Array<string>] | null
        >
        for (const c of claimed) {
          if (c === null) continue
          const entry = { id: c[0], fields: toFields(c[1]) }
          if (!(await handle(entry))) waiting.set(entry.id, entry)
        }
      }
    } catch (e) {
      log("ERROR", "reclaim failed", { error: String(e) })
    }
  }

  try {
    await redis.xgroup("CREATE", STREAM, GROUP, "0", "MKSTREAM")
  } catch (e) {
    if (!String(e).includes("BUSYGROUP")) {
      log("ERROR", "Consumer error", { error: String(e) })
      throw e
    }
  }
  log("INFO", "consumer started", { runner_id: config.runnerId, stream: STREAM, group: GROUP })
  await reclaim()
  log("INFO", "Runner started and waiting for jobs")

  // Entries this runner holds (running or over the user's limit) are re-claimed to itself with
  // JUSTID every 30 s: their idle time restarts, so only a dead runner's entries reach the 5-minute
  // reclaim idle time (the original re-runs any job lasting over 5 minutes).
  const refresh = async () => {
    const ids = [...running.keys(), ...waiting.keys()]
    if (ids.length === 0) return
    await redis
      .xclaim(STREAM, GROUP, config.runnerId, 0, ...ids, "JUSTID")
      .catch((e) => log("ERROR", "failed to refresh pending entries", { error: String(e) }))
  }
  const reclaimTimer = setInterval(() => void refresh().then(reclaim), 30_000)
  const waitingTimer = setInterval(() => void retryWaiting(), 250)

  const loop = async () => {
    while (!stopping) {
      if (running.size >= config.maxConcurrentJobs) {
        await new Promise<void>((resolve) => {
          wake = resolve
        })
        wake = undefined
        continue
      }
      let reply: Array<[string, Array<[string, Array<string>]>]> | null
      try {
        reply = (await reader.xreadgroup(
          "GROUP",
          GROUP,
          config.runnerId,
          "COUNT",
          1,
          "BLOCK",
          5000,
          "STREAMS",
          STREAM,
          ">"
        )) as typeof reply
      } catch (e) {
        if (stopping) break
        log("ERROR", "failed to read from stream", { error: String(e) })
        await new Promise((r) => setTimeout(r, 1000))
        continue
      }
      for (const [, entries] of reply ?? []) {
        for (const [id, flat] of entries) {
          const entry = { id, fields: toFields(flat) }
          if (!(await handle(entry))) waiting.set(id, entry)
        }
      }
    }
  }
  const done = loop()

  return {
    done,
    stop: async (graceMs) => {
      stopping = true
      clearInterval(reclaimTimer)
      clearInterval(waitingTimer)
      wake?.()
      reader.disconnect()
      await done
      const all = Promise.all(running.values())
      const timer = setTimeout(() => Effect.runSync(Deferred.succeed(kill, undefined)), graceMs)
      await all
      clearTimeout(timer)
    }
  }
}
