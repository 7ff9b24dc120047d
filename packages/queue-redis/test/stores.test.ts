import { EventLog, type JobRecord, JobStore, Limiter } from "@runlane/core"
import { Effect, Exit, Fiber, Layer, ManagedRuntime, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { RedisEventLog, RedisJobStore, RedisLimiter } from "../src/index.ts"
import { cleanupPrefix, REDIS_URL, redisAvailable, uniquePrefix } from "./helpers.ts"

const prefix = uniquePrefix("stores")
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe.skipIf(!redisAvailable)("Redis limiter, event log and job store", () => {
  let runtime: ManagedRuntime.ManagedRuntime<Limiter | EventLog | JobStore, never>
  const run = <A, E>(effect: Effect.Effect<A, E, Limiter | EventLog | JobStore>) => runtime.runPromise(effect)
  beforeAll(() => {
    runtime = ManagedRuntime.make(
      Layer.mergeAll(
        RedisLimiter.layer({ url: REDIS_URL, prefix }),
        RedisEventLog.layer({ url: REDIS_URL, prefix }),
        RedisJobStore.layer({ url: REDIS_URL, prefix })
      )
    )
  })
  afterAll(async () => {
    await runtime?.dispose()
    await cleanupPrefix(prefix)
  })

  describe("RedisLimiter", () => {
    it("grants at most `limit` permits per key; a holder re-acquiring keeps its permit", async () => {
      const limiter = await run(Effect.service(Limiter))
      const opts = { limit: 2, ttlMs: 30_000 }
      expect(await run(limiter.tryAcquire("user-1", "a", opts))).toBe(true)
      expect(await run(limiter.tryAcquire("user-1", "b", opts))).toBe(true)
      expect(await run(limiter.tryAcquire("user-1", "c", opts))).toBe(false)
      expect(await run(limiter.tryAcquire("user-1", "a", opts))).toBe(true)
      expect(await run(limiter.tryAcquire("user-2", "c", opts))).toBe(true)
      expect(await run(limiter.count("user-1"))).toBe(2)
      await run(limiter.release("user-1", "a"))
      expect(await run(limiter.count("user-1"))).toBe(1)
      expect(await run(limiter.tryAcquire("user-1", "c", opts))).toBe(true)
    })

    it("heals itself: a dead holder's permit expires after its ttl, a refreshed one does not", async () => {
      const limiter = await run(Effect.service(Limiter))
      expect(await run(limiter.tryAcquire("heal", "dead-runner", { limit: 1, ttlMs: 300 }))).toBe(true)
      expect(await run(limiter.tryAcquire("heal", "live-runner", { limit: 1, ttlMs: 300 }))).toBe(false)
      await sleep(450)
      expect(await run(limiter.count("heal"))).toBe(0)
      expect(await run(limiter.tryAcquire("heal", "live-runner", { limit: 1, ttlMs: 300 }))).toBe(true)
      await sleep(200)
      await run(limiter.refresh("heal", "live-runner", 5_000))
      await sleep(250)
      expect(await run(limiter.tryAcquire("heal", "other", { limit: 1, ttlMs: 300 }))).toBe(false)
      expect(await run(limiter.count("heal"))).toBe(1)
    })

    it("supports Repobox's key layout", async () => {
      const layout = ManagedRuntime.make(
        RedisLimiter.layer({ url: REDIS_URL, keyFor: (userId) => `${prefix}runner:user:{${userId}}:running` })
      )
      try {
        const limiter = await layout.runPromise(Effect.service(Limiter))
        expect(await layout.runPromise(limiter.tryAcquire("u42", "job-1", { limit: 3, ttlMs: 10_000 }))).toBe(true)
        const { Redis } = await import("ioredis")
        const raw = new Redis(REDIS_URL)
        expect(await raw.zcard(`${prefix}runner:user:{u42}:running`)).toBe(1)
        raw.disconnect()
      } finally {
        await layout.dispose()
      }
    })
  })

  describe("RedisEventLog", () => {
    it("assigns per-job sequence numbers and reads from a sequence", async () => {
      const log = await run(Effect.service(EventLog))
      const jobId = `job-${Date.now()}`
      const first = await run(
        log.append(jobId, [
          { _tag: "enqueued", queue: "q" },
          { _tag: "output", stream: "stdout", data: "hello" }
        ])
      )
      expect(first.map((e) => e.seq)).toEqual([1, 2])
      await run(log.append(jobId, [{ _tag: "note", kind: "k", message: "m" }]))
      const all = await run(log.read(jobId))
      expect(all.map((e) => [e.seq, e._tag])).toEqual([
        [1, "enqueued"],
        [2, "output"],
        [3, "note"]
      ])
      expect(all.every((e) => e.jobId === jobId && e.at > 0)).toBe(true)
      expect((await run(log.read(jobId, { fromSeq: 2, limit: 1 }))).map((e) => e.seq)).toEqual([2])
      expect(await run(log.read("no-such-job"))).toEqual([])
    })

    it("follow replays then delivers live events exactly once, in order, ending after finished", async () => {
      const log = await run(Effect.service(EventLog))
      const jobId = `follow-${Date.now()}`
      await run(log.append(jobId, [{ _tag: "enqueued", queue: "q" }]))
      const fiber = runtime.runFork(Stream.runCollect(log.follow(jobId)))
      const appends: Array<Promise<unknown>> = []
      for (let i = 0; i < 50; i++)
        appends.push(run(log.append(jobId, [{ _tag: "output", stream: "stdout", data: `${i}` }])))
      await Promise.all(appends)
      await sleep(100)
      await run(log.append(jobId, [{ _tag: "finished", status: "succeeded" }]))
      const events = await runtime.runPromise(Fiber.join(fiber))
      const seqs = [...events].map((e) => e.seq)
      expect(seqs).toEqual(Array.from({ length: 52 }, (_, i) => i + 1))
      expect([...events].at(-1)?._tag).toBe("finished")
      const tail = await run(Stream.runCollect(log.follow(jobId, { fromSeq: 50 })))
      expect([...tail].map((e) => e.seq)).toEqual([50, 51, 52])
    })

    it("a malformed stored event is a typed error, not a crash", async () => {
      const log = await run(Effect.service(EventLog))
      const jobId = `bad-${Date.now()}`
      const { Redis } = await import("ioredis")
      const raw = new Redis(REDIS_URL)
      await raw.xadd(`${prefix}events:{${jobId}}`, "1-0", "at", "1", "e", "{not json")
      raw.disconnect()
      const exit = await runtime.runPromise(Effect.exit(log.read(jobId)))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toContain("EventLogError")
    })
  })

  describe("RedisJobStore", () => {
    const record = (id: string, over: Partial<JobRecord> = {}): JobRecord => ({
      id,
      queue: "store-q",
      status: "queued",
      attempts: 0,
      maxAttempts: 3,
      labels: {},
      createdAt: Date.now(),
      updatedAt: Date.now(),
      ...over
    })

    it("creates once, updates with index moves, gets and lists newest first with cursors", async () => {
      const store = await run(Effect.service(JobStore))
      const tag = `s${Date.now()}`
      for (let i = 0; i < 7; i++)
        await run(store.create(record(`${tag}-${i}`, { queue: tag, key: i % 2 === 0 ? "even" : "odd" })))
      await run(store.create(record(`${tag}-0`, { queue: tag, status: "failed" })))
      expect((await run(store.get(`${tag}-0`))).status).toBe("queued")
      const updated = await run(store.update(`${tag}-3`, { status: "succeeded", attempts: 1, result: { ok: true } }))
      expect(updated).toMatchObject({ status: "succeeded", attempts: 1, result: { ok: true } })
      expect(await run(store.get(`${tag}-3`))).toEqual(updated)

      const page1 = await run(store.list({ queue: tag, limit: 3 }))
      expect(page1.items.map((r) => r.id)).toEqual([`${tag}-6`, `${tag}-5`, `${tag}-4`])
      const page2 = await run(store.list({ queue: tag, limit: 3, cursor: page1.nextCursor! }))
      expect(page2.items.map((r) => r.id)).toEqual([`${tag}-3`, `${tag}-2`, `${tag}-1`])
      const page3 = await run(store.list({ queue: tag, limit: 3, cursor: page2.nextCursor! }))
      expect(page3.items.map((r) => r.id)).toEqual([`${tag}-0`])
      expect(page3.nextCursor).toBeNull()

      const done = await run(store.list({ queue: tag, status: "succeeded" }))
      expect(done.items.map((r) => r.id)).toEqual([`${tag}-3`])
      const queued = await run(store.list({ queue: tag, status: "queued" }))
      expect(queued.items.length).toBe(6)
      const even = await run(store.list({ key: "even", queue: tag }))
      expect(even.items.map((r) => r.id)).toEqual([`${tag}-6`, `${tag}-4`, `${tag}-2`, `${tag}-0`])
    })

    it("unknown ids fail with JobNotFound; racing updates leave the status indexes consistent", async () => {
      const store = await run(Effect.service(JobStore))
      const missing = await runtime.runPromise(Effect.exit(store.get("nope-nope")))
      expect(String(Exit.isFailure(missing) ? missing.cause : "")).toContain("JobNotFound")
      const missingUpdate = await runtime.runPromise(Effect.exit(store.update("nope-nope", { status: "failed" })))
      expect(String(Exit.isFailure(missingUpdate) ? missingUpdate.cause : "")).toContain("JobNotFound")
      const queue = `race-${Date.now()}`
      const id = `${queue}-job`
      await run(store.create(record(id, { queue })))
      const statuses = ["running", "succeeded", "failed", "dead", "queued"] as const
      await Promise.all(
        Array.from({ length: 25 }, (_, i) =>
          run(store.update(id, { status: statuses[i % 5]!, attempts: i }).pipe(Effect.asVoid))
        )
      )
      const final = await run(store.get(id))
      for (const status of statuses) {
        const page = await run(store.list({ queue, status }))
        expect(page.items.map((r) => r.id)).toEqual(status === final.status ? [id] : [])
      }
    })
  })
})

afterAll(async () => {
  if (redisAvailable) await cleanupPrefix(prefix)
})
