import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/** The wire version (always this, whatever `AUTOMN_RUNNER_VERSION` says). */
export const RUNNER_VERSION = "0.2.16"
export const MINIMUM_HOST_VERSION = "0.2.15"
export const DEFAULT_PORT = 3030
export const DEFAULT_HEARTBEAT_INTERVAL = 60_000
export const MIN_SECRET_LENGTH = 12
export const DEFAULT_ENDPOINT_PATH = "/api/run"

export const EXECUTABLE_KEYS = ["node", "python", "powershell", "shell"] as const
export type ExecutableKey = (typeof EXECUTABLE_KEYS)[number]
export type Executables = Record<ExecutableKey, string | null>

/** The runner's configuration, read from the environment with the original's parse rules. */
export interface RunnerConfig {
  readonly port: number
  readonly hostUrl: string | null
  readonly runnerId: string | null
  /** `AUTOMN_RUNNER_SECRET` as is; set means env-managed. */
  readonly envSecret: string | null
  /** Resolved endpoint URL from env (`""` when none). */
  readonly endpointUrl: string
  readonly statusMessage: string
  readonly maxConcurrency: number | null
  readonly timeoutMs: number | null
  /** ms; negative means no heartbeats. */
  readonly heartbeatInterval: number
  readonly stateFile: string
  readonly scriptsDir: string
  readonly workdirDir: string
  readonly resetToken: string | null
  /** `null` or `<= 0`: unlimited. */
  readonly localMaxConcurrency: number | null
  /** Executables set in env (env-managed keys). */
  readonly envExecutables: Executables
  /** `AUTOMN_RUNNER_NPM_PATH`: npm for node scripts' dependencies. */
  readonly npmPath: string | null
  /** `AUTOMN_RUNNER_VERSION` (UI diagnostics only). */
  readonly displayVersion: string | null
}

type Env = Readonly<Record<string, string | undefined>>

/** `parseInt(v, 10)`; not a number means unset. */
export const parseInteger = (value: string | undefined): number | null => {
  if (value === undefined) return null
  const parsed = Number.parseInt(value, 10)
  return Number.isFinite(parsed) ? parsed : null
}

/** Trimmed; empty means unset. */
export const parseString = (value: string | undefined): string | null => {
  if (value === undefined) return null
  const trimmed = value.trim()
  return trimmed === "" ? null : trimmed
}

/** Trimmed, surrounding double quotes removed; empty means unset. */
export const normalizeExecutable = (value: unknown): string | null => {
  if (typeof value !== "string") return null
  const trimmed = value.trim()
  if (trimmed === "") return null
  return trimmed.replace(/^"(.+)"$/, "$1")
}

/**
 * The endpoint URL the host calls. An explicit URL whose path is empty or `/` gets the endpoint
 * path; a public URL's path is replaced by it. Unparseable values are kept verbatim (explicit) or
 * concatenated (public).
 */
export const resolveEndpointUrl = (input: {
  readonly endpointUrl?: string | undefined
  readonly publicUrl?: string | undefined
  readonly endpointPath?: string | undefined
}): string => {
  const explicit = input.endpointUrl?.trim() ?? ""
  const rawPath = input.endpointPath ?? ""
  const path = rawPath === "" ? "" : rawPath.startsWith("/") ? rawPath : `/${rawPath}`
  if (explicit !== "") {
    try {
      const url = new URL(explicit)
      if (path !== "" && (url.pathname === "" || url.pathname === "/")) url.pathname = path
      return url.toString()
    } catch {
      return explicit
    }
  }
  const base = input.publicUrl?.trim() ?? ""
  if (base === "") return ""
  try {
    const url = new URL(base)
    if (path !== "") url.pathname = path
    return url.toString()
  } catch {
    if (path === "") return base
    const separator = base.endsWith("/") || path.startsWith("/") ? "" : "/"
    return `${base}${separator}${path}`
  }
}

/** The package root (where `data/` lives by default), from src/ or dist/src/. */
const packageRoot = (): string => {
  const here = dirname(fileURLToPath(import.meta.url))
  return here.endsWith(join("dist", "src")) ? join(here, "..", "..") : join(here, "..")
}

export const fromEnv = (env: Env = process.env): RunnerConfig => {
  const dataRoot = parseString(env.AUTOMN_RUNNER_DATA_DIR) ?? join(packageRoot(), "data")
  const stateDir = parseString(env.AUTOMN_RUNNER_STATE_DIR) ?? join(dataRoot, "state")
  const heartbeat = parseInteger(env.AUTOMN_RUNNER_HEARTBEAT_MS)
  const secret = env.AUTOMN_RUNNER_SECRET
  return {
    port: parseInteger(env.AUTOMN_RUNNER_PORT) || parseInteger(env.PORT) || DEFAULT_PORT,
    hostUrl: parseString(env.AUTOMN_HOST_URL) ?? parseString(env.AUTOMN_RUNNER_HOST_URL),
    runnerId: parseString(env.AUTOMN_RUNNER_ID),
    envSecret: secret === undefined || secret === "" ? null : secret,
    endpointUrl: resolveEndpointUrl({
      endpointUrl: env.AUTOMN_RUNNER_ENDPOINT_URL,
      publicUrl: env.AUTOMN_RUNNER_PUBLIC_URL,
      endpointPath: env.AUTOMN_RUNNER_ENDPOINT_PATH || DEFAULT_ENDPOINT_PATH
    }),
    statusMessage: env.AUTOMN_RUNNER_STATUS_MESSAGE || "Runner heartbeat",
    maxConcurrency: parseInteger(env.AUTOMN_RUNNER_MAX_CONCURRENCY),
    timeoutMs: parseInteger(env.AUTOMN_RUNNER_TIMEOUT_MS),
    heartbeatInterval: heartbeat || DEFAULT_HEARTBEAT_INTERVAL,
    stateFile: parseString(env.AUTOMN_RUNNER_STATE_FILE) ?? join(stateDir, "runner-state.json"),
    scriptsDir: parseString(env.AUTOMN_RUNNER_SCRIPTS_DIR) ?? join(dataRoot, "scripts"),
    workdirDir: parseString(env.AUTOMN_RUNNER_WORKDIR) ?? join(dataRoot, "script_workdir"),
    resetToken: parseString(env.AUTOMN_RUNNER_RESET_TOKEN),
    localMaxConcurrency: parseInteger(env.AUTOMN_RUNNER_LOCAL_MAX_CONCURRENCY),
    envExecutables: {
      node: normalizeExecutable(env.AUTOMN_RUNNER_NODE_PATH),
      python: normalizeExecutable(env.AUTOMN_RUNNER_PYTHON_PATH),
      powershell: normalizeExecutable(env.AUTOMN_RUNNER_POWERSHELL_PATH || env.AUTOMN_POWERSHELL_PATH),
      shell: normalizeExecutable(env.AUTOMN_RUNNER_SHELL_PATH || env.AUTOMN_SHELL_PATH)
    },
    npmPath: normalizeExecutable(env.AUTOMN_RUNNER_NPM_PATH),
    displayVersion: env.AUTOMN_RUNNER_VERSION ?? null
  }
}
