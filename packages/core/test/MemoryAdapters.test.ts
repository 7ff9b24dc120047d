import { type JobRecord, MemoryEventLog, MemoryJobStore, MemoryLimiter } from "@runlane/core"
import { Chunk, Effect, Fiber, Stream } from "effect"
import { describe, expect, it } from "vitest"

const run = <A, E>(effect: Effect.Effect<A, E>) => Effect.runPromise(effect)

describe("MemoryEventLog", () => {
  it("numbers events per job from 1 and reads back from a sequence", async () => {
    const log = MemoryEventLog.makeMemoryEventLog()
    await run(
      log.append("a", [
        { _tag: "note", kind: "k", message: "1" },
        { _tag: "note", kind: "k", message: "2" }
      ])
    )
    await run(log.append("b", [{ _tag: "note", kind: "k", message: "other job" }]))
    await run(log.append("a", [{ _tag: "note", kind: "k", message: "3" }]))
    const all = await run(log.read("a"))
    expect(all.map((e) => e.seq)).toEqual([1, 2, 3])
    expect((await run(log.read("b")))[0]?.seq).toBe(1)
    const tail = await run(log.read("a", { fromSeq: 2 }))
    expect(tail.map((e) => (e._tag === "note" ? e.message : ""))).toEqual(["2", "3"])
    expect((await run(log.read("a", { fromSeq: 2, limit: 1 }))).length).toBe(1)
  })

  it("followers replay from a sequence, then see live events exactly once, in order, until finished", async () => {
    const log = MemoryEventLog.makeMemoryEventLog()
    await run(
      log.append("j", [
        { _tag: "note", kind: "k", message: "before-1" },
        { _tag: "note", kind: "k", message: "before-2" }
      ])
    )
    const followers = await Promise.all(
      [1, 1, 2, 3].map((fromSeq) => run(Effect.forkDetach(Stream.runCollect(log.follow("j", { fromSeq })))))
    )
    for (let i = 0; i < 50; i++) await run(log.append("j", [{ _tag: "note", kind: "k", message: `live-${i}` }]))
    await run(log.append("j", [{ _tag: "finished", status: "succeeded" }]))
    const results = await Promise.all(followers.map((f) => run(Fiber.join(f))))
    const seqs = results.map((r) => Chunk.toReadonlyArray(Chunk.fromIterable(r)).map((e) => e.seq))
    expect(seqs[0]).toEqual(Array.from({ length: 53 }, (_, i) => i + 1))
    expect(seqs[1]).toEqual(seqs[0])
    expect(seqs[2]).toEqual(seqs[0]!.slice(1))
    expect(seqs[3]).toEqual(seqs[0]!.slice(2))
  })

  it("a follower of a finished job gets its history and ends", async () => {
    const log = MemoryEventLog.makeMemoryEventLog()
    await run(log.append("done", [{ _tag: "finished", status: "failed", error: "x" }]))
    const events = await run(Stream.runCollect(log.follow("done")))
    expect(Array.from(events).map((e) => e._tag)).toEqual(["finished"])
  })
})

const record = (id: string, patch: Partial<JobRecord> = {}): JobRecord => ({
  id,
  queue: "q",
  status: "queued",
  attempts: 0,
  maxAttempts: 3,
  labels: {},
  createdAt: 1,
  updatedAt: 1,
  ...patch
})

describe("MemoryJobStore", () => {
  it("creates once, updates, and reports a missing job as JobNotFound", async () => {
    const store = MemoryJobStore.makeMemoryJobStore()
    await run(store.create(record("a")))
    await run(store.create(record("a", { status: "dead" })))
    expect((await run(store.get("a"))).status).toBe("queued")
    const updated = await run(store.update("a", { status: "running", attempts: 1 }))
    expect(updated).toMatchObject({ status: "running", attempts: 1 })
    const missing = await run(Effect.flip(store.get("nope")))
    expect(missing._tag).toBe("JobNotFound")
  })

  it("lists newest first with filters and cursor pagination that visits every record once", async () => {
    const store = MemoryJobStore.makeMemoryJobStore()
    for (let i = 0; i < 25; i++) {
      await run(
        store.create(
          record(`j${i}`, { status: i % 2 === 0 ? "succeeded" : "failed", key: i % 3 === 0 ? "alice" : "bob" })
        )
      )
    }
    const seen: Array<string> = []
    let cursor: string | undefined
    for (;;) {
      const page = await run(store.list({ status: "succeeded", limit: 4, ...(cursor === undefined ? {} : { cursor }) }))
      seen.push(...page.items.map((r) => r.id))
      if (page.nextCursor === null) break
      cursor = page.nextCursor
    }
    expect(seen).toEqual(Array.from({ length: 13 }, (_, i) => `j${24 - 2 * i}`))
    const alice = await run(store.list({ key: "alice", limit: 100 }))
    expect(alice.items.map((r) => r.id)).toEqual(["j24", "j21", "j18", "j15", "j12", "j9", "j6", "j3", "j0"])
    expect(alice.nextCursor).toBeNull()
  })
})

describe("MemoryLimiter", () => {
  it("holds at most `limit` permits per key, releases them, and lets expired ones go", async () => {
    const limiter = MemoryLimiter.makeMemoryLimiter()
    const acquire = (holder: string, ttlMs = 60_000) => run(limiter.tryAcquire("user-1", holder, { limit: 2, ttlMs }))
    expect(await acquire("a")).toBe(true)
    expect(await acquire("b", 50)).toBe(true)
    expect(await acquire("c")).toBe(false)
    expect(await run(limiter.tryAcquire("user-2", "c", { limit: 2, ttlMs: 60_000 }))).toBe(true)
    await run(limiter.release("user-1", "a"))
    expect(await acquire("c")).toBe(true)
    expect(await acquire("d")).toBe(false)
    await new Promise((r) => setTimeout(r, 80))
    // "b" expired without being released (its runner died): the key heals.
    expect(await run(limiter.count("user-1"))).toBe(1)
    expect(await acquire("d")).toBe(true)
  })
})
