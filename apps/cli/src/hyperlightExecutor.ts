import type { ExecSpec } from "@runlane/core"
import { BUILTIN_AGENT, SandboxExecutor } from "@runlane/exec-hyperlight"
import { Option } from "effect"
import { UsageError } from "./ExitCode.ts"
import type { ExecutorChoice } from "./executors.ts"
import type { RunOptions } from "./RunOptions.ts"

const BACKENDS = ["auto", "hyperlight", "bubblewrap", "guest"] as const

/**
 * `runlane run --executor hyperlight [--sandbox-backend auto|hyperlight|bubblewrap|guest]
 * [--network none|mcp-only] [--mcp-url URL] [--memory 512m] -- <command>`: the command runs in
 * the sandbox with the current directory as its working directory. With `--sandbox-backend
 * guest`, `--agent agent.js --prompt "..."` (no command) calls the guest's `ExecuteAgent`;
 * without `--agent` the built-in agent (the original's guest) runs.
 */
export const hyperlightExecutor = (options: RunOptions): ExecutorChoice => {
  for (const [flag, given] of [
    ["--image", Option.isSome(options.image)],
    ["--namespace", Option.isSome(options.namespace)],
    ["--cpus", options.cpus !== undefined],
    ["--tty", options.tty]
  ] as const) {
    if (given) throw new UsageError(`${flag} is not supported by --executor hyperlight`)
  }
  const backend = Option.getOrElse(options.sandboxBackend, () => "auto")
  if (!(BACKENDS as ReadonlyArray<string>).includes(backend))
    throw new UsageError(`--sandbox-backend must be one of ${BACKENDS.join(", ")} (got "${backend}")`)
  const mcpUrl = Option.getOrUndefined(options.mcpUrl)
  const network = Option.getOrElse(options.network, () => (mcpUrl !== undefined ? "mcp-only" : "none"))
  if (network !== "none" && network !== "mcp-only")
    throw new UsageError(`--network ${network} is not supported by --executor hyperlight (none or mcp-only)`)
  if (network === "mcp-only" && mcpUrl === undefined) throw new UsageError("--network mcp-only needs --mcp-url URL")
  if (network === "none" && mcpUrl !== undefined)
    throw new UsageError("--mcp-url contradicts --network none (use --network mcp-only)")

  let command: ReadonlyArray<string> | undefined
  if (backend === "guest") {
    if (options.command.length > 0)
      throw new UsageError("--sandbox-backend guest runs --agent FILE --prompt TEXT, not a command")
    command = [
      Option.getOrElse(options.agent, () => BUILTIN_AGENT),
      "--prompt",
      Option.getOrElse(options.prompt, () => "")
    ]
  } else if (Option.isSome(options.agent) || Option.isSome(options.prompt)) {
    throw new UsageError("--agent and --prompt need --sandbox-backend guest")
  }

  const layer = SandboxExecutor.layer({
    backend: backend as (typeof BACKENDS)[number],
    network: mcpUrl !== undefined ? { _tag: "mcp-only", url: mcpUrl } : { _tag: "none" }
  })
  const memoryBytes = options.memoryBytes
  const refine = (spec: ExecSpec): ExecSpec =>
    memoryBytes === undefined ? spec : { ...spec, resources: { ...spec.resources, memoryBytes } }
  return command === undefined ? { layer, refine } : { layer, refine, command }
}
