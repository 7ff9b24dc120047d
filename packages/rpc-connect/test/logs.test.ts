import { randomUUID } from "node:crypto"
import { MemoryEventLog } from "@runlane/core"
import { makeMemoryQueue } from "@runlane/queue-memory"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createAirunnerClients, makeAirunnerServices, type RunningServer, startAirunnerServer } from "../src/index.ts"

const lines: Array<{ level: string; message: string; fields: Record<string, unknown> }> = []
let server: RunningServer

beforeAll(async () => {
  server = await startAirunnerServer({
    services: makeAirunnerServices(makeMemoryQueue(), MemoryEventLog.makeMemoryEventLog()),
    listen: "127.0.0.1:0",
    auth: undefined,
    log: (level, message, fields = {}) => lines.push({ level, message, fields })
  })
})
afterAll(async () => {
  await server.close()
})

describe("server logs (as the original's interceptor)", () => {
  it("logs each unary call and each finished or failed stream with protocol, addr and duration", async () => {
    expect(lines.find((l) => l.message === "generated self-signed certificate")?.fields.fingerprint).toMatch(
      /^[0-9a-f]{64}$/
    )
    const clients = createAirunnerClients({ baseUrl: server.url, ca: server.certPem })
    const queue = `logs-${randomUUID()}`
    await clients.jobs.enqueueJob({ requestId: randomUUID(), queue })
    for await (const _ of clients.jobs.dequeueJob({ queue }, { timeoutMs: 5000 })) void _
    await clients.jobs.updateJob({ queue, taskToken: "nope" }).catch(() => undefined)
    clients.close()
    const calls = lines.filter((l) => l.message === "rpc call")
    expect(calls.map((l) => l.level)).toEqual(["info", "error"])
    expect(calls[0]?.fields).toMatchObject({ protocol: "connect", addr: expect.stringMatching(/^127\.0\.0\.1:\d+$/) })
    expect(typeof calls[0]?.fields.duration).toBe("number")
    expect(String(calls[1]?.fields.error)).toContain("invalid task token")
    expect(lines.filter((l) => l.message === "rpc server stream finished")).toHaveLength(1)
  })
})
