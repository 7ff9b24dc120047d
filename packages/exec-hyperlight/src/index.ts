export {
  DEFAULT_AGENT_SOURCE,
  DEFAULT_GUEST_MEMORY,
  DEFAULT_GUEST_TIMEOUT_MS,
  type GuestAgentOptions,
  runGuestAgent
} from "./GuestAgent.ts"
export { BUILTIN_AGENT } from "./GuestBackend.ts"
export { DEFAULT_HYPERLIGHT_PATH, hyperlightMissing } from "./Hyperlight.ts"
export { GuestFailure, SandboxUnavailable } from "./SandboxErrors.ts"
export * as SandboxExecutor from "./SandboxExecutor.ts"
export { EXECUTOR_NAME, seedEnv } from "./SandboxJob.ts"
