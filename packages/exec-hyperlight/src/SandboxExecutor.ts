import { isAbsolute, resolve } from "node:path"
import {
  type ExecError,
  type ExecEvent,
  type ExecSpec,
  Executor,
  type SandboxNetwork,
  SandboxPolicy,
  type SandboxResources,
  UnsupportedSpec
} from "@runlane/core"
import { Effect, Layer, type Redacted, Schema, Stream } from "effect"
import { findExecutable, makeBubblewrap } from "./Bubblewrap.ts"
import { makeGuest } from "./GuestBackend.ts"
import { DEFAULT_HYPERLIGHT_PATH, hyperlightMissing, makeHyperlight } from "./Hyperlight.ts"
import { SandboxUnavailable } from "./SandboxErrors.ts"
import { EXECUTOR_NAME, type SandboxBackend, type SandboxBackendName, type SandboxJob } from "./SandboxJob.ts"

export type SandboxBackendChoice = "auto" | SandboxBackendName

export interface SandboxExecutorConfig {
  /** `auto` (default): `hyperlight` where available, else `bubblewrap`. */
  readonly backend?: SandboxBackendChoice | undefined
  /** Hyperlight host binary; default `HYPERLIGHT_PATH` from the environment, else `/usr/local/bin/hyperlight`. */
  readonly hyperlightPath?: string | undefined
  /** Device/cpuinfo overrides for the Hyperlight availability check (tests). */
  readonly hyperlightDevices?: { readonly kvm?: string; readonly mshv?: string; readonly cpuinfo?: string } | undefined
  /** bwrap binary; default `bwrap` on PATH. */
  readonly bwrapPath?: string | undefined
  /** Network when the spec names none (and the seed's env asks for no MCP): default `none`. */
  readonly network?: SandboxNetwork | undefined
  /** Extra read-only paths for every run. */
  readonly readOnlyPaths?: ReadonlyArray<string> | undefined
  /** Default limits (a spec's own `resources` / `timeoutMs` win). */
  readonly resources?: SandboxResources | undefined
  /** SIGTERM → SIGKILL grace when a sandbox is stopped (default 2000 ms). */
  readonly killGraceMs?: number | undefined
}

const unsupported = (field: string, message: string) => new UnsupportedSpec({ executor: EXECUTOR_NAME, field, message })

const decodePolicy = Schema.decodeUnknownEffect(SandboxPolicy)

/**
 * The `SandboxPolicy` a spec runs under. Honoured: `argv`, `env`, `secrets`, `cwd` (the working
 * directory: default the runner's cwd), read-only `mounts` (same source and target),
 * `resources.memoryBytes`/`pids`, `timeoutMs`, `network` `none` | `allow`. With no `network`
 * in the spec, the seed's env contract decides: `HYPERLIGHT_ALLOW_NETWORK=mcp_only` with
 * `HYPERLIGHT_MCP_URL` (or `MCP_CONNECTION_URL`) means `mcp-only` with that URL; otherwise the
 * executor's configured default (`none`). Refused: `network: host`, writable mounts, `image`,
 * `user`, `tty`, `resources.cpus`.
 */
export const policyFromSpec = (
  spec: ExecSpec,
  config: SandboxExecutorConfig = {}
): Effect.Effect<SandboxPolicy, UnsupportedSpec> =>
  Effect.gen(function* () {
    if (spec.image !== undefined) return yield* unsupported("image", "a sandbox runs host binaries, not images")
    if (spec.user !== undefined) return yield* unsupported("user", "the sandbox user is fixed")
    if (spec.tty === true) return yield* unsupported("tty", "sandboxed runs have no terminal")
    if (spec.resources?.cpus !== undefined)
      return yield* unsupported("resources.cpus", "CPU shares are not enforced; use a CPU-time limit")
    const env = spec.env ?? {}
    let network: SandboxNetwork
    if (spec.network?._tag === "host") return yield* unsupported("network", "host networking would leave the sandbox")
    if (spec.network?._tag === "none") network = { _tag: "none" }
    else if (spec.network?._tag === "allow") network = { _tag: "allow", destinations: spec.network.destinations }
    else if (env.HYPERLIGHT_ALLOW_NETWORK === "mcp_only") {
      const url = env.HYPERLIGHT_MCP_URL ?? env.MCP_CONNECTION_URL
      if (url === undefined)
        return yield* unsupported("env.HYPERLIGHT_MCP_URL", "HYPERLIGHT_ALLOW_NETWORK=mcp_only needs an MCP URL")
      network = { _tag: "mcp-only", url }
    } else network = config.network ?? { _tag: "none" }
    const readOnlyPaths: Array<string> = [...(config.readOnlyPaths ?? [])]
    for (const m of spec.mounts ?? []) {
      if (m.readOnly !== true) return yield* unsupported("mounts", `only read-only mounts; ${m.target} is writable`)
      if (m.source !== m.target) return yield* unsupported("mounts", `a mount appears at its own path (${m.target})`)
      readOnlyPaths.push(m.source)
    }
    const resources: SandboxResources = {
      ...config.resources,
      ...(spec.resources?.memoryBytes !== undefined ? { memoryBytes: spec.resources.memoryBytes } : {}),
      ...(spec.resources?.pids !== undefined ? { pids: spec.resources.pids } : {}),
      ...(spec.timeoutMs !== undefined ? { timeoutMs: spec.timeoutMs } : {})
    }
    const cwd = spec.cwd ?? process.cwd()
    return yield* decodePolicy({
      network,
      workingDir: isAbsolute(cwd) ? cwd : resolve(cwd),
      ...(readOnlyPaths.length > 0 ? { readOnlyPaths } : {}),
      env,
      ...(Object.keys(resources).length > 0 ? { resources } : {})
    }).pipe(Effect.mapError((e) => unsupported("policy", e.message)))
  })

/** The Executor plus the policy-level entry point. */
export interface SandboxExecutorService {
  readonly name: string
  readonly backend: SandboxBackendName
  readonly run: (spec: ExecSpec) => Stream.Stream<ExecEvent, ExecError | UnsupportedSpec>
  /** Runs argv under an explicit policy (no spec mapping). */
  readonly runPolicy: (
    argv: ReadonlyArray<string>,
    policy: SandboxPolicy,
    secrets?: Readonly<Record<string, Redacted.Redacted<string>>>
  ) => Stream.Stream<ExecEvent, ExecError | UnsupportedSpec>
}

/** Picks and checks the backend; fails with `SandboxUnavailable` naming what is missing. */
export const resolveBackend = (config: SandboxExecutorConfig = {}): Effect.Effect<SandboxBackend, SandboxUnavailable> =>
  Effect.suspend(() => {
    const choice = config.backend ?? "auto"
    const hyperlightPath = config.hyperlightPath ?? process.env.HYPERLIGHT_PATH ?? DEFAULT_HYPERLIGHT_PATH
    const hl = {
      path: hyperlightPath,
      kvmDevice: config.hyperlightDevices?.kvm,
      mshvDevice: config.hyperlightDevices?.mshv,
      cpuinfo: config.hyperlightDevices?.cpuinfo,
      killGraceMs: config.killGraceMs
    }
    const bwrap = findExecutable(config.bwrapPath ?? "bwrap")
    const bwrapMissing = bwrap === undefined ? [`bubblewrap (${config.bwrapPath ?? "bwrap"} on PATH)`] : []
    const unavailable = (backend: string, missing: Array<string>) =>
      Effect.fail(
        new SandboxUnavailable({
          backend,
          missing,
          message: `sandbox backend ${backend} is unavailable: missing ${missing.join("; ")}`
        })
      )
    switch (choice) {
      case "guest":
        return Effect.succeed(makeGuest())
      case "hyperlight": {
        const missing = hyperlightMissing(hl)
        return missing.length === 0 ? Effect.succeed(makeHyperlight(hl)) : unavailable("hyperlight", missing)
      }
      case "bubblewrap":
        return bwrap !== undefined
          ? Effect.succeed(makeBubblewrap({ bwrap, killGraceMs: config.killGraceMs }))
          : unavailable("bubblewrap", bwrapMissing)
      case "auto": {
        const missing = hyperlightMissing(hl)
        if (missing.length === 0) return Effect.succeed(makeHyperlight(hl))
        if (bwrap !== undefined) return Effect.succeed(makeBubblewrap({ bwrap, killGraceMs: config.killGraceMs }))
        return unavailable("auto", [...missing, ...bwrapMissing])
      }
    }
  })

/** Builds the sandbox executor (named `hyperlight`) for the configured backend. */
export const make = (config: SandboxExecutorConfig = {}): Effect.Effect<SandboxExecutorService, SandboxUnavailable> =>
  Effect.map(resolveBackend(config), (backend) => {
    const runJob = (job: SandboxJob) => backend.run(job)
    return {
      name: EXECUTOR_NAME,
      backend: backend.name,
      run: (spec: ExecSpec) =>
        Stream.unwrap(
          Effect.map(policyFromSpec(spec, config), (policy) =>
            runJob({ argv: spec.argv, policy, secrets: spec.secrets })
          )
        ),
      runPolicy: (argv, policy, secrets) =>
        Stream.unwrap(
          Effect.map(decodePolicy(policy).pipe(Effect.mapError((e) => unsupported("policy", e.message))), (decoded) =>
            runJob({ argv, policy: decoded, secrets })
          )
        )
    }
  })

/** `Executor` layer; fails to build with `SandboxUnavailable` when the backend cannot run here. */
export const layer = (config: SandboxExecutorConfig = {}): Layer.Layer<Executor, SandboxUnavailable> =>
  Layer.effect(
    Executor,
    Effect.map(make(config), (svc) => Executor.of({ name: svc.name, run: svc.run }))
  )
