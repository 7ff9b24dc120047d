import { randomUUID } from "node:crypto"
import { readFileSync } from "node:fs"
import { create } from "@bufbuild/protobuf"
import { createAirunnerClients, JobParamsSchema, ProcessType } from "@runlane/rpc-connect"
import { Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import yaml from "js-yaml"
import { CommandFailed, connectErrorText, UsageError } from "../errors.ts"
import { parseGoDuration } from "../goDuration.ts"
import { parseMap, parseSlice, serverFlag, tokenFlag } from "./common.ts"
import { followJob } from "./monitor.ts"

/** The `--config` file (YAML, or JSON when the name ends `.json`). */
export interface JobConfigFile {
  command?: string
  args?: Array<string>
  processType?: string
  timeout?: number
  workingDirectory?: string
  environment?: Record<string, string>
  metadata?: Record<string, string>
  repository?: string
  commit?: string
  branch?: string
  owner?: string
}

export const loadConfigFile = (path: string): JobConfigFile => {
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch (error) {
    throw new CommandFailed({
      message: `failed to load config file: failed to read config file: ${(error as Error).message}`
    })
  }
  const json = path.toLowerCase().endsWith(".json")
  try {
    const parsed = json ? JSON.parse(text) : yaml.load(text)
    return (typeof parsed === "object" && parsed !== null ? parsed : {}) as JobConfigFile
  } catch (error) {
    throw new CommandFailed({
      message: `failed to load config file: failed to parse ${json ? "JSON" : "YAML"} config: ${(error as Error).message}`
    })
  }
}

const str = (v: unknown): string => (typeof v === "string" ? v : "")
const strMap = (v: unknown): Record<string, string> => {
  const out: Record<string, string> = {}
  if (typeof v === "object" && v !== null) for (const [k, val] of Object.entries(v)) out[k] = String(val)
  return out
}

export const submitCommand = Command.make(
  "submit",
  {
    server: serverFlag,
    token: tokenFlag,
    queue: Flag.String("queue").pipe(Flag.withDescription("Queue name."), Flag.withDefault("default")),
    commit: Flag.String("commit").pipe(Flag.withDescription("Git commit."), Flag.withDefault("main")),
    branch: Flag.String("branch").pipe(Flag.withDescription("Git branch."), Flag.withDefault("main")),
    owner: Flag.String("owner").pipe(Flag.withDescription("Job owner."), Flag.withDefault("")),
    env: Flag.String("env").pipe(Flag.withDescription("Environment variables (K=V)."), Flag.atLeast(0)),
    metadata: Flag.String("metadata").pipe(Flag.withDescription("Job metadata (K=V)."), Flag.atLeast(0)),
    monitor: Flag.Boolean("monitor").pipe(
      Flag.withDescription("Monitor job after submission."),
      Flag.withDefault(true)
    ),
    command: Flag.String("command").pipe(Flag.withDescription("Command to execute."), Flag.withDefault("")),
    args: Flag.String("args").pipe(Flag.withDescription("Command arguments (comma separated)."), Flag.atLeast(0)),
    processType: Flag.String("process-type").pipe(
      Flag.withDescription("Process type (pipe or pty)."),
      Flag.withDefault("pty")
    ),
    timeoutSeconds: Flag.Int("timeout-seconds").pipe(
      Flag.withDescription("Job timeout in seconds."),
      Flag.withDefault(300)
    ),
    workingDirectory: Flag.String("working-directory").pipe(
      Flag.withDescription("Working directory."),
      Flag.withDefault("")
    ),
    config: Flag.String("config").pipe(
      Flag.withDescription("Job configuration file (YAML or JSON)."),
      Flag.withDefault("")
    ),
    timeout: Flag.String("timeout").pipe(Flag.withDescription("Timeout for the request."), Flag.withDefault("5m")),
    repository: Argument.String("repository").pipe(Argument.withDescription("Repository URL."))
  },
  (flags) =>
    Effect.gen(function* () {
      const timeoutMs = parseGoDuration(flags.timeout)
      if (timeoutMs === undefined)
        return yield* new UsageError({ message: `--timeout: invalid duration "${flags.timeout}"` })
      const envFlag = parseMap(flags.env)
      if (typeof envFlag === "string") return yield* new UsageError({ message: `--env: ${envFlag}` })
      const metadataFlag = parseMap(flags.metadata)
      if (typeof metadataFlag === "string") return yield* new UsageError({ message: `--metadata: ${metadataFlag}` })
      // As the original: a map stays nil unless the flag or the config file gives entries; only a
      // nil map gets the defaults.
      let environment: Record<string, string> | undefined = flags.env.length > 0 ? envFlag : undefined
      let metadata: Record<string, string> | undefined = flags.metadata.length > 0 ? metadataFlag : undefined
      let { command, processType, workingDirectory, commit, branch, owner } = flags
      let repository = flags.repository
      let args = parseSlice(flags.args)
      let timeoutSeconds = flags.timeoutSeconds
      if (flags.config !== "") {
        const file = yield* Effect.try({
          try: () => loadConfigFile(flags.config),
          catch: (e) => (e instanceof CommandFailed ? e : new CommandFailed({ message: String(e) }))
        })
        if (str(file.command) !== "") command = str(file.command)
        if (Array.isArray(file.args) && file.args.length > 0) args = file.args.map(String)
        if (str(file.processType) !== "") processType = str(file.processType)
        if (typeof file.timeout === "number" && file.timeout > 0) timeoutSeconds = file.timeout
        if (str(file.workingDirectory) !== "") workingDirectory = str(file.workingDirectory)
        const fileEnv = strMap(file.environment)
        if (Object.keys(fileEnv).length > 0) environment = { ...environment, ...fileEnv }
        const fileMetadata = strMap(file.metadata)
        if (Object.keys(fileMetadata).length > 0) metadata = { ...metadata, ...fileMetadata }
        if (str(file.repository) !== "") repository = str(file.repository)
        if (str(file.commit) !== "") commit = str(file.commit)
        if (str(file.branch) !== "") branch = str(file.branch)
        if (str(file.owner) !== "") owner = str(file.owner)
      }
      if (command === "")
        return yield* new CommandFailed({ message: "command is required (use --command flag or --config file)" })
      environment ??= { BUILD_TYPE: "release", NODE_ENV: "production" }
      metadata ??= { submitter: "airunner-agent", priority: "normal" }
      const pt = processType.toLowerCase() === "pipe" ? ProcessType.PIPE : ProcessType.PTY
      const jobParams = create(JobParamsSchema, {
        repository,
        commit,
        branch,
        environment,
        metadata,
        owner: owner === "" ? "airunner-user" : owner,
        command,
        args,
        processType: pt,
        timeoutSeconds: Math.max(0, Math.min(2147483647, timeoutSeconds)),
        workingDirectory
      })
      const clients = yield* Effect.acquireRelease(
        Effect.sync(() => createAirunnerClients({ baseUrl: flags.server, token: flags.token })),
        (c) => Effect.sync(() => c.close())
      )
      yield* Effect.sync(() =>
        process.stdout.write(`Submitting job for repository ${repository} to server ${flags.server}\n`)
      )
      const response = yield* Effect.tryPromise({
        try: () => clients.jobs.enqueueJob({ requestId: randomUUID(), queue: flags.queue, jobParams }, { timeoutMs }),
        catch: (error) =>
          new CommandFailed({ message: `failed to submit job: failed to enqueue job: ${connectErrorText(error)}` })
      })
      yield* Effect.sync(() => process.stdout.write(`Job submitted successfully with ID: ${response.jobId}\n`))
      if (flags.monitor)
        yield* followJob(
          clients,
          { jobId: response.jobId, fromSequence: 0n, fromTimestamp: 0n, eventFilter: [] },
          timeoutMs
        )
    })
).pipe(Command.withDescription("Submit a job."))
