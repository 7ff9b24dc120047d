/** The original's global options (`src/main.rs`) plus runlane's optional additions. */
export interface Config {
  readonly redisUrl: string
  readonly queueName: string
  readonly allocatorApiUrl: string
  readonly workDir: string
  readonly logLevel: LogLevel
  readonly hyperlightPath: string
  readonly maxAttempts: number | undefined
  readonly agentSandbox: "auto" | "hyperlight" | "bubblewrap"
  readonly concurrency: number
}

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error"

/** Exit 2 with clap's kind of message on stderr. */
export class UsageError extends Error {
  override readonly name = "UsageError"
}

interface GlobalSpec {
  readonly env: string
  readonly fallback: string | undefined
}

const GLOBALS: Record<string, GlobalSpec> = {
  "redis-url": { env: "REDIS_URL", fallback: "redis://127.0.0.1:6379" },
  "queue-name": { env: "QUEUE_NAME", fallback: "agent_jobs" },
  "allocator-api-url": { env: "ALLOCATOR_API_URL", fallback: "http://localhost:8080" },
  "work-dir": { env: "WORK_DIR", fallback: "/tmp/agent-worker" },
  "log-level": { env: "LOG_LEVEL", fallback: "info" },
  "hyperlight-path": { env: "HYPERLIGHT_PATH", fallback: "/usr/local/bin/hyperlight" },
  "max-attempts": { env: "MAX_ATTEMPTS", fallback: undefined },
  "agent-sandbox": { env: "AGENT_SANDBOX", fallback: "auto" },
  concurrency: { env: "CONCURRENCY", fallback: "1" }
}

export const SUBCOMMANDS = ["run", "enqueue", "stats", "peek", "recover"] as const

const LEVELS: ReadonlyArray<LogLevel> = ["trace", "debug", "info", "warn", "error"]

/** `LOG_LEVEL` as the original reads it: case-insensitive, anything else means `info`. */
export const parseLogLevel = (text: string): LogLevel => {
  const lower = text.toLowerCase() as LogLevel
  return LEVELS.includes(lower) ? lower : "info"
}

const positiveInt = (name: string, text: string): number => {
  if (!/^[0-9]+$/.test(text) || Number(text) < 1) {
    throw new UsageError(`invalid value '${text}' for '--${name} <${name.toUpperCase().replace(/-/g, "_")}>'`)
  }
  return Number(text)
}

/**
 * Splits argv into the global options (they must stand before the subcommand, as in the original,
 * where they are not clap-global) and the subcommand with its own arguments. Precedence: flag,
 * env var, default.
 */
export const parseGlobals = (
  args: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv
): { readonly config: Config; readonly rest: ReadonlyArray<string>; readonly help: boolean } => {
  const given: Record<string, string> = {}
  let index = 0
  let help = false
  while (index < args.length) {
    const arg = args[index]!
    if (!arg.startsWith("-")) break
    if (arg === "--help" || arg === "-h") {
      help = true
      index++
      continue
    }
    const eq = arg.indexOf("=")
    const name = arg.startsWith("--") ? arg.slice(2, eq < 0 ? undefined : eq) : ""
    if (!(name in GLOBALS)) throw new UsageError(`unexpected argument '${arg}' found`)
    let value: string
    if (eq >= 0) value = arg.slice(eq + 1)
    else {
      const next = args[index + 1]
      if (next === undefined) throw new UsageError(`a value is required for '--${name}' but none was supplied`)
      value = next
      index++
    }
    given[name] = value
    index++
  }
  const get = (name: string): string | undefined => {
    const spec = GLOBALS[name]!
    return given[name] ?? env[spec.env] ?? spec.fallback
  }
  const sandbox = get("agent-sandbox")!
  if (sandbox !== "auto" && sandbox !== "hyperlight" && sandbox !== "bubblewrap") {
    throw new UsageError(`invalid value '${sandbox}' for '--agent-sandbox': auto, hyperlight or bubblewrap`)
  }
  const maxAttempts = get("max-attempts")
  const config: Config = {
    redisUrl: get("redis-url")!,
    queueName: get("queue-name")!,
    allocatorApiUrl: get("allocator-api-url")!,
    workDir: get("work-dir")!,
    logLevel: parseLogLevel(get("log-level")!),
    hyperlightPath: get("hyperlight-path")!,
    maxAttempts: maxAttempts === undefined || maxAttempts === "" ? undefined : positiveInt("max-attempts", maxAttempts),
    agentSandbox: sandbox,
    concurrency: positiveInt("concurrency", get("concurrency")!)
  }
  return { config, rest: args.slice(index), help }
}
