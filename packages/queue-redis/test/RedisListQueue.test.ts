import { JobQueue } from "@runlane/core"
import { Effect, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { RedisListQueue } from "../src/index.ts"
import { cleanupPrefix, REDIS_URL, redisAvailable, uniquePrefix } from "./helpers.ts"

const prefix = uniquePrefix("lists")
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
let n = 0
const freshQueue = () => `lq-${Date.now().toString(36)}-${++n}`

describe.skipIf(!redisAvailable)("RedisListQueue specifics", () => {
  let runtime: ManagedRuntime.ManagedRuntime<JobQueue, never>
  let raw: Redis
  const run = <A, E>(effect: Effect.Effect<A, E, JobQueue>) => runtime.runPromise(effect)
  const q = () => run(Effect.service(JobQueue))
  const base = (queue: string) => `${prefix}{${queue}}:`
  const layer = (consumer: string, heartbeatTtlMs = 15_000) =>
    RedisListQueue.layer({ url: REDIS_URL, prefix, consumer, heartbeatTtlMs })
  beforeAll(() => {
    runtime = ManagedRuntime.make(layer("main-runner"))
    raw = new Redis(REDIS_URL)
  })
  afterAll(async () => {
    await runtime?.dispose()
    raw?.disconnect()
    await cleanupPrefix(prefix)
  })

  it("accepts jobs another program LPUSHes in the seed's JSON format, and acks with LREM", async () => {
    const queue = freshQueue()
    const queueService = await q()
    const seedJob = {
      id: "job-123",
      repo_url: "git@github.com:user/repo.git",
      branch: "feature-branch",
      prompt: "Implement a new feature X",
      mcp_connection_url: "http://mcp.example.com"
    }
    await raw.lpush(`${base(queue)}jobs`, JSON.stringify(seedJob))
    await raw.lpush(`${base(queue)}jobs`, JSON.stringify({ ...seedJob, id: "job-124" }))
    expect(await run(queueService.stats(queue))).toMatchObject({ ready: 2 })
    const peeked = await run(queueService.peek(queue, { state: "ready", limit: 10 }))
    expect(peeked.map((p) => p.job?.id)).toEqual(["job-123", "job-124"])
    const leases = await run(queueService.take({ queue, max: 10, visibilityMs: 30_000, waitMs: 0 }))
    expect(leases.map((l) => [l.job.id, l.attempt])).toEqual([
      ["job-123", 1],
      ["job-124", 1]
    ])
    expect(leases[0]!.job.payload).toEqual(seedJob)
    expect(await raw.llen(`${base(queue)}proc:main-runner`)).toBe(2)
    await run(queueService.ack(leases[0]!.token))
    expect(await raw.lrange(`${base(queue)}proc:main-runner`, 0, -1)).toEqual([
      JSON.stringify({ ...seedJob, id: "job-124" })
    ])
    // A foreign job that fails keeps its original body (wrapped) and its attempt count.
    await run(queueService.nack(leases[1]!.token, { _tag: "retry", delayMs: 0, error: "boom" }))
    const [again] = await run(queueService.take({ queue, max: 1, visibilityMs: 30_000, waitMs: 0 }))
    expect(again!.job.id).toBe("job-124")
    expect(again!.attempt).toBe(2)
    expect(again!.job.payload).toEqual({ ...seedJob, id: "job-124" })
    await run(queueService.ack(again!.token))
    expect(await raw.llen(`${base(queue)}proc:main-runner`)).toBe(0)
  })

  it("a long poll wakes on a foreign LPUSH (BLMOVE into the processing list)", async () => {
    const queue = freshQueue()
    const queueService = await q()
    const pending = run(queueService.take({ queue, max: 5, visibilityMs: 30_000, waitMs: 20_000 }))
    await sleep(150)
    await raw.lpush(`${base(queue)}jobs`, JSON.stringify({ id: "woken" }))
    const leases = await pending
    expect(leases.map((l) => l.job.id)).toEqual(["woken"])
    expect(await raw.lrange(`${base(queue)}proc:main-runner`, 0, -1)).toEqual([JSON.stringify({ id: "woken" })])
    await run(queueService.ack(leases[0]!.token))
  })

  it("dead-letters malformed elements with reason and raw value and does not redeliver them", async () => {
    const queue = freshQueue()
    const queueService = await q()
    const main = `${base(queue)}jobs`
    await raw.lpush(main, "not json at all")
    await raw.lpush(main, JSON.stringify({ no: "id" }))
    await raw.lpush(main, JSON.stringify({ rl: 1, a: 0, m: 3, p: 0, job: JSON.stringify({ id: "x" }) }))
    await run(queueService.enqueue({ queue, payload: "fine" }))
    const leases = await run(queueService.take({ queue, max: 10, visibilityMs: 30_000, waitMs: 0 }))
    expect(leases.map((l) => l.job.payload)).toEqual(["fine"])
    const dead = await run(queueService.peek(queue, { state: "dead", limit: 10 }))
    expect(dead.map((d) => d.raw)).toEqual([
      "not json at all",
      JSON.stringify({ no: "id" }),
      JSON.stringify({ rl: 1, a: 0, m: 3, p: 0, job: JSON.stringify({ id: "x" }) })
    ])
    expect(dead.map((d) => d.reason?.split(":")[0])).toEqual(["malformed entry", "malformed entry", "malformed entry"])
    expect(dead[0]!.reason).toMatch(/not JSON/)
    expect(dead[1]!.reason).toMatch(/id/)
    expect(dead[2]!.reason).toMatch(/not a JobSpec/)
    expect(await run(queueService.stats(queue))).toMatchObject({ ready: 0, inflight: 1, dead: 3 })
    expect(await raw.llen(`${base(queue)}proc:main-runner`)).toBe(1)
  })

  it("recover returns a gone runner's processing entries but never a live runner's", async () => {
    const queue = freshQueue()
    const queueService = await q()
    await run(queueService.enqueueMany([1, 2, 3].map((i) => ({ queue, payload: i }))))
    // A live runner holding one job with a long lease.
    const live = ManagedRuntime.make(layer("live-runner", 300))
    const liveQueue = await live.runPromise(Effect.service(JobQueue))
    const [liveLease] = await live.runPromise(liveQueue.take({ queue, max: 1, visibilityMs: 60_000, waitMs: 0 }))
    // A runner that dies holding one job with a long lease: its layer stops (heartbeat key deleted).
    const doomed = ManagedRuntime.make(layer("doomed-runner", 300))
    const doomedQueue = await doomed.runPromise(Effect.service(JobQueue))
    const [doomedLease] = await doomed.runPromise(doomedQueue.take({ queue, max: 1, visibilityMs: 60_000, waitMs: 0 }))
    expect(await raw.exists(`${base(queue)}hb:doomed-runner`)).toBe(1)
    await doomed.dispose()
    expect(await raw.exists(`${base(queue)}hb:doomed-runner`)).toBe(0)
    // An element a BLMOVE moved just before its runner died, with no lease registered.
    await raw.lmove(`${base(queue)}jobs`, `${base(queue)}proc:crashed-mid-blmove`, "RIGHT", "LEFT")
    await raw.sadd(`${base(queue)}consumers`, "crashed-mid-blmove")
    await sleep(500) // the live runner's heartbeat (TTL 300 ms) must be kept alive by its layer
    expect(await raw.exists(`${base(queue)}hb:live-runner`)).toBe(1)
    expect(await run(queueService.recover(queue))).toBe(2)
    expect(await raw.llen(`${base(queue)}proc:doomed-runner`)).toBe(0)
    expect(await raw.llen(`${base(queue)}proc:crashed-mid-blmove`)).toBe(0)
    expect(await raw.llen(`${base(queue)}proc:live-runner`)).toBe(1)
    expect(await run(queueService.stats(queue))).toMatchObject({ ready: 2, inflight: 1 })
    const again = await run(queueService.take({ queue, max: 5, visibilityMs: 30_000, waitMs: 0 }))
    const byId = new Map(again.map((l) => [l.job.id, l.attempt]))
    expect(byId.get(doomedLease!.job.id)).toBe(2) // its runner died mid-job: counted
    expect(byId.size).toBe(2) // the never-delivered one comes back with attempt 1
    expect([...byId.values()].sort()).toEqual([1, 2])
    await live.runPromise(liveQueue.ack(liveLease!.token))
    await live.dispose()
  })

  it("honours a custom main list key (a program that only knows `agent_jobs`)", async () => {
    const queue = freshQueue()
    const mainKey = `${prefix}agent_jobs:${queue}`
    const custom = ManagedRuntime.make(
      RedisListQueue.layer({ url: REDIS_URL, prefix, mainListKey: () => mainKey, foreignMaxAttempts: 5 })
    )
    try {
      const queueService = await custom.runPromise(Effect.service(JobQueue))
      await raw.lpush(mainKey, JSON.stringify({ id: 77, prompt: "numbers are ids too" }))
      const [lease] = await custom.runPromise(queueService.take({ queue, max: 1, visibilityMs: 30_000, waitMs: 0 }))
      expect(lease!.job).toMatchObject({ id: "77", queue, maxAttempts: 5, priority: 0 })
      await custom.runPromise(queueService.ack(lease!.token))
    } finally {
      await custom.dispose()
    }
  })
})
