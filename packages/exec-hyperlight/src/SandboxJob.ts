import type { ExecError, ExecEvent, SandboxPolicy, UnsupportedSpec } from "@runlane/core"
import type { Redacted, Stream } from "effect"

export const EXECUTOR_NAME = "hyperlight"

/** One command with the policy it runs under; what every backend receives. */
export interface SandboxJob {
  readonly argv: ReadonlyArray<string>
  readonly policy: SandboxPolicy
  /** Secret environment variables (unwrapped only at spawn). */
  readonly secrets?: Readonly<Record<string, Redacted.Redacted<string>>> | undefined
}

export type SandboxBackendName = "hyperlight" | "bubblewrap" | "guest"

export interface SandboxBackend {
  readonly name: SandboxBackendName
  readonly run: (job: SandboxJob) => Stream.Stream<ExecEvent, ExecError | UnsupportedSpec>
}

/**
 * The seed's environment contract ("Hyperlight Integration"): what the agent is told about its
 * sandbox. `mcpUrl` is the URL as the agent can use it.
 */
export const seedEnv = (policy: SandboxPolicy, mcpUrl: string | undefined): Record<string, string> => ({
  ...(mcpUrl !== undefined ? { MCP_CONNECTION_URL: mcpUrl, HYPERLIGHT_MCP_URL: mcpUrl } : {}),
  HYPERLIGHT_ALLOW_NETWORK:
    policy.network._tag === "none" ? "false" : policy.network._tag === "mcp-only" ? "mcp_only" : "allow_list",
  HYPERLIGHT_WORKING_DIR: policy.workingDir,
  HYPERLIGHT_ALLOW_FILE_WRITE: "true",
  HYPERLIGHT_ALLOW_FILE_READ: "true"
})
