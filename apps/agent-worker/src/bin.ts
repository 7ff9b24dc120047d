#!/usr/bin/env node
import { Effect, Exit, Fiber } from "effect"
import { main } from "./main.ts"

/** How long a running job may take to finish after SIGTERM/SIGINT (`SHUTDOWN_GRACE_SECONDS`, default 30). */
const graceSeconds = Number(process.env.SHUTDOWN_GRACE_SECONDS ?? "30")

let requestStop: () => void = () => undefined
const stop = new Promise<void>((resolve) => {
  requestStop = resolve
})
const fiber = Effect.runFork(
  main(process.argv.slice(2), process.env, {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    stop
  })
)
// First SIGTERM/SIGINT: stop taking, let the running job finish within the grace period; then (or at a
// second signal) interrupt: the job's scope returns its instance and the job is NACKed (decision 6).
let signalled = false
const interrupt = () => Effect.runFork(Fiber.interrupt(fiber))
const onSignal = () => {
  if (signalled) {
    interrupt()
    return
  }
  signalled = true
  requestStop()
  setTimeout(interrupt, Math.max(0, Number.isFinite(graceSeconds) ? graceSeconds : 30) * 1000).unref()
}
process.on("SIGTERM", onSignal)
process.on("SIGINT", onSignal)
const exit = await Effect.runPromise(Fiber.await(fiber))
process.exit(Exit.isSuccess(exit) ? exit.value : signalled ? 0 : 1)
