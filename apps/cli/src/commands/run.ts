import { Effect, Option } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { ExitCode } from "../ExitCode.ts"
import { runLocally } from "../localRun.ts"
import { parseBytes, parseDuration, parseKeyValues } from "../parse.ts"
import type { RunOptions } from "../RunOptions.ts"

const optionalString = (name: string, description: string) =>
  Flag.String(name).pipe(Flag.withDescription(description), Flag.optional)

export const runCommand = Command.make(
  "run",
  {
    env: Flag.String("env").pipe(
      Flag.withDescription("KEY=VALUE for the job's environment (repeatable)"),
      Flag.atLeast(0)
    ),
    secret: Flag.String("secret").pipe(
      Flag.withDescription("NAME of an environment variable passed to the job as a masked secret (repeatable)"),
      Flag.atLeast(0)
    ),
    timeout: optionalString("timeout", "kill the job after this long (500ms, 30s, 10m, 1h)"),
    tty: Flag.Boolean("tty").pipe(
      Flag.withDescription("run the command in a pseudo-terminal"),
      Flag.withDefault(false)
    ),
    json: Flag.Boolean("json").pipe(Flag.withDescription("print the job's events as NDJSON"), Flag.withDefault(false)),
    retries: Flag.Int("retries").pipe(Flag.withDescription("retry a failed job this many times"), Flag.withDefault(0)),
    executor: Flag.String("executor").pipe(
      Flag.withDescription("where the command runs: process (default), docker, k8s, hyperlight"),
      Flag.withDefault("process")
    ),
    image: optionalString("image", "container image (docker, k8s)"),
    network: optionalString("network", "network policy: none, host, mcp-only"),
    memory: optionalString("memory", "memory limit, e.g. 512m"),
    cpus: Flag.Finite("cpus").pipe(Flag.withDescription("CPU limit, e.g. 1.5"), Flag.optional),
    namespace: optionalString("namespace", "Kubernetes namespace (k8s)"),
    sandboxBackend: optionalString("sandbox-backend", "auto, hyperlight, bubblewrap or guest (hyperlight)"),
    mcpUrl: optionalString("mcp-url", "the one MCP server a sandboxed agent may reach"),
    agent: optionalString("agent", "agent script for the guest sandbox backend"),
    prompt: optionalString("prompt", "prompt passed to the guest agent"),
    repo: optionalString("repo", "repository (URL or path) to check out and run the command in"),
    ref: optionalString("ref", "branch, tag or commit of --repo"),
    jobRepo: optionalString("job-repo", "trusted job-code repository; the command runs from it"),
    jobRef: optionalString("job-ref", "branch, tag or commit of --job-repo"),
    pushBranch: Flag.Boolean("push-branch").pipe(
      Flag.withDescription("commit the command's changes to a new branch and push it"),
      Flag.withDefault(false)
    ),
    command: Argument.String("command").pipe(Argument.withDescription("-- <command> [args...]"), Argument.variadic())
  },
  (flags) =>
    Effect.gen(function* () {
      const options: RunOptions = {
        command: flags.command,
        env: parseKeyValues("env", flags.env),
        secretNames: flags.secret,
        timeoutMs: Option.isSome(flags.timeout) ? parseDuration(flags.timeout.value) : undefined,
        tty: flags.tty,
        json: flags.json,
        retries: flags.retries,
        executor: flags.executor,
        image: flags.image,
        network: flags.network,
        memoryBytes: Option.isSome(flags.memory) ? parseBytes(flags.memory.value) : undefined,
        cpus: Option.getOrUndefined(flags.cpus),
        namespace: flags.namespace,
        sandboxBackend: flags.sandboxBackend,
        mcpUrl: flags.mcpUrl,
        agent: flags.agent,
        prompt: flags.prompt,
        repo: flags.repo,
        ref: flags.ref,
        jobRepo: flags.jobRepo,
        jobRef: flags.jobRef,
        pushBranch: flags.pushBranch
      }
      const code = yield* runLocally(options)
      if (code !== 0) return yield* Effect.die(new ExitCode(code))
    })
).pipe(Command.withDescription("Run one command as a job, locally, with live masked output"))
