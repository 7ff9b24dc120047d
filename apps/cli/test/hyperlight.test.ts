import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { requireService } from "@runlane/testkit"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runCli } from "./runCli.ts"

const runlane = (args: ReadonlyArray<string>, cwd: string) =>
  runCli(args, { cwd, env: { HYPERLIGHT_PATH: "/nonexistent/hyperlight" } })

const bwrapWorks = async (): Promise<boolean> => {
  try {
    execFileSync("bwrap", ["--unshare-all", "--ro-bind", "/", "/", "true"], { stdio: "ignore" })
    execFileSync("socat", ["-V"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}
const bwrap = await requireService("bubblewrap + socat (scripts/setup.d/20-sandbox.sh)", bwrapWorks)

let work: string
let mcp: Server
let mcpUrl: string
beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "runlane-cli-hyperlight-"))
  mcp = createServer((req, res) => {
    res.writeHead(200, { "content-type": "application/json" })
    res.end(req.url === "/tools" ? '{"tools":["cli-tool"]}' : "{}")
  })
  await new Promise<void>((r) => mcp.listen(0, "127.0.0.1", r))
  mcpUrl = `http://127.0.0.1:${(mcp.address() as AddressInfo).port}`
})
afterAll(async () => {
  mcp.closeAllConnections()
  await new Promise((r) => mcp.close(r))
  rmSync(work, { recursive: true, force: true })
})

describe("runlane run --executor hyperlight", () => {
  it("guest backend: --agent/--prompt call ExecuteAgent, with --mcp-url as the one MCP server", async () => {
    writeFileSync(
      join(work, "agent.js"),
      "async function ExecuteAgent(p, u) { await InitializeMCPConnection(u); return p + ' ' + (await GetMCPTools()) }"
    )
    const r = await runlane(
      [
        "run",
        "--executor",
        "hyperlight",
        "--sandbox-backend",
        "guest",
        "--agent",
        "agent.js",
        "--prompt",
        "hey",
        "--mcp-url",
        mcpUrl
      ],
      work
    )
    expect(r.stdout).toBe('hey {"tools":["cli-tool"]}')
    expect(r.code).toBe(0)
  })

  it("guest backend without --agent runs the built-in agent", async () => {
    const r = await runlane(["run", "--executor", "hyperlight", "--sandbox-backend", "guest", "--prompt", "x"], work)
    expect(r.code).toBe(0)
    expect(r.stdout).toContain("Agent processed prompt: 'x'")
  })

  it.skipIf(!bwrap)("bubblewrap backend: runs the command in the current directory, network none", async () => {
    const r = await runlane(
      [
        "run",
        "--executor",
        "hyperlight",
        "--sandbox-backend",
        "bubblewrap",
        "--memory",
        "256m",
        "--",
        "sh",
        "-c",
        "pwd; touch made-inside; echo $HYPERLIGHT_ALLOW_NETWORK"
      ],
      work
    )
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(`${work}\nfalse\n`)
  })

  it.skipIf(!bwrap)("auto + --mcp-url: mcp-only network, the MCP server answers inside", async () => {
    const r = await runlane(
      ["run", "--executor", "hyperlight", "--mcp-url", mcpUrl, "--", "sh", "-c", 'curl -s "$MCP_CONNECTION_URL/tools"'],
      work
    )
    expect(r.stdout).toBe('{"tools":["cli-tool"]}')
    expect(r.code).toBe(0)
  })

  it("hyperlight backend here: a clear SandboxUnavailable, non-zero exit", async () => {
    const r = await runlane(["run", "--executor", "hyperlight", "--sandbox-backend", "hyperlight", "--", "true"], work)
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain("sandbox backend hyperlight is unavailable")
    expect(r.stderr).toContain("/nonexistent/hyperlight")
  })

  it("bad flag combinations are usage errors (exit 2)", async () => {
    for (const args of [
      ["--sandbox-backend", "vm", "--", "true"],
      ["--network", "host", "--", "true"],
      ["--network", "mcp-only", "--", "true"],
      ["--sandbox-backend", "guest", "--", "true"],
      ["--agent", "a.js", "--", "true"]
    ]) {
      const r = await runlane(["run", "--executor", "hyperlight", ...args], work)
      expect({ args, code: r.code }).toEqual({ args, code: 2 })
    }
  })
})
