import { execFile } from "node:child_process"
import { randomUUID } from "node:crypto"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { requireService, tcpReachable } from "@runlane/testkit"
import { Redis } from "ioredis"
import { afterAll, beforeEach, describe, expect, it } from "vitest"
import { decodeJob, encodeJob } from "../src/job.ts"

const here = dirname(fileURLToPath(import.meta.url))
const bin = join(here, "..", "src", "bin.ts")
const available = await requireService("Redis at 127.0.0.1:6379", () => tcpReachable(6379))

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const Q = `aw_cli_test_${randomUUID().slice(0, 8)}`
const P = `${Q}_processing`

const baseEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1", QUEUE_NAME: Q, LOG_LEVEL: "error" }
  for (const k of ["REDIS_URL", "ALLOCATOR_API_URL", "WORK_DIR", "HYPERLIGHT_PATH", "MAX_ATTEMPTS", "AGENT_SANDBOX"]) {
    delete env[k]
  }
  return env
}

const cli = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}) =>
  new Promise<Run>((resolve) => {
    execFile(
      process.execPath,
      ["--conditions=source", bin, ...args],
      { env: { ...baseEnv(), ...env }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
        resolve({ code, stdout, stderr })
      }
    )
  })

const LOG_LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z ( INFO| WARN|ERROR|DEBUG|TRACE) .*$/

describe("job format", () => {
  it("encodes as serde_json does, fields in order, null written", () => {
    expect(
      encodeJob({
        id: "job-1",
        repo_url: "file:///srv/r.git",
        branch: "feature/x",
        prompt: 'say "hi"\nthen stop',
        mcp_connection_url: null
      })
    ).toBe(
      '{"id":"job-1","repo_url":"file:///srv/r.git","branch":"feature/x","prompt":"say \\"hi\\"\\nthen stop","mcp_connection_url":null}'
    )
    expect(
      encodeJob({
        id: "\b\t\n\f\r\u0001\u001f\u007f/é\\",
        repo_url: "",
        branch: "",
        prompt: "",
        mcp_connection_url: "m"
      })
    ).toBe(
      '{"id":"\\b\\t\\n\\f\\r\\u0001\\u001f\u007f/é\\\\","repo_url":"","branch":"","prompt":"","mcp_connection_url":"m"}'
    )
  })

  it("reads as serde does: absent MCP URL is null, extras ignored, wrong shapes rejected", () => {
    expect(decodeJob('{"prompt":"p","branch":"b","repo_url":"r","id":"i","x":1}')).toEqual({
      id: "i",
      repo_url: "r",
      branch: "b",
      prompt: "p",
      mcp_connection_url: null
    })
    expect(() => decodeJob("not a valid json")).toThrow()
    expect(() => decodeJob('{"id":1,"repo_url":"r","branch":"b","prompt":"p"}')).toThrow(/id/)
    expect(() => decodeJob('{"id":"i","repo_url":"r","branch":"b"}')).toThrow(/missing field `prompt`/)
    expect(() => decodeJob('{"id":"i","repo_url":"r","branch":"b","prompt":"p","mcp_connection_url":3}')).toThrow()
    expect(() => decodeJob("[]")).toThrow()
  })
})

describe.skipIf(!available)("CLI against Redis (byte for byte)", () => {
  const redis = new Redis({ host: "127.0.0.1", port: 6379, lazyConnect: true })
  beforeEach(async () => {
    await redis.del(Q, P, `${Q}_dead`)
  })
  afterAll(async () => {
    await redis.del(Q, P, `${Q}_dead`)
    redis.disconnect()
  })

  it("enqueue LPUSHes the canonical JSON and prints the result line", async () => {
    const run = await cli([
      "enqueue",
      "--job-id",
      "job-with-special-chars-!@#$%^&*()",
      "--repo-url",
      "file:///srv/r.git",
      "--branch",
      "feature/test-branch-123",
      "--prompt",
      `"quotes"\n'apostrophes'`,
      "--mcp-connection-url",
      "http://example.com:8080/path?query=value&key=123"
    ])
    expect(run).toEqual({
      code: 0,
      stdout: "Job enqueued successfully: job-with-special-chars-!@#$%^&*()\n",
      stderr: ""
    })
    expect(await redis.lrange(Q, 0, -1)).toEqual([
      `{"id":"job-with-special-chars-!@#$%^&*()","repo_url":"file:///srv/r.git","branch":"feature/test-branch-123","prompt":"\\"quotes\\"\\n'apostrophes'","mcp_connection_url":"http://example.com:8080/path?query=value&key=123"}`
    ])
    // Without an MCP URL: null is written; a second job goes to the head (FIFO from the tail).
    expect((await cli(["enqueue", "--job-id", "j2", "--repo-url", "r", "--branch", "b", "--prompt", "p"])).code).toBe(0)
    expect(await redis.lindex(Q, 0)).toBe(
      '{"id":"j2","repo_url":"r","branch":"b","prompt":"p","mcp_connection_url":null}'
    )
    expect(await redis.exists(P, `${Q}_dead`)).toBe(0)
  })

  it("enqueue at info logs before the result, in the original's line format", async () => {
    const run = await cli(["enqueue", "--job-id", "j", "--repo-url", "r", "--branch", "b", "--prompt", "p"], {
      LOG_LEVEL: "INFO"
    })
    const lines = run.stdout.split("\n")
    expect(lines).toHaveLength(4)
    expect(lines[0]).toMatch(LOG_LINE)
    expect(lines[0]!.endsWith("  INFO Enqueueing job: j")).toBe(true)
    expect(lines[1]!.endsWith("  INFO Enqueued job: j")).toBe(true)
    expect(lines.slice(2)).toEqual(["Job enqueued successfully: j", ""])
  })

  it("stats prints both lengths", async () => {
    await redis.lpush(Q, "a", "b", "c")
    await redis.lpush(P, "d")
    const run = await cli(["stats"], { LOG_LEVEL: "info" })
    expect(run).toEqual({ code: 0, stdout: "Queue Statistics:\n  Pending jobs: 3\n  Processing jobs: 1\n", stderr: "" })
    expect((await cli(["stats", "--timeout", "9"])).code).toBe(0)
  })

  it("peek prints the tail job, the MCP line only when set; empty queue", async () => {
    expect(await cli(["peek"])).toEqual({ code: 0, stdout: "Queue is empty\n", stderr: "" })
    await redis.lpush(Q, '{"id":"first","repo_url":"r1","branch":"b1","prompt":"line1\\nline2"}')
    await redis.lpush(Q, encodeJob({ id: "second", repo_url: "r", branch: "b", prompt: "p", mcp_connection_url: "m" }))
    expect(await cli(["peek"], { LOG_LEVEL: "info" })).toEqual({
      code: 0,
      stdout: "Next job in queue:\n  ID: first\n  Repository: r1\n  Branch: b1\n  Prompt: line1\nline2\n",
      stderr: ""
    })
    await redis.rpop(Q)
    expect((await cli(["peek"])).stdout).toBe(
      "Next job in queue:\n  ID: second\n  Repository: r\n  Branch: b\n  Prompt: p\n  MCP URL: m\n"
    )
    expect(await redis.llen(Q)).toBe(1)
  })

  it("peek of an invalid tail entry: exit 1, anyhow's chain on stderr, entry kept", async () => {
    await redis.lpush(Q, "not a valid json")
    const run = await cli(["peek"])
    expect(run.code).toBe(1)
    expect(run.stdout).toBe("")
    expect(run.stderr).toMatch(/^Error: Failed to deserialize job\n\nCaused by:\n {4}\S.*\n$/)
    expect(await redis.lrange(Q, 0, -1)).toEqual(["not a valid json"])
  })

  it("recover moves every processing entry, tail first, behind the pending jobs", async () => {
    await redis.rpush(Q, "J2", "J1")
    await redis.rpush(P, "J4", "J3")
    const run = await cli(["recover"], { LOG_LEVEL: "info" })
    expect(run.code).toBe(0)
    const lines = run.stdout.split("\n")
    expect(lines.slice(0, 3).every((l) => LOG_LINE.test(l))).toBe(true)
    expect(lines.slice(0, 3).map((l) => l.slice(l.indexOf("Z ") + 8))).toEqual([
      "Recovering stalled jobs",
      "Recovering stalled jobs from processing queue",
      "Recovered 2 stalled jobs"
    ])
    expect(lines.slice(3)).toEqual(["Recovered 2 stalled jobs", ""])
    expect(await redis.lrange(Q, 0, -1)).toEqual(["J4", "J3", "J2", "J1"])
    expect(await redis.llen(P)).toBe(0)
    expect(await cli(["recover"])).toEqual({ code: 0, stdout: "Recovered 0 stalled jobs\n", stderr: "" })
  })

  it("global options: flag over env over default, and only before the subcommand", async () => {
    const other = `${Q}_other`
    await redis.lpush(other, "x")
    try {
      expect((await cli(["--queue-name", other, "stats"])).stdout).toContain("Pending jobs: 1\n")
      expect((await cli([`--queue-name=${other}`, "stats"])).stdout).toContain("Pending jobs: 1\n")
      expect((await cli(["stats"])).stdout).toContain("Pending jobs: 0\n")
      const after = await cli(["stats", "--queue-name", other])
      expect(after.code).toBe(2)
      expect(after.stdout).toBe("")
      expect(after.stderr).toContain("--queue-name")
    } finally {
      await redis.del(other)
    }
  })

  it("usage errors exit 2 with nothing on stdout; --help exits 0; there is no --version", async () => {
    for (const args of [
      [],
      ["stats", "--timeout", "abc"],
      ["enqueue", "--job-id", "x"],
      ["--bogus", "stats"],
      ["nope"],
      ["--version"],
      ["stats", "--log-level", "info"]
    ]) {
      const run = await cli(args)
      expect({ args, code: run.code, stdout: run.stdout }).toEqual({ args, code: 2, stdout: "" })
      expect(run.stderr).not.toBe("")
    }
    const help = await cli(["--help"])
    expect(help.code).toBe(0)
    expect(help.stdout).toContain("enqueue")
  })

  it("Redis unreachable: exit 1, Failed to connect to Redis", async () => {
    const run = await cli(["--redis-url", "redis://127.0.0.1:1", "stats"])
    expect(run.code).toBe(1)
    expect(run.stdout).toBe("")
    expect(run.stderr).toMatch(/^Error: Failed to connect to Redis\n\nCaused by:\n {4}\S/)
    const bad = await cli(["--redis-url", "http://nope", "stats"])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^Error: Failed to create Redis client\n/)
  })
})
