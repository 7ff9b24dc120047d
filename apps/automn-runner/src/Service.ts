import { mkdirSync } from "node:fs"
import { createServer } from "node:http"
import { dirname, join } from "node:path"
import { NodeHttpServer } from "@effect/platform-node"
import { ProcessExecutor } from "@runlane/exec-process"
import { Effect, Layer, Stream } from "effect"
import { HttpRouter } from "effect/http"
import { fromEnv, type RunnerConfig } from "./Config.ts"
import { isSatisfied, readPackageCache } from "./NodeDependencies.ts"
import { detectRuntimes } from "./Registration.ts"
import { ensureManifest, installDependencies, resolvePowerShell, resolvePython, resolveShell } from "./ScriptRun.ts"
import { RunnerApp, routes } from "./Server.ts"

/** SIGTERM → SIGKILL grace when a script is killed (timeout, disconnect, after its return marker). */
export const KILL_GRACE_MS = 1000

/** The HTTP server on `config.port` with the runner's routes and the process executor. */
export const serverLayer = (app: RunnerApp) =>
  HttpRouter.serve(routes(app), { disableLogger: true, disableListenLog: true }).pipe(
    Layer.provide(NodeHttpServer.layer(createServer, { port: app.config.port, gracefulShutdownTimeout: 0 })),
    Layer.provide(ProcessExecutor.layer({ inheritEnv: false, killGraceMs: KILL_GRACE_MS }))
  )

/**
 * Reinstalls, in the background, the remembered packages of script folders where they no longer
 * resolve (the original's package-cache rehydration at start).
 */
export const rehydratePackageCache = (app: RunnerApp) =>
  Effect.gen(function* () {
    const executor = ProcessExecutor.make({ killGraceMs: KILL_GRACE_MS })
    for (const entry of readPackageCache(app.config.workdirDir)) {
      const folder = join(app.config.workdirDir, entry.directory)
      const missing = entry.packages.filter((name) => !isSatisfied(name, folder))
      if (missing.length === 0) continue
      console.log(`[runner] Reinstalling npm dependencies for ${entry.scriptId}: ${missing.join(", ")}`)
      let failure: string | undefined
      yield* Effect.promise(() => ensureManifest(folder, entry.scriptId))
      yield* Stream.runDrain(
        installDependencies(executor, app.runContext(), missing, folder, (message) => {
          failure = message
        })
      )
      if (failure !== undefined) {
        console.error(`[runner] Failed to reinstall npm dependencies for ${entry.scriptId}: ${failure}`)
      }
    }
  })

/**
 * The whole service: restore state, create folders, serve, register (`startup`), heartbeat.
 * Runs until interrupted; open streams are interrupted (their scripts killed) on shutdown.
 */
export const runService = (
  config: RunnerConfig = fromEnv(),
  env: Readonly<Record<string, string | undefined>> = process.env
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const app = new RunnerApp(config, env)
      const { state } = app
      state.restore()
      for (const dir of [config.scriptsDir, config.workdirDir, dirname(config.stateFile)]) {
        try {
          mkdirSync(dir, { recursive: true })
        } catch (error) {
          console.error(`[runner] Failed to create directory '${dir}': ${(error as Error).message}`)
        }
      }
      state.persist()
      void detectRuntimes(
        resolvePython(state.executables.python),
        resolveShell(state.executables.shell),
        resolvePowerShell(state.executables.powershell)
      )
      yield* Layer.build(serverLayer(app))
      console.log(`[runner] Listening on port ${config.port}`)
      yield* Effect.forkScoped(rehydratePackageCache(app))
      if (state.secret !== null && state.hostUrl !== null && state.runnerId !== null) {
        yield* app.register("startup")
      }
      if (config.heartbeatInterval > 0) {
        yield* Effect.acquireRelease(
          Effect.sync(() =>
            setInterval(() => {
              if (state.secret === null) return
              void Effect.runPromise(app.register("heartbeat"))
            }, config.heartbeatInterval)
          ),
          (timer) => Effect.sync(() => clearInterval(timer))
        )
      }
      return yield* Effect.never
    })
  )
