import { accessSync, constants, existsSync, readFileSync } from "node:fs"
import { type ExecError, type ExecEvent, UnsupportedSpec } from "@runlane/core"
import { spawnStream } from "@runlane/exec-process"
import { Stream } from "effect"
import { EXECUTOR_NAME, type SandboxBackend, type SandboxJob, seedEnv } from "./SandboxJob.ts"

export const DEFAULT_HYPERLIGHT_PATH = "/usr/local/bin/hyperlight"

export interface HyperlightConfig {
  /** The Hyperlight host binary (the seed's `HYPERLIGHT_PATH`). */
  readonly path: string
  /** Device and cpuinfo paths checked for availability (overridable for tests). */
  readonly kvmDevice?: string | undefined
  readonly mshvDevice?: string | undefined
  readonly cpuinfo?: string | undefined
  readonly killGraceMs?: number | undefined
}

/**
 * What this machine lacks to run Hyperlight micro-VMs: the host binary, and either `/dev/kvm`
 * with hardware virtualization (vmx/svm in `/proc/cpuinfo`) or `/dev/mshv`. Empty = available.
 */
export const hyperlightMissing = (config: HyperlightConfig): Array<string> => {
  const missing: Array<string> = []
  try {
    accessSync(config.path, constants.X_OK)
  } catch {
    missing.push(`the Hyperlight host binary at ${config.path} (HYPERLIGHT_PATH)`)
  }
  const kvm = config.kvmDevice ?? "/dev/kvm"
  const mshv = config.mshvDevice ?? "/dev/mshv"
  let flags = ""
  try {
    flags = readFileSync(config.cpuinfo ?? "/proc/cpuinfo", "utf8")
  } catch {}
  const hasVirt = /^flags\s*:.*\b(vmx|svm)\b/m.test(flags)
  const kvmUsable = existsSync(kvm) && hasVirt
  if (!kvmUsable && !existsSync(mshv)) {
    missing.push(
      existsSync(kvm)
        ? `hardware virtualization: ${kvm} exists but the CPU shows no vmx/svm`
        : `${kvm} (with hardware virtualization vmx/svm)`
    )
    missing.push(`${mshv}`)
  }
  return missing
}

/**
 * The `hyperlight` backend: the Hyperlight host binary at `HYPERLIGHT_PATH`, given the job
 * through the seed's contract: argv `[HYPERLIGHT_PATH, ...args]` (no shell), working directory
 * the policy's, environment = the spec's env plus `MCP_CONNECTION_URL`,
 * `HYPERLIGHT_ALLOW_NETWORK` (`mcp_only` | `false`), `HYPERLIGHT_MCP_URL`,
 * `HYPERLIGHT_WORKING_DIR`, `HYPERLIGHT_ALLOW_FILE_WRITE`, `HYPERLIGHT_ALLOW_FILE_READ`.
 * When `argv[0]` is the binary itself it is not repeated. The micro-VM enforces the network
 * and file policy; what the contract cannot express (allow-lists, extra read-only paths,
 * memory/pids/CPU limits) is refused, not ignored. The wall timeout is the runner's.
 */
export const makeHyperlight = (config: HyperlightConfig): SandboxBackend => ({
  name: "hyperlight",
  run: (job: SandboxJob): Stream.Stream<ExecEvent, ExecError | UnsupportedSpec> => {
    const { policy } = job
    const refuse = (field: string, what: string) =>
      Stream.fail(
        new UnsupportedSpec({
          executor: EXECUTOR_NAME,
          field,
          message: `hyperlight backend: the Hyperlight env contract cannot express ${what}`
        })
      )
    if (policy.network._tag === "allow") return refuse("network", "an allow-list (only none or mcp-only)")
    if ((policy.readOnlyPaths ?? []).length > 0) return refuse("readOnlyPaths", "extra read-only paths")
    const res = policy.resources ?? {}
    if (res.memoryBytes !== undefined) return refuse("resources.memoryBytes", "a memory limit")
    if (res.pids !== undefined) return refuse("resources.pids", "a pids limit")
    if (res.cpuSeconds !== undefined) return refuse("resources.cpuSeconds", "a CPU-time limit")
    const args = job.argv[0] === config.path ? job.argv.slice(1) : job.argv
    const mcpUrl = policy.network._tag === "mcp-only" ? policy.network.url : undefined
    return spawnStream(
      {
        argv: [config.path, ...args],
        env: { ...policy.env, ...seedEnv(policy, mcpUrl) },
        secrets: job.secrets,
        cwd: policy.workingDir,
        timeoutMs: res.timeoutMs,
        killGraceMs: config.killGraceMs ?? 2000
      },
      { executor: EXECUTOR_NAME }
    )
  }
})
