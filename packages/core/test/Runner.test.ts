import {
  EventLog,
  execHandler,
  InvalidPayload,
  JobFailed,
  type JobHandler,
  JobQueue,
  type JobRecord,
  JobStore,
  MemoryEventLog,
  MemoryJobStore,
  MemoryLimiter,
  Runner,
  type RunnerConfig
} from "@runlane/core"
import { isProcessAlive, ProcessExecutor } from "@runlane/exec-process"
import { MemoryQueue } from "@runlane/queue-memory"
import { Effect, Fiber, Layer, ManagedRuntime, Redacted } from "effect"
import { afterEach, describe, expect, it } from "vitest"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const makeHarness = () => {
  const layer = Layer.mergeAll(
    MemoryQueue.layer(),
    MemoryJobStore.layer(),
    MemoryEventLog.layer(),
    MemoryLimiter.layer(),
    ProcessExecutor.layer()
  )
  const runtime = ManagedRuntime.make(layer)
  const run = <A, E>(effect: Effect.Effect<A, E, Layer.Success<typeof layer>>) => runtime.runPromise(effect)
  const enqueue = (queue: string, payload: unknown, extra: Record<string, unknown> = {}) =>
    run(JobQueue.use((q) => q.enqueue({ queue, payload, ...extra })))
  const start = <R extends Layer.Success<typeof layer>>(config: RunnerConfig, handler: JobHandler<R>) =>
    runtime.runFork(Runner.run(config, handler) as Effect.Effect<void, never, Layer.Success<typeof layer>>)
  const record = (jobId: string): Promise<JobRecord> => run(JobStore.use((s) => s.get(jobId)))
  const events = (jobId: string) => run(EventLog.use((l) => l.read(jobId)))
  const stats = (queue: string) => run(JobQueue.use((q) => q.stats(queue)))
  const waitFor = async (predicate: () => Promise<boolean>, timeoutMs = 20_000) => {
    const deadline = Date.now() + timeoutMs
    while (Date.now() < deadline) {
      if (await predicate()) return
      await sleep(20)
    }
    throw new Error("condition not reached in time")
  }
  const statusOf = async (jobId: string) => (await record(jobId).catch(() => undefined))?.status
  return { runtime, run, enqueue, start, record, events, stats, waitFor, statusOf }
}

let harness: ReturnType<typeof makeHarness>
afterEach(async () => {
  await harness?.runtime.dispose()
})

const fast = { pollWaitMs: 50, backoff: { baseMs: 20, jitter: false } } as const

describe("Runner", () => {
  it("runs a job, records each transition and numbers its events from 1", async () => {
    harness = makeHarness()
    const { jobId } = await harness.enqueue("q", { n: 1 })
    const fiber = harness.start({ queue: "q", ...fast, stopWhenIdle: true }, () =>
      Effect.succeed({ exitCode: 0, result: "ok" })
    )
    await harness.run(Fiber.join(fiber))
    const rec = await harness.record(jobId)
    expect(rec).toMatchObject({ status: "succeeded", attempts: 1, exitCode: 0, result: "ok" })
    const events = await harness.events(jobId)
    expect(events.map((e) => e._tag)).toEqual(["started", "status-changed", "status-changed", "finished"])
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4])
  })

  it("never runs more jobs at once than its concurrency", async () => {
    harness = makeHarness()
    let running = 0
    let peak = 0
    for (let i = 0; i < 12; i++) await harness.enqueue("q", i)
    const fiber = harness.start({ queue: "q", ...fast, concurrency: 3, stopWhenIdle: true }, () =>
      Effect.gen(function* () {
        running++
        peak = Math.max(peak, running)
        yield* Effect.sleep(40)
        running--
        return {}
      })
    )
    await harness.run(Fiber.join(fiber))
    expect(peak).toBe(3)
    expect((await harness.stats("q")).ready).toBe(0)
  })

  it("holds the per-key bound while other keys proceed", async () => {
    harness = makeHarness()
    const perKey = new Map<string, number>()
    const peaks = new Map<string, number>()
    let peakAll = 0
    let all = 0
    for (let i = 0; i < 6; i++) {
      await harness.enqueue("q", i, { key: "alice" })
      await harness.enqueue("q", i, { key: "bob" })
    }
    const fiber = harness.start(
      { queue: "q", ...fast, concurrency: 8, maxPerKey: 2, keyBusyDelayMs: 10, stopWhenIdle: true },
      (ctx) =>
        Effect.gen(function* () {
          const key = ctx.job.key!
          perKey.set(key, (perKey.get(key) ?? 0) + 1)
          all++
          peakAll = Math.max(peakAll, all)
          peaks.set(key, Math.max(peaks.get(key) ?? 0, perKey.get(key)!))
          yield* Effect.sleep(30)
          perKey.set(key, perKey.get(key)! - 1)
          all--
          return {}
        })
    )
    await harness.run(Fiber.join(fiber))
    expect(peaks.get("alice")).toBe(2)
    expect(peaks.get("bob")).toBe(2)
    expect(peakAll).toBe(4)
  })

  it("extends the lease of a job that outlives its visibility timeout", async () => {
    harness = makeHarness()
    let calls = 0
    const { jobId } = await harness.enqueue("q", "long")
    const fiber = harness.start({ queue: "q", ...fast, visibilityMs: 200, heartbeatMs: 50, stopWhenIdle: true }, () =>
      Effect.gen(function* () {
        calls++
        yield* Effect.sleep(900)
        return {}
      })
    )
    await harness.run(Fiber.join(fiber))
    expect(calls).toBe(1)
    expect(await harness.record(jobId)).toMatchObject({ status: "succeeded", attempts: 1 })
  })

  it("times a job out, kills its process and records timed_out", async () => {
    harness = makeHarness()
    const { jobId } = await harness.enqueue("q", { argv: ["sh", "-c", "echo $$; exec sleep 30"] }, { timeoutMs: 500 })
    const fiber = harness.start({ queue: "q", ...fast, stopWhenIdle: true }, execHandler())
    await harness.run(Fiber.join(fiber))
    const rec = await harness.record(jobId)
    expect(rec.status).toBe("timed_out")
    expect(rec.error).toContain("timed out after 500 ms")
    const events = await harness.events(jobId)
    const pid = Number(
      events.find((e) => e._tag === "output")?._tag === "output"
        ? (events.find((e) => e._tag === "output") as { data: string }).data.trim()
        : NaN
    )
    expect(Number.isInteger(pid)).toBe(true)
    expect(isProcessAlive(pid)).toBe(false)
    expect((await harness.stats("q")).dead).toBe(1)
  })

  it("retries with backoff and succeeds on a later attempt", async () => {
    harness = makeHarness()
    const seen: Array<number> = []
    const { jobId } = await harness.enqueue("q", "flaky", { maxAttempts: 3 })
    const fiber = harness.start({ queue: "q", ...fast, stopWhenIdle: true }, (ctx) => {
      seen.push(ctx.attempt)
      return ctx.attempt < 3 ? Effect.fail(new JobFailed({ message: `try ${ctx.attempt} failed` })) : Effect.succeed({})
    })
    await harness.run(Fiber.join(fiber))
    expect(seen).toEqual([1, 2, 3])
    expect(await harness.record(jobId)).toMatchObject({ status: "succeeded", attempts: 3 })
  })

  it("dead-letters a job whose attempts are exhausted, with the reason", async () => {
    harness = makeHarness()
    const { jobId } = await harness.enqueue("q", "bad", { maxAttempts: 2 })
    const fiber = harness.start({ queue: "q", ...fast, stopWhenIdle: true }, () =>
      Effect.fail(new JobFailed({ message: "exited with code 3", exitCode: 3 }))
    )
    await harness.run(Fiber.join(fiber))
    expect(await harness.record(jobId)).toMatchObject({ status: "failed", attempts: 2, exitCode: 3 })
    const dead = await harness.run(JobQueue.use((q) => q.peek("q", { state: "dead", limit: 5 })))
    expect(dead[0]?.reason).toBe("failed after 2 attempt(s): exited with code 3")
  })

  it("dead-letters a malformed payload at once without retrying", async () => {
    harness = makeHarness()
    const { jobId } = await harness.enqueue("q", { argv: "not an array" }, { maxAttempts: 5 })
    const fiber = harness.start({ queue: "q", ...fast, stopWhenIdle: true }, execHandler())
    await harness.run(Fiber.join(fiber))
    const rec = await harness.record(jobId)
    expect(rec.status).toBe("dead")
    expect(rec.attempts).toBe(1)
    expect(rec.error).toMatch(/^invalid payload: /)
    const dead = await harness.run(JobQueue.use((q) => q.peek("q", { state: "dead", limit: 5 })))
    expect(dead[0]?.job?.payload).toEqual({ argv: "not an array" })
  })

  it("a handler's InvalidPayload is dead-lettered, a defect is retried", async () => {
    harness = makeHarness()
    const a = await harness.enqueue("q", "a", { maxAttempts: 3 })
    const b = await harness.enqueue("q", "b", { maxAttempts: 2 })
    let bCalls = 0
    const fiber = harness.start({ queue: "q", ...fast, stopWhenIdle: true }, (ctx) => {
      if (ctx.job.payload === "a") return Effect.fail(new InvalidPayload({ message: "no such thing" }))
      bCalls++
      return Effect.die(new Error("handler crashed"))
    })
    await harness.run(Fiber.join(fiber))
    expect((await harness.record(a.jobId)).status).toBe("dead")
    expect(bCalls).toBe(2)
    expect((await harness.record(b.jobId)).status).toBe("failed")
  })

  it("on shutdown lets a short in-flight job finish within the grace period", async () => {
    harness = makeHarness()
    const { jobId } = await harness.enqueue("q", "short")
    const fiber = harness.start({ queue: "q", ...fast, shutdownGraceMs: 5000 }, () =>
      Effect.sleep(300).pipe(Effect.as({}))
    )
    await harness.waitFor(async () => (await harness.statusOf(jobId)) === "running")
    await harness.run(Fiber.interrupt(fiber))
    expect((await harness.record(jobId)).status).toBe("succeeded")
  })

  it("on shutdown past the grace period interrupts and releases the job for another runner", async () => {
    harness = makeHarness()
    const { jobId } = await harness.enqueue("q", { argv: ["sleep", "30"] })
    const first = harness.start({ queue: "q", ...fast, shutdownGraceMs: 200 }, execHandler())
    await harness.waitFor(async () => (await harness.events(jobId)).some((e) => e._tag === "process-started"))
    const pid = (await harness.events(jobId)).find((e) => e._tag === "process-started")
    await harness.run(Fiber.interrupt(first))
    expect(await harness.statusOf(jobId)).toBe("queued")
    expect(await harness.stats("q")).toMatchObject({ ready: 1, inflight: 0 })
    if (pid?._tag === "process-started" && pid.pid !== undefined) expect(isProcessAlive(pid.pid)).toBe(false)
    // A second runner takes it over, and the interrupted attempt did not count.
    let attempt = 0
    const second = harness.start({ queue: "q", ...fast, stopWhenIdle: true }, (ctx) => {
      attempt = ctx.attempt
      return Effect.succeed({})
    })
    await harness.run(Fiber.join(second))
    expect(attempt).toBe(1)
    expect((await harness.record(jobId)).status).toBe("succeeded")
  })

  it("holds prefetched leases alive with the heartbeat and runs each job once", async () => {
    harness = makeHarness()
    const calls = new Map<string, number>()
    const ids: Array<string> = []
    for (let i = 0; i < 6; i++) ids.push((await harness.enqueue("q", i)).jobId)
    const fiber = harness.start(
      { queue: "q", ...fast, concurrency: 1, batchSize: 3, visibilityMs: 250, heartbeatMs: 40, stopWhenIdle: true },
      (ctx) =>
        Effect.gen(function* () {
          calls.set(ctx.job.id, (calls.get(ctx.job.id) ?? 0) + 1)
          yield* Effect.sleep(150)
          return {}
        })
    )
    await harness.run(Fiber.join(fiber))
    expect([...calls.values()]).toEqual([1, 1, 1, 1, 1, 1])
    for (const id of ids) expect(await harness.record(id)).toMatchObject({ status: "succeeded", attempts: 1 })
  })

  it("on shutdown gives prefetched leases back at once", async () => {
    harness = makeHarness()
    for (let i = 0; i < 5; i++) await harness.enqueue("q", i)
    let started = 0
    const fiber = harness.start({ queue: "q", ...fast, concurrency: 1, batchSize: 4, shutdownGraceMs: 100 }, () =>
      Effect.sync(() => {
        started++
      }).pipe(Effect.andThen(Effect.sleep(30_000)), Effect.as({}))
    )
    await harness.waitFor(async () => started === 1)
    expect((await harness.stats("q")).inflight).toBeGreaterThan(1)
    await harness.run(Fiber.interrupt(fiber))
    expect(await harness.stats("q")).toMatchObject({ ready: 5, inflight: 0 })
  })

  it("masks secrets in output events and in error messages", async () => {
    harness = makeHarness()
    const secret = "hunter2-very-secret-value"
    const { jobId } = await harness.enqueue(
      "q",
      { argv: ["sh", "-c", 'echo "token=$API_TOKEN"; echo "$API_TOKEN" >&2; exit 4'], secretNames: ["API_TOKEN"] },
      { maxAttempts: 1 }
    )
    const fiber = harness.start(
      { queue: "q", ...fast, stopWhenIdle: true },
      execHandler({ secrets: { API_TOKEN: Redacted.make(secret) } })
    )
    await harness.run(Fiber.join(fiber))
    const events = await harness.events(jobId)
    const text = JSON.stringify(events)
    expect(text).not.toContain(secret)
    const out = events.flatMap((e) => (e._tag === "output" ? [`${e.stream}:${e.data}`] : []))
    expect(out.join("")).toBe("stdout:token=***\nstderr:***\n")
    expect(await harness.record(jobId)).toMatchObject({ status: "failed", exitCode: 4 })
  })
})
