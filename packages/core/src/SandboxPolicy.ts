import { Schema } from "effect"

const isHttpUrl = (s: string): boolean => {
  try {
    const u = new URL(s)
    return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== ""
  } catch {
    return false
  }
}

/** An absolute `http:` or `https:` URL with a host (an MCP server's base URL). */
export const HttpUrl = Schema.String.check(
  Schema.makeFilter((s: string) => isHttpUrl(s) || "must be an absolute http(s) URL with a host")
)

/** `host:port` (IPv6 in brackets: `[::1]:8080`), port 1-65535. */
export const HostPort = Schema.String.check(
  Schema.makeFilter((s: string) => {
    const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s)
    const port = m ? Number(m[2]) : 0
    return (m !== null && port >= 1 && port <= 65535) || "must be host:port with a port in 1-65535"
  })
)

/**
 * Where a sandboxed program may connect.
 * - `none`: nowhere (an empty network namespace; the guest's host functions refuse everything).
 * - `mcp-only`: only the MCP server at `url` (scheme, host and port); every other destination is
 *   refused and each refusal is reported as a `note` event.
 * - `allow`: only these `host:port` destinations, refused otherwise as for `mcp-only`.
 */
export const SandboxNetwork = Schema.Union([
  Schema.TaggedStruct("none", {}),
  Schema.TaggedStruct("mcp-only", { url: HttpUrl }),
  Schema.TaggedStruct("allow", { destinations: Schema.Array(HostPort) })
])
export type SandboxNetwork = typeof SandboxNetwork.Type

const Positive = Schema.Int.check(Schema.isGreaterThan(0))

export const SandboxResources = Schema.Struct({
  /** Memory limit of the whole sandbox; exceeding it ends the run with reason `oom`. */
  memoryBytes: Schema.optionalKey(Positive),
  /** Maximum number of processes/threads in the sandbox at once. */
  pids: Schema.optionalKey(Positive),
  /** CPU time limit in seconds (per process, RLIMIT_CPU). */
  cpuSeconds: Schema.optionalKey(Positive),
  /** Wall-clock limit; the run ends with reason `timeout`. */
  timeoutMs: Schema.optionalKey(Positive)
})
export type SandboxResources = typeof SandboxResources.Type

/**
 * What a sandboxed program may see and do. Anything not granted here is invisible: no home
 * directory, no `/root`, no SSH keys, no Docker socket, none of the runner's own environment.
 * An executor that cannot enforce a field refuses the job with a typed error; it never falls
 * back to running unsandboxed.
 */
export const SandboxPolicy = Schema.Struct({
  network: SandboxNetwork,
  /** Absolute host path, mounted read-write at the same path; the only writable place (besides a private /tmp). */
  workingDir: Schema.String.check(Schema.isPattern(/^\//)),
  /** Extra absolute host paths visible read-only at the same path. */
  readOnlyPaths: Schema.optionalKey(Schema.Array(Schema.String.check(Schema.isPattern(/^\//)))),
  /** The program's whole environment (nothing is inherited from the runner). */
  env: Schema.optionalKey(Schema.Record(Schema.String, Schema.String)),
  resources: Schema.optionalKey(SandboxResources)
})
export type SandboxPolicy = typeof SandboxPolicy.Type
