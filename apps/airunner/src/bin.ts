#!/usr/bin/env node
import { Cause, Effect, Exit } from "effect"
import { ExitCode } from "./errors.ts"
import { main } from "./main.ts"

// A closed stdout (`| head`) ends the program quietly, as SIGPIPE ends the original.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(0)
  throw error
})

// Like the original's main: the process ends when the command returns (open HTTP/2 sessions
// or timers do not keep it alive). SIGINT/SIGTERM keep Node's default (end at once) except
// while `monitor` follows a stream, which handles them itself.
const exit = await Effect.runPromiseExit(main(process.argv.slice(2)))
if (Exit.isSuccess(exit)) process.exit(0)
const error = Cause.squash(exit.cause)
if (!(error instanceof ExitCode)) process.stderr.write(`${Cause.pretty(exit.cause)}\n`)
process.exit(error instanceof ExitCode ? error.code : 1)
