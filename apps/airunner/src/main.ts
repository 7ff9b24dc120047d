import { NodeServices } from "@effect/platform-node"
import { Cause, Effect } from "effect"
import { CliError, Command } from "effect/cli"
import { listCommand } from "./commands/list.ts"
import { monitorCommand } from "./commands/monitor.ts"
import { rpcServerCommand } from "./commands/rpcServer.ts"
import { submitCommand } from "./commands/submit.ts"
import { tokenCommand } from "./commands/token.ts"
import { workerCommand } from "./commands/worker.ts"
import { CommandFailed, ExitCode, UsageError } from "./errors.ts"
import { VERSION } from "./version.ts"

/** One entry point for both of the original's binaries (runlane decision 1). */
export const airunner = Command.make("airunner").pipe(
  Command.withDescription(
    "airunner on runlane: rpc-server (airunner-server) and worker|submit|monitor|list|token (airunner-cli)"
  ),
  Command.withSubcommands([rpcServerCommand, workerCommand, submitCommand, monitorCommand, listCommand, tokenCommand])
)

/** The original program a subcommand belongs to (for `<program>: error: <message>`). */
export const programOf = (args: ReadonlyArray<string>): string =>
  args.includes("rpc-server") ? "airunner-server" : "airunner-cli"

const COMMANDS = new Set(["rpc-server", "worker", "submit", "monitor", "list", "token"])
const GLOBAL_BOOLS = new Set(["--dev", "--debug", "--dev=true", "--debug=true", "--dev=false", "--debug=false"])

/**
 * kong's global flags (`--dev` of airunner-server, `--debug` of airunner-cli) may stand before
 * or after the command; effect/cli wants them after it, and only on the commands that use them
 * (`rpc-server` for `--dev`, `worker` for `--debug`; elsewhere they are accepted and ignored).
 */
export const normalizeArgs = (args: ReadonlyArray<string>): Array<string> => {
  const index = args.findIndex((a) => COMMANDS.has(a))
  if (index < 0) return [...args]
  const command = args[index]!
  const globals = args.filter(
    (a, i) => i !== index && GLOBAL_BOOLS.has(a) && (i < index || !args[i - 1]?.startsWith("--"))
  )
  const rest = args.filter((a, i) => i !== index && !globals.includes(a))
  const kept = globals.filter(
    (a) => (command === "rpc-server" && a.startsWith("--dev")) || (command === "worker" && a.startsWith("--debug"))
  )
  return [command, ...kept, ...rest]
}

/** Runs the CLI; failures exit 1 (`<program>: error: …`), usage errors 80, as kong does. */
export const main = (args: ReadonlyArray<string>) => {
  const program = programOf(args)
  if (args.includes("--version")) return Effect.sync(() => void process.stdout.write(`${VERSION}\n`))
  const fail = (message: string, code: number) =>
    Effect.sync(() => process.stderr.write(`${program}: error: ${message}\n`)).pipe(
      Effect.andThen(Effect.fail(new ExitCode(code)))
    )
  return Command.runWith(airunner, { version: VERSION })(normalizeArgs(args)).pipe(
    Effect.scoped,
    Effect.catchCause((cause) => {
      const squashed = Cause.squash(cause)
      if (squashed instanceof ExitCode) return Effect.fail(squashed)
      if (squashed instanceof CommandFailed) return fail(squashed.message, 1)
      if (squashed instanceof UsageError) return fail(squashed.message, 80)
      if (Cause.hasInterruptsOnly(cause)) return Effect.interrupt
      if (CliError.isCliError(squashed)) {
        return squashed._tag === "ShowHelp" && squashed.errors.length === 0
          ? Effect.void
          : Effect.fail(new ExitCode(80))
      }
      return fail(squashed instanceof Error ? squashed.message : String(squashed), 1)
    }),
    Effect.provide(NodeServices.layer)
  )
}
