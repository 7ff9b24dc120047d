/**
 * Repository jobs: check out repositories into a per-job workspace and run a command there
 * through whatever `Executor` is provided.
 *
 * - `runRepositoryJob`: Reactorcide's split. The trusted job code (`jobCode`) is checked out to
 *   `ci/`, the untrusted source (`source`) to `src/`; the command runs from `ci/` and only it
 *   gets secrets. Without a `jobCode` the command runs from `src/` and gets secrets only when
 *   the job says the source is trusted (`trustSource`).
 * - `runRepoboxFlow`: Repobox's flow. Clone to `repo/`, create `runlane/<job-id-prefix>`, run
 *   the agent command in the clone, commit everything, push; "nothing to commit" and a rejected
 *   push are distinct outcomes.
 */
import {
  type Author,
  type Checkout,
  type Credentials,
  ExecError,
  type ExecEvent,
  type ExecSpec,
  Executor,
  type PushRejected,
  SecretMasker,
  UnsupportedSpec,
  Vcs,
  type VcsAuthError,
  type VcsError
} from "@runlane/core"
import { Effect, Redacted, Schema, Stream } from "effect"
import { parseRemote, stripUrlCredentials } from "./RemoteUrl.ts"
import { type JobWorkspace, Workspace, type WorkspaceError } from "./Workspace.ts"

/** A repository to check out. */
export interface RepoSource {
  readonly url: string
  readonly ref?: string
  readonly depth?: number
  readonly credentials?: Credentials
}

/** The job's input does not describe a job that may run. */
export class RepositoryJobError extends Schema.TaggedError<RepositoryJobError>()("RepositoryJobError", {
  jobId: Schema.String,
  message: Schema.String
}) {}

/** The command of a Repobox flow did not exit 0 (nothing was committed or pushed). */
export class CommandFailed extends Schema.TaggedError<CommandFailed>()("CommandFailed", {
  jobId: Schema.String,
  exitCode: Schema.NullOr(Schema.Number),
  signal: Schema.NullOr(Schema.String),
  reason: Schema.String,
  message: Schema.String
}) {}

/** What a repository job reports while it runs: its steps and the command's (masked) events. */
export type RepositoryJobEvent = { readonly _tag: "step"; readonly message: string } | ExecEvent

type Exited = Extract<ExecEvent, { readonly _tag: "exited" }>

/** ExecSpec fields a caller may add for its executor (image, resources, network, ...). */
export type ExtraSpec = Omit<ExecSpec, "argv" | "cwd" | "env" | "secrets">

interface CommandOptions {
  readonly command: ReadonlyArray<string>
  readonly env?: Record<string, string>
  readonly secrets?: Record<string, Redacted.Redacted<string>>
  readonly timeoutMs?: number
  readonly spec?: ExtraSpec
  /** Last say over the spec before it runs (an executor's defaults: image, mounts, network, ...). */
  readonly prepare?: (spec: ExecSpec) => ExecSpec
  readonly onEvent?: (event: RepositoryJobEvent) => Effect.Effect<void>
}

export interface RepositoryJobInput extends CommandOptions {
  readonly jobId: string
  /** The (untrusted) source, checked out to `src/`. */
  readonly source?: RepoSource
  /** The (trusted) job code, checked out to `ci/`; the command runs from there. */
  readonly jobCode?: RepoSource
  /** Working directory relative to the job code directory (`ci/`, or `src/` without job code). */
  readonly cwd?: string
  /** Without `jobCode`: the source is the job code, so it may have secrets. Default false. */
  readonly trustSource?: boolean
}

export interface RepositoryJobResult {
  readonly workspace: string
  readonly source: Checkout | null
  readonly jobCode: Checkout | null
  readonly exitCode: number | null
  readonly signal: string | null
  readonly reason: Exited["reason"]
  readonly durationMs: number
}

export interface RepoboxInput extends CommandOptions {
  readonly jobId: string
  readonly repo: RepoSource
  readonly author: Author
  readonly message: string
  /** Branch name prefix; default `runlane/`. */
  readonly branchPrefix?: string
  /** Characters of the job id in the branch name; default 8 (the whole id when shorter). */
  readonly prefixLength?: number
  /** Directory of the clone inside the workspace; default `repo`. */
  readonly checkoutDir?: string
  /** Push the branch at the base commit when nothing changed (the original's behaviour); default false. */
  readonly pushUnchanged?: boolean
}

export type RepoboxResult =
  | {
      readonly _tag: "pushed"
      readonly branch: string
      readonly commit: string
      readonly baseCommit: string
      readonly changedFiles: ReadonlyArray<string>
    }
  | {
      readonly _tag: "nothing-to-commit"
      readonly branch: string
      readonly commit: string
      readonly pushed: boolean
    }

/** `runlane/<first 8 characters of the job id>`, with characters git dislikes replaced. */
export const branchFor = (jobId: string, prefix = "runlane/", length = 8): string => {
  const part = jobId
    .slice(0, length)
    .replace(/[^A-Za-z0-9_-]/g, "-")
    .replace(/^-+/, "")
  return `${prefix}${part.length === 0 ? "job" : part}`
}

const secretValues = (
  secrets: Record<string, Redacted.Redacted<string>> | undefined,
  sources: ReadonlyArray<RepoSource | undefined>
): Array<string> => {
  const values = Object.values(secrets ?? {}).map((s) => Redacted.value(s))
  for (const source of sources) {
    if (source?.credentials !== undefined) values.push(Redacted.value(source.credentials.token))
  }
  return values
}

const noop = (): Effect.Effect<void> => Effect.void

/**
 * Takes credentials embedded in the URL (`https://oauth2:TOKEN@host/...`) out of it, so that
 * they are masked and reused for the push like explicit ones.
 */
const normalize = (source: RepoSource): RepoSource => {
  const remote = parseRemote(source.url)
  if (typeof remote === "string" || remote._tag !== "http") return source
  const credentials = source.credentials ?? remote.embedded
  return { ...source, url: remote.url, ...(credentials === undefined ? {} : { credentials }) }
}

/** Runs the command and forwards its events with every secret masked; returns its exit. */
const runCommand = (
  jobId: string,
  spec: ExecSpec,
  masker: SecretMasker,
  emit: (event: RepositoryJobEvent) => Effect.Effect<void>
): Effect.Effect<Exited, ExecError | UnsupportedSpec | RepositoryJobError, Executor> =>
  Effect.gen(function* () {
    const executor = yield* Executor
    const states = { stdout: masker.state(), stderr: masker.state() }
    let exited: Exited | undefined
    const flush = Effect.forEach(["stdout", "stderr"] as const, (stream) => {
      const data = states[stream].flush()
      return data.length > 0 ? emit({ _tag: "output", stream, data }) : Effect.void
    })
    yield* executor.run(spec).pipe(
      Stream.runForEach((event) => {
        switch (event._tag) {
          case "output": {
            const data = states[event.stream].push(event.data)
            return data.length > 0 ? emit({ ...event, data }) : Effect.void
          }
          case "note":
            return emit({ ...event, message: masker.maskString(event.message) })
          case "exited":
            exited = event
            return Effect.andThen(flush, emit(event))
          default:
            return emit(event)
        }
      }),
      // Executor errors are masked too (and lose their cause, which could hold a secret).
      Effect.mapError((e) =>
        e._tag === "ExecError"
          ? new ExecError({ executor: e.executor, message: masker.maskString(e.message) })
          : new UnsupportedSpec({ executor: e.executor, field: e.field, message: masker.maskString(e.message) })
      )
    )
    if (exited === undefined) {
      return yield* new RepositoryJobError({ jobId, message: `executor ${executor.name} ended without an exit event` })
    }
    return exited
  })

const step = (emit: (event: RepositoryJobEvent) => Effect.Effect<void>, message: string) =>
  Effect.andThen(Effect.logDebug(message), emit({ _tag: "step", message }))

const checkoutInto = (
  ws: JobWorkspace,
  dirName: string,
  source: RepoSource,
  emit: (event: RepositoryJobEvent) => Effect.Effect<void>
) =>
  Effect.gen(function* () {
    const vcs = yield* Vcs
    const into = yield* ws.path(dirName)
    yield* step(emit, `Cloning ${stripUrlCredentials(source.url)}...`)
    const co = yield* vcs.checkout({
      url: source.url,
      into,
      ...(source.ref === undefined ? {} : { ref: source.ref }),
      ...(source.depth === undefined ? {} : { depth: source.depth }),
      ...(source.credentials === undefined ? {} : { credentials: source.credentials })
    })
    yield* step(emit, "Clone completed.")
    return co
  })

const buildSpec = (
  options: CommandOptions,
  cwd: string,
  env: Record<string, string>,
  withSecrets: boolean
): ExecSpec => {
  const spec: ExecSpec = {
    ...options.spec,
    argv: [...options.command],
    cwd,
    env: { ...options.env, ...env },
    ...(withSecrets && options.secrets !== undefined ? { secrets: options.secrets } : {}),
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs })
  }
  return options.prepare === undefined ? spec : options.prepare(spec)
}

/**
 * Runs one repository job in a fresh workspace (removed afterwards unless the `Workspace`
 * keeps it). A non-zero exit is a result, not an error.
 */
export const runRepositoryJob = Effect.fn("runRepositoryJob")(function* (
  input: RepositoryJobInput
): Effect.fn.Return<
  RepositoryJobResult,
  RepositoryJobError | WorkspaceError | VcsError | VcsAuthError | ExecError | UnsupportedSpec,
  Vcs | Executor | Workspace
> {
  const { jobId } = input
  const emit = input.onEvent ?? noop
  if (input.command.length === 0) return yield* new RepositoryJobError({ jobId, message: "the command is empty" })
  if (input.source === undefined && input.jobCode === undefined) {
    return yield* new RepositoryJobError({ jobId, message: "a repository job needs a source or a jobCode repository" })
  }
  const trusted = input.jobCode !== undefined || input.trustSource === true
  if (!trusted && input.secrets !== undefined && Object.keys(input.secrets).length > 0) {
    return yield* new RepositoryJobError({
      jobId,
      message: "secrets are given only to trusted job code: name a jobCode repository, or set trustSource"
    })
  }
  const sourceRepo = input.source === undefined ? undefined : normalize(input.source)
  const jobCodeRepo = input.jobCode === undefined ? undefined : normalize(input.jobCode)
  const masker = new SecretMasker(secretValues(input.secrets, [sourceRepo, jobCodeRepo]))
  return yield* Effect.scoped(
    Effect.gen(function* () {
      const workspace = yield* Workspace
      const ws = yield* workspace.acquire(jobId)
      // Job code first, into its own directory; the source goes next to it, never over it.
      const jobCode = jobCodeRepo === undefined ? null : yield* checkoutInto(ws, "ci", jobCodeRepo, emit)
      const source = sourceRepo === undefined ? null : yield* checkoutInto(ws, "src", sourceRepo, emit)
      const base = jobCode?.dir ?? source!.dir
      const cwd = input.cwd === undefined ? base : yield* ws.path(jobCode === null ? "src" : "ci", input.cwd)
      if (cwd !== base && !cwd.startsWith(`${base}/`)) {
        return yield* new RepositoryJobError({ jobId, message: `cwd ${JSON.stringify(input.cwd)} leaves ${base}` })
      }
      const env: Record<string, string> = { RUNLANE_WORKSPACE: ws.dir, RUNLANE_JOB_ID: jobId }
      if (source !== null) env.RUNLANE_SOURCE_DIR = source.dir
      if (jobCode !== null) env.RUNLANE_JOB_DIR = jobCode.dir
      const exited = yield* runCommand(jobId, buildSpec(input, cwd, env, trusted), masker, emit)
      return {
        workspace: ws.dir,
        source,
        jobCode,
        exitCode: exited.code,
        signal: exited.signal,
        reason: exited.reason,
        durationMs: exited.durationMs
      }
    })
  )
})

/**
 * Repobox's flow: clone → branch `runlane/<job-id-prefix>` → command → commit all → push.
 * Fails with `CommandFailed` (non-zero exit, nothing pushed) or `PushRejected`.
 */
export const runRepoboxFlow = Effect.fn("runRepoboxFlow")(function* (
  input: RepoboxInput
): Effect.fn.Return<
  RepoboxResult,
  | CommandFailed
  | PushRejected
  | RepositoryJobError
  | WorkspaceError
  | VcsError
  | VcsAuthError
  | ExecError
  | UnsupportedSpec,
  Vcs | Executor | Workspace
> {
  const { jobId } = input
  const emit = input.onEvent ?? noop
  if (input.command.length === 0) return yield* new RepositoryJobError({ jobId, message: "the command is empty" })
  const repo = normalize(input.repo)
  const masker = new SecretMasker(secretValues(input.secrets, [repo]))
  return yield* Effect.scoped(
    Effect.gen(function* () {
      const vcs = yield* Vcs
      const workspace = yield* Workspace
      const ws = yield* workspace.acquire(jobId)
      const co = yield* checkoutInto(ws, input.checkoutDir ?? "repo", repo, emit)
      const branch = branchFor(jobId, input.branchPrefix, input.prefixLength)
      yield* step(emit, `Creating branch ${branch}...`)
      yield* vcs.createBranch(co.dir, branch)
      const env = { RUNLANE_WORKSPACE: ws.dir, RUNLANE_JOB_ID: jobId }
      const exited = yield* runCommand(jobId, buildSpec(input, co.dir, env, true), masker, emit)
      if (exited.code !== 0) {
        return yield* new CommandFailed({
          jobId,
          exitCode: exited.code,
          signal: exited.signal,
          reason: exited.reason,
          message:
            exited.reason === "timeout"
              ? "command timed out"
              : exited.code === null
                ? `command killed by ${exited.signal ?? "a signal"}`
                : `command exited with code ${exited.code}`
        })
      }
      yield* step(emit, "Committing changes...")
      const outcome = yield* vcs.commitAll(co.dir, { message: input.message, author: input.author })
      const pushOptions = {
        setUpstream: true,
        ...(repo.credentials === undefined ? {} : { credentials: repo.credentials })
      }
      if (outcome._tag === "nothing-to-commit") {
        yield* step(emit, "Nothing to commit.")
        if (input.pushUnchanged === true) {
          yield* step(emit, "Pushing to remote...")
          yield* vcs.push(co.dir, branch, pushOptions)
          yield* step(emit, "Push completed successfully!")
        }
        return { _tag: "nothing-to-commit", branch, commit: co.commit, pushed: input.pushUnchanged === true } as const
      }
      const changedFiles = yield* vcs.changedFiles(co.dir, co.commit, outcome.commit)
      yield* step(emit, "Pushing to remote...")
      yield* vcs.push(co.dir, branch, pushOptions)
      yield* step(emit, "Push completed successfully!")
      return { _tag: "pushed", branch, commit: outcome.commit, baseCommit: co.commit, changedFiles } as const
    })
  )
})
