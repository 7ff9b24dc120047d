import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { bin, bwrapUp, redisUp, waitFor } from "./support.ts"

describe.skipIf(!redisUp || !bwrapUp)("run: failures, pairing and MAX_ATTEMPTS", () => {
  const Q = `aw_fail_test_${randomUUID().slice(0, 8)}`
  const P = `${Q}_processing`
  const D = `${Q}_dead`
  const redis = new Redis({ host: "127.0.0.1", port: 6379 })
  const root = mkdtempSync(join(tmpdir(), "agent-worker-fail-"))
  const agent = join(root, "agent.sh")
  const calls: Array<string> = []
  let refuse = false
  let n = 0
  let server: Server
  let worker: ChildProcess
  let output = ""
  let mcp: Server
  let mcpUrl = ""
  let mcpHits = 0
  const remote = join(root, "remote.git")

  beforeAll(async () => {
    mcp = createServer((req, res) => {
      req.resume()
      mcpHits++
      res.writeHead(200)
      res.end("mcp-ok")
    })
    await new Promise<void>((resolve) => mcp.listen(0, "127.0.0.1", resolve))
    mcpUrl = `http://127.0.0.1:${(mcp.address() as { port: number }).port}/mcp`
    execFileSync("git", ["init", "--quiet", "--bare", "--initial-branch=main", remote])
    const seed = join(root, "seed")
    execFileSync("git", ["init", "--quiet", "--initial-branch=main", seed])
    writeFileSync(join(seed, "README"), "x\n")
    execFileSync("git", ["-C", seed, "add", "README"])
    execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@t", "-C", seed, "commit", "--quiet", "-m", "init"])
    execFileSync("git", ["-C", seed, "push", "--quiet", remote, "HEAD:main"])
    writeFileSync(join(root, "secret.txt"), "s")
    mkdirSync(join(root, "work", "other-job"), { recursive: true })
    writeFileSync(join(root, "work", "other-job", "data"), "d")
    server = createServer((req, res) => {
      req.resume()
      req.on("end", () => {
        calls.push(`${req.method} ${req.url}`)
        if (req.url === "/borrow" && refuse) {
          res.writeHead(503)
          res.end("busy")
        } else if (req.url === "/borrow") {
          n++
          res.writeHead(200)
          res.end(JSON.stringify({ id: `mock-instance-${n}`, mcp_connection_url: mcpUrl, api_url: "x" }))
        } else {
          res.writeHead(200)
          res.end()
        }
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const { port } = server.address() as { port: number }
    // The agent: `kill` dies by SIGKILL; `probe` checks what it can see and reach, exiting 9 with the reason.
    writeFileSync(
      agent,
      `#!/bin/sh
fail() { echo "$1" >&2; exit 9; }
case "$2" in
kill) echo dying >&2; kill -9 $$ ;;
probe)
  [ -e ${root}/secret.txt ] && fail "saw a file beside the work dir"
  [ -e ${root}/work/other-job/data ] && fail "saw another checkout"
  ls /root >/dev/null 2>&1 && fail "saw /root"
  touch /usr/agent-was-here 2>/dev/null && fail "wrote /usr"
  [ "$(pwd)" = "$HYPERLIGHT_WORKING_DIR" ] || fail "cwd $(pwd)"
  [ -f README ] || fail "no checkout"
  echo probe > probe-was-here || fail "checkout not writable"
  rm probe-was-here
  body=$(curl -s --max-time 10 "$MCP_CONNECTION_URL") || fail "mcp unreachable"
  [ "$body" = mcp-ok ] || fail "mcp answered $body"
  curl -sf --max-time 10 http://127.0.0.1:${port}/borrow >/dev/null && fail "reached the allocator via the proxy"
  curl -sf --max-time 10 --noproxy '*' http://127.0.0.1:${port}/borrow >/dev/null && fail "reached the allocator directly"
  exit 0 ;;
esac
exit 0
`
    )
    chmodSync(agent, 0o755)
    await redis.del(Q, P, D)
    // A stalled entry left by a dead worker: start-up recovery moves it back to the main list.
    await redis.lpush(P, "stalled-entry")
    worker = spawn(
      process.execPath,
      [
        "--conditions=source",
        bin,
        "--queue-name",
        Q,
        "--allocator-api-url",
        `http://127.0.0.1:${port}`,
        "--work-dir",
        join(root, "work"),
        "--hyperlight-path",
        agent,
        "--agent-sandbox",
        "bubblewrap",
        "--max-attempts",
        "2",
        "run",
        "--timeout",
        "1"
      ],
      { env: { ...process.env, NO_COLOR: "1", LOG_LEVEL: "info" } }
    )
    worker.stdout?.on("data", (d) => {
      output += d
    })
    worker.stderr?.on("data", (d) => {
      output += d
    })
    await waitFor("worker loop", () => output.includes("Starting worker loop"))
  }, 120_000)

  afterAll(async () => {
    if (worker.exitCode === null) worker.kill("SIGKILL")
    await redis.del(Q, P, D)
    redis.disconnect()
    await new Promise<void>((r) => server.close(() => r()))
    await new Promise<void>((r) => mcp.close(() => r()))
    rmSync(root, { recursive: true, force: true })
  })

  it("start-up recovery re-queued the stalled entry; being malformed, it is kept in the processing list", async () => {
    expect(output).toContain("Recovered 1 stalled jobs")
    await waitFor("the malformed entry", () => output.includes("Failed to deserialize job"))
    expect(await redis.lrange(P, 0, -1)).toEqual(["stalled-entry"])
    expect(calls).toEqual([])
    await redis.del(P)
  })

  it("a refused borrow: no return; after MAX_ATTEMPTS the job goes to <queue>_dead with its reason", async () => {
    refuse = true
    const job = JSON.stringify({
      id: "job-r",
      repo_url: "file:///nowhere",
      branch: "main",
      prompt: "p",
      mcp_connection_url: null
    })
    await redis.lpush(Q, job)
    await waitFor("dead letter", async () => (await redis.llen(D)) === 1)
    refuse = false
    expect(calls).toEqual(["POST /borrow", "POST /borrow"])
    expect(output).toContain("Job failed: job-r - Failed to borrow instance: 503 Service Unavailable - busy")
    const dead = JSON.parse((await redis.lindex(D, 0))!)
    expect(dead).toEqual({
      reason: "Failed to borrow instance: 503 Service Unavailable - busy",
      attempts: 2,
      entry: job
    })
    expect(await redis.llen(Q)).toBe(0)
    expect(await redis.llen(P)).toBe(0)
    await redis.del(D)
  }, 120_000)

  it("a clone failure: every borrow returned, NACKed, then dead-lettered", async () => {
    calls.length = 0
    const job = JSON.stringify({
      id: "job-c",
      repo_url: `file://${root}/missing.git`,
      branch: "main",
      prompt: "p",
      mcp_connection_url: null
    })
    await redis.lpush(Q, job)
    await waitFor("dead letter", async () => (await redis.llen(D)) === 1)
    expect(calls).toEqual(["POST /borrow", "POST /return", "POST /borrow", "POST /return"])
    expect(output).toContain("Job moved back to main queue for retry: job-c")
    expect(output).toMatch(/Job failed: job-c - Failed to clone repository: /)
    const dead = JSON.parse((await redis.lindex(D, 0))!)
    expect(dead.entry).toBe(job)
    expect(dead.reason).toMatch(/^Failed to clone repository: /)
    expect(await redis.llen(Q)).toBe(0)
    expect(await redis.llen(P)).toBe(0)
  }, 120_000)

  it("the agent sees only its checkout and reaches only the MCP server", async () => {
    calls.length = 0
    await redis.del(D)
    const job = JSON.stringify({
      id: "probe",
      repo_url: remote,
      branch: "main",
      prompt: "probe",
      mcp_connection_url: null
    })
    await redis.lpush(Q, job)
    await waitFor(
      "the probe",
      () => output.includes("Job completed successfully: probe") || output.includes("Job failed: probe")
    )
    expect(output).not.toContain("Job failed: probe")
    expect(output).toContain("No changes detected after agent execution")
    expect(mcpHits).toBeGreaterThan(0)
    expect(calls).toEqual(["POST /borrow", "POST /return"])
  }, 120_000)

  // The original reports death by a signal as -1; inside bubblewrap the agent is a child of bwrap's init,
  // which turns the signal into exit status 128+9, so the sandbox reports 137 (see README).
  it("an agent killed by SIGKILL fails the job; every borrow returned; dead after MAX_ATTEMPTS", async () => {
    calls.length = 0
    const job = JSON.stringify({
      id: "killed",
      repo_url: remote,
      branch: "main",
      prompt: "kill",
      mcp_connection_url: null
    })
    await redis.lpush(Q, job)
    await waitFor("dead letter", async () => (await redis.llen(D)) === 1)
    expect(output).toContain("Job failed: killed - Agent execution failed with exit code 137: dying")
    expect(calls).toEqual(["POST /borrow", "POST /return", "POST /borrow", "POST /return"])
    expect(await redis.llen(Q)).toBe(0)
    expect(await redis.llen(P)).toBe(0)
    await redis.del(D)
  }, 120_000)
})
