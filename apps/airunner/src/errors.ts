import { Code, ConnectError } from "@connectrpc/connect"
import { Runtime, Schema } from "effect"

/** A command failed: printed as `<program>: error: <message>`, exit 1 (as kong's FatalIfErrorf). */
export class CommandFailed extends Schema.TaggedError<CommandFailed>()("CommandFailed", {
  message: Schema.String
}) {}

/** Ends the process with this code, after the command has printed what it had to say. */
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

/** A usage error (kong exits 80). */
export class UsageError extends Schema.TaggedError<UsageError>()("UsageError", {
  message: Schema.String
}) {}

const snake = (name: string) => name.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase()

/** Go connect's `err.Error()`: `<code>: <message>`. */
export const connectErrorText = (error: unknown): string => {
  const e = ConnectError.from(error)
  const code = snake(Code[e.code] ?? "unknown")
  return e.rawMessage === "" ? code : `${code}: ${e.rawMessage}`
}
