import { Runtime } from "effect"

/**
 * Ends the CLI with a process exit code, after the command has printed what it had to say
 * (the runtime does not log it again).
 */
export class ExitCode extends Error {
  override readonly [Runtime.errorExitCode]: number
  override readonly [Runtime.errorReported] = false
  readonly code: number
  constructor(code: number) {
    super(`exit ${code}`)
    this.code = code
    this[Runtime.errorExitCode] = code
  }
}

/** A usage error: printed as `runlane: <message>`, exit code 2. */
export class UsageError extends Error {
  override readonly [Runtime.errorExitCode] = 2
  override readonly [Runtime.errorReported] = false
}
