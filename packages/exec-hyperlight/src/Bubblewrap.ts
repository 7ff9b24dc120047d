import { accessSync, constants } from "node:fs"
import { delimiter, join } from "node:path"
import { ExecError, type ExecEvent, UnsupportedSpec } from "@runlane/core"
import { spawnStream } from "@runlane/exec-process"
import { Effect, Queue, Stream } from "effect"
import { bwrapArgv, SANDBOX_PROXY_PORT } from "./BwrapArgv.ts"
import { createRunCgroup, detectCgroups, type RunCgroup } from "./Cgroup.ts"
import { type EgressProxy, startEgressProxy } from "./EgressProxy.ts"
import { hostPort, parseMcpOrigin } from "./McpOrigin.ts"
import { EXECUTOR_NAME, type SandboxBackend, type SandboxJob, seedEnv } from "./SandboxJob.ts"
import { seccompFilterFile } from "./Seccomp.ts"

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"])

/** Finds an executable on PATH (or checks an absolute path); undefined when missing. */
export const findExecutable = (name: string): string | undefined => {
  const candidates = name.includes("/")
    ? [name]
    : (process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .split(delimiter)
        .map((d) => join(d, name))
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK)
      return c
    } catch {}
  }
  return undefined
}

export interface BubblewrapConfig {
  /** bwrap binary (default: `bwrap` on PATH). */
  readonly bwrap: string
  /** SIGTERM → SIGKILL grace when stopping the sandbox (default 2000 ms). */
  readonly killGraceMs?: number | undefined
}

/**
 * The `bubblewrap` backend: Linux namespaces (user, pid, net, mount, ipc, uts, cgroup), the
 * host's system directories read-only, the working directory as the only writable path, tmpfs
 * `/tmp`, no home, every capability dropped, `no_new_privs`, `--die-with-parent`; memory and
 * pids limits through a per-run cgroup, CPU time through RLIMIT_CPU; network `none` is an empty
 * network namespace; `mcp-only` and allow-lists go through the runner's egress proxy.
 */
export const makeBubblewrap = (config: BubblewrapConfig): SandboxBackend => ({
  name: "bubblewrap",
  run: (job: SandboxJob): Stream.Stream<ExecEvent, ExecError | UnsupportedSpec> => {
    const { policy } = job
    const res = policy.resources ?? {}
    const unsupported = (field: string, message: string) =>
      Stream.fail(new UnsupportedSpec({ executor: EXECUTOR_NAME, field, message }))
    if ((res.memoryBytes !== undefined || res.pids !== undefined) && detectCgroups() === null) {
      return unsupported(
        res.memoryBytes !== undefined ? "resources.memoryBytes" : "resources.pids",
        "bubblewrap backend: no writable cgroup hierarchy (memory + pids) on this machine to enforce the limit"
      )
    }
    const network = policy.network
    const mcp = network._tag === "mcp-only" ? parseMcpOrigin(network.url) : undefined
    if (network._tag === "mcp-only" && mcp === undefined) {
      return unsupported("network.url", `not an http(s) URL: ${network.url}`)
    }
    if (network._tag !== "none" && findExecutable("socat") === undefined) {
      return unsupported("network", "bubblewrap backend: socat is not installed (needed to bridge the egress proxy)")
    }

    return Stream.unwrap(
      Effect.gen(function* () {
        const notes: Array<ExecEvent> = []
        /** Set while the run is live: delivers a note at once instead of buffering it. */
        let live: ((note: ExecEvent) => void) | undefined
        let proxy: EgressProxy | undefined
        const ports: Array<number> = [SANDBOX_PROXY_PORT]
        let mcpUrlInside: string | undefined
        if (network._tag !== "none") {
          const allowed =
            network._tag === "allow" ? [...network.destinations] : mcp !== undefined ? [hostPort(mcp)] : []
          // Direct (origin-form) requests are plain HTTP, so only an http MCP URL gets them.
          const origin =
            mcp !== undefined && mcp.scheme === "http"
              ? { host: mcp.host.replace(/^\[(.*)\]$/, "$1"), port: mcp.port }
              : undefined
          proxy = yield* Effect.acquireRelease(
            Effect.tryPromise({
              try: () =>
                startEgressProxy({
                  allowed,
                  origin,
                  onRefused: (destination, how) => {
                    const note: ExecEvent = {
                      _tag: "note",
                      kind: "network-refused",
                      message: `refused ${how}: ${destination} is not allowed (allowed: ${allowed.join(", ")})`
                    }
                    if (live !== undefined) live(note)
                    else notes.push(note)
                  }
                }),
              catch: (cause) =>
                new ExecError({ executor: EXECUTOR_NAME, message: "cannot start the egress proxy", cause })
            }),
            (p) => Effect.promise(() => p.close())
          )
          if (mcp !== undefined) {
            // A loopback MCP URL works unchanged inside: its port is bridged to the proxy too.
            if (LOOPBACK.has(mcp.host) && mcp.scheme === "http" && mcp.port !== SANDBOX_PROXY_PORT) ports.push(mcp.port)
            mcpUrlInside = network._tag === "mcp-only" ? network.url : undefined
          }
        }
        // Every run gets its own cgroup where the machine offers one (also without limits): at
        // the end, whatever the sandbox left running, in any session or process group, is
        // killed and waited for before the stream completes.
        let cgroup: RunCgroup | undefined
        if (detectCgroups() !== null) {
          cgroup = yield* Effect.acquireRelease(
            Effect.try({
              try: () => createRunCgroup({ memoryBytes: res.memoryBytes, pids: res.pids }),
              catch: (cause) =>
                new ExecError({ executor: EXECUTOR_NAME, message: "cannot create the run's cgroup", cause })
            }),
            // Killing is awaited (nothing outlives the run); removing the emptied cgroup may
            // need a few retries while the kernel releases it, so it finishes in the background.
            (c) => Effect.promise(() => c.killAll().then(() => void c.remove()))
          )
        }
        const seccompFile = yield* Effect.try({
          try: () => seccompFilterFile() ?? undefined,
          catch: (cause) =>
            new ExecError({ executor: EXECUTOR_NAME, message: "cannot write the seccomp filter", cause })
        })
        const proxyUrl = `http://127.0.0.1:${SANDBOX_PROXY_PORT}`
        const env: Record<string, string> = {
          ...policy.env,
          ...seedEnv(policy, mcpUrlInside),
          ...(proxy !== undefined
            ? { http_proxy: proxyUrl, HTTP_PROXY: proxyUrl, https_proxy: proxyUrl, HTTPS_PROXY: proxyUrl }
            : {})
        }
        const argv = bwrapArgv({
          bwrap: config.bwrap,
          argv: job.argv,
          workingDir: policy.workingDir,
          readOnlyPaths: policy.readOnlyPaths,
          proxy: proxy !== undefined ? { socketDir: proxy.socketDir, ports } : undefined,
          launcher:
            cgroup !== undefined || res.cpuSeconds !== undefined
              ? { cgroupProcs: cgroup?.procs ?? [], cpuSeconds: res.cpuSeconds }
              : undefined,
          seccompFile
        })
        const mapExited = (event: ExecEvent): ExecEvent =>
          event._tag === "exited" && event.reason !== "timeout" && cgroup?.oomKilled() === true
            ? { ...event, reason: "oom" }
            : event
        const events = spawnStream(
          {
            argv,
            env,
            secrets: job.secrets,
            cwd: policy.workingDir,
            timeoutMs: res.timeoutMs,
            killGraceMs: config.killGraceMs ?? 2000
          },
          { executor: EXECUTOR_NAME }
        )
        if (proxy === undefined) return Stream.map(events, mapExited)
        // Refusals are emitted as they happen (after `started`, before `exited`), merged with
        // the process's events; output keeps its backpressure through the bounded queue.
        return Stream.callback<ExecEvent, ExecError>(
          (queue) => {
            const flush = () => {
              while (notes.length > 0 && Queue.offerUnsafe(queue, notes[0] as ExecEvent)) notes.shift()
            }
            return events.pipe(
              Stream.runForEach((event) =>
                Effect.gen(function* () {
                  if (event._tag !== "started") flush()
                  if (event._tag === "exited") {
                    live = undefined
                    yield* Queue.offer(queue, mapExited(event))
                    yield* Queue.end(queue)
                    return
                  }
                  yield* Queue.offer(queue, event)
                  if (event._tag === "started") {
                    flush()
                    live = (note) => {
                      notes.push(note)
                      flush()
                    }
                  }
                })
              ),
              Effect.catch((error) => Queue.fail(queue, error)),
              Effect.forkScoped
            )
          },
          { bufferSize: 64, strategy: "suspend" }
        )
      })
    )
  }
})
