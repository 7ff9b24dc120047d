import { EventLog, JobQueue, MemoryEventLog } from "@runlane/core"
import { makeMemoryQueue } from "@runlane/queue-memory"
import { RedisEventLog, RedisStreamQueue } from "@runlane/queue-redis"
import {
  JwtKeyError,
  JwtVerifier,
  makeAirunnerServices,
  parsePublicKey,
  ServerStartError,
  startAirunnerServer
} from "@runlane/rpc-connect"
import { Config, Context, Effect, Layer } from "effect"
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
    queueBackend: Flag.Literals("queue-backend", ["memory", "redis"]).pipe(
      Flag.withDescription("runlane: where jobs and events live (memory, as the original, or redis)."),
      Flag.withDefault("memory")
    ),
    redisUrl: Flag.String("redis-url").pipe(
      Flag.withDescription("runlane: Redis URL for --queue-backend redis ($REDIS_URL)."),
      Flag.withFallbackConfig(Config.String("REDIS_URL")),
      Flag.withDefault("redis://127.0.0.1:6379")
    ),
    redisPrefix: Flag.String("redis-prefix").pipe(
      Flag.withDescription("runlane: key prefix for --queue-backend redis."),
      Flag.withDefault("airunner:")
    ),
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
      let queue: JobQueue["Service"]
      let eventLog: EventLog["Service"]
      if (flags.queueBackend === "redis") {
        // runlane decision 5: the Redis Streams queue and the Redis event log behind the same API
        // (the job index stays in this process, as the original's store).
        const redis = { url: flags.redisUrl, prefix: flags.redisPrefix }
        const context = yield* Layer.build(Layer.mergeAll(RedisStreamQueue.layer(redis), RedisEventLog.layer(redis)))
        queue = Context.get(context, JobQueue)
        eventLog = Context.get(context, EventLog)
      } else {
        queue = makeMemoryQueue()
        eventLog = MemoryEventLog.makeMemoryEventLog()
      }
      const services = makeAirunnerServices(queue, eventLog)
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
