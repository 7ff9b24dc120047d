import { Effect, Exit } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { DEFAULT_AGENT_SOURCE, runGuestAgent } from "../src/GuestAgent.ts"
import type { GuestFailure } from "../src/SandboxErrors.ts"
import { startForbiddenServer, startMcpServer, type TestServer } from "./servers.ts"

let mcp: TestServer
let forbidden: TestServer
beforeAll(async () => {
  mcp = await startMcpServer()
  forbidden = await startForbiddenServer()
})
afterAll(async () => {
  await mcp.close()
  await forbidden.close()
})

const run = (opts: Parameters<typeof runGuestAgent>[0]) => Effect.runPromise(runGuestAgent(opts))
const failure = async (opts: Parameters<typeof runGuestAgent>[0]): Promise<GuestFailure> => {
  const exit = await Effect.runPromiseExit(runGuestAgent(opts))
  if (Exit.isSuccess(exit)) throw new Error(`expected a failure, got ${exit.value}`)
  const err = exit.cause.reasons[0]
  if (err?._tag !== "Fail") throw new Error(`expected a typed failure, got ${String(exit.cause)}`)
  return err.error
}

describe("guest backend (QuickJS)", () => {
  it("the default agent lists the MCP tools, as the original's guest", async () => {
    const out = await run({ source: DEFAULT_AGENT_SOURCE, prompt: "fix it", mcpUrl: `${mcp.url}/some/path?q=1` })
    expect(out).toBe(
      `Agent processed prompt: 'fix it'\nAvailable tools: {"tools":[{"name":"echo"},{"name":"add"}]}\n\nAgent is running securely in Hyperlight guest!`
    )
    expect(mcp.requests.at(-1)).toMatchObject({ method: "GET", url: "/tools" })
  })

  it("ExecuteMCPTool posts JSON to /tools/{name} on the MCP origin", async () => {
    const source = `async function ExecuteAgent(prompt, mcpUrl) {
      await InitializeMCPConnection(mcpUrl)
      return await ExecuteMCPTool("echo", JSON.stringify({ text: prompt }))
    }`
    const out = await run({ source, prompt: "hi", mcpUrl: mcp.url })
    expect(JSON.parse(out)).toEqual({ tool: "echo", args: { text: "hi" } })
    expect(mcp.requests.at(-1)).toEqual({
      method: "POST",
      url: "/tools/echo",
      contentType: "application/json",
      body: '{"text":"hi"}'
    })
  })

  it("InitializeMCPConnection refuses another port, host or scheme, and reports each refusal", async () => {
    const notes: Array<string> = []
    const source = `async function ExecuteAgent(prompt, mcpUrl) {
      const out = []
      for (const url of [${JSON.stringify(forbidden.url)}, "https://127.0.0.1:${mcp.port}", "http://localhost:${mcp.port}", mcpUrl]) {
        try { await InitializeMCPConnection(url); out.push("ok") } catch (e) { out.push("refused: " + e.message) }
      }
      return JSON.stringify(out)
    }`
    const out = JSON.parse(await run({ source, prompt: "", mcpUrl: mcp.url, onNote: (_k, m) => notes.push(m) }))
    expect(out.slice(0, 3).every((s: string) => s.startsWith("refused: Unauthorized network access"))).toBe(true)
    expect(out[3]).toBe("ok")
    expect(notes).toHaveLength(3)
    expect(notes[0]).toContain(forbidden.url)
    expect(forbidden.requests).toHaveLength(0)
  })

  it("with no MCP URL every host function is refused", async () => {
    const notes: Array<string> = []
    const source = `async function ExecuteAgent() {
      const out = []
      for (const f of [() => InitializeMCPConnection(${JSON.stringify(forbidden.url)}), () => GetMCPTools(), () => ExecuteMCPTool("echo", "{}")]) {
        try { await f(); out.push("ok") } catch (e) { out.push(e.message) }
      }
      return out.join("|")
    }`
    const out = await run({ source, prompt: "", onNote: (_k, m) => notes.push(m) })
    expect(out.split("|").every((s) => s.startsWith("Network access not allowed"))).toBe(true)
    expect(notes).toHaveLength(3)
    expect(forbidden.requests).toHaveLength(0)
  })

  it("has no ambient I/O", async () => {
    const source = `function ExecuteAgent() {
      return [typeof fetch, typeof require, typeof process, typeof XMLHttpRequest, typeof setTimeout, typeof WebAssembly].join(",")
    }`
    expect(await run({ source, prompt: "" })).toBe("undefined,undefined,undefined,undefined,undefined,undefined")
  })

  it("a guest that loops forever is stopped by the timeout, and the next guest runs", async () => {
    const err = await failure({ source: "function ExecuteAgent() { for (;;) {} }", prompt: "", timeoutMs: 300 })
    expect(err.reason).toBe("timeout")
    expect(await run({ source: "function ExecuteAgent(p) { return p + '!' }", prompt: "alive" })).toBe("alive!")
  })

  it("a busy guest does not hold the runner's event loop", async () => {
    let ticks = 0
    const timer = setInterval(() => ticks++, 10)
    try {
      const err = await failure({ source: "function ExecuteAgent() { for (;;) {} }", prompt: "", timeoutMs: 600 })
      expect(err.reason).toBe("timeout")
    } finally {
      clearInterval(timer)
    }
    // In-thread, the loop would have blocked every tick until the deadline.
    expect(ticks).toBeGreaterThanOrEqual(5)
  })

  it("a guest cannot catch its own interruption", async () => {
    const source = "function ExecuteAgent() { for (;;) { try { for (;;) {} } catch (e) {} } }"
    expect((await failure({ source, prompt: "", timeoutMs: 300 })).reason).toBe("timeout")
  })

  it("a guest that awaits forever is stopped by the timeout", async () => {
    const source = `async function ExecuteAgent() { await new Promise(() => {}) }`
    const err = await failure({ source, prompt: "", timeoutMs: 300 })
    expect(["timeout", "exception"]).toContain(err.reason)
  })

  it("a guest that allocates without end hits the memory limit, and the next guest runs", async () => {
    const source = `function ExecuteAgent() { const a = []; for (;;) a.push(new ArrayBuffer(1 << 20)) }`
    const err = await failure({ source, prompt: "", memoryBytes: 16 * 1024 * 1024, timeoutMs: 20_000 })
    expect(err.reason).toBe("oom")
    expect(await run({ source: "function ExecuteAgent(p) { return p }", prompt: "still here" })).toBe("still here")
  })

  it("an agent without ExecuteAgent, or with a syntax error, is refused clearly", async () => {
    expect((await failure({ source: "var x = 1", prompt: "" })).reason).toBe("invalid-agent")
    expect((await failure({ source: "function (", prompt: "" })).reason).toBe("invalid-agent")
    expect((await failure({ source: "", prompt: "", mcpUrl: "not a url" })).reason).toBe("invalid-agent")
  })

  it("a thrown error is reported as an exception", async () => {
    const err = await failure({ source: "function ExecuteAgent() { throw new TypeError('boom') }", prompt: "" })
    expect(err).toMatchObject({ reason: "exception", message: "TypeError: boom" })
  })
})
