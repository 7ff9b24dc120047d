/**
 * The Repobox runner's configuration, read only from the original's environment variables with
 * its defaults and Go's parse rules: an empty value is unset, integers follow `strconv.Atoi`,
 * booleans `strconv.ParseBool`, and a value that does not parse silently gives the default.
 */
import { Schema } from "effect"

export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  message: Schema.String
}) {}

export interface RepoboxConfig {
  readonly redisUrl: string
  /** The raw `ENCRYPTION_KEY` (its form is checked when the decryptor is built, as in the original). */
  readonly encryptionKey: string
  readonly runnerId: string
  readonly maxConcurrentJobs: number
  readonly maxJobsPerUser: number
  /** Seconds. */
  readonly jobTimeout: number
  readonly tempDir: string
  readonly cleanupAfterJob: boolean
  readonly aiEnabled: boolean
  readonly aiCliPath: string
  readonly anthropicApiKey: string
  readonly aiProvider: string
  readonly aiTimeout: number
  readonly aiMaxOutputLines: number
  readonly logLevel: string
  readonly logFormat: string
  readonly gitAuthorName: string
  readonly gitAuthorEmail: string
}

type Env = Readonly<Record<string, string | undefined>>

const INT64_MAX = 9223372036854775807n
const INT64_MIN = -9223372036854775808n

/** Go `strconv.Atoi`: optional sign, decimal digits, 64-bit range; undefined otherwise. */
export const goAtoi = (s: string): number | undefined => {
  if (!/^[+-]?[0-9]+$/.test(s)) return undefined
  const n = BigInt(s)
  if (n > INT64_MAX || n < INT64_MIN) return undefined
  return Number(n)
}

const TRUE = new Set(["1", "t", "T", "TRUE", "true", "True"])
const FALSE = new Set(["0", "f", "F", "FALSE", "false", "False"])

/** Go `strconv.ParseBool`; undefined when it does not parse. */
export const goParseBool = (s: string): boolean | undefined => (TRUE.has(s) ? true : FALSE.has(s) ? false : undefined)

const str = (env: Env, name: string, def: string): string => {
  const v = env[name]
  return v === undefined || v === "" ? def : v
}
const int = (env: Env, name: string, def: number): number => {
  const v = env[name]
  if (v === undefined || v === "") return def
  return goAtoi(v) ?? def
}
const bool = (env: Env, name: string, def: boolean): boolean => {
  const v = env[name]
  if (v === undefined || v === "") return def
  return goParseBool(v) ?? def
}

/** Loads the configuration; fails only when `ENCRYPTION_KEY` is unset or empty (`ENCRYPTION_KEY is required`). */
export const loadConfig = (env: Env = process.env): RepoboxConfig => {
  const encryptionKey = env.ENCRYPTION_KEY ?? ""
  if (encryptionKey === "") throw new ConfigError({ message: "ENCRYPTION_KEY is required" })
  const anthropicApiKey = str(env, "ANTHROPIC_API_KEY", "")
  const maxLines = int(env, "AI_MAX_OUTPUT_LINES", 10000)
  return {
    redisUrl: str(env, "REDIS_URL", "redis://localhost:6379"),
    encryptionKey,
    runnerId: str(env, "RUNNER_ID", "runner-1"),
    maxConcurrentJobs: int(env, "MAX_CONCURRENT_JOBS", 10),
    maxJobsPerUser: int(env, "MAX_JOBS_PER_USER", 3),
    jobTimeout: int(env, "JOB_TIMEOUT", 3600),
    tempDir: str(env, "TEMP_DIR", "/tmp/repobox"),
    cleanupAfterJob: bool(env, "CLEANUP_AFTER_JOB", true),
    // Forced off without an API key.
    aiEnabled: bool(env, "AI_ENABLED", true) && anthropicApiKey !== "",
    aiCliPath: str(env, "AI_CLI_PATH", "claude"),
    anthropicApiKey,
    aiProvider: str(env, "AI_PROVIDER", "claude"),
    aiTimeout: int(env, "AI_TIMEOUT", 1800),
    aiMaxOutputLines: maxLines === 0 ? 10000 : maxLines,
    logLevel: str(env, "LOG_LEVEL", "info"),
    logFormat: str(env, "LOG_FORMAT", "json"),
    gitAuthorName: str(env, "GIT_AUTHOR_NAME", "Repobox Bot"),
    gitAuthorEmail: str(env, "GIT_AUTHOR_EMAIL", "bot@repobox.cloud")
  }
}
