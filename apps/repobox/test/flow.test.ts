/**
 * End to end: a producer issuing exactly the Repobox web app's Redis commands, the runner as a real
 * process (`src/main.ts`), a git smart-HTTP server that checks user `oauth2` + the token.
 * Keys cannot be prefixed (contract), so this file uses its own Redis database (15).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createCipheriv, randomBytes, randomUUID } from "node:crypto"
import { chmodSync, existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { requireService, tcpReachable } from "@runlane/testkit"
import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  filesContaining,
  makeOrigin,
  makeSandbox,
  type OriginRepo
} from "../../../packages/vcs-git/test/support/fixtures.ts"
import { type GitHttpServer, startGitHttpServer } from "../../../packages/vcs-git/test/support/GitHttpServer.ts"
import { loadConfig, makeLogger, startConsumer } from "../src/index.ts"

const MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url))
const DB = 15
const REDIS_URL = `redis://127.0.0.1:6379/${DB}`
const TOKEN = "ghp_repoboxTest1234567890abcdef"
const KEY = randomBytes(32)
const USER = `github:${Math.floor(Math.random() * 1e9)}`

const redisUp = await requireService("Redis on 127.0.0.1:6379", () => tcpReachable(6379))

// The web app's encrypt (web:lib/crypto.ts), directly on node:crypto.
const webEncrypt = (plaintext: string): string => {
  const iv = randomBytes(12)
  const cipher = createCipheriv("aes-256-gcm", KEY, iv)
  const data = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()])
  return [iv, cipher.getAuthTag(), data].map((b) => b.toString("base64")).join(":")
}

const sb = makeSandbox("repobox-app")
let origin: OriginRepo
let server: GitHttpServer
let redis: Redis
const runners: Array<{ child: ChildProcess; logs: Array<string> }> = []

/** POST /api/git-providers then POST /api/jobs, as the web app's Redis commands. */
const addProvider = async (token: string): Promise<string> => {
  const providerId = randomUUID()
  await redis.hset(`git_provider:${USER}:${providerId}`, {
    type: "github",
    url: "https://github.com",
    token: webEncrypt(token),
    username: "octo",
    verified: "true",
    repos_count: "1",
    created_at: String(Date.now()),
    last_verified_at: ""
  })
  await redis.sadd(`git_providers:${USER}`, providerId)
  return providerId
}

const createJob = async (providerId: string, repoUrl: string, prompt: string): Promise<string> => {
  const id = randomUUID()
  const createdAt = Date.now()
  await redis
    .pipeline()
    .hset(`job:${id}`, {
      id,
      user_id: USER,
      provider_id: providerId,
      repo_url: repoUrl,
      repo_name: "acme/origin",
      branch: "main",
      prompt,
      environment: "default",
      status: "pending",
      lines_added: "0",
      lines_removed: "0",
      created_at: String(createdAt)
    })
    .zadd(`jobs:user:${USER}`, createdAt, id)
    .exec()
  await redis.xadd(
    "jobs:stream",
    "*",
    "job_id",
    id,
    "user_id",
    USER,
    "provider_id",
    providerId,
    "repo_url",
    repoUrl,
    "prompt",
    prompt,
    "environment",
    "default"
  )
  return id
}

const startRunner = (env: Record<string, string> = {}) => {
  const logs: Array<string> = []
  const child = spawn(process.execPath, ["--conditions=source", MAIN], {
    env: {
      PATH: process.env.PATH ?? "",
      HOME: sb.path(".home"),
      REDIS_URL,
      ENCRYPTION_KEY: KEY.toString("hex"),
      RUNNER_ID: `runner-${randomUUID().slice(0, 6)}`,
      TEMP_DIR: sb.path("work"),
      ...env
    },
    stdio: ["ignore", "pipe", "pipe"]
  })
  child.stdout?.on("data", (d) => logs.push(String(d)))
  child.stderr?.on("data", (d) => logs.push(String(d)))
  const r = { child, logs }
  runners.push(r)
  return r
}

const waitTerminal = async (id: string): Promise<Record<string, string>> => {
  for (;;) {
    const job = await redis.hgetall(`job:${id}`)
    if (job.status === "success" || job.status === "failed") return job
    await new Promise((r) => setTimeout(r, 100))
  }
}

const outputOf = async (id: string) =>
  (await redis.lrange(`job:${id}:output`, 0, -1)).map((raw) => {
    expect(Object.keys(JSON.parse(raw))).toEqual(["line", "stream", "timestamp"])
    return JSON.parse(raw) as { line: string; stream: string; timestamp: number }
  })

const stopRunners = async () => {
  for (const r of runners.splice(0)) {
    if (r.child.exitCode !== null || r.child.signalCode !== null) continue
    const exited = new Promise((resolve) => r.child.once("exit", resolve))
    r.child.kill("SIGTERM")
    await exited
  }
}

const statuses = async (ids: ReadonlyArray<string>) =>
  Promise.all(ids.map(async (id) => (await redis.hget(`job:${id}`, "status")) ?? ""))

const pendingCount = async () =>
  ((await redis.xpending("jobs:stream", "jobs:stream:runners")) as [number, ...Array<unknown>])[0]

const until = async (check: () => Promise<boolean>) => {
  while (!(await check())) await new Promise((r) => setTimeout(r, 50))
}

const cleanKeys = async () => {
  const keys = [
    ...(await redis.keys("job:*")),
    ...(await redis.keys("jobs:*")),
    ...(await redis.keys("git_provider*")),
    ...(await redis.keys("runner:user:*"))
  ]
  if (keys.length > 0) await redis.del(...keys)
}

describe.skipIf(!redisUp)("repobox job flow", () => {
  beforeAll(async () => {
    redis = new Redis(REDIS_URL)
    await cleanKeys()
    origin = makeOrigin(sb, sb.path("srv"))
    server = await startGitHttpServer({
      root: sb.path("srv"),
      username: "oauth2",
      token: TOKEN,
      home: sb.path(".home")
    })
  })

  afterAll(async () => {
    for (const r of runners) r.child.kill("SIGKILL")
    await server?.close()
    await cleanKeys()
    redis?.disconnect()
    sb.cleanup()
  })

  it("a job queued before any runner started goes from pending to success", async () => {
    const providerId = await addProvider(TOKEN)
    const id = await createJob(providerId, server.url("origin.git"), "add a test file")
    expect((await redis.hgetall(`job:${id}`)).status).toBe("pending")
    const runner = startRunner()
    const job = await waitTerminal(id)
    const branch = `repobox/${id.slice(0, 8)}`
    expect(job).toMatchObject({ status: "success", branch, lines_added: "5", lines_removed: "0" })
    expect(Number(job.started_at)).toBeGreaterThanOrEqual(Number(job.created_at))
    expect(Number(job.finished_at)).toBeGreaterThanOrEqual(Number(job.started_at))
    expect(job.error_message).toBeUndefined()

    const output = await outputOf(id)
    expect(output.map((e) => e.line)).toEqual([
      "Starting job execution...",
      `Cloning ${server.url("origin.git")}...`,
      "Clone completed.",
      `Creating branch ${branch}...`,
      "AI agent would execute here (Phase 07)...",
      "Prompt: add a test file",
      "Committing changes...",
      "Pushing to remote...",
      "Push completed successfully!"
    ])
    for (const e of output) {
      expect(e.stream).toBe("stdout")
      expect(Number.isInteger(e.timestamp)).toBe(true)
    }
    expect(await redis.ttl(`job:${id}:output`)).toBeGreaterThan(86000)
    expect(await redis.ttl(`job:${id}`)).toBe(-1)

    // The branch and its commit are in the served repository.
    expect(sb.git(origin.bare, "log", "-1", "--format=%s", branch)).toBe("repobox: add a test file")
    expect(sb.git(origin.bare, "show", `${branch}:.repobox-test.md`)).toContain(`# Repobox Job ${id}`)
    expect(server.authorizations).toContain(`Basic ${Buffer.from(`oauth2:${TOKEN}`).toString("base64")}`)

    // Counter released, entry acknowledged, work dir removed.
    expect(await redis.get(`runner:user:${USER}:running`)).toBe("0")
    for (;;) {
      const pending = (await redis.xpending("jobs:stream", "jobs:stream:runners")) as [number, ...Array<unknown>]
      if (pending[0] === 0) break
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(existsSync(sb.path("work", id))).toBe(false)
    expect(runner.logs.join("")).not.toContain(TOKEN)
  })

  it("a wrong token fails with the error in error_message and an Error: line, the token nowhere", async () => {
    const wrong = "ghp_wrongWrongWrong0987654321zz"
    const providerId = await addProvider(wrong)
    const id = await createJob(providerId, server.url("origin.git"), "never pushed")
    const job = await waitTerminal(id)
    expect(job.status).toBe("failed")
    expect(job.error_message).toMatch(/^clone failed: /)
    expect(job.error_message).not.toContain(wrong)
    const output = await outputOf(id)
    expect(output.at(-1)).toMatchObject({ line: `Error: ${job.error_message}`, stream: "stderr" })
    expect(JSON.stringify(output)).not.toContain(wrong)
    expect(runners.map((r) => r.logs.join("")).join("")).not.toContain(wrong)
    expect(() => sb.git(origin.bare, "rev-parse", "--verify", `repobox/${id.slice(0, 8)}`)).toThrow()
    for (;;) {
      if ((await redis.get(`runner:user:${USER}:running`)) === "0") break
      await new Promise((r) => setTimeout(r, 50))
    }
  })

  it("a non-https, non-loopback URL fails with the original's message", async () => {
    const providerId = await addProvider(TOKEN)
    const id = await createJob(providerId, "http://github.com/user/repo.git", "x")
    const job = await waitTerminal(id)
    expect(job.error_message).toBe("clone failed: failed to embed token: only HTTPS URLs supported, got: http")
  })

  it("a token that does not decrypt fails with the decrypt error", async () => {
    const providerId = randomUUID()
    await redis.hset(`git_provider:${USER}:${providerId}`, { type: "github", token: "not-valid-format" })
    const id = await createJob(providerId, server.url("origin.git"), "x")
    const job = await waitTerminal(id)
    expect(job.error_message).toBe(
      "failed to get token: failed to decrypt token: invalid encrypted data format: expected iv:authTag:ciphertext"
    )
    const missing = await createJob(randomUUID(), server.url("origin.git"), "x")
    expect((await waitTerminal(missing)).error_message).toMatch(/^failed to get token: provider not found: /)
  })
  it("JOB_TIMEOUT ends the job failed, the counter released and the entry acknowledged", async () => {
    await stopRunners()
    makeOrigin(sb, sb.path("srv"), "slow")
    const gate = server.hold(/^\/slow\.git\/info\/refs/)
    startRunner({ JOB_TIMEOUT: "2" })
    const providerId = await addProvider(TOKEN)
    const id = await createJob(providerId, server.url("slow.git"), "too slow")
    await gate.reached
    const job = await waitTerminal(id)
    gate.release()
    expect(job).toMatchObject({ status: "failed", error_message: "job timed out after 2s" })
    expect((await outputOf(id)).at(-1)).toMatchObject({ line: "Error: job timed out after 2s", stream: "stderr" })
    await until(async () => (await pendingCount()) === 0)
    expect(await redis.get(`runner:user:${USER}:running`)).toBe("0")
    await stopRunners()
  })

  it("MAX_JOBS_PER_USER holds across two runner processes", async () => {
    makeOrigin(sb, sb.path("srv"), "limit")
    const gate = server.hold(/^\/limit\.git\/info\/refs/)
    startRunner({ MAX_JOBS_PER_USER: "1" })
    startRunner({ MAX_JOBS_PER_USER: "1" })
    const providerId = await addProvider(TOKEN)
    const ids = [
      await createJob(providerId, server.url("limit.git"), "one"),
      await createJob(providerId, server.url("limit.git"), "two"),
      await createJob(providerId, server.url("limit.git"), "three")
    ]
    await gate.reached
    // Every entry has been delivered to one of the runners; only one job of the user runs.
    await until(async () => (await pendingCount()) === 3)
    const during = await statuses(ids)
    expect(during.filter((s) => s === "running")).toHaveLength(1)
    expect(during.filter((s) => s === "pending")).toHaveLength(2)
    expect(await redis.get(`runner:user:${USER}:running`)).toBe("1")
    gate.release()
    for (const id of ids) expect((await waitTerminal(id)).status).toBe("success")
    await until(async () => (await pendingCount()) === 0)
    expect(await redis.get(`runner:user:${USER}:running`)).toBe("0")
    await stopRunners()
  })

  it("a runner killed with SIGKILL mid-job: its entry is reclaimed by another runner and the job ends once", async () => {
    makeOrigin(sb, sb.path("srv"), "crash")
    const gate = server.hold(/^\/crash\.git\/info\/refs/)
    const victim = startRunner({ CLEANUP_AFTER_JOB: "false" })
    const providerId = await addProvider(TOKEN)
    const id = await createJob(providerId, server.url("crash.git"), "survive a crash")
    await gate.reached
    const exited = new Promise((resolve) => victim.child.once("exit", resolve))
    victim.child.kill("SIGKILL")
    await exited
    gate.release()
    expect(await redis.hget(`job:${id}`, "status")).toBe("running")
    // The dead runner's counter slot is still held, as in the original; free it like its TTL would.
    await redis.decr(`runner:user:${USER}:running`)
    // Age the pending entry past the 5-minute reclaim idle time instead of waiting for it.
    const pending = (await redis.xpending("jobs:stream", "jobs:stream:runners", "-", "+", 10)) as Array<[string]>
    expect(pending).toHaveLength(1)
    await redis.xclaim("jobs:stream", "jobs:stream:runners", "dead-runner", 0, pending[0]![0], "IDLE", 360_000)
    const survivor = startRunner()
    const job = await waitTerminal(id)
    expect(job.status).toBe("success")
    await until(async () => (await pendingCount()) === 0)
    const output = await outputOf(id)
    expect(output.filter((e) => e.line === "Push completed successfully!")).toHaveLength(1)
    expect(sb.git(sb.path("srv", "crash.git"), "log", "--format=%s", `repobox/${id.slice(0, 8)}`).split("\n")[0]).toBe(
      "repobox: survive a crash"
    )
    expect(survivor.logs.join("")).not.toContain(TOKEN)
    await stopRunners()
  })

  it("the agent step runs AI_CLI_PATH with the original's argv; its lines are output; a non-zero exit fails", async () => {
    const agent = sb.path("fake-claude.sh")
    sb.write(
      agent,
      [
        "#!/bin/sh",
        'echo "args: $*"',
        '[ -n "$ANTHROPIC_API_KEY" ] && echo "key set: yes"',
        'echo "warn" >&2',
        'echo "changed" > agent.txt',
        'if [ "$5" = "fail" ]; then exit 3; fi',
        ""
      ].join("\n")
    )
    chmodSync(agent, 0o755)
    startRunner({ ANTHROPIC_API_KEY: "sk-test-key-123456789", AI_CLI_PATH: agent })
    const providerId = await addProvider(TOKEN)
    const ok = await createJob(providerId, server.url("origin.git"), "do it")
    const job = await waitTerminal(ok)
    expect(job).toMatchObject({ status: "success", lines_added: "1" })
    const lines = (await outputOf(ok)).map((e) => `${e.stream}:${e.line}`)
    expect(lines).toContain("stdout:args: --print --output-format text -p do it")
    expect(lines).toContain("stdout:key set: yes")
    expect(lines).toContain("stderr:warn")
    const bad = await createJob(providerId, server.url("origin.git"), "fail")
    expect((await waitTerminal(bad)).error_message).toBe(
      "agent execution failed: agent exited with code 3: exit status 3"
    )
    await stopRunners()
  })
  it("entries without job_id or without a job hash are acknowledged and dropped; the runner goes on", async () => {
    const runner = startRunner()
    await redis.xadd("jobs:stream", "*", "user_id", USER, "provider_id", "p")
    await redis.xadd("jobs:stream", "*", "job_id", randomUUID(), "provider_id", "p")
    const providerId = await addProvider(TOKEN)
    const id = await createJob(providerId, server.url("origin.git"), "after junk")
    expect((await waitTerminal(id)).status).toBe("success")
    await until(async () => (await pendingCount()) === 0)
    const logs = runner.logs.join("")
    expect(logs).toContain("missing job_id in message")
    expect(logs).toContain("job not found: ")
    expect(runner.child.exitCode).toBeNull()
    await stopRunners()
  })

  it("SIGTERM lets an in-flight job finish, then the runner exits 0", async () => {
    makeOrigin(sb, sb.path("srv"), "shutdown")
    const gate = server.hold(/^\/shutdown\.git\/info\/refs/)
    const runner = startRunner()
    const providerId = await addProvider(TOKEN)
    const id = await createJob(providerId, server.url("shutdown.git"), "finish me")
    await gate.reached
    const exited = new Promise<number | null>((resolve) => runner.child.once("exit", (code) => resolve(code)))
    runner.child.kill("SIGTERM")
    await until(async () => runner.logs.join("").includes("Received shutdown signal"))
    gate.release()
    expect(await exited).toBe(0)
    expect(await redis.hget(`job:${id}`, "status")).toBe("success")
    expect(await pendingCount()).toBe(0)
    expect(runner.logs.join("")).toContain("Runner shutdown complete")
    runners.splice(runners.indexOf(runner), 1)
  })
  it("AI_MAX_OUTPUT_LINES caps the agent's lines per stream with one truncation entry", async () => {
    const agent = sb.path("chatty-claude.sh")
    sb.write(agent, ["#!/bin/sh", "for i in 1 2 3 4 5; do echo line$i; done", "echo err1 >&2", ""].join("\n"))
    chmodSync(agent, 0o755)
    startRunner({ ANTHROPIC_API_KEY: "sk-test-key-123456789", AI_CLI_PATH: agent, AI_MAX_OUTPUT_LINES: "2" })
    const providerId = await addProvider(TOKEN)
    const id = await createJob(providerId, server.url("origin.git"), "talk")
    expect((await waitTerminal(id)).status).toBe("success")
    const lines = (await outputOf(id)).map((e) => `${e.stream}:${e.line}`)
    const agentLines = lines.slice(
      lines.findIndex((l) => l.includes("Creating branch")) + 1,
      lines.indexOf("stdout:Committing changes...")
    )
    expect(agentLines.filter((l) => l.startsWith("stdout:"))).toEqual([
      "stdout:line1",
      "stdout:line2",
      "stdout:... output truncated after 2 lines"
    ])
    expect(agentLines.filter((l) => l.startsWith("stderr:"))).toEqual(["stderr:err1"])
    await stopRunners()
  })
  it("with CLEANUP_AFTER_JOB=false the clone stays, with a plain origin and the token in no file", async () => {
    startRunner({ CLEANUP_AFTER_JOB: "false" })
    const providerId = await addProvider(TOKEN)
    const id = await createJob(providerId, server.url("origin.git"), "keep the clone")
    expect((await waitTerminal(id)).status).toBe("success")
    const clone = sb.path("work", id, "repo")
    expect(sb.git(clone, "remote", "get-url", "origin")).toBe(server.url("origin.git"))
    expect(filesContaining(sb.path("work", id), TOKEN)).toEqual([])
    await stopRunners()
  })
  it("a job still running when the shutdown grace period ends is killed and recorded failed", async () => {
    makeOrigin(sb, sb.path("srv"), "grace")
    const gate = server.hold(/^\/grace\.git\/info\/refs/)
    const logs: Array<string> = []
    const config = loadConfig({
      ENCRYPTION_KEY: KEY.toString("hex"),
      REDIS_URL,
      RUNNER_ID: "in-process",
      TEMP_DIR: sb.path("work")
    })
    const runner = await startConsumer(
      config,
      redis,
      KEY,
      makeLogger("json", (l) => logs.push(l))
    )
    const providerId = await addProvider(TOKEN)
    const id = await createJob(providerId, server.url("grace.git"), "never finishes")
    await gate.reached
    await runner.stop(200)
    gate.release()
    const job = await redis.hgetall(`job:${id}`)
    expect(job).toMatchObject({ status: "failed", error_message: "job cancelled: runner shutting down" })
    expect((await outputOf(id)).at(-1)).toMatchObject({ line: "Error: job cancelled: runner shutting down" })
    expect(await pendingCount()).toBe(0)
    expect(await redis.get(`runner:user:${USER}:running`)).toBe("0")
    expect(logs.join("")).not.toContain(TOKEN)
  })
})
