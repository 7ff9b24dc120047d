import { readFile } from "node:fs/promises"
import { resolve } from "node:path"
import { ExecError, type ExecEvent, UnsupportedSpec } from "@runlane/core"
import { Effect, Exit, Stream } from "effect"
import { DEFAULT_AGENT_SOURCE, runGuestAgent } from "./GuestAgent.ts"
import { EXECUTOR_NAME, type SandboxBackend, type SandboxJob } from "./SandboxJob.ts"

/** argv[0] naming the built-in agent (the original's guest) instead of a file. */
export const BUILTIN_AGENT = "builtin:hyperlight-guest"

/**
 * Parses the guest job's argv: `[agentFile, "--prompt", prompt]` (the seed's agent argv with the
 * agent file in place of the binary), or `[agentFile]` with an empty prompt.
 */
const parseArgv = (argv: ReadonlyArray<string>): { agent: string; prompt: string } | string => {
  const [agent, ...rest] = argv
  if (agent === undefined || agent === "") return "argv[0] must name the agent's JavaScript file"
  if (rest.length === 0) return { agent, prompt: "" }
  if (rest.length === 2 && rest[0] === "--prompt") return { agent, prompt: rest[1] as string }
  return 'guest argv must be [agentFile] or [agentFile, "--prompt", prompt]'
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s)

/**
 * The `guest` backend: runs a JavaScript agent in a fresh QuickJS (WebAssembly) guest and calls
 * its `ExecuteAgent(prompt, mcpUrl)`. The result is the run's stdout and exit code 0; a thrown
 * error goes to stderr with exit code 1; a timeout or the memory limit ends it with reason
 * `timeout` / `oom`. Refused host calls are `note` events.
 */
export const makeGuest = (): SandboxBackend => ({
  name: "guest",
  run: (job: SandboxJob): Stream.Stream<ExecEvent, ExecError | UnsupportedSpec> => {
    const { policy } = job
    const parsed = parseArgv(job.argv)
    const unsupported = (field: string, message: string) =>
      Stream.fail(new UnsupportedSpec({ executor: EXECUTOR_NAME, field, message }))
    if (typeof parsed === "string") return unsupported("argv", parsed)
    if (policy.network._tag === "allow")
      return unsupported("network", "guest backend: only none or mcp-only (its host functions reach one MCP server)")
    if (job.secrets !== undefined && Object.keys(job.secrets).length > 0)
      return unsupported("secrets", "guest backend: the guest has no environment")
    const res = policy.resources ?? {}
    const timeouts = [res.timeoutMs, res.cpuSeconds !== undefined ? res.cpuSeconds * 1000 : undefined].filter(
      (n): n is number => n !== undefined
    )
    const started = Stream.unwrap(
      Effect.sync((): Stream.Stream<ExecEvent> => Stream.succeed({ _tag: "started", at: Date.now() }))
    )
    const rest = Stream.unwrap(
      Effect.gen(function* () {
        const source =
          parsed.agent === BUILTIN_AGENT
            ? DEFAULT_AGENT_SOURCE
            : yield* Effect.tryPromise({
                try: () => readFile(resolve(policy.workingDir, parsed.agent), "utf8"),
                catch: (cause) =>
                  new ExecError({ executor: EXECUTOR_NAME, message: `cannot read the agent ${parsed.agent}`, cause })
              })
        const notes: Array<ExecEvent> = []
        const startedAt = performance.now()
        const exit = yield* Effect.exit(
          runGuestAgent({
            source,
            prompt: parsed.prompt,
            mcpUrl: policy.network._tag === "mcp-only" ? policy.network.url : undefined,
            memoryBytes: res.memoryBytes,
            timeoutMs: timeouts.length > 0 ? Math.min(...timeouts) : undefined,
            onNote: (kind, message) => notes.push({ _tag: "note", kind, message })
          })
        )
        const durationMs = Math.round((performance.now() - startedAt) * 1000) / 1000
        const events: Array<ExecEvent> = [...notes]
        if (Exit.isSuccess(exit)) {
          if (exit.value !== "") events.push({ _tag: "output", stream: "stdout", data: text(exit.value) })
          events.push({ _tag: "exited", code: 0, signal: null, durationMs, reason: "exited" })
        } else {
          const reason = exit.cause.reasons[0]
          const failure = reason?._tag === "Fail" ? reason.error : undefined
          events.push({ _tag: "output", stream: "stderr", data: text(`${failure?.message ?? "guest failed"}\n`) })
          const why = failure?.reason
          events.push({
            _tag: "exited",
            code: why === "timeout" || why === "oom" ? null : 1,
            signal: null,
            durationMs,
            reason: why === "timeout" ? "timeout" : why === "oom" ? "oom" : "exited"
          })
        }
        return Stream.fromIterable(events)
      })
    )
    return Stream.concat(started, rest)
  }
})
