import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { findExecutable } from "../src/Bubblewrap.ts"
import { SandboxExecutor, SandboxUnavailable } from "../src/index.ts"
import { collect } from "./helpers.ts"

let dir: string
let host: string
let kvm: string
let cpuinfo: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "runlane-hyperlight-test-"))
  host = join(dir, "hyperlight")
  // A recording stand-in for the Hyperlight host binary: writes what it received, then answers.
  writeFileSync(
    host,
    [
      "#!/bin/sh",
      `out=${JSON.stringify(dir)}`,
      'for a in "$@"; do printf "%s\\0" "$a"; done > "$out/argv"',
      'pwd > "$out/cwd"',
      'env -0 > "$out/env"',
      'echo "host ran $#"',
      "exit 3"
    ].join("\n")
  )
  chmodSync(host, 0o755)
  kvm = join(dir, "kvm")
  writeFileSync(kvm, "")
  cpuinfo = join(dir, "cpuinfo")
  writeFileSync(cpuinfo, "processor\t: 0\nflags\t\t: fpu vme sse2 vmx ssse3\n")
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const failure = async (config: SandboxExecutor.SandboxExecutorConfig): Promise<SandboxUnavailable> => {
  const exit = await Effect.runPromiseExit(SandboxExecutor.make(config))
  if (Exit.isSuccess(exit)) throw new Error("expected SandboxUnavailable")
  const reason = exit.cause.reasons[0]
  if (reason?._tag !== "Fail") throw new Error(String(exit.cause))
  return reason.error
}

describe("hyperlight backend", () => {
  it("is unavailable on this machine, naming what is missing", async () => {
    const err = await failure({ backend: "hyperlight", hyperlightPath: join(dir, "absent") })
    expect(err).toBeInstanceOf(SandboxUnavailable)
    expect(err.backend).toBe("hyperlight")
    expect(err.missing.some((m) => m.includes(join(dir, "absent")))).toBe(true)
    // Here /dev/kvm exists without vmx/svm (or not at all), and there is no /dev/mshv.
    expect(err.missing.some((m) => m.includes("/dev/kvm") && /vmx\/svm/.test(m))).toBe(true)
    expect(err.missing).toContain("/dev/mshv")
    expect(err.message).toContain("missing")
  })

  it("with the binary present, still needs /dev/kvm with vmx/svm or /dev/mshv", async () => {
    const noVirt = join(dir, "cpuinfo-novirt")
    writeFileSync(noVirt, "flags\t\t: fpu sse2\n")
    const err = await failure({
      backend: "hyperlight",
      hyperlightPath: host,
      hyperlightDevices: { kvm, cpuinfo: noVirt, mshv: join(dir, "no-mshv") }
    })
    expect(err.missing).toHaveLength(2)
    expect(err.missing[0]).toContain("no vmx/svm")
    const mshv = join(dir, "mshv")
    writeFileSync(mshv, "")
    const ok = await Effect.runPromise(
      SandboxExecutor.make({
        backend: "hyperlight",
        hyperlightPath: host,
        hyperlightDevices: { kvm, cpuinfo: noVirt, mshv }
      })
    )
    expect(ok.backend).toBe("hyperlight")
  })

  it("bubblewrap and auto name a missing bwrap too", async () => {
    const bw = await failure({ backend: "bubblewrap", bwrapPath: join(dir, "no-bwrap") })
    expect(bw.backend).toBe("bubblewrap")
    expect(bw.missing.join("\n")).toContain("no-bwrap")
    const auto = await failure({
      backend: "auto",
      bwrapPath: join(dir, "no-bwrap"),
      hyperlightPath: join(dir, "absent")
    })
    expect(auto.backend).toBe("auto")
    expect(auto.missing.join("\n")).toContain("no-bwrap")
    expect(auto.missing.join("\n")).toContain(join(dir, "absent"))
  })

  it("auto falls back to bubblewrap where Hyperlight is unavailable", async () => {
    if (findExecutable("bwrap") === undefined) return expect((await failure({ backend: "auto" })).backend).toBe("auto")
    const svc = await Effect.runPromise(SandboxExecutor.make({ backend: "auto", hyperlightPath: join(dir, "absent") }))
    expect(svc.backend).toBe("bubblewrap")
  })

  it("auto picks hyperlight where it is available", async () => {
    const svc = await Effect.runPromise(
      SandboxExecutor.make({ backend: "auto", hyperlightPath: host, hyperlightDevices: { kvm, cpuinfo } })
    )
    expect(svc.backend).toBe("hyperlight")
  })

  it("contract: argv, working directory and the seed's environment reach the host binary", async () => {
    const work = mkdtempSync(join(tmpdir(), "runlane-hyperlight-work-"))
    process.env.RUNLANE_RUNNER_ONLY = "runner-value"
    try {
      const svc = await Effect.runPromise(
        SandboxExecutor.make({ backend: "hyperlight", hyperlightPath: host, hyperlightDevices: { kvm, cpuinfo } })
      )
      const prompt = `say "hi"\nthen 'stop' $HOME`
      const mcpUrl = "http://127.0.0.1:9/mcp?x=1"
      const r = await collect(
        svc.run({
          argv: [host, "--prompt", prompt],
          cwd: work,
          env: { HYPERLIGHT_ALLOW_NETWORK: "mcp_only", HYPERLIGHT_MCP_URL: mcpUrl, MCP_CONNECTION_URL: mcpUrl }
        })
      )
      expect(r.stdout).toBe("host ran 2\n")
      expect(r.exited).toMatchObject({ code: 3, reason: "exited" })
      expect(readFileSync(join(dir, "argv"), "utf8").split("\0").slice(0, -1)).toEqual(["--prompt", prompt])
      expect(readFileSync(join(dir, "cwd"), "utf8").trim()).toBe(work)
      const env = Object.fromEntries(
        readFileSync(join(dir, "env"), "utf8")
          .split("\0")
          .filter((l) => l !== "")
          .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)])
      )
      expect(env).toMatchObject({
        MCP_CONNECTION_URL: mcpUrl,
        HYPERLIGHT_ALLOW_NETWORK: "mcp_only",
        HYPERLIGHT_MCP_URL: mcpUrl,
        HYPERLIGHT_WORKING_DIR: work,
        HYPERLIGHT_ALLOW_FILE_WRITE: "true",
        HYPERLIGHT_ALLOW_FILE_READ: "true"
      })
      expect(env.RUNLANE_RUNNER_ONLY).toBeUndefined()

      await collect(svc.run({ argv: [host, "--prompt", "p"], cwd: work, network: { _tag: "none" } }))
      const env2 = readFileSync(join(dir, "env"), "utf8")
      expect(env2).toContain("HYPERLIGHT_ALLOW_NETWORK=false\0")
      expect(env2).not.toContain("MCP_CONNECTION_URL=")
      expect(env2).not.toContain("HYPERLIGHT_MCP_URL=")
    } finally {
      delete process.env.RUNLANE_RUNNER_ONLY
      rmSync(work, { recursive: true, force: true })
    }
  })

  it("refuses policy fields the Hyperlight contract cannot express", async () => {
    const svc = await Effect.runPromise(
      SandboxExecutor.make({ backend: "hyperlight", hyperlightPath: host, hyperlightDevices: { kvm, cpuinfo } })
    )
    for (const extra of [
      { resources: { memoryBytes: 1 << 20 } },
      { network: { _tag: "allow" as const, destinations: ["127.0.0.1:80"] } },
      { mounts: [{ source: "/srv", target: "/srv", readOnly: true }] }
    ]) {
      const exit = await Effect.runPromiseExit(Stream.runCollect(svc.run({ argv: [host], cwd: dir, ...extra })))
      expect(String(Exit.isFailure(exit) ? exit.cause : "success")).toContain("UnsupportedSpec")
    }
  })
})
