import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Cause, Effect } from "effect"
import { CliError, Command } from "effect/cli"
import { automnRunnerCommand } from "./commands/automnRunner.ts"
import { pgQueueCommand } from "./commands/pgQueue.ts"
import { redisQueueCommands } from "./commands/redisQueue.ts"
import { runCommand } from "./commands/run.ts"
import { ExitCode, UsageError } from "./ExitCode.ts"

/** Subcommands of `runlane`; adapter packages add theirs here. */
export const subcommands = [runCommand, pgQueueCommand, automnRunnerCommand, ...redisQueueCommands] as const

export const runlane = Command.make("runlane").pipe(
  Command.withDescription("runlane: run jobs from queues, locally, in containers or sandboxes"),
  Command.withSubcommands([...subcommands])
)

const VERSION = "0.1.0"

/**
 * Runs the CLI on `args` (without node and script). Usage errors print `runlane: <message>`
 * and end with exit code 2; a job's own exit code ends the process otherwise.
 */
export const main = (args: ReadonlyArray<string>) =>
  Command.runWith(runlane, { version: VERSION })(args).pipe(
    Effect.catchCause((cause) => {
      const squashed = Cause.squash(cause)
      if (squashed instanceof ExitCode) return Effect.fail(squashed)
      if (squashed instanceof UsageError) {
        return Effect.sync(() => process.stderr.write(`runlane: ${squashed.message}\n`)).pipe(
          Effect.andThen(Effect.fail(new ExitCode(2)))
        )
      }
      if (Cause.hasInterruptsOnly(cause)) return Effect.failCause(cause)
      if (CliError.isCliError(squashed)) {
        // The parser has printed its message and the usage; --help and --version end with 0.
        return squashed._tag === "ShowHelp" && squashed.errors.length === 0 ? Effect.void : Effect.fail(new ExitCode(2))
      }
      return Effect.sync(() =>
        process.stderr.write(`runlane: ${squashed instanceof Error ? squashed.message : String(squashed)}\n`)
      ).pipe(Effect.andThen(Effect.fail(new ExitCode(1))))
    }),
    Effect.provide(NodeServices.layer)
  )

export const runMain = (args: ReadonlyArray<string>) => NodeRuntime.runMain(main(args))
