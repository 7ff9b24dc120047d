import { randomUUID } from "node:crypto"
import { execHandler, MemoryLimiter, Runner } from "@runlane/core"
import { ProcessExecutor } from "@runlane/exec-process"
import { Effect, Fiber, Layer } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { EventType, type JobEvent, JobState, makeWorkerBridge } from "../src/index.ts"
import { type Harness, startHarness } from "./helpers.ts"

let h: Harness
beforeAll(async () => {
  // A fast sweep, so a lease the worker failed to extend would be requeued during the test.
  h = await startHarness({ services: { pollWaitMs: 200, sweepMs: 200 } })
})
afterAll(async () => {
  await h.server.close()
})

/** Runs a worker (Runner + process executor through the bridge) until `until` resolves. */
const withWorker = async <A>(queue: string, until: () => Promise<A>): Promise<A> => {
  const bridge = makeWorkerBridge({
    clients: h.clients,
    queue,
    visibilityTimeoutSeconds: 1,
    dequeueTimeoutMs: 2000,
    afterJobWaitMs: 0,
    backoffMaxMs: 200
  })
  const fiber = Effect.runFork(
    Runner.run(
      {
        queue,
        concurrency: 1,
        batchSize: 1,
        visibilityMs: 1000,
        heartbeatMs: 300,
        pollWaitMs: 2000,
        shutdownGraceMs: 0
      },
      execHandler()
    ).pipe(Effect.provide(Layer.mergeAll(bridge.layer, MemoryLimiter.layer(), ProcessExecutor.layer())))
  )
  try {
    return await until()
  } finally {
    await Effect.runPromise(Fiber.interrupt(fiber))
  }
}

const stateOf = async (queue: string, jobId: string) =>
  (await h.clients.jobs.listJobs({ queue })).jobs.find((j) => j.jobId === jobId)?.state

const waitFor = async (check: () => Promise<boolean>, ms = 20_000) => {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error("condition not reached")
}

const eventsOf = async (jobId: string): Promise<Array<JobEvent>> => {
  const out: Array<JobEvent> = []
  const controller = new AbortController()
  const timer = setTimeout(() => controller.abort(), 500)
  try {
    for await (const m of h.clients.events.streamJobEvents({ jobId }, { signal: controller.signal })) out.push(m.event!)
  } catch {}
  clearTimeout(timer)
  return out
}

describe("worker bridge: Runner + process executor over the RPC API", () => {
  it("extends the lease while a job outlives it, publishes events from sequence 1, completes with the real outcome", async () => {
    const queue = `w-${randomUUID()}`
    const ok = await h.clients.jobs.enqueueJob({
      requestId: randomUUID(),
      queue,
      jobParams: { command: "sh", args: ["-c", "sleep 2.5; echo done"], processType: 1 }
    })
    const failing = await h.clients.jobs.enqueueJob({
      requestId: randomUUID(),
      queue,
      jobParams: { command: "sh", args: ["-c", "echo oops >&2; exit 7"], processType: 1 }
    })
    await withWorker(queue, () =>
      waitFor(
        async () =>
          (await stateOf(queue, ok.jobId)) === JobState.COMPLETED &&
          (await stateOf(queue, failing.jobId)) === JobState.FAILED
      )
    )
    const events = await eventsOf(ok.jobId)
    expect(events.map((e) => Number(e.sequence))).toEqual(events.map((_, i) => i + 1))
    expect(events[0]?.eventType).toBe(EventType.PROCESS_START)
    const end = events.at(-1)!
    expect(end.eventType).toBe(EventType.PROCESS_END)
    expect(end.eventData.case === "processEnd" && end.eventData.value.exitCode).toBe(0)
    const output = events
      .flatMap((e) => (e.eventData.case === "output" ? [new TextDecoder().decode(e.eventData.value.output)] : []))
      .join("")
    expect(output).toBe("done\n")
    const failed = await eventsOf(failing.jobId)
    const failedEnd = failed.at(-1)!
    expect(failedEnd.eventData.case === "processEnd" && failedEnd.eventData.value.exitCode).toBe(7)
  }, 30_000)

  it("a command that cannot start gives one PROCESS_ERROR and a FAILED job", async () => {
    const queue = `w-${randomUUID()}`
    const job = await h.clients.jobs.enqueueJob({
      requestId: randomUUID(),
      queue,
      jobParams: { command: "no-such-command-runlane", processType: 1 }
    })
    await withWorker(queue, () => waitFor(async () => (await stateOf(queue, job.jobId)) === JobState.FAILED))
    const events = await eventsOf(job.jobId)
    expect(events.map((e) => [Number(e.sequence), e.eventType])).toEqual([[1, EventType.PROCESS_ERROR]])
    const data = events[0]!.eventData
    expect(data.case === "processError" && data.value.errorMessage).toMatch(
      /^failed to start process no-such-command-runlane: exec: "no-such-command-runlane": executable file not found in \$PATH$/
    )
  }, 30_000)
})
