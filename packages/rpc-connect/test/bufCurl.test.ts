import { execFile } from "node:child_process"
import { randomUUID } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Harness, startHarness } from "./helpers.ts"

const here = dirname(fileURLToPath(import.meta.url))
const pkg = join(here, "..")
const buf = join(pkg, "node_modules/.bin/buf")

let h: Harness
let dir: string
let caFile: string
beforeAll(async () => {
  h = await startHarness({ services: { pollWaitMs: 200 } })
  dir = mkdtempSync(join(tmpdir(), "rpc-connect-buf-"))
  caFile = join(dir, "ca.pem")
  writeFileSync(caFile, h.server.certPem)
})
afterAll(async () => {
  await h.server.close()
  rmSync(dir, { recursive: true, force: true })
})

interface CurlResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** `buf curl` with the proto module as schema (the server has no reflection, as the original). */
const curl = (
  protocol: "connect" | "grpc",
  method: string,
  data: unknown,
  auth = true,
  extra: ReadonlyArray<string> = []
) =>
  new Promise<CurlResult>((resolve) => {
    const args = [
      "curl",
      "--schema",
      join(pkg, "proto"),
      "--protocol",
      protocol,
      "--cacert",
      caFile,
      ...(auth ? ["-H", `Authorization: Bearer ${h.token}`] : []),
      "-d",
      typeof data === "string" ? data : JSON.stringify(data),
      ...extra,
      `${h.server.url}/job.v1.${method.includes("/") ? method : `JobService/${method}`}`
    ]
    execFile(buf, args, { cwd: pkg, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : ((error as { code?: number }).code ?? 1), stdout, stderr })
    })
  })

/** Parses buf curl output: one JSON document per message (pretty-printed, concatenated). */
const documents = (stdout: string): Array<Record<string, unknown>> => {
  const out: Array<Record<string, unknown>> = []
  let depth = 0
  let start = -1
  let inString = false
  for (let i = 0; i < stdout.length; i++) {
    const c = stdout[i]
    if (inString) {
      if (c === "\\") i++
      else if (c === '"') inString = false
      continue
    }
    if (c === '"') inString = true
    else if (c === "{") {
      if (depth === 0) start = i
      depth++
    } else if (c === "}") {
      depth--
      if (depth === 0) out.push(JSON.parse(stdout.slice(start, i + 1)))
    }
  }
  return out
}

describe.each(["connect", "grpc"] as const)("buf curl --protocol %s", (protocol) => {
  it("runs every JobService RPC with the job.v1 schema", async () => {
    const queue = `buf-${protocol}-${randomUUID()}`
    const requestId = randomUUID()
    const enqueue = { requestId, queue, jobParams: { command: "echo", args: ["hi"], processType: "PROCESS_TYPE_PIPE" } }
    const first = await curl(protocol, "EnqueueJob", enqueue)
    expect(first.stderr).toBe("")
    const [created] = documents(first.stdout)
    expect(created?.state).toBe("JOB_STATE_SCHEDULED")
    const again = documents((await curl(protocol, "EnqueueJob", enqueue)).stdout)[0]
    expect(again?.jobId).toBe(created?.jobId)

    const dequeued = documents((await curl(protocol, "DequeueJob", { queue, maxJobs: 5 })).stdout)
    expect(dequeued).toHaveLength(1)
    const job = dequeued[0]?.job as Record<string, unknown>
    expect([job.jobId, job.state]).toEqual([created?.jobId, "JOB_STATE_RUNNING"])
    const taskToken = dequeued[0]?.taskToken as string

    const updated = await curl(protocol, "UpdateJob", { queue, taskToken, visibilityTimeoutSeconds: 600 })
    expect([updated.code, documents(updated.stdout)]).toEqual([0, [{}]])
    const wrong = await curl(protocol, "UpdateJob", { queue, taskToken: randomUUID() })
    expect(wrong.code).not.toBe(0)
    expect(wrong.stderr).toContain("invalid task token")
    expect(wrong.stderr).toContain("invalid_argument")

    const completed = await curl(protocol, "CompleteJob", {
      taskToken,
      jobResult: { jobId: created?.jobId, success: true }
    })
    expect(completed.code).toBe(0)
    const listed = documents((await curl(protocol, "ListJobs", { queue, state: "JOB_STATE_COMPLETED" })).stdout)[0]
    expect((listed!.jobs as Array<{ jobId: string }>).map((j) => j.jobId)).toEqual([created?.jobId])
    expect(listed?.lastPage).toBe(1)

    const empty = documents((await curl(protocol, "ListJobs", { queue: `none-${randomUUID()}` })).stdout)[0]
    expect(empty).toEqual({ lastPage: 1 })
  })

  it("publishes events on a client stream and replays them from a sequence", async () => {
    const queue = `buf-ev-${protocol}-${randomUUID()}`
    const created = documents((await curl(protocol, "EnqueueJob", { requestId: randomUUID(), queue })).stdout)[0]
    const taskToken = documents((await curl(protocol, "DequeueJob", { queue })).stdout)[0]?.taskToken
    const messages = [
      { taskToken, events: [{ sequence: "1", eventType: "EVENT_TYPE_PROCESS_START", processStart: { pid: 7 } }] },
      { taskToken, events: [{ sequence: "2", eventType: "EVENT_TYPE_OUTPUT", output: { output: "aGkK" } }] },
      {
        taskToken,
        events: [{ sequence: "3", eventType: "EVENT_TYPE_PROCESS_END", processEnd: { pid: 7, exitCode: 3 } }]
      }
    ]
    const published = await curl(
      protocol,
      "JobEventsService/PublishJobEvents",
      messages.map((m) => JSON.stringify(m)).join("\n")
    )
    expect([published.code, published.stderr]).toEqual([0, ""])
    // The stream stays open (as the original); buf curl's own timeout ends it after the replay.
    const streamed = await curl(
      protocol,
      "JobEventsService/StreamJobEvents",
      { jobId: created?.jobId, fromSequence: "2" },
      true,
      ["--timeout", "2s"]
    )
    const events = documents(streamed.stdout).map((d) => d.event as Record<string, unknown>)
    expect(events.map((e) => [e.sequence, e.eventType])).toEqual([
      ["2", "EVENT_TYPE_OUTPUT"],
      ["3", "EVENT_TYPE_PROCESS_END"]
    ])
    expect(events[0]?.output).toEqual({ output: "aGkK" })
    expect(streamed.stderr).toContain("deadline_exceeded")
  })

  it("is refused without a token", async () => {
    const refused = await curl(protocol, "ListJobs", {}, false)
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toContain("unauthenticated")
    expect(refused.stderr).toContain("missing bearer token")
  })
})
