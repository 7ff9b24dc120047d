import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { bin, bwrapUp, redisUp, waitFor } from "./support.ts"

describe.skipIf(!redisUp || !bwrapUp)("run: SIGTERM", () => {
  const Q = `aw_stop_test_${randomUUID().slice(0, 8)}`
  const P = `${Q}_processing`
  const redis = new Redis({ host: "127.0.0.1", port: 6379 })
  const root = mkdtempSync(join(tmpdir(), "agent-worker-stop-"))
  const remote = join(root, "remote.git")
  const agent = join(root, "agent.sh")
  const calls: Array<string> = []
  let server: Server
  let allocatorUrl = ""

  const startWorker = (graceSeconds: number, globals: ReadonlyArray<string> = []) => {
    let output = ""
    const child: ChildProcess = spawn(
      process.execPath,
      [
        "--conditions=source",
        bin,
        "--queue-name",
        Q,
        "--allocator-api-url",
        allocatorUrl,
        "--work-dir",
        join(root, "work"),
        "--hyperlight-path",
        agent,
        "--agent-sandbox",
        "bubblewrap",
        ...globals,
        "run",
        "--timeout",
        "0"
      ],
      { env: { ...process.env, NO_COLOR: "1", LOG_LEVEL: "info", SHUTDOWN_GRACE_SECONDS: String(graceSeconds) } }
    )
    child.stdout?.on("data", (d) => {
      output += d
    })
    child.stderr?.on("data", (d) => {
      output += d
    })
    const exited = new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)))
    return { child, exited, output: () => output }
  }

  beforeAll(async () => {
    execFileSync("git", ["init", "--quiet", "--bare", "--initial-branch=main", remote])
    const seed = join(root, "seed")
    execFileSync("git", ["clone", "--quiet", remote, seed])
    writeFileSync(join(seed, "README"), "x\n")
    execFileSync("git", ["-C", seed, "add", "README"])
    execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", "-C", seed, "commit", "--quiet", "-m", "init"])
    execFileSync("git", ["-C", seed, "push", "--quiet", "origin", "HEAD:main"])
    // The agent sleeps for the number of seconds in its prompt and changes nothing (no commit needed).
    writeFileSync(agent, '#!/bin/sh\necho started\nsleep "$2"\necho done\n')
    chmodSync(agent, 0o755)
    server = createServer((req, res) => {
      req.resume()
      req.on("end", () => {
        calls.push(`${req.method} ${req.url}`)
        res.writeHead(200)
        res.end(
          req.url === "/borrow"
            ? JSON.stringify({ id: "i", mcp_connection_url: "http://127.0.0.1:9/", api_url: "a" })
            : ""
        )
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    allocatorUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    await redis.del(Q, P)
  }, 60_000)

  afterAll(async () => {
    await redis.del(Q, P, `${Q}_dead`)
    redis.disconnect()
    await new Promise<void>((r) => (server === undefined ? r() : server.close(() => r())))
    rmSync(root, { recursive: true, force: true })
  })

  const job = (id: string, seconds: number) =>
    JSON.stringify({
      id,
      repo_url: `file://${remote}`,
      branch: "main",
      prompt: String(seconds),
      mcp_connection_url: null
    })

  it("an idle worker (blocking take, --timeout 0) stops at once with exit 0", async () => {
    const w = startWorker(30)
    await waitFor("worker loop", () => w.output().includes("Starting worker loop"))
    w.child.kill("SIGTERM")
    expect(await w.exited).toBe(0)
    expect(calls).toEqual([])
  }, 60_000)

  it("within the grace period the running job finishes: returned and acked", async () => {
    calls.length = 0
    const w = startWorker(60)
    await waitFor("worker loop", () => w.output().includes("Starting worker loop"))
    await redis.lpush(Q, job("slow", 2))
    await waitFor("the agent", () => w.output().includes("[Agent stdout] started"))
    w.child.kill("SIGTERM")
    expect(await w.exited).toBe(0)
    expect(w.output()).toContain("Job completed successfully: slow")
    expect(calls).toEqual(["POST /borrow", "POST /return"])
    expect(await redis.llen(Q)).toBe(0)
    expect(await redis.llen(P)).toBe(0)
  }, 90_000)

  it("past the grace period the job is interrupted: instance returned, job NACKed onto the main list", async () => {
    calls.length = 0
    const w = startWorker(1)
    await waitFor("worker loop", () => w.output().includes("Starting worker loop"))
    const entry = job("stuck", 600)
    await redis.lpush(Q, entry)
    await waitFor("the agent", () => w.output().includes("[Agent stdout] started"))
    w.child.kill("SIGTERM")
    expect(await w.exited).toBe(0)
    expect(w.output()).not.toContain("Job completed successfully: stuck")
    expect(calls).toEqual(["POST /borrow", "POST /return"])
    expect(await redis.lrange(Q, 0, -1)).toEqual([entry])
    expect(await redis.llen(P)).toBe(0)
  }, 90_000)

  it("--concurrency 2 runs two jobs at once, each with its own instance", async () => {
    calls.length = 0
    await redis.del(Q, P)
    const w = startWorker(60, ["--concurrency", "2"])
    await waitFor("worker loop", () => w.output().includes("Starting worker loop"))
    await redis.lpush(Q, job("a", 3), job("b", 3))
    await waitFor(
      "both jobs",
      () => w.output().includes("Job completed successfully: a") && w.output().includes("Job completed successfully: b")
    )
    // Both borrowed before either was returned: the jobs overlapped.
    expect(calls).toEqual(["POST /borrow", "POST /borrow", "POST /return", "POST /return"])
    w.child.kill("SIGTERM")
    expect(await w.exited).toBe(0)
    expect(await redis.llen(Q)).toBe(0)
    expect(await redis.llen(P)).toBe(0)
  }, 90_000)
})
