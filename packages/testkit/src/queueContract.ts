import { JobQueue, type Lease } from "@runlane/core"
import { Effect, Exit, type Layer, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

export interface QueueContractOptions {
  /** Skip the whole suite (locally, when the backing service is missing). */
  readonly skip?: boolean
  /** Lease duration used by the expiry tests; adapters with coarse clocks may need more. */
  readonly shortVisibilityMs?: number
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
let counter = 0
const freshQueue = () => `contract-${process.pid}-${Date.now().toString(36)}-${++counter}`

/**
 * The `JobQueue` contract: the same tests for every adapter (memory, Redis Streams, Redis
 * lists, PostgreSQL). `makeLayer` is built once for the suite; every test uses its own queue.
 */
export const queueContract = (
  name: string,
  makeLayer: () => Layer.Layer<JobQueue, unknown>,
  options: QueueContractOptions = {}
): void => {
  const shortMs = options.shortVisibilityMs ?? 300
  describe.skipIf(options.skip === true)(`JobQueue contract: ${name}`, () => {
    let runtime: ManagedRuntime.ManagedRuntime<JobQueue, unknown>
    const run = <A, E>(effect: Effect.Effect<A, E, JobQueue>): Promise<A> => runtime.runPromise(effect)
    const q = () => run(Effect.service(JobQueue))
    const takeAll = async (queue: string, max = 100, visibilityMs = 30_000) =>
      (await q()).take({ queue, max, visibilityMs, waitMs: 0 }).pipe(run)
    const expectLost = async (effect: Effect.Effect<unknown, unknown, JobQueue>) => {
      const exit = await run(Effect.exit(effect))
      expect(Exit.isFailure(exit)).toBe(true)
      if (Exit.isFailure(exit)) expect(String(exit.cause)).toContain("LeaseLost")
    }

    beforeAll(() => {
      runtime = ManagedRuntime.make(makeLayer())
    })
    afterAll(async () => {
      await runtime?.dispose()
    })

    it("delivers FIFO with attempt 1 and a token per lease", async () => {
      const queue = freshQueue()
      const queueService = await q()
      for (let i = 0; i < 5; i++) await run(queueService.enqueue({ queue, payload: { i } }))
      const leases = await takeAll(queue)
      expect(leases.map((l) => (l.job.payload as { i: number }).i)).toEqual([0, 1, 2, 3, 4])
      expect(leases.every((l) => l.attempt === 1)).toBe(true)
      expect(new Set(leases.map((l) => l.token)).size).toBe(5)
      for (const l of leases) await run(queueService.ack(l.token))
      expect(await takeAll(queue)).toEqual([])
    })

    it("takes higher priority first, FIFO within a priority", async () => {
      const queue = freshQueue()
      const queueService = await q()
      await run(
        queueService.enqueueMany([
          { queue, payload: "low-1", priority: 0 },
          { queue, payload: "high-1", priority: 5 },
          { queue, payload: "low-2", priority: 0 },
          { queue, payload: "high-2", priority: 5 },
          { queue, payload: "mid", priority: 2 }
        ])
      )
      const leases = await takeAll(queue)
      expect(leases.map((l) => l.job.payload)).toEqual(["high-1", "high-2", "mid", "low-1", "low-2"])
    })

    it("takes at most `max` leases per call", async () => {
      const queue = freshQueue()
      const queueService = await q()
      await run(queueService.enqueueMany(Array.from({ length: 10 }, (_, i) => ({ queue, payload: i }))))
      expect((await takeAll(queue, 4)).length).toBe(4)
      expect((await takeAll(queue, 4)).length).toBe(4)
      expect((await takeAll(queue, 4)).length).toBe(2)
    })

    it("enqueue is idempotent by request id", async () => {
      const queue = freshQueue()
      const queueService = await q()
      const first = await run(queueService.enqueue({ queue, payload: 1, requestId: "req-1" }))
      const second = await run(queueService.enqueue({ queue, payload: 2, requestId: "req-1" }))
      expect(first.duplicate).toBe(false)
      expect(second).toEqual({ jobId: first.jobId, duplicate: true })
      const leases = await takeAll(queue)
      expect(leases.length).toBe(1)
      expect(leases[0]!.job.id).toBe(first.jobId)
      expect(leases[0]!.job.payload).toBe(1)
    })

    it("only the lease holder's token acks; a spent token is refused", async () => {
      const queue = freshQueue()
      const queueService = await q()
      await run(queueService.enqueue({ queue, payload: "x" }))
      const [lease] = await takeAll(queue)
      await expectLost(queueService.ack("not-a-token"))
      await expectLost(queueService.nack("not-a-token", { _tag: "retry", delayMs: 0 }))
      await expectLost(queueService.extend("not-a-token", 1000))
      await run(queueService.ack(lease!.token))
      await expectLost(queueService.ack(lease!.token))
    })

    it("an expired lease returns to the queue with a new token and the old one is refused", async () => {
      const queue = freshQueue()
      const queueService = await q()
      await run(queueService.enqueue({ queue, payload: "x" }))
      const [first] = await takeAll(queue, 1, shortMs)
      expect(await takeAll(queue, 1, shortMs)).toEqual([])
      await sleep(shortMs + 200)
      const [second] = await takeAll(queue, 1, 30_000)
      expect(second?.job.id).toBe(first!.job.id)
      expect(second!.attempt).toBe(2)
      expect(second!.token).not.toBe(first!.token)
      await expectLost(queueService.ack(first!.token))
      await run(queueService.ack(second!.token))
    })

    it("extend keeps a lease past its first visibility timeout", async () => {
      const queue = freshQueue()
      const queueService = await q()
      await run(queueService.enqueue({ queue, payload: "x" }))
      const [lease] = await takeAll(queue, 1, shortMs)
      const until = await run(queueService.extend(lease!.token, 10_000))
      expect(until).toBeGreaterThan(Date.now() + 5_000)
      await sleep(shortMs + 200)
      expect(await takeAll(queue)).toEqual([])
      await run(queueService.ack(lease!.token))
    })

    it("recover returns expired leases at once and counts them", async () => {
      const queue = freshQueue()
      const queueService = await q()
      await run(
        queueService.enqueueMany([
          { queue, payload: 1 },
          { queue, payload: 2 }
        ])
      )
      await takeAll(queue, 2, shortMs)
      await sleep(shortMs + 200)
      expect(await run(queueService.recover(queue))).toBe(2)
      expect((await run(queueService.stats(queue))).ready).toBe(2)
    })

    it("a long-polling take wakes when a job is enqueued", async () => {
      const queue = freshQueue()
      const queueService = await q()
      const started = Date.now()
      const pending = run(queueService.take({ queue, max: 1, visibilityMs: 30_000, waitMs: 30_000 }))
      await sleep(100)
      await run(queueService.enqueue({ queue, payload: "wake" }))
      const leases = await pending
      expect(leases.map((l) => l.job.payload)).toEqual(["wake"])
      // Woken by the enqueue, far before the 30 s wait ran out.
      expect(Date.now() - started).toBeLessThan(10_000)
    })

    it("a long-polling take returns empty when nothing arrives", async () => {
      const queue = freshQueue()
      const queueService = await q()
      const leases = await run(queueService.take({ queue, max: 1, visibilityMs: 1000, waitMs: 200 }))
      expect(leases).toEqual([])
    })

    it("retry with a delay holds the job back, then delivers it with the attempt counted", async () => {
      const queue = freshQueue()
      const queueService = await q()
      await run(queueService.enqueue({ queue, payload: "r" }))
      const [first] = await takeAll(queue)
      await run(queueService.nack(first!.token, { _tag: "retry", delayMs: 400, error: "boom" }))
      expect(await takeAll(queue)).toEqual([])
      expect((await run(queueService.stats(queue))).delayed).toBe(1)
      await sleep(600)
      const [second] = await takeAll(queue)
      expect(second?.job.id).toBe(first!.job.id)
      expect(second!.attempt).toBe(2)
    })

    it("release returns the job without counting the attempt", async () => {
      const queue = freshQueue()
      const queueService = await q()
      await run(queueService.enqueue({ queue, payload: "r" }))
      const [first] = await takeAll(queue)
      await run(queueService.nack(first!.token, { _tag: "release", delayMs: 0 }))
      const [second] = await takeAll(queue)
      expect(second!.attempt).toBe(1)
    })

    it("dead letters are kept with their reason and visible in stats and peek", async () => {
      const queue = freshQueue()
      const queueService = await q()
      const { jobId } = await run(queueService.enqueue({ queue, payload: "d" }))
      const [lease] = await takeAll(queue)
      await run(queueService.nack(lease!.token, { _tag: "dead", reason: "payload is not valid" }))
      const stats = await run(queueService.stats(queue))
      expect(stats).toMatchObject({ ready: 0, inflight: 0, delayed: 0, dead: 1 })
      const dead = await run(queueService.peek(queue, { state: "dead", limit: 10 }))
      expect(dead.length).toBe(1)
      expect(dead[0]!.job?.id).toBe(jobId)
      expect(dead[0]!.reason).toBe("payload is not valid")
      await expectLost(queueService.ack(lease!.token))
    })

    it("a delayed enqueue is not delivered before its time", async () => {
      const queue = freshQueue()
      const queueService = await q()
      await run(queueService.enqueue({ queue, payload: "later", delayMs: 400 }))
      expect(await takeAll(queue)).toEqual([])
      await sleep(600)
      expect((await takeAll(queue)).map((l) => l.job.payload)).toEqual(["later"])
    })

    it("stats and peek report each state", async () => {
      const queue = freshQueue()
      const queueService = await q()
      await run(
        queueService.enqueueMany([
          { queue, payload: "a" },
          { queue, payload: "b" },
          { queue, payload: "c", delayMs: 60_000 }
        ])
      )
      const [lease] = await takeAll(queue, 1)
      expect(await run(queueService.stats(queue))).toMatchObject({ queue, ready: 1, inflight: 1, delayed: 1, dead: 0 })
      const ready = await run(queueService.peek(queue, { state: "ready", limit: 10 }))
      expect(ready.map((e) => e.job?.payload)).toEqual(["b"])
      const inflight = await run(queueService.peek(queue, { state: "inflight", limit: 10 }))
      expect(inflight.map((e) => e.job?.id)).toEqual([(lease as Lease).job.id])
      const delayed = await run(queueService.peek(queue, { state: "delayed", limit: 10 }))
      expect(delayed.map((e) => e.job?.payload)).toEqual(["c"])
    })

    it("two concurrent takers never hold the same job", async () => {
      const queue = freshQueue()
      const queueService = await q()
      await run(queueService.enqueueMany(Array.from({ length: 50 }, (_, i) => ({ queue, payload: i }))))
      const results = await Promise.all(
        Array.from({ length: 5 }, () => run(queueService.take({ queue, max: 20, visibilityMs: 30_000, waitMs: 0 })))
      )
      const ids = results.flat().map((l) => l.job.id)
      expect(ids.length).toBe(50)
      expect(new Set(ids).size).toBe(50)
    })
  })
}
