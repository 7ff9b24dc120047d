import { MemoryEventLog } from "@runlane/core"
import { makeMemoryQueue } from "@runlane/queue-memory"
import {
  JwtKeyError,
  JwtVerifier,
  makeAirunnerServices,
  parsePublicKey,
  ServerStartError,
  startAirunnerServer
} from "@runlane/rpc-connect"
import { Config, Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { CommandFailed } from "../errors.ts"
import { makeLogger } from "../log.ts"
import { VERSION } from "../version.ts"

/** `rpc-server`: the original `airunner-server rpc-server`. */
export const rpcServerCommand = Command.make(
  "rpc-server",
  {
    dev: Flag.Boolean("dev").pipe(Flag.withDescription("Enable dev mode."), Flag.withDefault(false)),
    listen: Flag.String("listen").pipe(Flag.withDescription("Listen address."), Flag.withDefault("localhost:8993")),
    cert: Flag.String("cert").pipe(Flag.withDescription("Path to TLS cert file."), Flag.withDefault("")),
    key: Flag.String("key").pipe(Flag.withDescription("Path to TLS key file."), Flag.withDefault("")),
    hostname: Flag.String("hostname").pipe(
      Flag.withDescription("Hostname for TLS cert."),
      Flag.withDefault("localhost:8993")
    ),
    noAuth: Flag.Boolean("no-auth").pipe(Flag.withDescription("Disable JWT authentication."), Flag.withDefault(false)),
    jwtPublicKey: Flag.String("jwt-public-key").pipe(
      Flag.withDescription("JWT public key (PEM) for verifying tokens ($JWT_PUBLIC_KEY)."),
      Flag.withFallbackConfig(Config.String("JWT_PUBLIC_KEY")),
      Flag.withDefault("")
    )
  },
  (flags) =>
    Effect.gen(function* () {
      const log = makeLogger({ console: flags.dev, level: flags.dev ? "debug" : "info" })
      log("info", "Starting RPC server", { version: VERSION })
      log("info", "Listening for RPC connections", { url: `https://${flags.listen}` })
      const queue = makeMemoryQueue()
      const services = makeAirunnerServices(queue, MemoryEventLog.makeMemoryEventLog())
      let auth: JwtVerifier | undefined
      if (!flags.noAuth) {
        try {
          auth = new JwtVerifier(parsePublicKey(flags.jwtPublicKey))
        } catch (error) {
          services.close()
          const message = error instanceof JwtKeyError ? error.message : String(error)
          return yield* new CommandFailed({ message: `failed to initialize JWT auth: ${message}` })
        }
        log("info", "JWT authentication enabled")
      } else log("warn", "JWT authentication disabled")
      const server = yield* Effect.tryPromise({
        try: () =>
          startAirunnerServer({
            services,
            listen: flags.listen,
            certFile: flags.cert,
            keyFile: flags.key,
            hostname: flags.hostname,
            auth,
            log
          }),
        catch: (error) => {
          services.close()
          return new CommandFailed({ message: error instanceof ServerStartError ? error.message : String(error) })
        }
      })
      log("debug", "server started", { port: server.port })
      // Not graceful, as the original: SIGINT/SIGTERM end the process at once.
      return yield* Effect.never
    })
).pipe(Command.withDescription("Start the RPC server."))
