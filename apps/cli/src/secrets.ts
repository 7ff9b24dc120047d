import { Redacted } from "effect"
import { UsageError } from "./ExitCode.ts"

/** Resolves `--secret NAME` flags from the environment. */
export const readSecrets = (names: ReadonlyArray<string>): Record<string, Redacted.Redacted<string>> => {
  const secrets: Record<string, Redacted.Redacted<string>> = {}
  for (const name of names) {
    const value = process.env[name]
    if (value === undefined || value === "")
      throw new UsageError(`--secret ${name}: environment variable ${name} is not set`)
    secrets[name] = Redacted.make(value)
  }
  return secrets
}
