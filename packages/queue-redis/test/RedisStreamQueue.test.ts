import { JobQueue } from "@runlane/core"
import { Effect, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { RedisStreamQueue } from "../src/index.ts"
import { cleanupPrefix, REDIS_URL, redisAvailable, uniquePrefix } from "./helpers.ts"

const prefix = uniquePrefix("streams")
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
let n = 0
const freshQueue = () => `sq-${Date.now().toString(36)}-${++n}`

describe.skipIf(!redisAvailable)("RedisStreamQueue specifics", () => {
  let runtime: ManagedRuntime.ManagedRuntime<JobQueue, never>
  let raw: Redis
  const run = <A, E>(effect: Effect.Effect<A, E, JobQueue>) => runtime.runPromise(effect)
  const q = () => run(Effect.service(JobQueue))
  const base = (queue: string) => `${prefix}{${queue}}:`
  beforeAll(() => {
    runtime = ManagedRuntime.make(RedisStreamQueue.layer({ url: REDIS_URL, prefix }))
    raw = new Redis(REDIS_URL)
  })
  afterAll(async () => {
    await runtime?.dispose()
    raw?.disconnect()
    await cleanupPrefix(prefix)
  })

  it("keeps a queue's keys under one hash tag and trims acked entries from the stream", async () => {
    const queue = freshQueue()
    const queueService = await q()
    await run(queueService.enqueueMany(Array.from({ length: 20 }, (_, i) => ({ queue, payload: i }))))
    expect(await raw.xlen(`${base(queue)}s:0`)).toBe(20)
    const leases = await run(queueService.take({ queue, max: 20, visibilityMs: 30_000, waitMs: 0 }))
    for (const lease of leases) await run(queueService.ack(lease.token))
    expect(await raw.xlen(`${base(queue)}s:0`)).toBe(0)
    const pending = (await raw.xpending(`${base(queue)}s:0`, "runlane")) as [number, ...Array<unknown>]
    expect(pending[0]).toBe(0)
    const keys = await raw.keys(`${prefix}*${queue}*`)
    expect(keys.length).toBeGreaterThan(0)
    expect(keys.every((k) => k.startsWith(base(queue)))).toBe(true)
  })

  it("dead-letters malformed entries with reason and raw value, never redelivers them, and keeps the good ones", async () => {
    const queue = freshQueue()
    const queueService = await q()
    await run(queueService.enqueue({ queue, payload: "good-1" }))
    const stream = `${base(queue)}s:0`
    await raw.xadd(stream, "*", "i", "bad-json", "j", "{not json", "a", "0", "m", "3")
    await raw.xadd(stream, "*", "i", "bad-schema", "j", JSON.stringify({ id: "x", queue }), "a", "0", "m", "3")
    await raw.xadd(stream, "*", "foo", "bar")
    await run(queueService.enqueue({ queue, payload: "good-2" }))
    const leases = await run(queueService.take({ queue, max: 10, visibilityMs: 30_000, waitMs: 0 }))
    expect(leases.map((l) => l.job.payload)).toEqual(["good-1", "good-2"])
    const stats = await run(queueService.stats(queue))
    expect(stats).toMatchObject({ ready: 0, inflight: 2, dead: 3 })
    const dead = await run(queueService.peek(queue, { state: "dead", limit: 10 }))
    expect(dead.length).toBe(3)
    expect(dead.map((d) => d.raw)).toEqual([
      "{not json",
      JSON.stringify({ id: "x", queue }),
      JSON.stringify({ foo: "bar" })
    ])
    expect(dead[0]!.reason).toMatch(/not JSON/)
    expect(dead[1]!.reason).toMatch(/not a JobSpec/)
    expect(dead[2]!.reason).toMatch(/no job field/)
    expect(dead.every((d) => d.job === undefined)).toBe(true)
    for (const lease of leases) await run(queueService.ack(lease.token))
    expect(await run(queueService.take({ queue, max: 10, visibilityMs: 30_000, waitMs: 0 }))).toEqual([])
  })

  it("reclaims an expired lease with XAUTOCLAIM and hands it to the taking consumer", async () => {
    const queue = freshQueue()
    const queueService = await q()
    await run(queueService.enqueue({ queue, payload: "x" }))
    const [first] = await run(queueService.take({ queue, max: 1, visibilityMs: 200, waitMs: 0, consumer: "runner-a" }))
    const stream = `${base(queue)}s:0`
    const before = (await raw.xpending(stream, "runlane", "-", "+", 10)) as Array<[string, string, number, number]>
    expect(before.map((p) => [p[1], p[3]])).toEqual([["runner-a", 1]])
    await sleep(350)
    const [second] = await run(
      queueService.take({ queue, max: 1, visibilityMs: 30_000, waitMs: 0, consumer: "runner-b" })
    )
    expect(second?.job.id).toBe(first!.job.id)
    expect(second!.attempt).toBe(2)
    const after = (await raw.xpending(stream, "runlane", "-", "+", 10)) as Array<[string, string, number, number]>
    // Same entry, now owned by runner-b, delivered twice.
    expect(after.map((p) => [p[0], p[1], p[3]])).toEqual([[before[0]![0], "runner-b", 2]])
    const stale = await run(Effect.exit(queueService.ack(first!.token)))
    expect(stale._tag === "Failure" && String(stale.cause)).toContain("LeaseLost")
    await run(queueService.ack(second!.token))
  })

  it("two runners racing for the same expired job: exactly one holds a valid lease", async () => {
    const queue = freshQueue()
    const queueService = await q()
    await run(queueService.enqueue({ queue, payload: "contested" }))
    await run(queueService.take({ queue, max: 1, visibilityMs: 150, waitMs: 0, consumer: "gone" }))
    await sleep(300)
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        run(queueService.take({ queue, max: 1, visibilityMs: 30_000, waitMs: 0, consumer: `racer-${i}` }))
      )
    )
    const winners = results.flat()
    expect(winners.length).toBe(1)
    const exits = await Promise.all(results.flat().map((l) => run(Effect.exit(queueService.extend(l.token, 30_000)))))
    expect(exits.every((e) => e._tag === "Success")).toBe(true)
  })

  it("dead-letters a job whose lease expired on its last allowed attempt (a poison job that kills runners)", async () => {
    const queue = freshQueue()
    const queueService = await q()
    await run(queueService.enqueue({ queue, payload: "poison", maxAttempts: 2 }))
    await run(queueService.take({ queue, max: 1, visibilityMs: 100, waitMs: 0 }))
    await sleep(200)
    const [second] = await run(queueService.take({ queue, max: 1, visibilityMs: 100, waitMs: 0 }))
    expect(second!.attempt).toBe(2)
    await sleep(200)
    expect(await run(queueService.take({ queue, max: 1, visibilityMs: 100, waitMs: 0 }))).toEqual([])
    const dead = await run(queueService.peek(queue, { state: "dead", limit: 5 }))
    expect(dead.map((d) => [d.job?.payload, d.attempt])).toEqual([["poison", 2]])
    expect(dead[0]!.reason).toMatch(/lease expired/)
  })

  it("keeps retry errors and priorities across delayed retries", async () => {
    const queue = freshQueue()
    const queueService = await q()
    await run(queueService.enqueue({ queue, payload: "hi", priority: 7 }))
    const [lease] = await run(queueService.take({ queue, max: 1, visibilityMs: 30_000, waitMs: 0 }))
    await run(queueService.nack(lease!.token, { _tag: "retry", delayMs: 150, error: "boom" }))
    const delayed = await run(queueService.peek(queue, { state: "delayed", limit: 5 }))
    expect(delayed.map((d) => [d.job?.payload, d.attempt, d.reason])).toEqual([["hi", 1, "boom"]])
    await run(queueService.enqueue({ queue, payload: "lo", priority: 0 }))
    await sleep(250)
    const next = await run(queueService.take({ queue, max: 2, visibilityMs: 30_000, waitMs: 0 }))
    expect(next.map((l) => [l.job.payload, l.attempt])).toEqual([
      ["hi", 2],
      ["lo", 1]
    ])
  })

  it("enqueueMany of 2,000 jobs is one pipeline and take(max) returns a full batch", async () => {
    const queue = freshQueue()
    const queueService = await q()
    const results = await run(queueService.enqueueMany(Array.from({ length: 2000 }, (_, i) => ({ queue, payload: i }))))
    expect(new Set(results.map((r) => r.jobId)).size).toBe(2000)
    const batch = await run(queueService.take({ queue, max: 500, visibilityMs: 30_000, waitMs: 0 }))
    expect(batch.length).toBe(500)
    expect(batch.map((l) => l.job.payload)).toEqual(Array.from({ length: 500 }, (_, i) => i))
  })
})
