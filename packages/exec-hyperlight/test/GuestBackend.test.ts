import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BUILTIN_AGENT, SandboxExecutor } from "../src/index.ts"
import { collect } from "./helpers.ts"
import { startForbiddenServer, startMcpServer, type TestServer } from "./servers.ts"

let mcp: TestServer
let forbidden: TestServer
let work: string
let svc: SandboxExecutor.SandboxExecutorService
beforeAll(async () => {
  mcp = await startMcpServer()
  forbidden = await startForbiddenServer()
  work = mkdtempSync(join(tmpdir(), "runlane-guest-test-"))
  svc = await Effect.runPromise(SandboxExecutor.make({ backend: "guest" }))
})
afterAll(async () => {
  await mcp.close()
  await forbidden.close()
  rmSync(work, { recursive: true, force: true })
})

describe("guest backend through the Executor", () => {
  it("runs the built-in agent with the seed's env contract and returns its text as stdout", async () => {
    const r = await collect(
      svc.run({
        argv: [BUILTIN_AGENT, "--prompt", "hello"],
        cwd: work,
        env: { HYPERLIGHT_ALLOW_NETWORK: "mcp_only", HYPERLIGHT_MCP_URL: mcp.url }
      })
    )
    expect(r.exited).toMatchObject({ code: 0, reason: "exited" })
    expect(r.stdout).toContain("Agent processed prompt: 'hello'\nAvailable tools: {\"tools\"")
  })

  it("runs an agent file; refusals are note events", async () => {
    writeFileSync(
      join(work, "agent.js"),
      `async function ExecuteAgent(prompt, mcpUrl) {
        try { await InitializeMCPConnection(${JSON.stringify(forbidden.url)}) } catch (e) {}
        await InitializeMCPConnection(mcpUrl)
        return await ExecuteMCPTool("add", JSON.stringify({ prompt }))
      }`
    )
    const r = await collect(
      svc.runPolicy(["agent.js", "--prompt", "p1"], { network: { _tag: "mcp-only", url: mcp.url }, workingDir: work })
    )
    expect(JSON.parse(r.stdout)).toEqual({ tool: "add", args: { prompt: "p1" } })
    expect(r.notes).toHaveLength(1)
    expect(r.notes[0]?.message).toContain(forbidden.url)
    expect(forbidden.requests).toHaveLength(0)
  })

  it("a runaway guest ends with reason timeout, an exception with code 1", async () => {
    writeFileSync(join(work, "loop.js"), "function ExecuteAgent() { while (true) {} }")
    const t = await collect(svc.run({ argv: ["loop.js"], cwd: work, timeoutMs: 200 }))
    expect(t.exited.reason).toBe("timeout")
    writeFileSync(join(work, "throw.js"), "function ExecuteAgent() { throw new Error('nope') }")
    const e = await collect(svc.run({ argv: ["throw.js"], cwd: work }))
    expect(e.exited).toMatchObject({ code: 1, reason: "exited" })
    expect(e.stderr).toBe("Error: nope\n")
  })

  it("refuses an allow-list network and a malformed argv", async () => {
    for (const spec of [
      { argv: [BUILTIN_AGENT], cwd: work, network: { _tag: "allow" as const, destinations: ["127.0.0.1:1"] } },
      { argv: [BUILTIN_AGENT, "--nope"], cwd: work }
    ]) {
      const exit = await Effect.runPromiseExit(Stream.runCollect(svc.run(spec)))
      expect(String(Exit.isFailure(exit) ? exit.cause : "success")).toContain("UnsupportedSpec")
    }
  })
})
