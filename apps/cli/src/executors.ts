import type { ExecSpec, Executor } from "@runlane/core"
import { ProcessExecutor } from "@runlane/exec-process"
import { type Layer, Option } from "effect"
import { dockerExecutor } from "./dockerExecutor.ts"
import { UsageError } from "./ExitCode.ts"
import { hyperlightExecutor } from "./hyperlightExecutor.ts"
import type { RunOptions } from "./RunOptions.ts"

/** How `runlane run --executor NAME` gets its executor, and which spec fields it adds. */
export interface ExecutorChoice {
  readonly layer: Layer.Layer<Executor, unknown>
  /** Adds the executor's own fields (image, network, resources, ...) to the spec. */
  readonly refine?: (spec: ExecSpec) => ExecSpec
  /** The command to run when the executor derives it from its own flags (e.g. a guest agent). */
  readonly command?: ReadonlyArray<string>
}

export type ExecutorFactory = (options: RunOptions) => ExecutorChoice

const refuse = (options: RunOptions, executor: string, flags: ReadonlyArray<keyof RunOptions>) => {
  for (const flag of flags) {
    const value = options[flag]
    const given = Option.isOption(value) ? Option.isSome(value) : value !== undefined && value !== false
    if (given)
      throw new UsageError(
        `--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is not supported by --executor ${executor}`
      )
  }
}

/**
 * The executors `runlane run` knows. Each adapter package registers itself here with one entry.
 */
export const executors: Record<string, ExecutorFactory> = {
  process: (options) => {
    refuse(options, "process", ["image", "namespace", "sandboxBackend", "mcpUrl", "memoryBytes", "cpus"])
    if (Option.isSome(options.network) && options.network.value !== "host") {
      throw new UsageError(
        `--network ${options.network.value} is not supported by --executor process (it runs on the host network)`
      )
    }
    return { layer: ProcessExecutor.layer() }
  },
  hyperlight: hyperlightExecutor,
  docker: dockerExecutor
}

export const chooseExecutor = (options: RunOptions): ExecutorChoice => {
  const factory = executors[options.executor]
  if (factory === undefined) {
    throw new UsageError(`unknown executor "${options.executor}" (known: ${Object.keys(executors).join(", ")})`)
  }
  return factory(options)
}
