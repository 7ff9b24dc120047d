#!/usr/bin/env node
import { Effect, Exit, Fiber } from "effect"
import { main } from "./main.ts"

const fiber = Effect.runFork(
  main(process.argv.slice(2), process.env, {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text)
  })
)
// SIGTERM/SIGINT interrupt the program: a running job's scope closes, so its instance is returned
// (decision 6); its entry stays in the processing list for the next recovery.
let signalled = false
const stop = () => {
  signalled = true
  Effect.runFork(Fiber.interrupt(fiber))
}
process.once("SIGTERM", stop)
process.once("SIGINT", stop)
const exit = await Effect.runPromise(Fiber.await(fiber))
process.exit(Exit.isSuccess(exit) ? exit.value : signalled ? 0 : 1)
