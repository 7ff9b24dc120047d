import { NodeServices } from "@effect/platform-node"
import { Cause, Effect, Layer, Option } from "effect"
import { CliConfig, CliError, CliOutput, Command, Flag, GlobalFlag } from "effect/cli"
import { type Config, parseGlobals, UsageError } from "./config.ts"
import { decodeJob, JobDecodeError } from "./job.ts"
import { makeLogger } from "./log.ts"
import { Failure, OriginalQueue, renderFailure } from "./queue.ts"
import { runWorker } from "./worker.ts"

export interface Io {
  readonly stdout: (text: string) => void
  readonly stderr: (text: string) => void
  /** Resolves when a stop is requested (SIGTERM/SIGINT): `run` stops taking and lets the job finish. */
  readonly stop?: Promise<void> | undefined
}

const VERSION = "0.1.0"

const withQueue = <A>(config: Config, f: (queue: OriginalQueue) => Promise<A>) =>
  Effect.tryPromise({
    try: async () => {
      const queue = await OriginalQueue.connect(config.redisUrl, config.queueName)
      try {
        return await f(queue)
      } finally {
        await queue.close()
      }
    },
    catch: (error) =>
      error instanceof Failure ? error : new Failure(error instanceof Error ? error.message : String(error))
  })

/** `--timeout` of stats/peek/recover: accepted, unused (default 5). */
const unusedTimeout = Flag.Int("timeout").pipe(Flag.withDefault(5))

/** The command tree; the global options were parsed before the subcommand. */
export const makeCommand = (config: Config, io: Io) => {
  const logger = makeLogger(config.logLevel, io.stdout)
  const enqueue = Command.make(
    "enqueue",
    {
      jobId: Flag.String("job-id"),
      repoUrl: Flag.String("repo-url"),
      branch: Flag.String("branch"),
      prompt: Flag.String("prompt"),
      mcpConnectionUrl: Flag.String("mcp-connection-url").pipe(Flag.optional)
    },
    (flags) =>
      withQueue(config, async (queue) => {
        logger.log("info", `Enqueueing job: ${flags.jobId}`)
        await queue.enqueue({
          id: flags.jobId,
          repo_url: flags.repoUrl,
          branch: flags.branch,
          prompt: flags.prompt,
          mcp_connection_url: Option.getOrNull(flags.mcpConnectionUrl)
        })
        logger.log("info", `Enqueued job: ${flags.jobId}`)
        io.stdout(`Job enqueued successfully: ${flags.jobId}\n`)
      })
  ).pipe(Command.withDescription("Enqueue a job"))

  const stats = Command.make("stats", { timeout: unusedTimeout }, () =>
    withQueue(config, async (queue) => {
      const s = await queue.stats()
      io.stdout(`Queue Statistics:\n  Pending jobs: ${s.pending}\n  Processing jobs: ${s.processing}\n`)
    })
  ).pipe(Command.withDescription("Show queue statistics"))

  const peek = Command.make("peek", { timeout: unusedTimeout }, () =>
    withQueue(config, async (queue) => {
      const raw = await queue.peek()
      if (raw === null) {
        io.stdout("Queue is empty\n")
        return
      }
      let job: ReturnType<typeof decodeJob>
      try {
        job = decodeJob(raw)
      } catch (error) {
        throw new Failure("Failed to deserialize job", [
          error instanceof JobDecodeError ? error.message : String(error)
        ])
      }
      let text = `Next job in queue:\n  ID: ${job.id}\n  Repository: ${job.repo_url}\n  Branch: ${job.branch}\n  Prompt: ${job.prompt}\n`
      if (job.mcp_connection_url !== null) text += `  MCP URL: ${job.mcp_connection_url}\n`
      io.stdout(text)
    })
  ).pipe(Command.withDescription("Peek at the next job in the queue"))

  const recover = Command.make("recover", { timeout: unusedTimeout }, () =>
    withQueue(config, async (queue) => {
      logger.log("info", "Recovering stalled jobs")
      logger.log("info", "Recovering stalled jobs from processing queue")
      const n = await queue.recover()
      if (n > 0) logger.log("info", `Recovered ${n} stalled jobs`)
      io.stdout(`Recovered ${n} stalled jobs\n`)
    })
  ).pipe(Command.withDescription("Recover stalled jobs from the processing queue"))

  const run = Command.make("run", { timeout: Flag.Int("timeout").pipe(Flag.withDefault(30)) }, (flags) =>
    runWorker(config, flags.timeout, logger, io.stop)
  ).pipe(Command.withDescription("Run the worker"))

  return Command.make("redis-agent-worker").pipe(
    Command.withDescription("Redis Agent Worker on runlane"),
    Command.withSubcommands([run, enqueue, stats, peek, recover])
  )
}

/** Runs the CLI; resolves to the exit code (0, 1 runtime error, 2 usage error). */
export const main = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv, io: Io): Effect.Effect<number> =>
  Effect.suspend(() => {
    let parsed: ReturnType<typeof parseGlobals>
    try {
      parsed = parseGlobals(args, env)
    } catch (error) {
      if (error instanceof UsageError) {
        io.stderr(`error: ${error.message}\n\nFor more information, try '--help'.\n`)
        return Effect.succeed(2)
      }
      throw error
    }
    const rest = parsed.help ? [...parsed.rest, "--help"] : parsed.rest
    if (rest.length === 0) {
      io.stderr("error: 'redis-agent-worker' requires a subcommand but one was not provided\n")
      return Effect.succeed(2)
    }
    return Command.runWith(makeCommand(parsed.config, io), { version: VERSION })(rest).pipe(
      Effect.as(0),
      Effect.catchCause((cause) => {
        const error = Cause.squash(cause)
        if (error instanceof Failure) return Effect.sync(() => io.stderr(renderFailure(error))).pipe(Effect.as(1))
        if (CliError.isCliError(error)) {
          return Effect.succeed(error._tag === "ShowHelp" && error.errors.length === 0 ? 0 : 2)
        }
        const text = `Error: ${error instanceof Error ? error.message : String(error)}\n`
        return Effect.sync(() => io.stderr(text)).pipe(Effect.as(1))
      }),
      Effect.provide(
        Layer.mergeAll(
          NodeServices.layer,
          // Only `--help` is built in (no `--version`, `--log-level`, `--wizard`, `--completions`):
          // the original has no other, and `--log-level` after the subcommand must be a usage error.
          CliConfig.layer({ builtIns: [GlobalFlag.Help] }),
          // Usage errors go to stderr alone, as clap prints them; help to stdout.
          CliOutput.layerPresenter({
            present: (event) =>
              event._tag === "InvalidInvocation"
                ? Effect.sync(() =>
                    io.stderr(
                      `${event.errors.map((e) => `error: ${e.message}`).join("\n")}\n\nFor more information, try '--help'.\n`
                    )
                  )
                : CliOutput.defaultPresenter.present(event)
          })
        )
      )
    )
  })
