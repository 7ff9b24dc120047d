import { execHandler, MemoryLimiter, Runner } from "@runlane/core"
import { ProcessExecutor } from "@runlane/exec-process"
import { createAirunnerClients, makeWorkerBridge } from "@runlane/rpc-connect"
import { Effect, Layer, Logger } from "effect"
import { Command, Flag } from "effect/cli"
import { UsageError } from "../errors.ts"
import { parseGoDuration } from "../goDuration.ts"
import { makeLogger } from "../log.ts"
import { VERSION } from "../version.ts"
import { debugFlag, serverFlag, tokenFlag } from "./common.ts"

/**
 * `worker`: polls one queue and runs each job through runlane's Runner and process executor
 * (PTY unless the job asks for PIPE), publishing events and completing with the real outcome.
 */
export const workerCommand = Command.make(
  "worker",
  {
    server: serverFlag,
    token: tokenFlag,
    debug: debugFlag,
    queue: Flag.String("queue").pipe(Flag.withDescription("Queue name."), Flag.withDefault("default")),
    clientTimeout: Flag.String("client-timeout").pipe(Flag.withDescription("Client timeout."), Flag.withDefault("5m")),
    visibilityTimeout: Flag.Int("visibility-timeout").pipe(
      Flag.withDescription("Visibility timeout in seconds."),
      Flag.withDefault(300)
    )
  },
  (flags) =>
    Effect.gen(function* () {
      const clientTimeoutMs = parseGoDuration(flags.clientTimeout)
      if (clientTimeoutMs === undefined)
        return yield* new UsageError({ message: `--client-timeout: invalid duration "${flags.clientTimeout}"` })
      if (flags.visibilityTimeout > 2147483647 || flags.visibilityTimeout < -2147483648)
        return yield* new UsageError({ message: "--visibility-timeout: value out of range" })
      const log = makeLogger({ console: true, level: flags.debug ? "debug" : "info" })
      const clients = createAirunnerClients({ baseUrl: flags.server, token: flags.token })
      const bridge = makeWorkerBridge({
        clients,
        queue: flags.queue,
        visibilityTimeoutSeconds: flags.visibilityTimeout,
        clientTimeoutMs,
        debug: flags.debug,
        log
      })
      // The original logs this line (with the version) from its worker too.
      log("info", "Starting RPC server", { version: VERSION })
      log("info", "Worker starting", { queue: flags.queue, server: flags.server })
      const visibilityMs = (flags.visibilityTimeout <= 0 ? 300 : flags.visibilityTimeout) * 1000
      const stderrLogger = Logger.make<unknown, void>((options) => {
        const text = Array.isArray(options.message) ? options.message.join(" ") : String(options.message)
        log(options.logLevel === "Error" ? "error" : options.logLevel === "Warn" ? "warn" : "debug", text)
      })
      yield* Runner.run(
        {
          queue: flags.queue === "" ? "(empty)" : flags.queue,
          concurrency: 1,
          batchSize: 1,
          visibilityMs,
          heartbeatMs: 60_000,
          pollWaitMs: 90_000,
          shutdownGraceMs: 0
        },
        execHandler()
      ).pipe(
        Effect.provide(
          Layer.mergeAll(bridge.layer, MemoryLimiter.layer(), ProcessExecutor.layer(), Logger.layer([stderrLogger]))
        )
      )
    })
).pipe(Command.withDescription("Run a worker that executes jobs."))
