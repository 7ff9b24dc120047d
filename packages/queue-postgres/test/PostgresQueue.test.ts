import { PgClient } from "@effect/sql-pg"
import { EnqueueInput, type JobQueue, toJobSpec } from "@runlane/core"
import { PostgresQueue } from "@runlane/queue-postgres"
import { requireService, tcpReachable } from "@runlane/testkit"
import { Effect, Exit, Fiber, ManagedRuntime, Schema } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseLayer, PG_PORT } from "./TestDatabase.ts"

const available = await requireService("PostgreSQL", () => tcpReachable(PG_PORT))
const SCHEMA = "rl_queue"
let counter = 0
const freshQueue = () => `pq-${process.pid}-${++counter}`

describe.skipIf(!available)("PostgresQueue specifics", () => {
  // One database; the runtime holds the client, queues are built per test on it.
  let runtime: ManagedRuntime.ManagedRuntime<PgClient.PgClient, unknown>
  const withQueue = <A, E>(
    config: PostgresQueue.PostgresQueueConfig,
    use: (queue: JobQueue["Service"]) => Effect.Effect<A, E, PgClient.PgClient>
  ): Promise<A> =>
    runtime.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const queue = yield* PostgresQueue.make({ schema: SCHEMA, ...config })
          return yield* use(queue)
        })
      )
    )
  const sql = <A extends object>(text: string, params: ReadonlyArray<unknown> = []) =>
    runtime.runPromise(Effect.flatMap(Effect.service(PgClient.PgClient), (client) => client.unsafe<A>(text, params)))

  beforeAll(() => {
    runtime = ManagedRuntime.make(freshDatabaseLayer("queue"))
  })
  afterAll(async () => {
    await runtime?.dispose()
  })

  it("refuses bad enqueue input with a QueueError and stores nothing", async () => {
    const queue = freshQueue()
    await withQueue({}, (q) =>
      Effect.gen(function* () {
        const bad = yield* Effect.exit(q.enqueue({ queue, payload: 1, priority: 1.5 }))
        expect(Exit.isFailure(bad) && String(bad.cause)).toContain("invalid enqueue input")
        const mixed = yield* Effect.exit(
          q.enqueueMany([
            { queue, payload: 1 },
            { queue: "", payload: 2 }
          ])
        )
        expect(Exit.isFailure(mixed) && String(mixed.cause)).toContain("QueueError")
        const cyclic: Record<string, unknown> = {}
        cyclic.self = cyclic
        const notJson = yield* Effect.exit(q.enqueue({ queue, payload: cyclic }))
        expect(Exit.isFailure(notJson) && String(notJson.cause)).toContain("not JSON-serialisable")
        const badTake = yield* Effect.exit(q.take({ queue, max: 0, visibilityMs: 1000, waitMs: 0 }))
        expect(Exit.isFailure(badTake) && String(badTake.cause)).toContain("max must be a positive integer")
        expect(yield* q.stats(queue)).toMatchObject({ ready: 0, delayed: 0, inflight: 0, dead: 0 })
      })
    )
  })

  it("accepts and stores exactly what the EnqueueInput schema accepts (hand-checked fast path or decoder)", async () => {
    const queue = freshQueue()
    const inputs: ReadonlyArray<unknown> = [
      { queue, payload: { a: 1 } },
      { queue, payload: undefined, priority: -3, maxAttempts: 2, timeoutMs: 5, delayMs: 0, key: "", requestId: "" },
      { queue, payload: null, labels: { a: "b" }, id: `${queue}-given` },
      { queue, payload: 1, extra: "dropped by the decoder" },
      { queue, payload: 1, labels: Object.assign(Object.create(null), { a: "b" }) },
      { queue, payload: 1, priority: 1.5 },
      { queue, payload: 1, priority: 2 ** 60 },
      { queue, payload: 1, maxAttempts: 0 },
      { queue, payload: 1, timeoutMs: -1 },
      { queue, payload: 1, delayMs: -1 },
      { queue, payload: 1, id: "" },
      { queue, payload: 1, key: 3 },
      { queue, payload: 1, requestId: undefined },
      { queue, payload: 1, labels: { a: 1 } },
      { queue, payload: 1, labels: ["a"] },
      { queue: "", payload: 1 },
      { queue },
      null,
      "text"
    ]
    await withQueue({}, (q) =>
      Effect.gen(function* () {
        let accepted = 0
        for (const input of inputs) {
          const decoded = Schema.decodeUnknownExit(EnqueueInput)(input)
          const exit = yield* Effect.exit(q.enqueue(input as EnqueueInput))
          expect({ input, accepted: Exit.isSuccess(exit) }).toEqual({ input, accepted: Exit.isSuccess(decoded) })
          if (Exit.isSuccess(exit) && Exit.isSuccess(decoded)) {
            accepted++
            const [entry] = yield* q.peek(queue, { state: "ready", limit: 1 })
            const expected = toJobSpec(decoded.value, entry?.job?.enqueuedAt)
            expect(entry?.job).toEqual({ ...expected, id: exit.value.jobId })
            const [lease] = yield* q.take({ queue, max: 1, visibilityMs: 10_000, waitMs: 0 })
            yield* q.ack(lease?.token ?? "")
          }
        }
        expect(accepted).toBe(5)
      })
    )
  })

  it("refuses a schema name that is not a plain identifier", async () => {
    const exit = await runtime.runPromise(Effect.exit(Effect.scoped(PostgresQueue.make({ schema: "x; DROP TABLE y" }))))
    expect(Exit.isFailure(exit) && String(exit.cause)).toContain("schema name must match")
  })

  it("dedupes request ids within one batch, per queue, and concurrently", async () => {
    const queue = freshQueue()
    const other = freshQueue()
    await withQueue({}, (q) =>
      Effect.gen(function* () {
        const results = yield* q.enqueueMany([
          { queue, payload: "a", requestId: "r" },
          { queue, payload: "b", requestId: "r" },
          { queue: other, payload: "c", requestId: "r" }
        ])
        expect(results[0]?.duplicate).toBe(false)
        expect(results[1]).toEqual({ jobId: results[0]?.jobId, duplicate: true })
        expect(results[2]?.duplicate).toBe(false)
        const concurrent = yield* Effect.forEach(
          Array.from({ length: 10 }, () => ({ queue, payload: "x", requestId: "c" })),
          (input) => q.enqueue(input),
          { concurrency: "unbounded" }
        )
        expect(concurrent.filter((r) => !r.duplicate).length).toBe(1)
        expect(new Set(concurrent.map((r) => r.jobId)).size).toBe(1)
        expect((yield* q.stats(queue)).ready).toBe(2)
      })
    )
  })

  it("dead-letters a malformed stored job on take and shows its raw value in peek", async () => {
    const queue = freshQueue()
    await withQueue({}, (q) =>
      Effect.gen(function* () {
        yield* q.enqueue({ queue, payload: "good" })
        yield* Effect.promise(() =>
          sql(
            `INSERT INTO ${SCHEMA}.jobs (id, queue, state, run_at, max_attempts, updated_at, spec)
             VALUES ('broken', $1, 'ready', 0, 3, 0, '{not json')`,
            [queue]
          )
        )
        const wrongShape = JSON.stringify({
          id: "w",
          queue,
          payload: 1,
          priority: "high",
          maxAttempts: 3,
          labels: {},
          enqueuedAt: 1
        })
        yield* Effect.promise(() =>
          sql(
            `INSERT INTO ${SCHEMA}.jobs (id, queue, state, run_at, max_attempts, updated_at, spec)
             VALUES ('w', $1, 'ready', 0, 3, 0, $2)`,
            [queue, wrongShape]
          )
        )
        const leases = yield* q.take({ queue, max: 10, visibilityMs: 10_000, waitMs: 0 })
        expect(leases.map((l) => l.job.payload)).toEqual(["good"])
        const dead = yield* q.peek(queue, { state: "dead", limit: 10 })
        expect(dead.map((d) => d.raw).sort()).toEqual(["{not json", wrongShape].sort())
        expect(dead.every((d) => d.reason === "malformed job spec" && d.job === undefined)).toBe(true)
      })
    )
  })

  it("a long-polling take in one client wakes on an enqueue made through another", async () => {
    const queue = freshQueue()
    await withQueue({}, (consumer) =>
      Effect.gen(function* () {
        const pending = yield* Effect.forkChild(consumer.take({ queue, max: 1, visibilityMs: 10_000, waitMs: 20_000 }))
        yield* Effect.sleep(200)
        // A second, independent queue service (as another process would have).
        yield* Effect.scoped(
          Effect.flatMap(PostgresQueue.make({ schema: SCHEMA }), (producer) =>
            producer.enqueue({ queue, payload: "hi" })
          )
        )
        const started = Date.now()
        const leases = yield* Fiber.join(pending)
        expect(leases.map((l) => l.job.payload)).toEqual(["hi"])
        expect(Date.now() - started).toBeLessThan(5_000)
      })
    )
  })

  it("an expired lease that is taken again counts the expired attempt; the sweep refuses the old token", async () => {
    const queue = freshQueue()
    await withQueue({}, (q) =>
      Effect.gen(function* () {
        yield* q.enqueue({ queue, payload: 1, maxAttempts: 5 })
        const [first] = yield* q.take({ queue, max: 1, visibilityMs: 200, waitMs: 0 })
        yield* Effect.sleep(300)
        const expiredExtend = yield* Effect.exit(q.extend(first?.token ?? "", 10_000))
        expect(Exit.isFailure(expiredExtend) && String(expiredExtend.cause)).toContain("LeaseLost")
        const [second] = yield* q.take({ queue, max: 1, visibilityMs: 200, waitMs: 0 })
        expect(second?.attempt).toBe(2)
        yield* Effect.sleep(300)
        expect(yield* q.recover(queue)).toBe(1)
        const [third] = yield* q.take({ queue, max: 1, visibilityMs: 10_000, waitMs: 0 })
        expect(third?.attempt).toBe(3)
        const peeked = yield* q.peek(queue, { state: "inflight", limit: 1 })
        expect(peeked[0]?.reason).toBe("lease expired")
        yield* q.ack(third?.token ?? "")
      })
    )
  })

  it("prefetch hands out buffered leases in order and releases the rest when the layer closes", async () => {
    const queue = freshQueue()
    await withQueue({}, (q) => q.enqueueMany(Array.from({ length: 30 }, (_, i) => ({ queue, payload: i }))))
    await withQueue({ prefetch: { size: 20 } }, (q) =>
      Effect.gen(function* () {
        const a = yield* q.take({ queue, max: 5, visibilityMs: 30_000, waitMs: 0 })
        const b = yield* q.take({ queue, max: 5, visibilityMs: 30_000, waitMs: 0 })
        expect([...a, ...b].map((l) => l.job.payload)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
        for (const lease of [...a, ...b]) yield* q.ack(lease.token)
        // The buffer holds leases: they show as in flight to everyone else.
        const stats = yield* q.stats(queue)
        expect(stats.inflight).toBeGreaterThan(0)
        expect(stats.ready + stats.inflight).toBe(20)
      })
    )
    // Closed: buffered leases went back without counting an attempt.
    await withQueue({}, (q) =>
      Effect.gen(function* () {
        expect(yield* q.stats(queue)).toMatchObject({ ready: 20, inflight: 0 })
        const rest = yield* q.take({ queue, max: 50, visibilityMs: 30_000, waitMs: 0 })
        expect(rest.map((l) => l.job.payload)).toEqual(Array.from({ length: 20 }, (_, i) => i + 10))
        expect(rest.every((l) => l.attempt === 1)).toBe(true)
      })
    )
  })

  it("write-behind acks resolve at once, refuse reuse, and reach the database before the layer closes", async () => {
    const queue = freshQueue()
    await withQueue({ writeBehindAcks: true }, (q) =>
      Effect.gen(function* () {
        yield* q.enqueueMany(Array.from({ length: 20 }, (_, i) => ({ queue, payload: i })))
        const leases = yield* q.take({ queue, max: 20, visibilityMs: 30_000, waitMs: 0 })
        yield* Effect.forEach(leases, (lease) => q.ack(lease.token), { discard: true })
        const first = leases[0]?.token ?? ""
        for (const again of [q.ack(first), q.nack(first, { _tag: "release", delayMs: 0 }), q.extend(first, 1000)]) {
          const exit = yield* Effect.exit(again)
          expect(Exit.isFailure(exit) && String(exit.cause)).toContain("LeaseLost")
        }
        // A lease about to expire is confirmed by the database instead.
        yield* q.enqueue({ queue, payload: "short" })
        const [short] = yield* q.take({ queue, max: 1, visibilityMs: 300, waitMs: 0 })
        yield* Effect.sleep(400)
        const late = yield* Effect.exit(q.ack(short?.token ?? ""))
        expect(Exit.isFailure(late) && String(late.cause)).toContain("LeaseLost")
      })
    )
    const rows = await sql<{ n: number }>(`SELECT count(*)::int4 AS n FROM ${SCHEMA}.jobs WHERE queue = $1`, [queue])
    expect(rows[0]?.n).toBe(1)
  })

  it("migrations are idempotent and safe to run from many starters at once", async () => {
    await Promise.all(Array.from({ length: 4 }, () => withQueue({ schema: "rl_migrate" }, (q) => q.stats("x"))))
    const rows = await sql<{ id: number }>(`SELECT id FROM rl_migrate.migrations`)
    expect(rows.map((r) => Number(r.id))).toEqual([1])
  })
})
