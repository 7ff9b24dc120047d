import { SandboxPolicy } from "@runlane/core"
import { Effect, Exit, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { SandboxExecutor } from "../src/index.ts"

const decode = (u: unknown) => Schema.decodeUnknownExit(SandboxPolicy)(u)

describe("SandboxPolicy", () => {
  it("accepts the three network kinds with a working directory and limits", () => {
    for (const network of [
      { _tag: "none" },
      { _tag: "mcp-only", url: "https://mcp.example.com:8443/x" },
      { _tag: "allow", destinations: ["127.0.0.1:80", "[::1]:8080", "api.example.com:443"] }
    ]) {
      const exit = decode({ network, workingDir: "/w", resources: { memoryBytes: 1024, pids: 4, timeoutMs: 5 } })
      expect(Exit.isSuccess(exit)).toBe(true)
    }
  })

  it("rejects bad input with a clear error", () => {
    for (const bad of [
      { network: { _tag: "mcp-only", url: "ftp://x" }, workingDir: "/w" },
      { network: { _tag: "mcp-only", url: "not a url" }, workingDir: "/w" },
      { network: { _tag: "allow", destinations: ["no-port"] }, workingDir: "/w" },
      { network: { _tag: "allow", destinations: ["h:70000"] }, workingDir: "/w" },
      { network: { _tag: "host" }, workingDir: "/w" },
      { network: { _tag: "none" }, workingDir: "relative" },
      { network: { _tag: "none" }, workingDir: "/w", readOnlyPaths: ["rel"] },
      { network: { _tag: "none" }, workingDir: "/w", resources: { pids: 0 } }
    ]) {
      expect(Exit.isFailure(decode(bad))).toBe(true)
    }
  })

  it("policyFromSpec: the seed's env contract selects mcp-only; the spec's network wins", async () => {
    const env = { HYPERLIGHT_ALLOW_NETWORK: "mcp_only", HYPERLIGHT_MCP_URL: "http://127.0.0.1:9/m" }
    const p = await Effect.runPromise(SandboxExecutor.policyFromSpec({ argv: ["a"], cwd: "/w", env }))
    expect(p.network).toEqual({ _tag: "mcp-only", url: "http://127.0.0.1:9/m" })
    expect(p.workingDir).toBe("/w")
    const q = await Effect.runPromise(
      SandboxExecutor.policyFromSpec({ argv: ["a"], cwd: "/w", env, network: { _tag: "none" } })
    )
    expect(q.network).toEqual({ _tag: "none" })
    const r = await Effect.runPromise(
      SandboxExecutor.policyFromSpec(
        { argv: ["a"], cwd: "/w", timeoutMs: 7, resources: { memoryBytes: 2048 } },
        { resources: { pids: 9, memoryBytes: 1 } }
      )
    )
    expect(r.resources).toEqual({ pids: 9, memoryBytes: 2048, timeoutMs: 7 })
    const bad = await Effect.runPromiseExit(
      SandboxExecutor.policyFromSpec({ argv: ["a"], cwd: "/w", env: { HYPERLIGHT_ALLOW_NETWORK: "mcp_only" } })
    )
    expect(String(Exit.isFailure(bad) ? bad.cause : "")).toContain("needs an MCP URL")
  })
})
