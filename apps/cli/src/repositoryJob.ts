/**
 * `runlane run --repo <url|path> [--ref R] [--job-repo <url|path> --job-ref R] [--push-branch] -- <command>`:
 * repository jobs from @runlane/vcs-git.
 *
 * - `--repo` alone: the repository is checked out to `<workspace>/src` and the command runs
 *   there (the repository is the job code, as in Reactorcide's default; `--secret`s reach it).
 * - `--job-repo`: the trusted job code is checked out to `ci/`, `--repo` (the untrusted source)
 *   to `src/`; the command runs from `ci/` and alone gets the secrets.
 * - `--push-branch`: the Repobox flow on `--repo`: branch `runlane/<job-id prefix>`, run,
 *   commit everything, push.
 *
 * A token for HTTPS remotes comes from the environment variable `RUNLANE_GIT_TOKEN` (user
 * `RUNLANE_GIT_USERNAME`, default `oauth2`), never from a flag, so it is not in argv. The
 * workspace root is `TEMP_DIR` (default the OS temp dir), kept when `CLEANUP_AFTER_JOB=false`.
 */
import {
  type Credentials,
  type ExecEvent,
  ExecPayload,
  type ExecSpec,
  Executor,
  InvalidPayload,
  type JobContext,
  JobFailed,
  type JobHandler,
  type JobOutcome
} from "@runlane/core"
import {
  GitVcs,
  type RepoSource,
  type RepositoryJobEvent,
  runRepoboxFlow,
  runRepositoryJob,
  Workspace
} from "@runlane/vcs-git"
import { Effect, Layer, Option, Redacted, Schema } from "effect"
import { UsageError } from "./ExitCode.ts"
import { chooseExecutor } from "./executors.ts"
import type { HandlerWrapper } from "./localRun.ts"
import type { RunOptions } from "./RunOptions.ts"
import { readSecrets } from "./secrets.ts"

const credentialsFromEnv = (): Credentials | undefined => {
  const token = process.env.RUNLANE_GIT_TOKEN
  if (token === undefined || token === "") return undefined
  const username = process.env.RUNLANE_GIT_USERNAME
  return { token: Redacted.make(token), ...(username === undefined || username === "" ? {} : { username }) }
}

const sourceOf = (url: string, ref: Option.Option<string>, credentials: Credentials | undefined): RepoSource => ({
  url,
  ...(Option.isSome(ref) ? { ref: ref.value } : {}),
  // The token is for HTTPS remotes only; local paths and ssh URLs go without it.
  ...(credentials === undefined || !/^https?:\/\//i.test(url) ? {} : { credentials })
})

/** Turns the flow's events into the job's events (output is already masked by the flow). */
const forward = (context: JobContext, executor: string, json: boolean) => {
  const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() }
  return (event: RepositoryJobEvent): Effect.Effect<void> => {
    switch (event._tag) {
      case "step":
        if (!json) process.stderr.write(`runlane: ${event.message}\n`)
        return context.emit([{ _tag: "note", kind: "vcs", message: context.masker.maskString(event.message) }])
      case "started":
        return context.emit([
          { _tag: "process-started", executor, at: event.at, ...(event.pid === undefined ? {} : { pid: event.pid }) }
        ])
      case "output": {
        const data = context.masker.maskString(decoders[event.stream].decode(event.data, { stream: true }))
        return data.length === 0 ? Effect.void : context.emit([{ _tag: "output", stream: event.stream, data }])
      }
      case "note":
        return context.emit([{ _tag: "note", kind: event.kind, message: context.masker.maskString(event.message) }])
      case "exited":
        return context.emit([
          {
            _tag: "process-exited",
            code: event.code,
            signal: event.signal,
            durationMs: event.durationMs,
            reason: event.reason
          }
        ])
    }
  }
}

type Exited = Extract<ExecEvent, { _tag: "exited" }>
const failureOf = (exited: Pick<Exited, "code" | "signal" | "reason">): JobFailed =>
  new JobFailed({
    message:
      exited.reason === "timeout"
        ? "killed: timeout"
        : exited.signal !== null
          ? `killed by ${exited.signal}`
          : `exited with code ${exited.code}`,
    exitCode: exited.code
  })

const decodePayload = Schema.decodeUnknownEffect(ExecPayload)

/** The handler wrapper `runlane run` uses when `--repo` or `--job-repo` is given. */
export const repositoryJobWrapper: HandlerWrapper = (options: RunOptions) => {
  const hasRepo = Option.isSome(options.repo)
  const hasJobRepo = Option.isSome(options.jobRepo)
  if (!hasRepo && !hasJobRepo) {
    for (const [flag, given] of [
      ["--ref", Option.isSome(options.ref)],
      ["--job-ref", Option.isSome(options.jobRef)],
      ["--push-branch", options.pushBranch]
    ] as const) {
      if (given) throw new UsageError(`${flag} needs --repo`)
    }
    return undefined
  }
  if (!hasRepo && options.pushBranch) throw new UsageError("--push-branch needs --repo")
  if (options.pushBranch && hasJobRepo) throw new UsageError("--push-branch works on --repo alone, not with --job-repo")
  if (Option.isSome(options.jobRef) && !hasJobRepo) throw new UsageError("--job-ref needs --job-repo")
  if (options.tty) throw new UsageError("--tty is not supported with --repo")

  const credentials = credentialsFromEnv()
  const secrets = readSecrets(options.secretNames)
  const refine = chooseExecutor(options).refine
  const layer = Layer.mergeAll(GitVcs.layer(), Workspace.layerFromEnv())

  const handler: JobHandler<Executor> = (context) =>
    Effect.gen(function* () {
      const payload = yield* decodePayload(context.job.payload).pipe(
        Effect.mapError((e) => new InvalidPayload({ message: e.message }))
      )
      for (const value of Object.values(secrets)) context.masker.add(Redacted.value(value))
      if (credentials !== undefined) context.masker.add(Redacted.value(credentials.token))
      const executor = yield* Executor
      const common = {
        jobId: context.job.id,
        command: payload.argv,
        ...(payload.env === undefined ? {} : { env: payload.env }),
        secrets,
        ...(payload.timeoutMs === undefined ? {} : { timeoutMs: payload.timeoutMs }),
        ...(refine === undefined ? {} : { prepare: (spec: ExecSpec) => refine(spec) }),
        onEvent: forward(context, executor.name, options.json)
      }
      const fail = (error: { readonly _tag: string; readonly message: string }, retryable: boolean) =>
        new JobFailed({ message: context.masker.maskString(`${error._tag}: ${error.message}`), retryable })

      if (options.pushBranch) {
        const result = yield* runRepoboxFlow({
          ...common,
          repo: sourceOf(Option.getOrThrow(options.repo), options.ref, credentials),
          author: {
            name: process.env.GIT_AUTHOR_NAME || "runlane",
            email: process.env.GIT_AUTHOR_EMAIL || "runlane@localhost"
          },
          message: `runlane: ${payload.argv.join(" ")}`.slice(0, 72)
        }).pipe(
          Effect.catchTags({
            CommandFailed: (e) =>
              Effect.fail(failureOf({ code: e.exitCode, signal: e.signal, reason: e.reason as Exited["reason"] })),
            PushRejected: (e) => Effect.fail(fail(e, false)),
            VcsAuthError: (e) => Effect.fail(fail(e, false)),
            VcsError: (e) => Effect.fail(fail(e, true)),
            WorkspaceError: (e) => Effect.fail(fail(e, true)),
            RepositoryJobError: (e) => Effect.fail(new InvalidPayload({ message: e.message })),
            ExecError: (e) => Effect.fail(fail(e, true)),
            UnsupportedSpec: (e) => Effect.fail(fail(e, false))
          })
        )
        const summary =
          result._tag === "pushed"
            ? `pushed branch ${result.branch} at ${result.commit} (${result.changedFiles.length} files changed)`
            : `nothing to commit; branch ${result.branch} not pushed`
        yield* forward(context, executor.name, options.json)({ _tag: "step", message: summary })
        return { exitCode: 0, result } satisfies JobOutcome
      }

      const repo = Option.isSome(options.repo) ? sourceOf(options.repo.value, options.ref, credentials) : undefined
      const jobCode = Option.isSome(options.jobRepo)
        ? sourceOf(options.jobRepo.value, options.jobRef, credentials)
        : undefined
      const result = yield* runRepositoryJob({
        ...common,
        ...(repo === undefined ? {} : { source: repo }),
        ...(jobCode === undefined ? {} : { jobCode }),
        // Without --job-repo the one repository is the job code (the user named it and its secrets).
        trustSource: true
      }).pipe(
        Effect.catchTags({
          VcsAuthError: (e) => Effect.fail(fail(e, false)),
          VcsError: (e) => Effect.fail(fail(e, true)),
          WorkspaceError: (e) => Effect.fail(fail(e, true)),
          RepositoryJobError: (e) => Effect.fail(new InvalidPayload({ message: e.message })),
          ExecError: (e) => Effect.fail(fail(e, true)),
          UnsupportedSpec: (e) => Effect.fail(fail(e, false))
        })
      )
      if (result.exitCode === 0 && result.reason === "exited") {
        return {
          exitCode: 0,
          result: { source: result.source?.commit ?? null, jobCode: result.jobCode?.commit ?? null }
        } satisfies JobOutcome
      }
      return yield* failureOf({ code: result.exitCode, signal: result.signal, reason: result.reason })
    }).pipe(Effect.provide(layer))
  return handler
}
