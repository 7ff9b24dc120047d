import { randomUUID } from "node:crypto"
import { create } from "@bufbuild/protobuf"
import { timestampNow } from "@bufbuild/protobuf/wkt"
import { Code, ConnectError } from "@connectrpc/connect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  type DequeueJobResponse,
  EventType,
  type JobEvent,
  JobEventSchema,
  JobState,
  type PublishJobEventsRequest
} from "../src/index.ts"
import { type Harness, startHarness } from "./helpers.ts"

let h: Harness
beforeAll(async () => {
  h = await startHarness({ services: { pollWaitMs: 200 } })
})
afterAll(async () => {
  await h.server.close()
})

const q = () => `q-${randomUUID()}`

const dequeue = async (queue: string, maxJobs = 1, visibilityTimeoutSeconds = 300, timeoutMs = 5000) => {
  const out: Array<DequeueJobResponse> = []
  for await (const m of h.clients.jobs.dequeueJob({ queue, maxJobs, visibilityTimeoutSeconds }, { timeoutMs }))
    out.push(m)
  return out
}

const codeOf = async (promise: Promise<unknown>) => {
  try {
    await promise
    return undefined
  } catch (error) {
    return ConnectError.from(error)
  }
}

const event = (sequence: number, type: EventType, data: JobEvent["eventData"]): JobEvent =>
  create(JobEventSchema, { sequence: BigInt(sequence), timestamp: timestampNow(), eventType: type, eventData: data })

async function* feed(items: ReadonlyArray<PublishJobEventsRequest>) {
  for (const item of items) yield item
}

describe("job.v1 services over Connect (binary, HTTP/2, TLS, auth on)", () => {
  it("enqueue is idempotent by request id and returns the current state", async () => {
    const queue = q()
    const requestId = randomUUID()
    const first = await h.clients.jobs.enqueueJob({ requestId, queue, jobParams: { command: "echo", args: ["hi"] } })
    expect(first.jobId).toMatch(/^[0-9a-f-]{36}$/)
    expect(first.state).toBe(JobState.SCHEDULED)
    const again = await h.clients.jobs.enqueueJob({ requestId, queue: "other", jobParams: { command: "false" } })
    expect(again.jobId).toBe(first.jobId)
    const [taken] = await dequeue(queue)
    expect(taken?.job?.jobId).toBe(first.jobId)
    const third = await h.clients.jobs.enqueueJob({ requestId, queue })
    expect(third.jobId).toBe(first.jobId)
    expect(third.state).toBe(JobState.RUNNING)
    expect((await h.clients.jobs.listJobs({ queue: "other" })).jobs).toHaveLength(0)
  })

  it("dequeues FIFO, up to max_jobs, each as its own message, RUNNING with a token", async () => {
    const queue = q()
    const ids: Array<string> = []
    for (let i = 0; i < 5; i++) ids.push((await h.clients.jobs.enqueueJob({ requestId: randomUUID(), queue })).jobId)
    const first = await dequeue(queue, 3)
    expect(first.map((m) => m.job?.jobId)).toEqual(ids.slice(0, 3))
    expect(first.every((m) => m.job?.state === JobState.RUNNING && m.taskToken.length === 36)).toBe(true)
    expect(new Set(first.map((m) => m.taskToken)).size).toBe(3)
    const rest = await dequeue(queue, 0)
    expect(rest.map((m) => m.job?.jobId)).toEqual([ids[3]])
  })

  it("a waiting dequeue gets a job enqueued later; an empty queue ends in deadline_exceeded", async () => {
    const queue = q()
    const waiting = dequeue(queue, 1, 300, 10_000)
    await new Promise((r) => setTimeout(r, 300))
    const { jobId } = await h.clients.jobs.enqueueJob({ requestId: randomUUID(), queue })
    expect((await waiting).map((m) => m.job?.jobId)).toEqual([jobId])
    const error = await codeOf(dequeue(queue, 1, 300, 500))
    expect(error?.code).toBe(Code.DeadlineExceeded)
  })

  it("an expired lease goes back to the end of its queue at the sweep; until then its token works", async () => {
    const queue = q()
    const a = (await h.clients.jobs.enqueueJob({ requestId: randomUUID(), queue })).jobId
    const b = (await h.clients.jobs.enqueueJob({ requestId: randomUUID(), queue })).jobId
    const c = (await h.clients.jobs.enqueueJob({ requestId: randomUUID(), queue })).jobId
    const [leaseA] = await dequeue(queue, 1, 1)
    const [leaseB] = await dequeue(queue, 1, 1)
    const [leaseC] = await dequeue(queue, 1, 1)
    expect([leaseA?.job?.jobId, leaseB?.job?.jobId, leaseC?.job?.jobId]).toEqual([a, b, c])
    // UpdateJob extends B's lease before it passes.
    await h.clients.jobs.updateJob({ queue, taskToken: leaseB!.taskToken, visibilityTimeoutSeconds: 30 })
    await new Promise((r) => setTimeout(r, 1300))
    // Past its lease but not yet swept: nothing is redelivered, C's token still extends it.
    const error = await codeOf(dequeue(queue, 5, 30, 400))
    expect(error?.code).toBe(Code.DeadlineExceeded)
    await h.clients.jobs.updateJob({ queue, taskToken: leaseC!.taskToken, visibilityTimeoutSeconds: 30 })
    const d = (await h.clients.jobs.enqueueJob({ requestId: randomUUID(), queue })).jobId
    const listed = await h.clients.jobs.listJobs({ queue, state: JobState.RUNNING })
    expect(listed.jobs.map((j) => j.jobId).sort()).toEqual([a, b, c].sort())
    await h.services.sweep()
    expect(
      (await h.clients.jobs.listJobs({ queue, state: JobState.SCHEDULED })).jobs.map((j) => j.jobId).sort()
    ).toEqual([a, d].sort())
    // A went to the end of the queue (after D), with a new token.
    const again = await dequeue(queue, 5, 30)
    expect(again.map((m) => m.job?.jobId)).toEqual([d, a])
    expect(again[1]?.taskToken).not.toBe(leaseA?.taskToken)
    // The swept token is spent.
    const spent = await codeOf(h.clients.jobs.updateJob({ queue, taskToken: leaseA!.taskToken }))
    expect([spent?.code, spent?.rawMessage]).toEqual([Code.InvalidArgument, "invalid task token"])
    // B and C still hold their leases.
    await h.clients.jobs.updateJob({ queue, taskToken: leaseB!.taskToken, visibilityTimeoutSeconds: 30 })
    await h.clients.jobs.completeJob({ taskToken: leaseC!.taskToken, jobResult: { jobId: c, success: true } })
  })

  it("refuses wrong or spent task tokens with the original's messages", async () => {
    const queue = q()
    const { jobId } = await h.clients.jobs.enqueueJob({ requestId: randomUUID(), queue })
    const [lease] = await dequeue(queue)
    const token = lease!.taskToken
    const wrong = await codeOf(h.clients.jobs.updateJob({ queue, taskToken: randomUUID() }))
    expect([wrong?.code, wrong?.rawMessage]).toEqual([Code.InvalidArgument, "invalid task token"])
    const otherQueue = await codeOf(h.clients.jobs.updateJob({ queue: "elsewhere", taskToken: token }))
    expect(otherQueue?.rawMessage).toBe("job does not belong to queue elsewhere")
    const mismatch = await codeOf(
      h.clients.jobs.completeJob({ taskToken: token, jobResult: { jobId: randomUUID(), success: true } })
    )
    expect(mismatch?.rawMessage).toBe("job ID mismatch")
    await h.clients.jobs.completeJob({ taskToken: token, jobResult: { jobId, success: false, exitCode: 3 } })
    const spent = await codeOf(h.clients.jobs.completeJob({ taskToken: token, jobResult: { jobId, success: true } }))
    expect(spent?.rawMessage).toBe("invalid task token")
    const listed = await h.clients.jobs.listJobs({ queue })
    expect(listed.jobs.map((j) => [j.jobId, j.state])).toEqual([[jobId, JobState.FAILED]])
  })

  it("lists with paging, last_page and a state filter", async () => {
    const queue = q()
    for (let i = 0; i < 5; i++) await h.clients.jobs.enqueueJob({ requestId: randomUUID(), queue })
    const [lease] = await dequeue(queue)
    await h.clients.jobs.completeJob({
      taskToken: lease!.taskToken,
      jobResult: { jobId: lease!.job!.jobId, success: true }
    })
    const page1 = await h.clients.jobs.listJobs({ queue, page: 1, pageSize: 2 })
    expect([page1.jobs.length, page1.lastPage]).toEqual([2, 3])
    const page3 = await h.clients.jobs.listJobs({ queue, page: 3, pageSize: 2 })
    expect(page3.jobs.length).toBe(1)
    const past = await h.clients.jobs.listJobs({ queue, page: 9, pageSize: 2 })
    expect([past.jobs.length, past.lastPage]).toEqual([0, 3])
    const completed = await h.clients.jobs.listJobs({ queue, state: JobState.COMPLETED })
    expect(completed.jobs.map((j) => j.jobId)).toEqual([lease!.job!.jobId])
    const none = await h.clients.jobs.listJobs({ queue: q() })
    expect([none.jobs.length, none.lastPage]).toEqual([0, 1])
    const defaults = await h.clients.jobs.listJobs({ queue, state: JobState.SCHEDULED })
    expect(defaults.jobs.length).toBe(4)
  })

  it("publishes events, replays from a sequence/with a filter, then follows live", async () => {
    const queue = q()
    const { jobId } = await h.clients.jobs.enqueueJob({ requestId: randomUUID(), queue })
    const [lease] = await dequeue(queue)
    const taskToken = lease!.taskToken
    const start = event(1, EventType.PROCESS_START, {
      case: "processStart",
      value: { $typeName: "job.v1.ProcessStartEvent", pid: 4242 }
    })
    const out = event(2, EventType.OUTPUT, {
      case: "output",
      value: { $typeName: "job.v1.OutputEvent", output: new TextEncoder().encode("hello\n") }
    })
    await h.clients.events.publishJobEvents(
      feed([
        { $typeName: "job.v1.PublishJobEventsRequest", taskToken, events: [start] },
        { $typeName: "job.v1.PublishJobEventsRequest", taskToken, events: [out] }
      ])
    )
    const controller = new AbortController()
    const seen: Array<JobEvent> = []
    const following = (async () => {
      try {
        for await (const m of h.clients.events.streamJobEvents(
          { jobId, fromSequence: 2n },
          { signal: controller.signal }
        )) {
          seen.push(m.event!)
          if (seen.length === 2) controller.abort()
        }
      } catch (error) {
        if (ConnectError.from(error).code !== Code.Canceled) throw error
      }
    })()
    await new Promise((r) => setTimeout(r, 200))
    const end = event(3, EventType.PROCESS_END, {
      case: "processEnd",
      value: { $typeName: "job.v1.ProcessEndEvent", pid: 4242, exitCode: 3 }
    })
    await h.clients.events.publishJobEvents(
      feed([{ $typeName: "job.v1.PublishJobEventsRequest", taskToken, events: [end] }])
    )
    await following
    expect(seen.map((e) => [Number(e.sequence), e.eventType])).toEqual([
      [2, EventType.OUTPUT],
      [3, EventType.PROCESS_END]
    ])
    expect(new TextDecoder().decode((seen[0]!.eventData.value as { output: Uint8Array }).output)).toBe("hello\n")

    // Filter by type on replay.
    const filtered: Array<JobEvent> = []
    const c2 = new AbortController()
    const t = setTimeout(() => c2.abort(), 400)
    try {
      for await (const m of h.clients.events.streamJobEvents(
        { jobId, eventFilter: [EventType.PROCESS_START, EventType.PROCESS_END] },
        { signal: c2.signal }
      ))
        filtered.push(m.event!)
    } catch (error) {
      expect(ConnectError.from(error).code).toBe(Code.Canceled)
    }
    clearTimeout(t)
    expect(filtered.map((e) => Number(e.sequence))).toEqual([1, 3])

    const unknownJob = await codeOf(
      (async () => {
        for await (const _ of h.clients.events.streamJobEvents({ jobId: randomUUID() })) void _
      })()
    )
    expect([unknownJob?.code, unknownJob?.rawMessage]).toEqual([Code.InvalidArgument, "job not found"])
    const badToken = await codeOf(
      h.clients.events.publishJobEvents(
        feed([{ $typeName: "job.v1.PublishJobEventsRequest", taskToken: "nope", events: [] }])
      )
    )
    expect(badToken?.rawMessage).toBe("invalid task token")
  })
})
