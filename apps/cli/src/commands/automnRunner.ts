import { fromEnv, runService } from "@runlane/app-automn-runner"
import { Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"

/**
 * `runlane automn-runner`: serves the Automn runner (@runlane/app-automn-runner) until
 * interrupted. Configured by the original's environment variables (`AUTOMN_*`); `--port` and
 * `--data-dir` override `AUTOMN_RUNNER_PORT` and `AUTOMN_RUNNER_DATA_DIR`.
 */
export const automnRunnerCommand = Command.make(
  "automn-runner",
  {
    port: Flag.Int("port").pipe(
      Flag.withDescription("listen port (default: $AUTOMN_RUNNER_PORT, $PORT, 3030)"),
      Flag.optional
    ),
    dataDir: Flag.String("data-dir").pipe(
      Flag.withDescription("root of the state, scripts and work folders (default: $AUTOMN_RUNNER_DATA_DIR)"),
      Flag.optional
    )
  },
  (flags) =>
    Effect.suspend(() => {
      const env: Record<string, string | undefined> = { ...process.env }
      if (Option.isSome(flags.port)) env.AUTOMN_RUNNER_PORT = String(flags.port.value)
      if (Option.isSome(flags.dataDir)) env.AUTOMN_RUNNER_DATA_DIR = flags.dataDir.value
      return runService(fromEnv(env), env)
    })
).pipe(Command.withDescription("serve the Automn runner (register with an Automn host, run scripts on POST /api/run)"))
