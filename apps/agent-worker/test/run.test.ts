import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { randomUUID } from "node:crypto"
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Redis } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { bin, bwrapUp, redisUp, waitFor } from "./support.ts"

interface Call {
  readonly path: string
  readonly contentType: string | undefined
  readonly body: string
}

/** A real HTTP allocator that records every call. */
const startAllocator = async (mcpUrl: string) => {
  const calls: Array<Call> = []
  let n = 0
  const server: Server = createServer((req, res) => {
    let body = ""
    req.on("data", (c) => {
      body += c
    })
    req.on("end", () => {
      calls.push({ path: `${req.method} ${req.url}`, contentType: req.headers["content-type"], body })
      if (req.method === "POST" && req.url === "/borrow") {
        n++
        res.writeHead(200, { "content-type": "application/json" })
        res.end(
          JSON.stringify({
            api_url: "http://api.example",
            id: `mock-instance-${n}`,
            mcp_connection_url: mcpUrl,
            extra: 1
          })
        )
      } else if (req.method === "POST" && req.url === "/return") {
        res.writeHead(200)
        res.end()
      } else {
        res.writeHead(404)
        res.end("no")
      }
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as { port: number }
  return { calls, url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((r) => server.close(() => r())) }
}

const git = (cwd: string, ...args: Array<string>) => execFileSync("git", args, { cwd, env: process.env }).toString()

describe.skipIf(!redisUp || !bwrapUp)("run: end to end (real Redis, git, HTTP allocator, bubblewrap)", () => {
  const Q = `aw_run_test_${randomUUID().slice(0, 8)}`
  const P = `${Q}_processing`
  const redis = new Redis({ host: "127.0.0.1", port: 6379 })
  const root = mkdtempSync(join(tmpdir(), "agent-worker-run-"))
  const remote = join(root, "remote.git")
  const agent = join(root, "agent.sh")
  const gitConfig = join(root, "gitconfig")
  const workDir = join(root, "work")
  const mcpUrl = "http://127.0.0.1:9/mcp"
  let allocator: Awaited<ReturnType<typeof startAllocator>>
  let worker: ChildProcess | undefined
  let output = ""
  const savedGitConfig = process.env.GIT_CONFIG_GLOBAL

  beforeAll(async () => {
    writeFileSync(
      gitConfig,
      "[user]\n\tname = Agent Test\n\temail = agent@test.invalid\n[init]\n\tdefaultBranch = main\n"
    )
    process.env.GIT_CONFIG_GLOBAL = gitConfig
    const seed = join(root, "seed")
    git(root, "init", "--bare", remote)
    git(root, "init", seed)
    writeFileSync(join(seed, "README"), "hello\n")
    git(seed, "add", "README")
    git(seed, "commit", "-m", "init")
    git(seed, "push", remote, "main:main", "main:feature/test-branch-123")
    writeFileSync(
      agent,
      [
        "#!/bin/sh",
        'if [ "$2" = fail ]; then echo "it broke" >&2; exit 3; fi',
        'echo "agent: $1 in $(pwd)"',
        'printf "%s|%s|%s|%s" "$2" "$MCP_CONNECTION_URL" "$HYPERLIGHT_ALLOW_NETWORK" "$HYPERLIGHT_WORKING_DIR" > result.txt',
        ""
      ].join("\n")
    )
    chmodSync(agent, 0o755)
    allocator = await startAllocator("http://127.0.0.1:9/instance-mcp")
    // A stalled entry from a previous worker: start-up recovery puts it back first.
    await redis.del(Q, P, `${Q}_dead`)
    worker = spawn(
      process.execPath,
      [
        "--conditions=source",
        bin,
        "--queue-name",
        Q,
        "--allocator-api-url",
        allocator.url,
        "--work-dir",
        workDir,
        "--hyperlight-path",
        agent,
        "--agent-sandbox",
        "bubblewrap",
        "run",
        "--timeout",
        "1"
      ],
      { env: { ...process.env, NO_COLOR: "1", LOG_LEVEL: "debug", GIT_CONFIG_GLOBAL: gitConfig } }
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
    if (worker !== undefined && worker.exitCode === null) worker.kill("SIGKILL")
    await redis.del(Q, P, `${Q}_dead`)
    redis.disconnect()
    await allocator?.close()
    rmSync(root, { recursive: true, force: true })
    if (savedGitConfig === undefined) delete process.env.GIT_CONFIG_GLOBAL
    else process.env.GIT_CONFIG_GLOBAL = savedGitConfig
  })

  it("a job LPUSHed in the original format: borrow, agent in the sandbox, commit and push to its branch, return, ack; a non-JSON entry is kept", async () => {
    await redis.lpush(Q, "not json at all")
    const job = `{"id":"job-1","repo_url":"file://${remote}","branch":"feature/test-branch-123","prompt":"say \\"hi\\"\\nthen stop","mcp_connection_url":"${mcpUrl}"}`
    await redis.lpush(Q, job)
    await waitFor(
      "the job to finish",
      async () => output.includes("Job completed successfully: job-1") || output.includes("Job failed: job-1")
    )
    expect(output).toContain("Job completed successfully: job-1")
    expect(output).toContain("Error processing job: Failed to deserialize job:")
    expect(await redis.llen(Q)).toBe(0)
    expect(await redis.lrange(P, 0, -1)).toEqual(["not json at all"])
    expect(allocator.calls.map((c) => c.path)).toEqual(["POST /borrow", "POST /return"])
    expect(allocator.calls[1]).toEqual({
      path: "POST /return",
      contentType: "application/json",
      body: '{"id":"mock-instance-1","mcp_connection_url":"http://127.0.0.1:9/instance-mcp","api_url":"http://api.example"}'
    })
    const check = join(root, "check")
    git(root, "clone", "--quiet", "--branch", "feature/test-branch-123", remote, check)
    const [prompt, mcp, network, wd] = readFileSync(join(check, "result.txt"), "utf8").split("|")
    expect(prompt).toBe('say "hi"\nthen stop')
    expect(mcp).toBe(mcpUrl)
    expect(network).toBe("mcp_only")
    expect(wd).toBe(join(workDir, "job-1"))
    expect(git(check, "log", "-1", "--format=%B").trimEnd()).toBe(
      'Agent changes for job: job-1\n\nPrompt: say "hi"\nthen stop'
    )
    expect(git(check, "log", "-1", "--format=%an <%ae>").trim()).toBe("Agent Test <agent@test.invalid>")
    // main untouched: results go only to the job's own branch
    expect(git(remote, "rev-parse", "main")).not.toBe(git(remote, "rev-parse", "feature/test-branch-123"))
    await redis.del(P)
  }, 120_000)

  it("a failing agent: instance returned, atomic NACK back onto the main list; SIGTERM returns everything borrowed", async () => {
    const before = allocator.calls.length
    await redis.lpush(
      Q,
      JSON.stringify({
        id: "job-2",
        repo_url: `file://${remote}`,
        branch: "main",
        prompt: "fail",
        mcp_connection_url: null
      })
    )
    // The NACK line follows the failure line: wait for both, not just the first.
    await waitFor("the job to fail and go back", () => output.includes("Job moved back to main queue for retry: job-2"))
    expect(output).toContain("Job failed: job-2 - Agent execution failed with exit code 3: it broke")
    expect(output).toContain("Job moved back to main queue for retry: job-2")
    await new Promise((r) => setTimeout(r, 500))
    worker!.kill("SIGTERM")
    const code = await new Promise<number | null>((resolve) => worker!.once("exit", (c) => resolve(c)))
    expect(code).toBe(0)
    const calls = allocator.calls.slice(before).map((c) => c.path)
    const borrows = calls.filter((c) => c === "POST /borrow").length
    expect(borrows).toBeGreaterThan(0)
    expect(calls.filter((c) => c === "POST /return").length).toBe(borrows)
    // Never lost: the job is in one of the two lists.
    const entries = [...(await redis.lrange(Q, 0, -1)), ...(await redis.lrange(P, 0, -1))]
    expect(entries.filter((e) => e.includes('"id":"job-2"'))).toHaveLength(1)
    // nothing was pushed to main
    expect(git(remote, "log", "--format=%s", "main").trim()).toBe("init")
  }, 120_000)
})
