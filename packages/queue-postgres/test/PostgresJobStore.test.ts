import { JobNotFound, type JobRecord, JobStore } from "@runlane/core"
import { PostgresJobStore } from "@runlane/queue-postgres"
import { requireService, tcpReachable } from "@runlane/testkit"
import { Effect, Exit, Layer, ManagedRuntime } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { freshDatabaseLayer, PG_PORT } from "./TestDatabase.ts"

const available = await requireService("PostgreSQL", () => tcpReachable(PG_PORT))

const record = (id: string, overrides: Partial<JobRecord> = {}): JobRecord => ({
  id,
  queue: "q1",
  status: "queued",
  attempts: 0,
  maxAttempts: 3,
  labels: { team: "a" },
  createdAt: 1_000,
  updatedAt: 1_000,
  ...overrides
})

describe.skipIf(!available)("PostgresJobStore", () => {
  let runtime: ManagedRuntime.ManagedRuntime<JobStore, unknown>
  const run = <A, E>(effect: Effect.Effect<A, E, JobStore>) => runtime.runPromise(effect)
  const store = () => run(Effect.service(JobStore))

  beforeAll(() => {
    runtime = ManagedRuntime.make(
      PostgresJobStore.layer({ schema: "rl_store" }).pipe(Layer.provide(freshDatabaseLayer("store")))
    )
  })
  afterAll(async () => {
    await runtime?.dispose()
  })

  it("creates once, reads back, and leaves an existing record as it is", async () => {
    const s = await store()
    await run(s.create(record("a1", { key: "user-1", result: { files: ["x"] } })))
    await run(s.create(record("a1", { status: "failed" })))
    const got = await run(s.get("a1"))
    expect(got).toEqual(record("a1", { key: "user-1", result: { files: ["x"] } }))
  })

  it("update merges the patch, stamps updatedAt and returns the record", async () => {
    const s = await store()
    await run(s.create(record("u1")))
    const before = Date.now()
    const updated = await run(s.update("u1", { status: "running", attempts: 1, startedAt: 5_000 }))
    expect(updated).toMatchObject({ id: "u1", status: "running", attempts: 1, startedAt: 5_000, createdAt: 1_000 })
    expect(updated.updatedAt).toBeGreaterThanOrEqual(before)
    const explicit = await run(s.update("u1", { status: "succeeded", exitCode: 0, updatedAt: 42 }))
    expect(explicit.updatedAt).toBe(42)
    expect(await run(s.get("u1"))).toEqual(explicit)
    const listed = await run(s.list({ status: "succeeded", queue: "q1" }))
    expect(listed.items.map((r) => r.id)).toContain("u1")
  })

  it("get and update of an unknown id fail with JobNotFound", async () => {
    const s = await store()
    const exit = await run(Effect.exit(s.get("nope")))
    expect(exit).toEqual(Exit.fail(new JobNotFound({ jobId: "nope" })))
    const exit2 = await run(Effect.exit(s.update("nope", { status: "running" })))
    expect(Exit.isFailure(exit2) && String(exit2.cause)).toContain("JobNotFound")
  })

  it("a bad record or patch is refused with JobStoreError and changes nothing", async () => {
    const s = await store()
    const bad = await run(Effect.exit(s.create({ ...record("b1"), status: "exploded" } as unknown as JobRecord)))
    expect(Exit.isFailure(bad) && String(bad.cause)).toContain("JobStoreError")
    expect(Exit.isFailure(await run(Effect.exit(s.get("b1"))))).toBe(true)
    await run(s.create(record("b2")))
    const badPatch = await run(Effect.exit(s.update("b2", { attempts: 1.5 })))
    expect(Exit.isFailure(badPatch) && String(badPatch.cause)).toContain("invalid job patch")
    expect((await run(s.get("b2"))).attempts).toBe(0)
  })

  it("lists newest first with filters and cursor pagination", async () => {
    const s = await store()
    const queue = `list-${Date.now()}`
    for (let i = 0; i < 7; i++) {
      await run(
        s.create(record(`${queue}-${i}`, { queue, status: i % 2 === 0 ? "succeeded" : "failed", key: `k${i % 3}` }))
      )
    }
    const first = await run(s.list({ queue, limit: 3 }))
    expect(first.items.map((r) => r.id)).toEqual([`${queue}-6`, `${queue}-5`, `${queue}-4`])
    expect(first.nextCursor).not.toBeNull()
    const second = await run(s.list({ queue, limit: 3, cursor: first.nextCursor as string }))
    expect(second.items.map((r) => r.id)).toEqual([`${queue}-3`, `${queue}-2`, `${queue}-1`])
    const third = await run(s.list({ queue, limit: 3, cursor: second.nextCursor as string }))
    expect(third.items.map((r) => r.id)).toEqual([`${queue}-0`])
    expect(third.nextCursor).toBeNull()
    const failed = await run(s.list({ queue, status: "failed" }))
    expect(failed.items.map((r) => r.id)).toEqual([`${queue}-5`, `${queue}-3`, `${queue}-1`])
    const byKey = await run(s.list({ queue, key: "k0" }))
    expect(byKey.items.map((r) => r.id)).toEqual([`${queue}-6`, `${queue}-3`, `${queue}-0`])
    const bad = await run(Effect.exit(s.list({ cursor: "%%%" })))
    expect(Exit.isFailure(bad) && String(bad.cause)).toContain("invalid cursor")
  })
})
