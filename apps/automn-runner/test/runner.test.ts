import { execFileSync } from "node:child_process"
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { alive, FakeHost, logText, postRun, RunnerProcess, resultOf, waitFor } from "./harness.ts"

const has = (command: string, args: string[]) => {
  try {
    execFileSync(command, args, { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}
const hasPwsh = has("pwsh", ["-NoProfile", "-Command", "exit 0"])
if (!hasPwsh)
  console.warn(
    "*** pwsh is not installed (Debian does not package it): testing the missing-interpreter answer instead ***"
  )

const SECRET = "runner-secret-0123456789"
const host = new FakeHost()
const runners: RunnerProcess[] = []
const runner = async (env: Record<string, string>, dataDir?: string) => {
  const r = new RunnerProcess(env, dataDir)
  runners.push(r)
  return r.start()
}

beforeAll(async () => {
  await host.start()
})
afterAll(async () => {
  for (const r of runners) await r.dispose()
  await host.stop()
})

const shell = (code: string, extra: Record<string, unknown> = {}) => ({ script: { language: "shell", code, ...extra } })

describe("registration and heartbeats", () => {
  it("registers at start with the original's body, then heartbeats", async () => {
    host.runners.set("hb-runner", SECRET)
    const r = await runner({
      AUTOMN_HOST_URL: `${host.url}/`,
      AUTOMN_RUNNER_ID: "hb-runner",
      AUTOMN_RUNNER_SECRET: SECRET,
      AUTOMN_RUNNER_PUBLIC_URL: "http://127.0.0.1:3030/ignored",
      AUTOMN_RUNNER_HEARTBEAT_MS: "150",
      AUTOMN_RUNNER_MAX_CONCURRENCY: "3",
      AUTOMN_RUNNER_TIMEOUT_MS: "45000",
      AUTOMN_RUNNER_STATUS_MESSAGE: "Edge box"
    })
    await waitFor("two heartbeats", () => host.reasons("hb-runner").filter((x) => x === "heartbeat").length >= 2)
    const reasons = host.reasons("hb-runner")
    expect(reasons[0]).toBe("startup")
    const first = host.registrations.find((x) => x.runnerId === "hb-runner")?.body as Record<string, unknown>
    expect(first).toMatchObject({
      secret: SECRET,
      endpoint: "http://127.0.0.1:3030/api/run",
      statusMessage: "Edge box (startup)",
      maxConcurrency: 3,
      timeoutMs: 45000,
      version: "0.2.16",
      minimumHostVersion: "0.2.15",
      os: process.platform,
      platform: process.arch
    })
    expect(Number.isInteger(first.uptime)).toBe(true)
    expect((first.runtimes as Record<string, string>).node).toBe(process.version.slice(1))
    const beats = host.registrations.filter(
      (x) => x.runnerId === "hb-runner" && x.body.statusMessage === "Edge box (heartbeat)"
    )
    expect(beats.length).toBeGreaterThanOrEqual(2)
    const status = await r.status()
    expect(status.runner).toMatchObject({
      runnerId: "hb-runner",
      secretConfigured: true,
      secretSource: "env",
      locked: true,
      lastRegistrationStatus: "ok",
      lastRegistrationError: null
    })
    expect(status.config).toMatchObject({ heartbeatInterval: 150, secretManagedByEnv: true })
    // env secret: never written to the state file
    expect(r.readState()).not.toHaveProperty("secret")
    expect(JSON.stringify(r.readState())).not.toContain(SECRET)
  })

  it("records a refused registration with the host's error (404 hint)", async () => {
    const r = await runner({
      AUTOMN_HOST_URL: host.url,
      AUTOMN_RUNNER_ID: "unknown-runner",
      AUTOMN_RUNNER_SECRET: SECRET,
      AUTOMN_RUNNER_ENDPOINT_URL: "http://127.0.0.1:9/",
      AUTOMN_RUNNER_HEARTBEAT_MS: "-1"
    })
    const status = await waitFor("a recorded failure", async () => {
      const s = await r.status()
      return s.runner.lastRegistrationStatus === "error" ? s : undefined
    })
    expect(status.runner.lastRegistrationError).toBe(
      `Runner host not found. Ensure a runner with id "unknown-runner" exists on ${host.url} (Settings → Runners) and that the configured secret matches.`
    )
    expect(status.runner.locked).toBe(false)
    expect(host.registrations.filter((x) => x.runnerId === "unknown-runner")[0]?.body.endpoint).toBe(
      "http://127.0.0.1:9/api/run"
    )
  })
})

describe("POST /api/run error codes, in the contract's order", () => {
  it("bad JSON 400 first, then 503 without a secret", async () => {
    const r = await runner({ AUTOMN_RUNNER_HEARTBEAT_MS: "-1" })
    const bad = await postRun(r.url, undefined, undefined, { raw: "{not json" })
    expect(bad.status).toBe(400)
    expect(JSON.parse(bad.text)).toHaveProperty("error")
    const none = await postRun(r.url, SECRET, shell("echo hi"))
    expect(none.status).toBe(503)
    expect(JSON.parse(none.text)).toEqual({ error: "Runner secret not configured" })
    expect(none.headers.get("content-type")).toBe("application/json; charset=utf-8")
    const reset = await fetch(`${r.url}/internal/reset`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}"
    })
    expect(reset.status).toBe(404)
    expect(await reset.json()).toEqual({ error: "Reset endpoint disabled" })
    const form = (body: string) =>
      fetch(`${r.url}/ui/register`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body
      })
    const missing = await form("")
    expect(missing.status).toBe(400)
    expect(missing.headers.get("content-type")).toBe("text/html; charset=utf-8")
    expect(await missing.text()).toContain("Secret is required")
    const short = await form("secret=%20%20short-one%20%20")
    expect(short.status).toBe(400)
    expect(await short.text()).toContain("Secret must be at least 12 characters")
    // no host configured: stored, but registration reports the missing configuration
    const stored = await form("secret=long-enough-secret-1")
    expect(stored.status).toBe(200)
    expect(await stored.text()).toContain("Runner is missing configuration.")
    expect((await postRun(r.url, "long-enough-secret-1", shell("true"))).status).toBe(200)
    // not locked: runtime executables can be set and persist (non-env keys only)
    const exe = await fetch(`${r.url}/ui/runtime-executables`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "node=&python=%22python3%22&powershell="
    })
    expect(exe.status).toBe(200)
    expect(await exe.text()).toContain("Runtime executables updated.")
    expect(r.readState().runtimeExecutables).toEqual({ node: null, python: "python3", powershell: null, shell: null })
    const py = await postRun(r.url, "long-enough-secret-1", { script: { language: "python", code: "print(6 * 7)" } })
    expect(resultOf(py.frames).stdout).toBe("42")
    const unknown = await fetch(`${r.url}/nope`)
    expect(unknown.status).toBe(404)
    expect(await unknown.text()).toContain("Cannot GET /nope")
  })

  it("401 wrong secret, 429 at capacity, 400 bad body", async () => {
    const r = await runner({
      AUTOMN_RUNNER_SECRET: SECRET,
      AUTOMN_RUNNER_LOCAL_MAX_CONCURRENCY: "1",
      AUTOMN_RUNNER_HEARTBEAT_MS: "-1"
    })
    for (const secret of [undefined, "wrong-secret-0000000", `${SECRET}x`]) {
      const res = await postRun(r.url, secret, shell("echo hi"))
      expect(res.status).toBe(401)
      expect(JSON.parse(res.text)).toEqual({ error: "Invalid runner secret" })
    }
    // the header is trimmed, as the original
    expect((await postRun(r.url, ` ${SECRET} `, shell("echo hi"))).status).toBe(200)
    for (const body of [{}, { script: null }, { script: "echo hi" }, { script: 5 }]) {
      const res = await postRun(r.url, SECRET, body)
      expect(res.status).toBe(400)
      expect(JSON.parse(res.text)).toEqual({ error: "Script payload is required" })
    }
    const plain = await postRun(r.url, SECRET, undefined, { contentType: "text/plain", raw: '{"script":{}}' })
    expect(plain.status).toBe(400)
    const form = await postRun(r.url, SECRET, undefined, {
      contentType: "application/x-www-form-urlencoded",
      raw: "script=echo"
    })
    expect(form.status).toBe(400)

    // occupy the only slot
    const controller = new AbortController()
    const long = await fetch(`${r.url}/api/run`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-automn-runner-secret": SECRET },
      body: JSON.stringify(shell("echo started; sleep 2; echo end")),
      signal: controller.signal
    })
    expect(long.status).toBe(200)
    const reader = long.body?.getReader()
    await reader?.read()
    const busy = await postRun(r.url, SECRET, shell("echo hi"))
    expect(busy.status).toBe(429)
    expect(JSON.parse(busy.text)).toEqual({ error: "Runner is at capacity" })
    // capacity comes before the body check, the secret before capacity
    expect((await postRun(r.url, SECRET, { script: "x" })).status).toBe(429)
    expect((await postRun(r.url, "nope-nope-nope", { script: "x" })).status).toBe(401)
    // finish the long run: the slot is freed when the script ends
    let rest = ""
    for (;;) {
      const chunk = await reader?.read()
      if (chunk === undefined || chunk.done) break
      rest += new TextDecoder().decode(chunk.value)
    }
    expect(rest).toContain('"type":"result"')
    await waitFor("the slot to be free", async () =>
      (await postRun(r.url, SECRET, shell("true"))).status === 200 ? true : undefined
    )
  })
})

describe("script runs", () => {
  let r: RunnerProcess
  beforeAll(async () => {
    r = await runner({
      AUTOMN_RUNNER_SECRET: SECRET,
      AUTOMN_RUNNER_RESET_TOKEN: "reset-token-abcdef-123456",
      OTHER_SERVICE_API_TOKEN: "other-token-value-987654",
      AUTOMN_RUNNER_HEARTBEAT_MS: "-1"
    })
  })

  const expectMarkers = (frames: ReturnType<typeof resultOf>, log: string, lines: { hello: string; done: string }) => {
    const data = frames
    expect(data.code).toBe(0)
    expect(data.stdout).toBe(`${lines.hello}\n\n${lines.done}`)
    expect(data.returnData).toEqual({ ok: true, n: 2 })
    expect(data.input).toEqual({ who: "tester" })
    const notifications = data.automnNotifications as Array<Record<string, unknown>>
    expect(notifications).toHaveLength(1)
    expect(notifications[0]).toMatchObject({ order: 0, audience: "ops", message: "heads up", level: "warn" })
    expect(typeof notifications[0]?.timestamp).toBe("string")
    const logs = data.automnLogs as Array<Record<string, unknown>>
    expect(logs).toHaveLength(1)
    expect(logs[0]).toMatchObject({
      message: "step one",
      level: "warn",
      type: "deploy",
      context: { step: 1 },
      order: 0
    })
    // frames carry every output chunk in order, marker lines included
    expect(log.indexOf(lines.hello)).toBeLessThan(log.indexOf("__SCRIPTNOTIFY__"))
    expect(log.indexOf("__SCRIPTNOTIFY__")).toBeLessThan(log.indexOf(lines.done))
    expect(log.indexOf(lines.done)).toBeLessThan(log.indexOf("__SCRIPTLOG__"))
    expect(log.indexOf("__SCRIPTLOG__")).toBeLessThan(log.indexOf("__SCRIPTRETURN__"))
    expect(typeof data.duration).toBe("number")
  }

  it("shell: lines, all three markers, frames in order, result fields", async () => {
    const code = [
      'echo "hello from $AUTOMN_RUN_ID"',
      'AutomnNotify ops "heads up" warn',
      'echo "done $(printf %s "$INPUT_JSON")"',
      'AutomnLog "step one" warn \'{"step":1}\' Deploy',
      'AutomnReturn \'{"ok":true,"n":2}\''
    ].join("\n")
    const res = await postRun(r.url, SECRET, {
      runId: "  sh-run-1  ",
      script: { language: "shell", code },
      reqBody: { who: "tester" }
    })
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toBe("application/jsonl; charset=utf-8")
    expect(res.headers.get("cache-control")).toBe("no-cache, no-transform")
    expect(res.headers.get("x-content-type-options")).toBe("nosniff")
    const data = resultOf(res.frames)
    expect(data.runId).toBe("sh-run-1")
    expectMarkers(data, logText(res.frames), { hello: "hello from sh-run-1", done: 'done {"who":"tester"}' })
  })

  it("node: lines, all three markers, frames in order, result fields", async () => {
    const code = [
      'console.log("hello from " + AutomnRunId)',
      'AutomnNotify("ops", "heads up", "WARN")',
      'console.log("done " + process.env.INPUT_JSON)',
      'AutomnLog("step one", "warning", { step: 1 }, "  Deploy ")',
      "AutomnReturn({ ok: true, n: 2 })"
    ].join("\n")
    const res = await postRun(r.url, SECRET, {
      runId: "node-run-1",
      script: { language: "node", id: 42, code },
      reqBody: { who: "tester" }
    })
    expect(res.status).toBe(200)
    expectMarkers(resultOf(res.frames), logText(res.frames), {
      hello: "hello from node-run-1",
      done: 'done {"who":"tester"}'
    })
  })

  it("python: lines, all three markers, frames in order, result fields", async () => {
    const code = [
      "import os",
      'print("hello from " + AUTOMN_RUN_ID, flush=True)',
      'AutomnNotify("ops", "heads up", "warn")',
      'print("done " + os.environ["INPUT_JSON"], flush=True)',
      'AutomnLog("step one", "WARNING", {"step": 1}, "Deploy")',
      'AutomnReturn({"ok": True, "n": 2})'
    ].join("\n")
    const res = await postRun(r.url, SECRET, {
      runId: "py-run-1",
      script: { language: "python", code },
      reqBody: { who: "tester" }
    })
    expect(res.status).toBe(200)
    expectMarkers(resultOf(res.frames), logText(res.frames), {
      hello: "hello from py-run-1",
      done: 'done {"who": "tester"}'.replace(": ", ":")
    })
  })

  if (hasPwsh) {
    it("powershell: lines, all three markers, frames in order, result fields", async () => {
      const code = [
        'Write-Output "hello from $Global:AutomnRunId"',
        'AutomnNotify -Audience ops -Message "heads up" -Level warn',
        'Write-Output "done $env:INPUT_JSON"',
        'AutomnLog -Message "step one" -Level warn -Context @{ step = 1 } -Type Deploy',
        "AutomnReturn @{ ok = $true; n = 2 }"
      ].join("\n")
      const res = await postRun(r.url, SECRET, {
        runId: "ps-run-1",
        script: { language: "powershell", code },
        reqBody: { who: "tester" }
      })
      expectMarkers(resultOf(res.frames), logText(res.frames), {
        hello: "hello from ps-run-1",
        done: 'done {"who":"tester"}'
      })
    })
  } else {
    // Debian packages no PowerShell and its feed is unreachable here: prove the runner's answer when it is missing.
    it("powershell without an interpreter: the run ends with a result frame naming the failure", async () => {
      const res = await postRun(r.url, SECRET, {
        runId: "ps-missing",
        script: { language: "powershell", code: 'Write-Output "hi"' },
        reqBody: {}
      })
      expect(res.status).toBe(200)
      const result = resultOf(res.frames)
      expect(JSON.stringify(result)).toMatch(/pwsh|powershell|ENOENT/i)
      expect(logText(res.frames)).not.toContain("hi")
    })
  }

  it("headers are flushed before the script starts; output streams as it arrives", async () => {
    const gate = join(r.dataDir, "gate")
    const gate2 = join(r.dataDir, "gate2")
    // the script prints nothing until the test opens the gate: the headers must come first
    const res = await fetch(`${r.url}/api/run`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-automn-runner-secret": SECRET },
      body: JSON.stringify(
        shell(
          `while [ ! -f ${gate} ]; do sleep 0.05; done\necho first\nwhile [ ! -f ${gate2} ]; do sleep 0.05; done\necho second`
        )
      )
    })
    expect(res.status).toBe(200)
    writeFileSync(gate, "")
    const reader = res.body?.getReader()
    let seen = ""
    while (!seen.includes("first")) {
      const chunk = await reader?.read()
      if (chunk === undefined || chunk.done) break
      seen += new TextDecoder().decode(chunk.value)
    }
    // the first frame arrived while the script still runs
    expect(seen).toContain('{"type":"log","line":"first\\n"}')
    expect(seen).not.toContain("second")
    writeFileSync(gate2, "")
    for (;;) {
      const chunk = await reader?.read()
      if (chunk === undefined || chunk.done) break
      seen += new TextDecoder().decode(chunk.value)
    }
    expect(seen).toContain("second")
    expect(seen).toContain('"type":"result"')
  })

  it("node ES module scripts, bodies over 1 MB", async () => {
    const esm = await postRun(r.url, SECRET, {
      script: {
        language: "node",
        id: "esm/script",
        code: 'import os from "node:os"\nconsole.log(typeof os.cpus)\nAutomnReturn(import.meta.url.endsWith(".mjs"))'
      }
    })
    const data = resultOf(esm.frames)
    expect(data.stdout).toBe("function")
    expect(data.returnData).toBe(true)
    expect(readFileSync(join(r.dataDir, "script_workdir", "esm-script", "package.json"), "utf8")).toContain(
      "automn-script-esm-script"
    )
    const big = await postRun(r.url, SECRET, { script: { language: "shell", code: `# ${"x".repeat(1024 * 1024)}` } })
    expect(big.status).toBe(500)
    expect(JSON.parse(big.text)).toEqual({ error: "Runner internal error" })
  })

  it("unsupported language, missing code, bad return JSON, exit codes, generated run id", async () => {
    const unsupported = await postRun(r.url, SECRET, { script: { language: "typescript", code: "1" } })
    const u = resultOf(unsupported.frames)
    expect(unsupported.frames).toHaveLength(1)
    expect(u).toMatchObject({
      stdout: "",
      stderr: "Unsupported language",
      code: 1,
      duration: 0,
      returnData: null,
      input: {}
    })
    expect(u.runId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    const noCode = resultOf((await postRun(r.url, SECRET, { script: { language: "shell" } })).frames)
    expect(noCode.stderr).toBe("Unsupported language")
    const bad = resultOf(
      (await postRun(r.url, SECRET, shell("echo oops >&2\necho '__SCRIPTRETURN__{bad'\nexit 3"))).frames
    )
    expect(bad.code).toBe(3)
    expect(bad.returnData).toBeNull()
    expect(bad.stderr).toMatch(/^oops\n\nBad return JSON: /)
  })

  it("timeout: SIGTERM after script.timeout seconds, 'Timeout exceeded.', code 1", async () => {
    const started = Date.now()
    const res = await postRun(r.url, SECRET, shell("echo begin\nsleep 20\necho never", { timeout: 0.5 }))
    const data = resultOf(res.frames)
    expect(logText(res.frames)).toBe("begin\nTimeout exceeded.\n")
    expect(data.code).toBe(1)
    expect(data.stdout).toBe("begin")
    expect(String(data.stderr).endsWith("\nTimeout exceeded.")).toBe(true)
    expect(data.duration as number).toBeGreaterThanOrEqual(450)
    expect(Date.now() - started).toBeLessThan(15_000)
  })

  it("a script still running 300 ms after its return marker is terminated", async () => {
    const res = await postRun(r.url, SECRET, shell("AutomnReturn '{\"early\":1}'\nsleep 30"))
    const data = resultOf(res.frames)
    expect(data.returnData).toEqual({ early: 1 })
    expect(data.code).toBe(1)
  })

  it("a host disconnect kills the script (and frees its slot)", async () => {
    const pidFile = join(r.dataDir, "disconnect.pid")
    const controller = new AbortController()
    const res = await fetch(`${r.url}/api/run`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-automn-runner-secret": SECRET },
      body: JSON.stringify(shell(`echo $$ > ${pidFile}\necho started\nsleep 30 & wait`)),
      signal: controller.signal
    })
    const reader = res.body?.getReader()
    const first = await reader?.read()
    expect(new TextDecoder().decode(first?.value)).toContain("started")
    const pid = Number(readFileSync(pidFile, "utf8").trim())
    expect(alive(pid)).toBe(true)
    controller.abort()
    await waitFor("the script to be killed", () => (!alive(pid) ? true : undefined), 10_000)
  })

  it("no runner secret, reset token or other secret in a script's environment or output", async () => {
    const code = [
      "env",
      "echo literal: runner-secret-0123456789 other-token-value-987654 reset-token-abcdef-123456",
      'echo "var: $MY_VAR empty:[$EMPTY_VAR]"'
    ].join("\n")
    const res = await postRun(r.url, SECRET, {
      script: {
        language: "shell",
        code,
        variables: [{ envName: "MY_VAR", value: "from-host" }, { envName: "EMPTY_VAR" }]
      },
      runId: "env-run"
    })
    const text = res.text
    for (const value of [SECRET, "reset-token-abcdef-123456", "other-token-value-987654"])
      expect(text).not.toContain(value)
    const data = resultOf(res.frames)
    const stdout = String(data.stdout)
    expect(stdout).not.toMatch(/^AUTOMN_RUNNER_SECRET=/m)
    expect(stdout).not.toMatch(/^AUTOMN_RUNNER_RESET_TOKEN=/m)
    expect(stdout).not.toMatch(/^OTHER_SERVICE_API_TOKEN=/m)
    expect(stdout).toMatch(/^AUTOMN_RUN_ID=env-run$/m)
    expect(stdout).toMatch(/^INPUT_JSON=\{\}$/m)
    expect(stdout).toMatch(/^AUTOMN_INPUT_JSON=\{\}$/m)
    expect(stdout).toMatch(/^AUTOMN_INTERNAL_INPUT_JSON=\{\}$/m)
    expect(stdout).toContain("literal: *** *** ***")
    expect(stdout).toContain("var: from-host empty:[]")
  })
})

describe("shutdown", () => {
  it("SIGTERM ends the service at once, cutting open streams and killing their scripts", async () => {
    const r = await runner({ AUTOMN_RUNNER_SECRET: SECRET, AUTOMN_RUNNER_HEARTBEAT_MS: "-1" })
    const pidFile = join(r.dataDir, "shutdown.pid")
    const res = await fetch(`${r.url}/api/run`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-automn-runner-secret": SECRET },
      body: JSON.stringify(shell(`echo $$ > ${pidFile}\necho started\nsleep 60`))
    })
    const reader = res.body?.getReader()
    await reader?.read()
    const pid = Number(readFileSync(pidFile, "utf8").trim())
    expect(alive(pid)).toBe(true)
    await r.stop()
    await waitFor("the script to be killed", () => (!alive(pid) ? true : undefined), 10_000)
    let rest = ""
    try {
      for (;;) {
        const chunk = await reader?.read()
        if (chunk === undefined || chunk.done) break
        rest += new TextDecoder().decode(chunk.value)
      }
    } catch {
      // the connection was cut
    }
    expect(rest).not.toContain('"type":"result"')
  })
})

describe("secret rotation through /internal/reset", () => {
  it("rotates: the old secret is refused at once, the new one registers and runs", async () => {
    const OLD = "old-secret-aaaaaaaaaa"
    const NEW = "new-secret-bbbbbbbbbb"
    host.runners.set("rot-runner", OLD)
    const r = await runner({
      AUTOMN_HOST_URL: host.url,
      AUTOMN_RUNNER_ID: "rot-runner",
      AUTOMN_RUNNER_ENDPOINT_URL: "http://127.0.0.1:3030",
      AUTOMN_RUNNER_RESET_TOKEN: "reset-token-abcdef-123456",
      AUTOMN_RUNNER_HEARTBEAT_MS: "-1"
    })
    const post = (body: unknown) =>
      fetch(`${r.url}/internal/reset`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body)
      })
    // set the first secret through the reset endpoint
    let res = await post({ token: "reset-token-abcdef-123456", secret: OLD })
    expect(res.status).toBe(200)
    expect((await postRun(r.url, OLD, shell("echo ok"))).status).toBe(200)
    expect(host.reasons("rot-runner")).toEqual(["secret-rotation"])

    // the admin rotates on the host
    host.runners.set("rot-runner", NEW)
    expect((await post({ token: "wrong" })).status).toBe(403)
    expect(await (await post({ secret: NEW })).json()).toEqual({ error: "Invalid reset token" })
    const short = await post({ token: "reset-token-abcdef-123456", secret: "short" })
    expect(short.status).toBe(400)
    expect(await short.json()).toEqual({ error: "Secret must be at least 12 characters" })

    res = await post({ token: " reset-token-abcdef-123456 ", secret: ` ${NEW} ` })
    expect(res.status).toBe(200)
    const body = (await res.json()) as Record<string, unknown>
    expect(body).toMatchObject({ reset: true, secretUpdated: true, registrationResult: { ok: true } })
    expect((body.registration as Record<string, unknown>).locked).toBe(true)
    expect((await postRun(r.url, OLD, shell("echo hi"))).status).toBe(401)
    expect((await postRun(r.url, NEW, shell("echo hi"))).status).toBe(200)
    const last = host.registrations.filter((x) => x.runnerId === "rot-runner").at(-1)
    expect(last?.body.secret).toBe(NEW)
    expect(last?.body.statusMessage).toBe("Runner heartbeat (secret-rotation)")

    // clearing: 503, and the form is back
    res = await post({ token: "reset-token-abcdef-123456" })
    expect(await res.json()).toMatchObject({ reset: true, secretCleared: true, runner: { secretConfigured: false } })
    expect((await postRun(r.url, NEW, shell("echo hi"))).status).toBe(503)
    expect(await (await fetch(r.url)).text()).toContain('action="/ui/register"')
  })

  it("an env secret cannot be rotated", async () => {
    const r = await runner({
      AUTOMN_RUNNER_SECRET: SECRET,
      AUTOMN_RUNNER_RESET_TOKEN: "reset-token-abcdef-123456",
      AUTOMN_RUNNER_HEARTBEAT_MS: "-1"
    })
    const res = await fetch(`${r.url}/internal/reset`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ token: "reset-token-abcdef-123456", secret: "another-secret-xyz" })
    })
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({
      error: "Runner secret is managed via environment variables and cannot be changed"
    })
    const ui = await fetch(`${r.url}/ui/register`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ secret: "another-secret-xyz" })
    })
    expect(ui.status).toBe(403)
    expect(await ui.text()).toContain("Runner secret is managed via environment variables.")
    expect((await postRun(r.url, SECRET, shell("true"))).status).toBe(200)
  })
})

describe("state", () => {
  it("is kept across a restart (atomic, 0600), and a state file in the original's format is read", async () => {
    const S = "stored-secret-cccccccccc"
    host.runners.set("state-runner", S)
    const env = {
      AUTOMN_HOST_URL: host.url,
      AUTOMN_RUNNER_ID: "state-runner",
      AUTOMN_RUNNER_PUBLIC_URL: "http://127.0.0.1:3030",
      AUTOMN_RUNNER_HEARTBEAT_MS: "-1"
    }
    const first = await runner(env)
    const form = await fetch(`${first.url}/ui/register`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: `secret=${encodeURIComponent(S)}`
    })
    expect(form.status).toBe(200)
    expect(await form.text()).toContain("Registration request sent. Awaiting confirmation from host.")
    const before = await first.status()
    expect(before.runner).toMatchObject({ locked: true, secretSource: "state", lastRegistrationStatus: "ok" })
    const lockedExe = await fetch(`${first.url}/ui/runtime-executables`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "python=python3"
    })
    expect(lockedExe.status).toBe(403)
    expect(await lockedExe.text()).toContain("Runner is locked. Executable paths cannot be changed.")
    await first.stop()
    const stat = statSync(first.stateFile)
    expect(stat.mode & 0o777).toBe(0o600)
    const saved = first.readState()
    expect(saved).toMatchObject({ secret: S, runnerId: "state-runner", endpointUrl: "http://127.0.0.1:3030/api/run" })
    expect(Object.keys(saved)).toEqual([
      "secret",
      "lockedAt",
      "registeredAt",
      "hostUrl",
      "runnerId",
      "lastRegistrationStatus",
      "lastRegistrationResponse",
      "lastRegistrationAttempt",
      "lastRegistrationError",
      "endpointUrl",
      "runtimeExecutables"
    ])

    const second = new RunnerProcess(
      { ...env, AUTOMN_HOST_URL: "", AUTOMN_RUNNER_ID: "", AUTOMN_RUNNER_PUBLIC_URL: "" },
      first.dataDir
    )
    runners.push(second)
    await second.start()
    const after = await second.status()
    expect(after.runner).toMatchObject({
      runnerId: "state-runner",
      hostUrl: host.url,
      endpointUrl: "http://127.0.0.1:3030/api/run",
      secretConfigured: true,
      locked: true
    })
    expect(after.runner.registeredAt).not.toBeNull()
    expect((await postRun(second.url, S, shell("echo after restart"))).status).toBe(200)
    await second.stop()

    // a file the original wrote (2-space JSON, written in place)
    const third = new RunnerProcess({ AUTOMN_RUNNER_HEARTBEAT_MS: "-1" })
    runners.push(third)
    mkdirSync(join(third.dataDir, "state"), { recursive: true })
    writeFileSync(
      third.stateFile,
      JSON.stringify(
        {
          secret: "original-secret-dddddddd",
          lockedAt: "2026-01-01T00:00:00.000Z",
          registeredAt: "2026-01-02T00:00:00.000Z",
          hostUrl: "http://automn:8088",
          runnerId: "default",
          lastRegistrationStatus: "ok",
          lastRegistrationResponse: { registered: true },
          lastRegistrationAttempt: "2026-01-02T00:00:00.000Z",
          lastRegistrationError: null,
          endpointUrl: "http://automn_runner:3030/api/run",
          runtimeExecutables: { node: null, python: "python3", powershell: null, shell: null }
        },
        null,
        2
      )
    )
    await third.start()
    expect((await third.status()).runner).toMatchObject({
      runnerId: "default",
      hostUrl: "http://automn:8088",
      endpointUrl: "http://automn_runner:3030/api/run",
      locked: true,
      registeredAt: "2026-01-02T00:00:00.000Z",
      lastRegistrationResponse: { registered: true }
    })
    expect((await postRun(third.url, "original-secret-dddddddd", shell("true"))).status).toBe(200)
    expect(third.readState()).toMatchObject({
      secret: "original-secret-dddddddd",
      runtimeExecutables: { python: "python3" }
    })
  })
})
