import { lstatSync, realpathSync } from "node:fs"
import { tmpdir } from "node:os"
import { isAbsolute } from "node:path"
import { ExecError, type ExecEvent, type ExecSpec, Executor, UnsupportedSpec } from "@runlane/core"
import Docker from "dockerode"
import { Effect, Layer, Queue, Redacted, Stream } from "effect"
import { FrameDemuxer } from "./FrameDemuxer.ts"
import {
  isEnvName,
  MAX_SECRET_PAYLOAD,
  openSecretChannel,
  SECRET_FIFO_TARGET,
  type SecretChannel,
  secretPayloadSize
} from "./SecretChannel.ts"

const EXECUTOR = "docker"

/** Labels every container of this executor carries (used for reaping and inspection). */
export const LABEL_MANAGED = "runlane.managed"
export const LABEL_RUNNER = "runlane.runner"
export const LABEL_JOB = "runlane.job"

export type ImagePolicy = "if-not-present" | "always" | "never"

export interface DockerExecutorConfig {
  /** Identifies this runner: containers are labelled with it and its orphans are reaped at start-up. */
  readonly runnerId: string
  /** Engine connection; default: `DOCKER_HOST` when set, else the default socket `/var/run/docker.sock`. */
  readonly connection?: Docker.DockerOptions
  /** Image used when the spec names none. */
  readonly defaultImage?: string
  /** Default `if-not-present`. */
  readonly imagePolicy?: ImagePolicy
  /** Limits applied when the spec's `resources` leaves them out. */
  readonly defaultResources?: {
    readonly memoryBytes?: number
    readonly cpus?: number
    readonly pids?: number
  }
  /** User for every container unless the spec names one; overrides the image's own user. */
  readonly user?: string
  /** User when neither spec, config nor image names a non-root one. Default `65534:65534` (nobody); `null` keeps root. */
  readonly fallbackUser?: string | null
  /** Time between SIGTERM and SIGKILL on timeout or interruption. Default 5000 ms. */
  readonly stopGraceMs?: number
  /** Where the workspace (`spec.cwd`) is mounted. Default `/job`. */
  readonly workspaceTarget?: string
  /** Options of the tmpfs mounted at `/tmp`. Default `rw,nosuid,nodev,size=128m`. */
  readonly tmpfsOptions?: string
  /** Host directory for the short-lived secrets FIFO. Default `/dev/shm` (tmpfs) when present, else the OS temp dir. */
  readonly secretDir?: string
  /** Shell in the image that runs the secrets wrapper. Default `/bin/sh`. */
  readonly secretShell?: string
  /** Run `docker-init` as PID 1 (forwards signals, reaps zombies). Default true. */
  readonly init?: boolean
  /** How long `layer` waits for the engine's answer to a ping. Default 10000 ms. */
  readonly connectTimeoutMs?: number
  /** Remove containers left behind by an earlier process with the same `runnerId`. Default true. */
  readonly reapOrphans?: boolean
}

/**
 * Docker-only fields a spec may add to `ExecSpec` to relax one hardened default explicitly.
 * `privileged: true` is always refused.
 */
export interface DockerSpecOptions {
  readonly privileged?: boolean
  /** `false` makes the root filesystem writable. */
  readonly readOnlyRootfs?: boolean
  /** Capabilities to add back after `--cap-drop ALL`. */
  readonly capAdd?: ReadonlyArray<string>
  /** `false` drops `no-new-privileges`. */
  readonly noNewPrivileges?: boolean
}

export type DockerExecSpec = ExecSpec & { readonly docker?: DockerSpecOptions }

export const DEFAULTS = {
  imagePolicy: "if-not-present" as ImagePolicy,
  memoryBytes: 1024 * 1024 * 1024,
  cpus: 1,
  pids: 512,
  fallbackUser: "65534:65534",
  stopGraceMs: 5000,
  workspaceTarget: "/job",
  tmpfsOptions: "rw,nosuid,nodev,size=128m",
  secretShell: "/bin/sh"
} as const

const SIGNALS: Record<number, string> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  6: "SIGABRT",
  9: "SIGKILL",
  11: "SIGSEGV",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM"
}

/** Host paths that must never be mounted: they expose devices, the engine socket or the host itself. */
const FORBIDDEN_SOURCES = new Set(["/", "/dev", "/proc", "/sys", "/run", "/var/run", "/var/lib/docker", "/boot"])

const unsupported = (field: string, message: string) => new UnsupportedSpec({ executor: EXECUTOR, field, message })

const describeCause = (cause: unknown): string => {
  if (cause instanceof Error) {
    const e = cause as Error & { statusCode?: number; code?: string; json?: { message?: string } }
    const detail = e.json?.message ?? e.message
    return [e.code, e.statusCode, detail].filter((x) => x !== undefined && x !== "").join(" ")
  }
  return String(cause)
}

const statusOf = (cause: unknown): number | undefined =>
  typeof cause === "object" && cause !== null && "statusCode" in cause
    ? (cause as { statusCode?: number }).statusCode
    : undefined

const isRoot = (user: string): boolean => /^(root|0)(:.*)?$/.test(user.trim())

const endpointOf = (connection: Docker.DockerOptions | undefined): string => {
  if (connection?.socketPath !== undefined) return `unix://${connection.socketPath}`
  if (connection?.host !== undefined)
    return `${connection.protocol ?? "http"}://${connection.host}:${connection.port ?? ""}`
  return process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock"
}

/** Checks a spec against what this executor honours and what it refuses (no engine calls). */
export const validateSpec = (spec: DockerExecSpec): Effect.Effect<void, UnsupportedSpec> =>
  Effect.gen(function* () {
    const loose = spec as DockerExecSpec & { readonly privileged?: unknown }
    if (loose.privileged === true || spec.docker?.privileged === true) {
      return yield* unsupported("privileged", "privileged containers are never run by the docker executor")
    }
    if (spec.network?._tag === "allow") {
      return yield* unsupported(
        "network",
        "an allow-list network cannot be enforced by the docker executor (use none or host)"
      )
    }
    for (const key of Object.keys(spec.env ?? {})) {
      if (key === "" || key.includes("=") || key.includes("\0")) {
        return yield* unsupported("env", `invalid variable name "${key}"`)
      }
    }
    for (const key of Object.keys(spec.secrets ?? {})) {
      if (!isEnvName(key)) return yield* unsupported("secrets", `invalid secret variable name "${key}"`)
    }
    for (const mount of spec.mounts ?? []) {
      if (!isAbsolute(mount.source) || !isAbsolute(mount.target)) {
        return yield* unsupported("mounts", `mount paths must be absolute: ${mount.source} -> ${mount.target}`)
      }
      const refusal = refuseSource(mount.source)
      if (refusal !== undefined) return yield* unsupported("mounts", refusal)
    }
    if (spec.cwd !== undefined) {
      if (!isAbsolute(spec.cwd))
        return yield* unsupported("cwd", `workspace must be an absolute host path: ${spec.cwd}`)
      const refusal = refuseSource(spec.cwd)
      if (refusal !== undefined) return yield* unsupported("cwd", refusal)
    }
    const r = spec.resources
    if (r?.cpus !== undefined && !(r.cpus > 0)) return yield* unsupported("resources.cpus", "must be greater than 0")
    if (r?.memoryBytes !== undefined && r.memoryBytes < 6 * 1024 * 1024) {
      return yield* unsupported("resources.memoryBytes", "the engine needs at least 6 MiB")
    }
    if (r?.pids !== undefined && r.pids < 1) return yield* unsupported("resources.pids", "must be at least 1")
  })

const refuseSource = (source: string): string | undefined => {
  let real: string
  try {
    real = realpathSync(source)
  } catch {
    return `mount source does not exist: ${source}`
  }
  if (FORBIDDEN_SOURCES.has(real)) return `mounting ${real} is refused (host devices, sockets and system paths)`
  const st = lstatSync(real)
  if (st.isSocket() || st.isCharacterDevice() || st.isBlockDevice() || st.isFIFO()) {
    return `mounting ${real} is refused: sockets and devices are never passed to containers`
  }
  return undefined
}

interface ImageInfo {
  readonly user: string
}

/** Builds the Docker executor (connects, pings, reaps this runner's orphans). */
export const make = (config: DockerExecutorConfig): Effect.Effect<Executor["Service"], ExecError> =>
  Effect.gen(function* () {
    const docker = new Docker(config.connection)
    const endpoint = endpointOf(config.connection)
    const policy = config.imagePolicy ?? DEFAULTS.imagePolicy
    const grace = config.stopGraceMs ?? DEFAULTS.stopGraceMs
    const workspaceTarget = config.workspaceTarget ?? DEFAULTS.workspaceTarget
    const secretDir = config.secretDir ?? (lstatSafe("/dev/shm")?.isDirectory() ? "/dev/shm" : tmpdir())
    const secretShell = config.secretShell ?? DEFAULTS.secretShell
    const fallbackUser = config.fallbackUser === undefined ? DEFAULTS.fallbackUser : config.fallbackUser

    const call = <A>(what: string, f: () => Promise<A>) =>
      Effect.tryPromise({
        try: f,
        catch: (cause) =>
          new ExecError({ executor: EXECUTOR, message: `${what} failed (${endpoint}): ${describeCause(cause)}`, cause })
      })

    const pinged = yield* Effect.tryPromise({
      try: () => docker.ping(),
      catch: (cause) =>
        new ExecError({
          executor: EXECUTOR,
          message: `Docker Engine unreachable at ${endpoint}: ${describeCause(cause)}`,
          cause
        })
    }).pipe(Effect.timeoutOption(config.connectTimeoutMs ?? 10_000))
    if (pinged._tag === "None") {
      return yield* new ExecError({
        executor: EXECUTOR,
        message: `Docker Engine unreachable at ${endpoint}: no answer within ${config.connectTimeoutMs ?? 10_000} ms`
      })
    }

    if (config.reapOrphans !== false) {
      const orphans = yield* call("listing orphan containers", () =>
        docker.listContainers({ all: true, filters: { label: [`${LABEL_RUNNER}=${config.runnerId}`] } })
      )
      for (const orphan of orphans) {
        yield* call(`removing orphan container ${orphan.Id.slice(0, 12)}`, () =>
          docker.getContainer(orphan.Id).remove({ force: true, v: true })
        ).pipe(Effect.catchTag("ExecError", (e) => Effect.logWarning(e.message)))
      }
      if (orphans.length > 0) yield* Effect.logInfo(`docker executor: reaped ${orphans.length} orphan container(s)`)
    }

    const imageCache = new Map<string, { readonly info: ImageInfo; readonly at: number }>()

    const inspectImage = (image: string) =>
      Effect.tryPromise({
        try: async (): Promise<ImageInfo | undefined> => {
          try {
            const info = await docker.getImage(image).inspect()
            return { user: info.Config?.User ?? "" }
          } catch (cause) {
            if (statusOf(cause) === 404) return undefined
            throw cause
          }
        },
        catch: (cause) =>
          new ExecError({
            executor: EXECUTOR,
            message: `inspecting image ${image} failed (${endpoint}): ${describeCause(cause)}`,
            cause
          })
      })

    /** Pull with progress notes; the stream fails with an ExecError naming the image. */
    const pull = (image: string): Stream.Stream<ExecEvent, ExecError> =>
      Stream.callback<ExecEvent, ExecError>((queue) =>
        Effect.callback<void, ExecError>((resume) => {
          const fail = (cause: unknown) =>
            resume(
              Effect.fail(
                new ExecError({
                  executor: EXECUTOR,
                  message: `pulling image ${image} failed: ${describeCause(cause)}`,
                  cause
                })
              )
            )
          docker.pull(image, (err: unknown, stream: NodeJS.ReadableStream) => {
            if (err) return fail(err)
            docker.modem.followProgress(
              stream,
              (doneErr: unknown) => (doneErr ? fail(doneErr) : resume(Effect.void)),
              (p: { status?: string; id?: string; progress?: string }) => {
                const message = [p.id, p.status, p.progress].filter((x) => x !== undefined && x !== "").join(" ")
                Queue.offerUnsafe(queue, { _tag: "note", kind: "pull", message: `${image}: ${message}` })
              }
            )
          })
        }).pipe(Effect.andThen(Queue.end(queue)))
      )

    /** Makes sure the image is present per the policy; yields pull notes when it pulls. */
    const ensureImage = (image: string, resolved: { info?: ImageInfo }): Stream.Stream<ExecEvent, ExecError> =>
      Stream.unwrap(
        Effect.gen(function* () {
          const cached = imageCache.get(image)
          if (policy !== "always" && cached !== undefined && Date.now() - cached.at < 30_000) {
            resolved.info = cached.info
            return Stream.empty
          }
          const present = policy === "always" ? undefined : yield* inspectImage(image)
          if (present !== undefined) {
            imageCache.set(image, { info: present, at: Date.now() })
            resolved.info = present
            return Stream.empty
          }
          if (policy === "never") {
            return yield* new ExecError({
              executor: EXECUTOR,
              message: `image ${image} is not present on the engine and the image policy is "never" (no pull)`
            })
          }
          return pull(image).pipe(
            Stream.concat(
              Stream.fromEffect(
                Effect.gen(function* () {
                  const info = yield* inspectImage(image)
                  if (info === undefined) {
                    return yield* new ExecError({ executor: EXECUTOR, message: `image ${image} is missing after pull` })
                  }
                  imageCache.set(image, { info, at: Date.now() })
                  resolved.info = info
                })
              ).pipe(Stream.drain)
            )
          )
        })
      )

    /** SIGTERM, then SIGKILL when it is still running after the grace period. */
    const stopContainer = (container: Docker.Container) =>
      Effect.gen(function* () {
        yield* call("SIGTERM", () => container.kill({ signal: "SIGTERM" })).pipe(Effect.ignore)
        yield* call("waiting for stop", () => container.wait()).pipe(Effect.timeoutOption(grace), Effect.ignore)
        const info = yield* call("inspect", () => container.inspect()).pipe(Effect.option)
        if (info._tag === "Some" && info.value.State.Running) {
          yield* call("SIGKILL", () => container.kill({ signal: "SIGKILL" })).pipe(Effect.ignore)
        }
      })

    const runContainer = (
      spec: DockerExecSpec,
      image: string,
      info: ImageInfo
    ): Stream.Stream<ExecEvent, ExecError | UnsupportedSpec> =>
      Stream.unwrap(
        Effect.gen(function* () {
          const secrets = Object.entries(spec.secrets ?? {}).map(([k, v]) => [k, Redacted.value(v)] as const)
          if (secretPayloadSize(secrets) > MAX_SECRET_PAYLOAD) {
            return yield* unsupported("secrets", `secrets larger than ${MAX_SECRET_PAYLOAD} bytes in total`)
          }
          const channel: SecretChannel | undefined =
            secrets.length === 0
              ? undefined
              : yield* Effect.acquireRelease(
                  Effect.tryPromise({
                    try: () => openSecretChannel(secretDir, secrets, secretShell),
                    catch: (cause) =>
                      new ExecError({
                        executor: EXECUTOR,
                        message: `preparing the secrets channel failed: ${describeCause(cause)}`
                      })
                  }),
                  (ch) => Effect.sync(() => ch.close())
                )

          const createOptions = containerOptions(spec, image, info, channel)
          const state = { finished: false, timedOut: false }
          const container = yield* Effect.acquireRelease(
            call(`creating a container from ${image}`, () => docker.createContainer(createOptions)).pipe(
              // the image went away since it was cached: forget it so the next run checks again
              Effect.tapError(() => Effect.sync(() => imageCache.delete(image)))
            ),
            (c) =>
              Effect.gen(function* () {
                if (!state.finished) yield* stopContainer(c)
                yield* call("removing the container", () => c.remove({ force: true, v: true })).pipe(
                  Effect.catchTag("ExecError", (e) =>
                    statusOf(e.cause) === 404 ? Effect.void : Effect.logWarning(e.message)
                  )
                )
              })
          )
          // attach before start so no output is lost
          const raw = (yield* call("attaching", () =>
            container.attach({ stream: true, stdout: true, stderr: true, logs: false })
          )) as unknown as AsyncIterable<Uint8Array>
          channel?.send()
          yield* call(`starting the container (${image})`, () => container.start())
          const startedAt = Date.now()
          // ask for the exit status now (one round trip less at the end); it settles when the container stops
          const waitResult = container.wait().then(
            (value: { StatusCode: number }) => ({ ok: true as const, value }),
            (cause: unknown) => ({ ok: false as const, cause })
          )
          if (spec.timeoutMs !== undefined) {
            yield* Effect.forkScoped(
              Effect.sleep(spec.timeoutMs).pipe(
                Effect.andThen(
                  Effect.suspend(() => {
                    state.timedOut = true
                    return stopContainer(container)
                  })
                )
              )
            )
          }
          const toError = (cause: unknown) =>
            new ExecError({
              executor: EXECUTOR,
              message: `reading container output failed: ${describeCause(cause)}`,
              cause
            })
          const chunks = Stream.fromAsyncIterable(raw, toError)
          let output: Stream.Stream<ExecEvent, ExecError>
          if (spec.tty === true) {
            output = chunks.pipe(Stream.map((data): ExecEvent => ({ _tag: "output", stream: "stdout", data })))
          } else {
            const demux = new FrameDemuxer()
            output = chunks.pipe(
              Stream.map((chunk) => demux.push(chunk)),
              Stream.flattenIterable,
              Stream.concat(
                Stream.suspend(() =>
                  demux.truncated
                    ? Stream.make<Array<ExecEvent>>({
                        _tag: "note",
                        kind: "output-truncated",
                        message: "the engine's output stream ended inside a frame"
                      })
                    : Stream.empty
                )
              )
            )
          }
          const exited = Effect.gen(function* () {
            // the attach stream has ended (all output read); now the exit status
            const result = yield* Effect.promise(() => waitResult)
            if (!result.ok) {
              return yield* new ExecError({
                executor: EXECUTOR,
                message: `waiting for the container failed (${endpoint}): ${describeCause(result.cause)}`,
                cause: result.cause
              })
            }
            const code = result.value.StatusCode
            let oom = false
            if (code !== 0) {
              const inspected = yield* call("inspecting the container", () => container.inspect())
              oom = inspected.State.OOMKilled === true
            }
            state.finished = true
            const signal = code > 128 ? (SIGNALS[code - 128] ?? null) : null
            const reason: "exited" | "timeout" | "oom" | "killed" = state.timedOut
              ? "timeout"
              : oom
                ? "oom"
                : signal !== null && (signal === "SIGKILL" || signal === "SIGTERM")
                  ? "killed"
                  : "exited"
            return {
              _tag: "exited",
              code,
              signal,
              durationMs: Date.now() - startedAt,
              reason
            } satisfies ExecEvent as ExecEvent
          })
          return Stream.make<Array<ExecEvent>>({ _tag: "started", at: startedAt }).pipe(
            Stream.concat(output),
            Stream.concat(Stream.fromEffect(exited))
          )
        })
      )

    const containerOptions = (
      spec: DockerExecSpec,
      image: string,
      info: ImageInfo,
      channel: SecretChannel | undefined
    ): Docker.ContainerCreateOptions => {
      const jobId = spec.labels?.[LABEL_JOB] ?? spec.labels?.jobId ?? "adhoc"
      const userLabels = Object.fromEntries(
        Object.entries(spec.labels ?? {}).filter(([k]) => !k.startsWith("runlane."))
      )
      const user =
        spec.user ?? config.user ?? (info.user !== "" && !isRoot(info.user) ? info.user : (fallbackUser ?? undefined))
      const resources = spec.resources ?? {}
      const memory = resources.memoryBytes ?? config.defaultResources?.memoryBytes ?? DEFAULTS.memoryBytes
      const cpus = resources.cpus ?? config.defaultResources?.cpus ?? DEFAULTS.cpus
      const pids = resources.pids ?? config.defaultResources?.pids ?? DEFAULTS.pids
      const mounts: Array<Docker.MountSettings> = []
      if (spec.cwd !== undefined)
        mounts.push({ Type: "bind", Source: spec.cwd, Target: workspaceTarget, ReadOnly: false })
      for (const m of spec.mounts ?? []) {
        mounts.push({ Type: "bind", Source: m.source, Target: m.target, ReadOnly: m.readOnly === true })
      }
      if (channel !== undefined) {
        mounts.push({ Type: "bind", Source: channel.hostPath, Target: SECRET_FIFO_TARGET, ReadOnly: true })
      }
      const argv = channel === undefined ? [...spec.argv] : channel.wrap(spec.argv)
      const securityOpt = spec.docker?.noNewPrivileges === false ? [] : ["no-new-privileges:true"]
      const options: Docker.ContainerCreateOptions = {
        Image: image,
        Entrypoint: argv.slice(0, 1),
        Cmd: argv.slice(1),
        Env: Object.entries(spec.env ?? {}).map(([k, v]) => `${k}=${v}`),
        Labels: {
          ...userLabels,
          [LABEL_MANAGED]: "true",
          [LABEL_RUNNER]: config.runnerId,
          [LABEL_JOB]: jobId
        },
        Tty: spec.tty === true,
        OpenStdin: false,
        AttachStdin: false,
        AttachStdout: true,
        AttachStderr: true,
        NetworkDisabled: (spec.network?._tag ?? "none") === "none",
        HostConfig: {
          NetworkMode: spec.network?._tag === "host" ? "host" : "none",
          ReadonlyRootfs: spec.docker?.readOnlyRootfs !== false,
          Tmpfs: { "/tmp": config.tmpfsOptions ?? DEFAULTS.tmpfsOptions },
          CapDrop: ["ALL"],
          CapAdd: [...(spec.docker?.capAdd ?? [])],
          SecurityOpt: securityOpt,
          Privileged: false,
          Devices: [],
          Memory: memory,
          MemorySwap: memory,
          NanoCpus: Math.round(cpus * 1e9),
          PidsLimit: pids,
          Init: config.init !== false,
          AutoRemove: false,
          Mounts: mounts
        }
      }
      if (user !== undefined) options.User = user
      if (spec.cwd !== undefined) options.WorkingDir = workspaceTarget
      return options
    }

    const run = (spec: ExecSpec): Stream.Stream<ExecEvent, ExecError | UnsupportedSpec> => {
      const dspec = spec as DockerExecSpec
      const image = spec.image ?? config.defaultImage
      return Stream.unwrap(
        Effect.gen(function* () {
          yield* validateSpec(dspec)
          if (image === undefined)
            return yield* unsupported("image", "the docker executor needs an image (spec.image or defaultImage)")
          const resolved: { info?: ImageInfo } = {}
          return ensureImage(image, resolved).pipe(
            Stream.concat(Stream.unwrap(Effect.sync(() => runContainer(dspec, image, resolved.info ?? { user: "" }))))
          )
        })
      )
    }

    return Executor.of({ name: EXECUTOR, run })
  })

const lstatSafe = (p: string) => {
  try {
    return lstatSync(p)
  } catch {
    return undefined
  }
}

/** `Executor` on a Docker Engine through dockerode. Fails with `ExecError` when the engine is unreachable. */
export const layer = (config: DockerExecutorConfig): Layer.Layer<Executor, ExecError> =>
  Layer.effect(Executor, make(config))
