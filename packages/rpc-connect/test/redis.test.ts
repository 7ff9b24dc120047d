import { randomUUID } from "node:crypto"
import { create } from "@bufbuild/protobuf"
import { timestampNow } from "@bufbuild/protobuf/wkt"
import { Code, ConnectError } from "@connectrpc/connect"
import { EventLog, JobQueue } from "@runlane/core"
import { RedisEventLog, RedisStreamQueue } from "@runlane/queue-redis"
import { requireService, tcpReachable } from "@runlane/testkit"
import { Context, Effect, Exit, Layer, Scope } from "effect"
import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  type AirunnerClients,
  createAirunnerClients,
  EventType,
  JobEventSchema,
  JobState,
  makeAirunnerServices,
  type RunningServer,
  startAirunnerServer
} from "../src/index.ts"

const available = await requireService("Redis at 127.0.0.1:6379", () => tcpReachable(6379))

/** The same API with runlane's Redis Streams queue and Redis event log behind it. */
describe.skipIf(!available)("job.v1 services over the Redis queue and event log", () => {
  const prefix = `rpc-connect-test:${randomUUID()}:`
  let scope: Scope.Closeable
  let server: RunningServer
  let clients: AirunnerClients
  let services: ReturnType<typeof makeAirunnerServices>

  beforeAll(async () => {
    scope = await Effect.runPromise(Scope.make())
    const context = await Effect.runPromise(
      Layer.buildWithScope(
        Layer.mergeAll(RedisStreamQueue.layer({ prefix, pollIntervalMs: 100 }), RedisEventLog.layer({ prefix })),
        scope
      )
    )
    services = makeAirunnerServices(Context.get(context, JobQueue), Context.get(context, EventLog), {
      pollWaitMs: 500
    })
    server = await startAirunnerServer({ services, listen: "127.0.0.1:0", auth: undefined })
    clients = createAirunnerClients({ baseUrl: server.url, ca: server.certPem })
  })

  afterAll(async () => {
    clients?.close()
    await server?.close()
    if (scope !== undefined) await Effect.runPromise(Scope.close(scope, Exit.void))
    const redis = new Redis("redis://127.0.0.1:6379")
    let cursor = "0"
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 500)
      cursor = next
      if (keys.length > 0) await redis.del(...keys)
    } while (cursor !== "0")
    await redis.quit()
  })

  const dequeue = async (queue: string, maxJobs = 1, visibilityTimeoutSeconds = 300) => {
    const out = []
    for await (const m of clients.jobs.dequeueJob({ queue, maxJobs, visibilityTimeoutSeconds }, { timeoutMs: 5000 }))
      out.push(m)
    return out
  }

  it("enqueue (idempotent), FIFO dequeue, update, complete, list", async () => {
    const queue = "default"
    const requestId = randomUUID()
    const first = await clients.jobs.enqueueJob({ requestId, queue, jobParams: { command: "echo" } })
    expect((await clients.jobs.enqueueJob({ requestId, queue })).jobId).toBe(first.jobId)
    const second = await clients.jobs.enqueueJob({ requestId: randomUUID(), queue })
    const taken = await dequeue(queue, 5)
    expect(taken.map((m) => m.job?.jobId)).toEqual([first.jobId, second.jobId])
    await clients.jobs.updateJob({ queue, taskToken: taken[0]!.taskToken, visibilityTimeoutSeconds: 60 })
    await clients.jobs.completeJob({ taskToken: taken[0]!.taskToken, jobResult: { jobId: first.jobId, success: true } })
    await clients.jobs.completeJob({
      taskToken: taken[1]!.taskToken,
      jobResult: { jobId: second.jobId, success: false, exitCode: 2 }
    })
    const spent = await clients.jobs
      .updateJob({ queue, taskToken: taken[0]!.taskToken })
      .then(() => undefined, ConnectError.from)
    expect([spent?.code, spent?.rawMessage]).toEqual([Code.InvalidArgument, "invalid task token"])
    const completed = await clients.jobs.listJobs({ queue, state: JobState.COMPLETED })
    const failed = await clients.jobs.listJobs({ queue, state: JobState.FAILED })
    expect([completed.jobs.map((j) => j.jobId), failed.jobs.map((j) => j.jobId)]).toEqual([
      [first.jobId],
      [second.jobId]
    ])
  })

  it("an expired lease is requeued at the sweep with a new token", async () => {
    const queue = "expiry"
    const { jobId } = await clients.jobs.enqueueJob({ requestId: randomUUID(), queue })
    const [lease] = await dequeue(queue, 1, 1)
    await new Promise((r) => setTimeout(r, 1200))
    await services.sweep()
    const [again] = await dequeue(queue)
    expect(again?.job?.jobId).toBe(jobId)
    expect(again?.taskToken).not.toBe(lease?.taskToken)
  })

  it("publishes events and replays them from the Redis event log, then follows live", async () => {
    const queue = "events"
    const { jobId } = await clients.jobs.enqueueJob({ requestId: randomUUID(), queue })
    const [lease] = await dequeue(queue)
    const taskToken = lease!.taskToken
    const ev = (sequence: number, eventType: EventType) =>
      create(JobEventSchema, { sequence: BigInt(sequence), timestamp: timestampNow(), eventType })
    async function* feed(events: ReadonlyArray<ReturnType<typeof ev>>) {
      for (const event of events) yield { taskToken, events: [event] }
    }
    await clients.events.publishJobEvents(feed([ev(1, EventType.PROCESS_START), ev(2, EventType.OUTPUT)]))
    const controller = new AbortController()
    const seen: Array<number> = []
    const following = (async () => {
      try {
        for await (const m of clients.events.streamJobEvents(
          { jobId, fromSequence: 2n },
          { signal: controller.signal }
        )) {
          seen.push(Number(m.event?.sequence))
          if (seen.length === 2) controller.abort()
        }
      } catch (error) {
        if (ConnectError.from(error).code !== Code.Canceled) throw error
      }
    })()
    await new Promise((r) => setTimeout(r, 300))
    await clients.events.publishJobEvents(feed([ev(3, EventType.PROCESS_END)]))
    await following
    expect(seen).toEqual([2, 3])
  })
})
