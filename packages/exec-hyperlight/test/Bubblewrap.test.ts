import { execFileSync } from "node:child_process"
import { randomUUID } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { homedir, tmpdir } from "node:os"
import { join } from "node:path"
import type { ExecSpec } from "@runlane/core"
import { requireService } from "@runlane/testkit"
import { Effect, Exit, Redacted, Stream } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { findExecutable } from "../src/Bubblewrap.ts"
import { SandboxExecutor } from "../src/index.ts"
import { collect, processesWith } from "./helpers.ts"
import { startForbiddenServer, startMcpServer, type TestServer } from "./servers.ts"

const bwrapWorks = async (): Promise<boolean> => {
  const bwrap = findExecutable("bwrap")
  if (bwrap === undefined || findExecutable("socat") === undefined) return false
  try {
    execFileSync(bwrap, ["--unshare-all", "--ro-bind", "/", "/", "true"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}
const available = await requireService("bubblewrap + socat (scripts/setup.d/20-sandbox.sh)", bwrapWorks)

describe.skipIf(!available)("bubblewrap backend", () => {
  let mcp: TestServer
  let forbidden: TestServer
  let work: string
  let svc: SandboxExecutor.SandboxExecutorService
  beforeAll(async () => {
    mcp = await startMcpServer()
    forbidden = await startForbiddenServer()
    work = mkdtempSync(join(tmpdir(), "runlane-bwrap-test-"))
    svc = await Effect.runPromise(SandboxExecutor.make({ backend: "bubblewrap", killGraceMs: 500 }))
  })
  afterAll(async () => {
    await mcp.close()
    await forbidden.close()
    rmSync(work, { recursive: true, force: true })
  })
  const sh = (script: string, extra: Partial<ExecSpec> = {}): ExecSpec => ({
    argv: ["/bin/sh", "-c", script],
    cwd: work,
    ...extra
  })
  const run = (spec: ExecSpec) => collect(svc.run(spec))

  it("is the bubblewrap backend of the hyperlight executor", () => {
    expect(svc.name).toBe("hyperlight")
    expect(svc.backend).toBe("bubblewrap")
  })

  it("mcp-only: the MCP server answers from inside, the forbidden server does not, and the refusal is an event", async () => {
    const before = forbidden.requests.length
    const r = await run(
      sh(
        [
          'echo "direct:$(curl -s --noproxy "*" "$MCP_CONNECTION_URL/tools")"',
          'echo "proxied:$(curl -s "$HYPERLIGHT_MCP_URL/tools")"',
          `echo "tool:$(curl -s -X POST -H 'content-type: application/json' -d '{"a":1}' "$MCP_CONNECTION_URL/tools/echo")"`,
          `echo "forbidden-proxied:$(curl -s -o /dev/null -w '%{http_code}' ${forbidden.url}/)"`,
          `echo "forbidden-direct:$(curl -s --max-time 3 --noproxy '*' ${forbidden.url}/ || echo failed)"`,
          "echo network=$HYPERLIGHT_ALLOW_NETWORK"
        ].join("\n"),
        { env: { HYPERLIGHT_ALLOW_NETWORK: "mcp_only", HYPERLIGHT_MCP_URL: mcp.url, MCP_CONNECTION_URL: mcp.url } }
      )
    )
    expect(r.exited).toMatchObject({ code: 0, reason: "exited" })
    const tools = '{"tools":[{"name":"echo"},{"name":"add"}]}'
    expect(r.stdout).toContain(`direct:${tools}`)
    expect(r.stdout).toContain(`proxied:${tools}`)
    expect(r.stdout).toContain(`tool:{"tool":"echo","args":{"a":1}}`)
    expect(r.stdout).toContain("forbidden-proxied:403")
    expect(r.stdout).toContain("forbidden-direct:failed")
    expect(r.stdout).toContain("network=mcp_only")
    expect(r.stdout).not.toContain("FORBIDDEN-SERVER-REACHED")
    expect(forbidden.requests.length).toBe(before)
    expect(r.notes).toHaveLength(1)
    expect(r.notes[0]?.kind).toBe("network-refused")
    expect(r.notes[0]?.message).toContain(`127.0.0.1:${forbidden.port}`)
  })

  it("mcp-only via runPolicy: CONNECT to another port is refused too", async () => {
    const r = await collect(
      svc.runPolicy(
        ["/bin/sh", "-c", `curl -s -o /dev/null -w '%{http_code}' -p ${forbidden.url}/ ; echo; echo $HTTPS_PROXY`],
        {
          network: { _tag: "mcp-only", url: `${mcp.url}/mcp` },
          workingDir: work
        }
      )
    )
    expect(r.stdout).toMatch(/^(403|000)/)
    expect(r.notes.map((n) => n.message).join("\n")).toContain(`CONNECT 127.0.0.1:${forbidden.port}`)
  })

  it("a refusal is reported while the sandbox still runs", async () => {
    const marker = `${100000 + Math.floor(Math.random() * 800000)}`
    const events = await Effect.runPromise(
      svc
        .runPolicy(["/bin/sh", "-c", `curl -s -o /dev/null ${forbidden.url}/live; sleep ${marker}`], {
          network: { _tag: "mcp-only", url: mcp.url },
          workingDir: work,
          resources: { timeoutMs: 60_000 }
        })
        .pipe(
          Stream.takeUntil((e) => e._tag === "note"),
          Stream.runCollect
        )
    )
    expect(events.map((e) => e._tag)).toEqual(["started", "note"])
    expect(processesWith(`sleep ${marker}`)).toEqual([])
  })

  it("large output passes through whole with the proxy merged in", async () => {
    const r = await collect(
      svc.runPolicy(["/bin/sh", "-c", "head -c 8000000 /dev/zero | tr '\\0' x; echo; echo end >&2"], {
        network: { _tag: "mcp-only", url: mcp.url },
        workingDir: work
      })
    )
    expect(r.stdout.length).toBe(8_000_001)
    expect(r.stderr).toBe("end\n")
    expect(r.exited.code).toBe(0)
  })

  it("an allow-list network reaches exactly the listed host:port through the proxy", async () => {
    const r = await run(
      sh(
        `curl -s ${mcp.url}/tools; echo; curl -s -o /dev/null -w '%{http_code}\\n' ${forbidden.url}/; echo net=$HYPERLIGHT_ALLOW_NETWORK`,
        { network: { _tag: "allow", destinations: [`127.0.0.1:${mcp.port}`] } }
      )
    )
    expect(r.stdout).toBe('{"tools":[{"name":"echo"},{"name":"add"}]}\n403\nnet=allow_list\n')
    expect(r.notes.map((n) => n.kind)).toEqual(["network-refused"])
  })

  it("network none reaches neither server", async () => {
    const before = mcp.requests.length + forbidden.requests.length
    const r = await run(
      sh(
        `curl -s --max-time 3 ${mcp.url}/tools || echo mcp-unreachable; curl -s --max-time 3 ${forbidden.url}/ || echo forbidden-unreachable; echo "net=$HYPERLIGHT_ALLOW_NETWORK proxy=$http_proxy"`,
        { network: { _tag: "none" } }
      )
    )
    expect(r.stdout).toContain("mcp-unreachable")
    expect(r.stdout).toContain("forbidden-unreachable")
    expect(r.stdout).toContain("net=false proxy=\n")
    expect(mcp.requests.length + forbidden.requests.length).toBe(before)
  })

  it("the working directory is the only writable path; /tmp is private", async () => {
    const marker = `runlane-${randomUUID()}`
    const r = await run(
      sh(
        [
          `echo inside > ${marker}.txt && echo wd-ok`,
          `echo x > /usr/${marker} 2>/dev/null || echo usr-denied`,
          `echo x > /etc/${marker} 2>/dev/null || echo etc-denied`,
          `echo x > /${marker} 2>/dev/null || echo root-denied`,
          `echo x > ${join(tmpdir(), marker)} && echo tmp-ok`
        ].join("\n")
      )
    )
    expect(r.stdout.split("\n")).toEqual(["wd-ok", "usr-denied", "etc-denied", "root-denied", "tmp-ok", ""])
    expect(readFileSync(join(work, `${marker}.txt`), "utf8")).toBe("inside\n")
    expect(existsSync(join("/usr", marker)) || existsSync(join("/etc", marker))).toBe(false)
    // /tmp inside is a tmpfs: the host's /tmp did not get the file.
    expect(existsSync(join(tmpdir(), marker))).toBe(false)
  })

  it("a file in the host's home directory cannot be read", async () => {
    const secretFile = join(homedir(), `.runlane-secret-${randomUUID()}`)
    writeFileSync(secretFile, "TOP-SECRET-HOME-FILE")
    try {
      const r = await run(
        sh(
          `cat ${secretFile} 2>&1 || echo cannot-read; ls -a ${homedir()} 2>&1 | head -3; ls /root/.ssh 2>&1 || echo no-ssh`
        )
      )
      expect(r.stdout).toContain("cannot-read")
      expect(r.stdout).toContain("no-ssh")
      expect(r.stdout).not.toContain("TOP-SECRET-HOME-FILE")
    } finally {
      rmSync(secretFile, { force: true })
    }
  })

  it("the runner's environment variables are absent; only the spec's env and the seed's contract", async () => {
    process.env.RUNLANE_RUNNER_ONLY = "runner-secret-value"
    try {
      const r = await run(sh("env | sort", { env: { JOB_VAR: "job-value" } }))
      expect(r.stdout).not.toContain("RUNLANE_RUNNER_ONLY")
      expect(r.stdout).not.toContain("runner-secret-value")
      expect(r.stdout).toContain("JOB_VAR=job-value")
      expect(r.stdout).toContain(`HYPERLIGHT_WORKING_DIR=${work}`)
      expect(r.stdout).toContain("HYPERLIGHT_ALLOW_FILE_WRITE=true")
      expect(r.stdout).not.toMatch(/^HOME=/m)
    } finally {
      delete process.env.RUNLANE_RUNNER_ONLY
    }
  })

  it("runs with no capabilities, no_new_privs and its own pid namespace", async () => {
    const r = await run(
      sh(
        "grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs)' /proc/self/status; echo pid=$$; ls /var/run/docker.sock 2>&1 || echo no-docker"
      )
    )
    expect(r.stdout).toContain("CapEff:\t0000000000000000")
    expect(r.stdout).toContain("CapPrm:\t0000000000000000")
    expect(r.stdout).toContain("CapBnd:\t0000000000000000")
    expect(r.stdout).toContain("NoNewPrivs:\t1")
    expect(r.stdout).toMatch(/pid=[1-9]\b/)
    expect(r.stdout).toContain("no-docker")
  })

  it.skipIf(process.arch !== "x64")("a seccomp filter refuses namespace, mount and ptrace system calls", async () => {
    const r = await run(
      sh(
        [
          "grep -E '^Seccomp:' /proc/self/status",
          "unshare -U true 2>/dev/null && echo unshare-allowed || echo unshare-denied",
          "unshare -n true 2>/dev/null && echo unshare-net-allowed || echo unshare-net-denied",
          `python3 -c 'import ctypes,os; l=ctypes.CDLL(None, use_errno=True); r=l.ptrace(0,0,0,0); print("ptrace", r, os.strerror(ctypes.get_errno()))'`,
          `python3 -c 'import ctypes,os; l=ctypes.CDLL(None, use_errno=True); r=l.mount(b"none", b"/tmp", b"tmpfs", 0, None); print("mount", r, os.strerror(ctypes.get_errno()))'`,
          "sh -c 'echo child-ok'"
        ].join("\n")
      )
    )
    expect(r.stdout).toContain("Seccomp:\t2")
    expect(r.stdout).toContain("unshare-denied")
    expect(r.stdout).toContain("unshare-net-denied")
    expect(r.stdout).toContain("ptrace -1 Operation not permitted")
    expect(r.stdout).toContain("mount -1 Operation not permitted")
    expect(r.stdout).toContain("child-ok")
  })

  it("the CPU-time limit holds", async () => {
    const r = await collect(
      svc.runPolicy(["/bin/sh", "-c", "python3 -c 'while True: pass'; echo status=$?"], {
        network: { _tag: "none" },
        workingDir: work,
        resources: { cpuSeconds: 1, timeoutMs: 30_000 }
      })
    )
    // RLIMIT_CPU ends the busy process (SIGXCPU, or SIGKILL at the hard limit) long before the wall timeout.
    expect(["status=152\n", "status=137\n"]).toContain(r.stdout)
    expect(r.exited.reason).toBe("exited")
  })

  it("secrets reach the sandbox's environment, not its argv", async () => {
    const token = `tok-${randomUUID()}`
    const r = await run(
      sh('echo "len=$(printf %s "$API_TOKEN" | wc -c)"; cat /proc/1/cmdline /proc/self/cmdline | tr "\\0" " "', {
        secrets: { API_TOKEN: Redacted.make(token) }
      })
    )
    expect(r.stdout).toContain(`len=${token.length}`)
    expect(r.stdout).not.toContain(token)
  })

  it("the pids limit holds", async () => {
    const r = await run(
      sh("for i in $(seq 1 40); do sleep 2 & done; wait; echo done", {
        resources: { pids: 12 },
        timeoutMs: 20_000
      })
    )
    expect(r.stderr).toMatch(/fork|Resource temporarily unavailable/i)
  })

  it("the memory limit holds and an OOM kill is reported as such", async () => {
    const r = await run(
      sh(`python3 -c 'x = bytearray(400 * 1024 * 1024); print("allocated")'`, {
        resources: { memoryBytes: 64 * 1024 * 1024 },
        timeoutMs: 30_000
      })
    )
    expect(r.stdout).not.toContain("allocated")
    expect(r.exited.reason).toBe("oom")
  })

  it("a job within its limits is unaffected by them", async () => {
    const r = await run(sh("echo fine", { resources: { memoryBytes: 128 * 1024 * 1024, pids: 32 } }))
    expect(r.exited).toMatchObject({ code: 0, reason: "exited" })
    expect(r.stdout).toBe("fine\n")
  })

  it("timeout kills the sandbox and leaves no process behind", async () => {
    const marker = `${100000 + Math.floor(Math.random() * 800000)}`
    const r = await run(sh(`sleep ${marker} & sleep ${marker}`, { timeoutMs: 500 }))
    expect(r.exited.reason).toBe("timeout")
    expect(processesWith(`sleep ${marker}`)).toEqual([])
  })

  it("interrupting the stream leaves no process behind", async () => {
    const marker = `${100000 + Math.floor(Math.random() * 800000)}`
    const events = await Effect.runPromise(
      svc.run(sh(`echo up; sleep ${marker} & sleep ${marker}`)).pipe(
        Stream.takeUntil((e) => e._tag === "output"),
        Stream.runCollect
      )
    )
    expect(events.some((e) => e._tag === "output")).toBe(true)
    expect(processesWith(`sleep ${marker}`)).toEqual([])
  })

  it("refuses what it cannot enforce instead of ignoring it", async () => {
    for (const spec of [
      sh("true", { network: { _tag: "host" } }),
      sh("true", { mounts: [{ source: "/srv", target: "/srv" }] }),
      sh("true", { tty: true }),
      sh("true", { image: "debian" })
    ]) {
      const exit = await Effect.runPromiseExit(Stream.runCollect(svc.run(spec)))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(String(Exit.isFailure(exit) ? exit.cause : "")).toContain("UnsupportedSpec")
    }
  })

  it("extra read-only paths are visible and not writable", async () => {
    const ro = mkdtempSync(join(tmpdir(), "runlane-ro-"))
    writeFileSync(join(ro, "data.txt"), "readable")
    try {
      const r = await run(
        sh(`cat ${ro}/data.txt; echo; echo x > ${ro}/new 2>/dev/null || echo ro-denied`, {
          mounts: [{ source: ro, target: ro, readOnly: true }]
        })
      )
      expect(r.stdout).toBe("readable\nro-denied\n")
    } finally {
      rmSync(ro, { recursive: true, force: true })
    }
  })
})
