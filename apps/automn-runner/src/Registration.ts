import { execFile } from "node:child_process"
import { arch, machine, platform, uptime } from "node:os"
import { MINIMUM_HOST_VERSION, RUNNER_VERSION } from "./Config.ts"
import type { RunnerState } from "./RunnerState.ts"

export type RegistrationReason = "startup" | "heartbeat" | "initial" | "manual" | "secret-rotation" | "scheduled"

export type RegistrationOutcome =
  | { readonly ok: true; readonly response: unknown }
  | { readonly ok: false; readonly error: string; readonly response?: unknown }

export const MISSING_CONFIGURATION =
  "Runner is missing configuration. Ensure host URL, runner id, endpoint URL, and secret are provided."

/** Detected interpreter versions, keys only when detected (`node`, `python`, `powershell`, `shell`). */
export const runtimeVersions: Record<string, string> = {}
{
  const node = process.version.replace(/^v/, "")
  if (node !== "") runtimeVersions.node = node
}

const VERSION_PATTERN = /\b\d+(?:\.\d+){0,3}\b/

const probe = (command: string, args: ReadonlyArray<string>, key: string, valid?: (line: string) => boolean) =>
  new Promise<void>((resolve) => {
    try {
      const child = execFile(command, [...args], { timeout: 3000 }, (error, stdout, stderr) => {
        resolve()
        if (error) return
        const line = (stdout || stderr).toString().trim()
        if (line === "" || (valid !== undefined && !valid(line))) return
        const match = line.match(VERSION_PATTERN)
        if (match !== null) runtimeVersions[key] = match[0].replace(/^v/i, "")
      })
      child.once("error", () => resolve())
    } catch {
      resolve()
    }
  })

/** Probes python, PowerShell and the shell in the background (best effort, as the original). */
export const detectRuntimes = (python: string | null, shell: string | null, pwsh: string | null): Promise<void> =>
  Promise.all([
    python === null ? Promise.resolve() : probe(python, ["--version"], "python", (l) => /\bpython\b/i.test(l)),
    pwsh === null
      ? Promise.resolve()
      : probe(
          pwsh,
          ["-NoLogo", "-NoProfile", "-NonInteractive", "-Command", "$PSVersionTable.PSVersion.ToString()"],
          "powershell"
        ),
    shell === null ? Promise.resolve() : probe(shell, ["--version"], "shell")
  ]).then(() => undefined)

const compareVersions = (a: string, b: string): number => {
  const parts = (v: string) =>
    v
      .replace(/^v/i, "")
      .split(".")
      .map((s) => {
        const n = Number.parseInt(s, 10)
        return Number.isFinite(n) ? n : 0
      })
  const left = parts(a)
  const right = parts(b)
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const l = left[i] ?? 0
    const r = right[i] ?? 0
    if (l !== r) return l > r ? 1 : -1
  }
  return 0
}

/** The metadata every registration carries (`platform` is the CPU arch, as the original). */
export const runnerMetadata = () => ({
  version: RUNNER_VERSION,
  minimumHostVersion: MINIMUM_HOST_VERSION,
  os: platform(),
  platform: arch(),
  arch: machine(),
  uptime: Math.floor(uptime()),
  runtimes: { ...runtimeVersions }
})

/**
 * One registration (or heartbeat) with the host, recording the outcome in the state as the
 * original does. Never throws.
 */
export const performRegistration = async (
  state: RunnerState,
  reason: RegistrationReason
): Promise<RegistrationOutcome> => {
  const secret = state.secret
  const runnerId = state.runnerId
  const hostUrl = state.hostUrl
  const endpoint = state.endpointUrl
  if (secret === null || runnerId === null || hostUrl === null || endpoint === "") {
    return { ok: false, error: MISSING_CONFIGURATION }
  }
  const { config } = state
  const body: Record<string, unknown> = {
    secret,
    endpoint,
    statusMessage: `${config.statusMessage} (${reason})`
  }
  if (config.maxConcurrency !== null) body.maxConcurrency = config.maxConcurrency
  if (config.timeoutMs !== null) body.timeoutMs = config.timeoutMs
  Object.assign(body, runnerMetadata())
  const url = `${hostUrl.replace(/\/$/, "")}/api/settings/runner-hosts/${encodeURIComponent(runnerId)}/register`

  state.lastRegistrationAttempt = new Date().toISOString()
  state.persist()
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(body)
    })
    const text = await response.text()
    let parsed: unknown = null
    try {
      parsed = text === "" ? null : JSON.parse(text)
    } catch {
      parsed = { raw: text }
    }
    const field = (name: string): unknown =>
      parsed !== null && typeof parsed === "object" ? (parsed as Record<string, unknown>)[name] : undefined
    if (!response.ok) {
      const error = field("error")
      const base = error ? String(error) : `${response.status} ${response.statusText}`
      const message =
        response.status === 404
          ? `${base}. Ensure a runner with id "${runnerId}" exists on ${hostUrl} (Settings → Runners) and that the configured secret matches.`
          : base
      state.lastRegistrationError = message
      state.lastRegistrationStatus = "error"
      state.lastRegistrationResponse = parsed ?? { error: message }
      state.persist()
      console.error(`[runner] Registration failed: ${message}`)
      return { ok: false, error: message, response: parsed }
    }
    state.lastRegistrationError = null
    state.lastRegistrationStatus = "ok"
    state.lastRegistrationResponse = parsed
    state.registeredAt = new Date().toISOString()
    state.lockedAt ??= state.registeredAt
    state.persist()
    const hostVersion = field("hostVersion")
    const minimumRunner = field("minimumRunnerVersion")
    if (typeof hostVersion === "string" && compareVersions(hostVersion, MINIMUM_HOST_VERSION) < 0) {
      console.warn(`[runner] Host version ${hostVersion} is below required minimum ${MINIMUM_HOST_VERSION}`)
    }
    if (typeof minimumRunner === "string" && compareVersions(RUNNER_VERSION, minimumRunner) < 0) {
      console.warn(`[runner] Runner version ${RUNNER_VERSION} is below host minimum ${minimumRunner}`)
    }
    if (reason !== "heartbeat") console.log(`[runner] Registration successful (${reason})`)
    return { ok: true, response: parsed }
  } catch (error) {
    const message = (error as Error)?.message || "Registration request failed"
    state.lastRegistrationError = message
    state.lastRegistrationStatus = "network-error"
    state.persist()
    console.error(`[runner] Registration error: ${message}`)
    return { ok: false, error: message }
  }
}
