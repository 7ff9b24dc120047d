import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { dirname } from "node:path"
import {
  EXECUTABLE_KEYS,
  type Executables,
  MIN_SECRET_LENGTH,
  normalizeExecutable,
  type RunnerConfig
} from "./Config.ts"

export type RegistrationStatus = "ok" | "error" | "network-error"

/** `GET /status`'s `runner` object and `/internal/reset`'s registration summary. */
export interface RegistrationSummary {
  readonly runnerId: string | null
  readonly hostUrl: string | null
  readonly endpointUrl: string | null
  readonly secretConfigured: boolean
  readonly secretSource: "env" | "state"
  readonly locked: boolean
  readonly registeredAt: string | null
  readonly lastRegistrationAttempt: string | null
  readonly lastRegistrationError: string | null
  readonly lastRegistrationStatus: RegistrationStatus | null
  readonly lastRegistrationResponse: unknown
}

/** A secret that cannot be stored or cleared (env-managed, too short, missing). */
export class SecretRejected extends Error {
  override readonly name = "SecretRejected"
}

const readJsonObject = (file: string): Record<string, unknown> => {
  try {
    const raw = readFileSync(file, "utf8")
    if (raw === "") return {}
    const parsed: unknown = JSON.parse(raw)
    return parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : {}
  } catch {
    return {}
  }
}

const str = (value: unknown): string | null => (typeof value === "string" && value !== "" ? value : null)

/**
 * The runner's mutable state: the secret, lock and registration record, plus the persisted
 * fallbacks (host URL, runner id, endpoint URL, runtime executables). Persisted in the original's
 * `runner-state.json` format, atomically (temp file + rename) with mode 0600.
 */
export class RunnerState {
  readonly config: RunnerConfig
  readonly secretSource: "env" | "state"
  secret: string | null
  lockedAt: string | null = null
  registeredAt: string | null = null
  lastRegistrationError: string | null = null
  lastRegistrationAttempt: string | null = null
  lastRegistrationStatus: RegistrationStatus | null = null
  lastRegistrationResponse: unknown = null
  hostUrl: string | null
  runnerId: string | null
  endpointUrl: string
  executables: Executables
  /** Called with every secret the runner ever held (for masking). */
  onSecret: (secret: string) => void = () => {}

  constructor(config: RunnerConfig) {
    this.config = config
    this.secretSource = config.envSecret !== null ? "env" : "state"
    this.secret = config.envSecret
    this.hostUrl = config.hostUrl
    this.runnerId = config.runnerId
    this.endpointUrl = config.endpointUrl
    this.executables = { ...config.envExecutables }
  }

  /** Reads the state file (missing or unparseable counts as empty) and restores what it holds. */
  restore(): void {
    const persisted = readJsonObject(this.config.stateFile)
    if (this.secretSource === "state") this.secret = str(persisted.secret)
    const executables = persisted.runtimeExecutables
    if (executables !== null && typeof executables === "object" && !Array.isArray(executables)) {
      for (const key of EXECUTABLE_KEYS) {
        if (this.config.envExecutables[key] !== null) continue
        this.executables[key] = normalizeExecutable((executables as Record<string, unknown>)[key])
      }
    }
    if (this.endpointUrl === "") this.endpointUrl = str(persisted.endpointUrl) ?? ""
    this.hostUrl ??= str(persisted.hostUrl)
    this.runnerId ??= str(persisted.runnerId)
    this.lockedAt = str(persisted.lockedAt)
    this.registeredAt = str(persisted.registeredAt)
    const status = persisted.lastRegistrationStatus
    this.lastRegistrationStatus = status === "ok" || status === "error" || status === "network-error" ? status : null
    this.lastRegistrationResponse = persisted.lastRegistrationResponse ?? null
    this.lastRegistrationError = str(persisted.lastRegistrationError)
    this.lastRegistrationAttempt = str(persisted.lastRegistrationAttempt)
    if (this.secret !== null) this.onSecret(this.secret)
  }

  /** The state file's content, in the original's key order. */
  snapshot(): Record<string, unknown> {
    const common = {
      lockedAt: this.lockedAt,
      registeredAt: this.registeredAt,
      hostUrl: this.hostUrl,
      runnerId: this.runnerId,
      lastRegistrationStatus: this.lastRegistrationStatus,
      lastRegistrationResponse: this.lastRegistrationResponse ?? null,
      lastRegistrationAttempt: this.lastRegistrationAttempt,
      lastRegistrationError: this.lastRegistrationError,
      endpointUrl: this.endpointUrl === "" ? null : this.endpointUrl
    }
    if (this.secretSource === "env") {
      const runtimeExecutables: Record<string, string | null> = {}
      for (const key of EXECUTABLE_KEYS) runtimeExecutables[key] = this.executables[key]
      return { ...common, runtimeExecutables }
    }
    const runtimeExecutables: Record<string, string | null> = {}
    for (const key of EXECUTABLE_KEYS) {
      if (this.config.envExecutables[key] === null) runtimeExecutables[key] = this.executables[key]
    }
    return { secret: this.secret, ...common, runtimeExecutables }
  }

  /** Writes the state file atomically (temp file in the same folder, then rename), mode 0600. */
  persist(): void {
    const file = this.config.stateFile
    try {
      mkdirSync(dirname(file), { recursive: true })
      const tmp = `${file}.${process.pid}.${Date.now()}.tmp`
      writeFileSync(tmp, JSON.stringify(this.snapshot(), null, 2), { mode: 0o600 })
      chmodSync(tmp, 0o600)
      renameSync(tmp, file)
    } catch (error) {
      console.error(`[runner] Failed to persist runner state: ${(error as Error).message}`)
    }
  }

  get locked(): boolean {
    return this.lockedAt !== null
  }

  get secretConfigurable(): boolean {
    return this.secretSource !== "env"
  }

  summary(): RegistrationSummary {
    return {
      runnerId: this.runnerId,
      hostUrl: this.hostUrl,
      endpointUrl: this.endpointUrl === "" ? null : this.endpointUrl,
      secretConfigured: this.secret !== null,
      secretSource: this.secretSource,
      locked: this.locked,
      registeredAt: this.registeredAt,
      lastRegistrationAttempt: this.lastRegistrationAttempt,
      lastRegistrationError: this.lastRegistrationError,
      lastRegistrationStatus: this.lastRegistrationStatus,
      lastRegistrationResponse: this.lastRegistrationResponse ?? null
    }
  }

  private resetRegistration(): void {
    this.lockedAt = null
    this.registeredAt = null
    this.lastRegistrationError = null
    this.lastRegistrationStatus = null
    this.lastRegistrationResponse = null
  }

  /** Stores a UI/reset secret (trimmed, at least 12 characters); throws `SecretRejected`. */
  setSecret(input: unknown): void {
    if (!this.secretConfigurable) {
      throw new SecretRejected("Runner secret is managed via environment variables and cannot be changed")
    }
    const normalized = typeof input === "string" ? input.trim() : ""
    if (normalized === "") throw new SecretRejected("Secret is required")
    if (normalized.length < MIN_SECRET_LENGTH) {
      throw new SecretRejected(`Secret must be at least ${MIN_SECRET_LENGTH} characters`)
    }
    this.onSecret(normalized)
    this.secret = normalized
    this.resetRegistration()
    this.persist()
  }

  clearSecret(): void {
    if (!this.secretConfigurable) {
      throw new SecretRejected("Runner secret is managed via environment variables and cannot be cleared")
    }
    this.secret = null
    this.resetRegistration()
    this.persist()
  }

  executableIsEnvManaged(key: (typeof EXECUTABLE_KEYS)[number]): boolean {
    return this.config.envExecutables[key] !== null
  }

  executablesConfigurable(): boolean {
    return EXECUTABLE_KEYS.some((key) => !this.executableIsEnvManaged(key))
  }

  /** Sets non-env executables; throws `SecretRejected`-like errors for env-managed ones. */
  setExecutables(updates: Readonly<Record<string, unknown>>): void {
    for (const key of EXECUTABLE_KEYS) {
      if (!Object.hasOwn(updates, key)) continue
      if (this.executableIsEnvManaged(key)) {
        if (normalizeExecutable(updates[key]) !== null) {
          const label = key.charAt(0).toUpperCase() + key.slice(1)
          throw new SecretRejected(`${label} executable is managed via environment variables`)
        }
        continue
      }
      this.executables[key] = normalizeExecutable(updates[key])
    }
    this.persist()
  }
}
