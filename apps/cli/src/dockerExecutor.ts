import { hostname } from "node:os"
import type { ExecSpec } from "@runlane/core"
import { DockerExecutor } from "@runlane/exec-docker"
import { Option } from "effect"
import { UsageError } from "./ExitCode.ts"
import type { ExecutorChoice } from "./executors.ts"
import type { RunOptions } from "./RunOptions.ts"

/**
 * `runlane run --executor docker --image IMAGE [--network none|host] [--memory 512m] [--cpus 1]
 * -- <command>`: the command runs in a hardened container (see @runlane/exec-docker) with the
 * current directory mounted at /job as its working directory. The engine comes from DOCKER_HOST
 * or the default socket.
 */
export const dockerExecutor = (options: RunOptions): ExecutorChoice => {
  for (const [flag, given] of [
    ["--namespace", Option.isSome(options.namespace)],
    ["--sandbox-backend", Option.isSome(options.sandboxBackend)],
    ["--mcp-url", Option.isSome(options.mcpUrl)],
    ["--agent", Option.isSome(options.agent)],
    ["--prompt", Option.isSome(options.prompt)]
  ] as const) {
    if (given) throw new UsageError(`${flag} is not supported by --executor docker`)
  }
  if (Option.isNone(options.image)) throw new UsageError("--executor docker needs --image IMAGE")
  const image = options.image.value
  const network = Option.getOrElse(options.network, () => "none")
  if (network !== "none" && network !== "host")
    throw new UsageError(`--network ${network} is not supported by --executor docker (none or host)`)
  const { memoryBytes, cpus } = options
  if (cpus !== undefined && !(cpus > 0)) throw new UsageError("--cpus must be greater than 0")

  const layer = DockerExecutor.layer({ runnerId: `cli-${hostname()}-${process.pid}` })
  const refine = (spec: ExecSpec): ExecSpec => ({
    ...spec,
    image,
    network: network === "host" ? { _tag: "host" } : { _tag: "none" },
    resources: {
      ...spec.resources,
      ...(memoryBytes === undefined ? {} : { memoryBytes }),
      ...(cpus === undefined ? {} : { cpus })
    }
  })
  return { layer, refine }
}
