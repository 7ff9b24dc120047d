/**
 * The `Vcs` port on git, through simple-git.
 *
 * Credentials: the token is given to git through `GIT_ASKPASS`. The askpass helper is a small
 * shell script (written once per layer into a private temp dir, no secret in it) that prints
 * the user name or the token from the environment of that one git process, and only when git
 * asks for the origin the token belongs to. So the token is never in argv (`ps`), never in a
 * URL and never in `.git/config`; git is run with no system or global config, no credential
 * helpers, no hooks and no terminal prompts.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import {
  type Author,
  type Checkout,
  type CheckoutOptions,
  type CommitOutcome,
  type Credentials,
  PushRejected,
  type RepoInfo,
  SecretMasker,
  Vcs,
  VcsAuthError,
  VcsError
} from "@runlane/core"
import { Effect, Layer, Redacted, type Scope } from "effect"
import { simpleGit } from "simple-git"
import { parseRemote, type Remote, redactUrlCredentials, stripUrlCredentials } from "./RemoteUrl.ts"

export interface GitVcsConfig {
  /** The git executable; `git` on PATH by default. */
  readonly binary?: string
  /** Limit for one git command, in milliseconds (default 10 minutes). Past it git is killed. */
  readonly timeoutMs?: number
  /** Kill git when it prints nothing for this long (milliseconds); off by default. */
  readonly idleTimeoutMs?: number
  /** User name sent with a token when the credentials name none (default `oauth2`, as Repobox). */
  readonly defaultUsername?: string
  /**
   * Called with the argv of every git command just before it runs (for audits and tests). It
   * never contains a credential; that is the point of being able to look.
   */
  readonly onCommand?: (argv: ReadonlyArray<string>) => void
}

export const DEFAULT_TIMEOUT_MS = 600_000

/** Config given to every git command with `-c` (none of it secret). */
const GIT_CONFIG = [
  // Hooks never run: a job's command could have written .git/hooks/pre-push.
  "core.hooksPath=/dev/null",
  // Forget any credential helper (a repository's config could name one).
  "credential.helper=",
  "core.fsmonitor=false",
  "commit.gpgSign=false",
  "tag.gpgSign=false",
  "advice.detachedHead=false",
  "init.defaultBranch=main"
]

/** Environment variables that git must see; simple-git refuses unlisted GIT_* ones. */
const ALLOWED_ENV = [
  "GIT_ASKPASS",
  "GIT_ALLOW_PROTOCOL",
  "GIT_TERMINAL_PROMPT",
  "GIT_CONFIG_NOSYSTEM",
  "GIT_CONFIG_GLOBAL",
  "GIT_AUTHOR_NAME",
  "GIT_AUTHOR_EMAIL",
  "GIT_COMMITTER_NAME",
  "GIT_COMMITTER_EMAIL"
]

const UNSAFE = {
  allowUnsafeAskPass: true,
  allowUnsafeConfigPaths: true,
  allowUnsafeHooksPath: true,
  allowUnsafeCredentialHelper: true,
  allowUnsafeFsMonitor: true
} as const

/**
 * The askpass helper. It answers only the two prompts git shows for the expected origin and
 * user; for any other host (a `url.insteadOf` or a rewritten remote) it answers nothing, so
 * the token cannot be sent elsewhere.
 */
export const ASKPASS_SCRIPT = `#!/bin/sh
# runlane git askpass: prints credentials from this git process's environment, and only for
# the origin they belong to. Holds no secret itself.
case "$1" in
  "$RUNLANE_GIT_USER_PROMPT"*) printf '%s\\n' "$RUNLANE_GIT_USERNAME" ;;
  "$RUNLANE_GIT_PASS_PROMPT"*) printf '%s\\n' "$RUNLANE_GIT_PASSWORD" ;;
  *) exit 1 ;;
esac
`

const SHA_RE = /^[0-9a-f]{7,64}$/i

/** Why one git command failed, before it is turned into a typed error. */
interface GitFailure {
  readonly kind: "failed" | "timeout"
  readonly text: string
}

interface Auth {
  readonly username: string
  readonly password: string
  readonly origin: string
}

interface RunOptions {
  readonly auth?: Auth | undefined
  readonly env?: Record<string, string>
  readonly masker: SecretMasker
  /** Exit codes that count as success (besides 0). */
  readonly okExitCodes?: ReadonlyArray<number>
}

/**
 * Repository settings that could send a token elsewhere, or through something else, when a
 * job's command wrote them into the clone's `.git/config`. A push with credentials refuses
 * to run while one is set (the askpass helper already refuses other origins; this also covers
 * proxies, TLS verification, extra headers and includes).
 */
const RISKY_CONFIG_RE =
  /^(http\..*|url\..*|credential\..*|core\.askpass|core\.sshcommand|core\.gitproxy|include\.path|includeif\..*|remote\.origin\.(proxy|pushurl|receivepack|uploadpack|vcs|proxyauthmethod))$/i

const AUTH_RE =
  /Authentication failed|could not read (Username|Password)|terminal prompts disabled|HTTP Basic: Access denied|returned error: 40[13]|Invalid username or password|Permission denied \(publickey/i
const REJECT_RE = /\[rejected\]|\[remote rejected\]|non-fast-forward|\(fetch first\)|Updates were rejected/i

/** Secrets and their encoded forms as they could appear in git's output. */
const secretsOf = (credentials: Credentials | undefined, username: string): Array<string> => {
  if (credentials === undefined) return []
  const token = Redacted.value(credentials.token)
  if (token.length === 0) return []
  const user = credentials.username ?? username
  return [
    token,
    encodeURIComponent(token),
    Buffer.from(`${user}:${token}`).toString("base64"),
    Buffer.from(token).toString("base64")
  ]
}

const clean = (masker: SecretMasker, text: string): string =>
  redactUrlCredentials(masker.maskString(text)).trim().slice(0, 4000)

const isEmptyOrMissingDir = (dir: string): Promise<boolean> =>
  readdir(dir).then(
    (entries) => entries.length === 0,
    (error: NodeJS.ErrnoException) => error.code === "ENOENT"
  )

const FULL_SHA_RE = /^[0-9a-f]{40}([0-9a-f]{24})?$/

/**
 * HEAD of a fresh clone read from its files (saves starting git once more); `undefined` when
 * the layout is anything but the plain one, and then the caller asks git.
 */
const readFreshHead = async (dir: string): Promise<{ commit: string; branch: string | null } | undefined> => {
  try {
    const gitDir = join(dir, ".git")
    const head = (await readFile(join(gitDir, "HEAD"), "utf8")).trim()
    if (FULL_SHA_RE.test(head)) return { commit: head, branch: null }
    const ref = /^ref: (refs\/heads\/[^\s]+)$/.exec(head)?.[1]
    if (ref === undefined || ref.includes("..")) return undefined
    let commit = await readFile(join(gitDir, ref), "utf8").then(
      (s) => s.trim(),
      () => undefined
    )
    if (commit === undefined) {
      const packed = await readFile(join(gitDir, "packed-refs"), "utf8")
      commit = packed
        .split("\n")
        .find((line) => line.endsWith(` ${ref}`))
        ?.split(" ")[0]
    }
    return commit !== undefined && FULL_SHA_RE.test(commit)
      ? { commit, branch: ref.slice("refs/heads/".length) }
      : undefined
  } catch {
    return undefined
  }
}

/** Builds the service. Needs a `Scope`: the private home/askpass directory lives as long as it. */
export const make = (config: GitVcsConfig = {}): Effect.Effect<Vcs["Service"], never, Scope.Scope> =>
  Effect.gen(function* () {
    const timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS
    const defaultUsername = config.defaultUsername ?? "oauth2"
    const home = yield* Effect.acquireRelease(
      Effect.promise(async () => {
        const dir = await mkdtemp(join(tmpdir(), "runlane-git-"))
        await writeFile(join(dir, "askpass.sh"), ASKPASS_SCRIPT, { mode: 0o700 })
        return dir
      }),
      (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
    )
    const askpass = join(home, "askpass.sh")
    const baseEnv: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
      HOME: home,
      XDG_CONFIG_HOME: home,
      TMPDIR: process.env.TMPDIR ?? tmpdir(),
      LANG: "C",
      LC_ALL: "C",
      GIT_TERMINAL_PROMPT: "0",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_ASKPASS: askpass,
      // Only these transports, whatever a URL or a config says (no ext::, fd::, ...).
      GIT_ALLOW_PROTOCOL: "file:git:http:https:ssh",
      GCM_INTERACTIVE: "never"
    }

    const run = (cwd: string, args: ReadonlyArray<string>, options: RunOptions): Effect.Effect<string, GitFailure> => {
      const env: Record<string, string> = { ...baseEnv, ...options.env }
      if (options.auth !== undefined) {
        env.RUNLANE_GIT_USERNAME = options.auth.username
        env.RUNLANE_GIT_PASSWORD = options.auth.password
        env.RUNLANE_GIT_USER_PROMPT = `Username for '${options.auth.origin}'`
        env.RUNLANE_GIT_PASS_PROMPT = `Password for '${options.auth.origin.replace("://", `://${options.auth.username}@`)}'`
      }
      const ok = new Set([0, ...(options.okExitCodes ?? [])])
      return Effect.tryPromise({
        try: (signal) => {
          const git = simpleGit({
            baseDir: cwd,
            ...(config.binary === undefined ? {} : { binary: config.binary }),
            abort: signal,
            config: GIT_CONFIG,
            unsafe: UNSAFE,
            allowEnvironment: ALLOWED_ENV,
            ...(config.idleTimeoutMs === undefined ? {} : { timeout: { block: config.idleTimeoutMs } }),
            errors: (error, result) => {
              if (error instanceof Error) return error
              if (!ok.has(result.exitCode)) {
                return Buffer.concat([
                  ...result.stdOut,
                  ...result.stdErr,
                  Buffer.from(`\nexit code ${result.exitCode}`)
                ])
              }
              return undefined
            }
          })
          config.onCommand?.(["git", ...GIT_CONFIG.flatMap((c) => ["-c", c]), ...args])
          return git.env(env).raw([...args])
        },
        catch: (error): GitFailure => ({
          kind: "failed",
          text: clean(options.masker, error instanceof Error ? error.message : String(error))
        })
      }).pipe(
        Effect.timeoutOrElse({
          duration: timeoutMs,
          orElse: () =>
            Effect.fail<GitFailure>({ kind: "timeout", text: `git ${args[0] ?? ""} timed out after ${timeoutMs} ms` })
        })
      )
    }

    const vcsError = (operation: string) => (failure: GitFailure) =>
      failure.kind === "failed" && AUTH_RE.test(failure.text)
        ? new VcsAuthError({ operation, message: failure.text })
        : new VcsError({ operation, message: failure.text })
    const plainError = (operation: string) => (failure: GitFailure) =>
      new VcsError({ operation, message: failure.text })

    /** Credentials to use with a remote, checked against where they would be sent. */
    const authFor = (
      operation: string,
      remote: Remote,
      explicit: Credentials | undefined
    ): Effect.Effect<{ auth: Auth | undefined; credentials: Credentials | undefined }, VcsError> => {
      const credentials = explicit ?? (remote._tag === "http" ? remote.embedded : undefined)
      if (credentials === undefined || Redacted.value(credentials.token).length === 0) {
        return Effect.succeed({ auth: undefined, credentials: undefined })
      }
      // A local repository needs no authentication: the token is simply not used.
      if (remote._tag === "local") return Effect.succeed({ auth: undefined, credentials: undefined })
      if (remote._tag !== "http") {
        return Effect.fail(
          new VcsError({ operation, message: "token credentials can only be used with an http(s) repository URL" })
        )
      }
      if (remote.url.startsWith("http:") && !remote.loopback) {
        return Effect.fail(
          new VcsError({
            operation,
            message: `refusing to send credentials over plain http to ${remote.origin}: use https`
          })
        )
      }
      const username = credentials.username ?? defaultUsername
      return Effect.succeed({
        auth: { username, password: Redacted.value(credentials.token), origin: remote.origin },
        credentials
      })
    }

    const refArg = (operation: string, value: string, what: string): Effect.Effect<string, VcsError> =>
      value.length === 0 || value.startsWith("-") || /[\s\0]/.test(value)
        ? Effect.fail(new VcsError({ operation, message: `invalid ${what}: ${JSON.stringify(value.slice(0, 200))}` }))
        : Effect.succeed(value)

    const head = (dir: string, masker: SecretMasker, operation: string) =>
      run(dir, ["rev-parse", "HEAD", "--abbrev-ref", "HEAD"], { masker }).pipe(
        Effect.mapError(plainError(operation)),
        Effect.map((out) => {
          const [commit = "", branch = "HEAD"] = out.trim().split("\n")
          return { commit: commit.trim(), branch: branch.trim() === "HEAD" ? null : branch.trim() }
        })
      )

    /**
     * The origin URL each checkout was made from. A push with credentials goes only there: a
     * job's command that points `origin` somewhere else gets a VcsError, not the token.
     */
    const checkedOut = new Map<string, string>()
    const remember = (dir: string, url: string) => {
      checkedOut.delete(dir)
      checkedOut.set(dir, url)
      if (checkedOut.size > 10_000) checkedOut.delete(checkedOut.keys().next().value!)
    }

    const checkout = Effect.fn("GitVcs.checkout")(function* (
      options: CheckoutOptions
    ): Effect.fn.Return<Checkout, VcsError | VcsAuthError> {
      const operation = "checkout"
      const remote = parseRemote(options.url)
      if (typeof remote === "string") return yield* new VcsError({ operation, message: remote })
      const { auth, credentials } = yield* authFor(operation, remote, options.credentials)
      const masker = new SecretMasker(secretsOf(credentials, defaultUsername))
      const depth = options.depth
      if (depth !== undefined && (!Number.isInteger(depth) || depth < 1)) {
        return yield* new VcsError({ operation, message: `depth must be a positive integer, got ${depth}` })
      }
      const ref = options.ref === undefined ? undefined : yield* refArg(operation, options.ref, "ref")
      const into = resolve(options.into)
      const parent = dirname(into)
      yield* Effect.tryPromise({
        try: () => mkdir(parent, { recursive: true }),
        catch: (e) => new VcsError({ operation, message: `cannot create ${parent}: ${String(e)}` })
      })
      if (!(yield* Effect.promise(() => isEmptyOrMissingDir(into)))) {
        return yield* new VcsError({ operation, message: `the target directory is not empty: ${into}` })
      }
      // A local path ignores --depth; file:// makes git honour it.
      // Local paths are made absolute (git runs from the target's parent); with a depth they
      // become file:// URLs, since git ignores --depth for a local path.
      const url =
        remote._tag !== "local" || remote.url.startsWith("file:")
          ? remote.url
          : depth !== undefined
            ? `file://${resolve(remote.url)}`
            : resolve(remote.url)
      const depthArgs = depth === undefined ? [] : ["--depth", String(depth)]
      const fail = vcsError(operation)

      if (ref !== undefined && SHA_RE.test(ref)) {
        if (depth === undefined) {
          yield* run(parent, ["clone", "--no-checkout", "--", url, into], { auth, masker }).pipe(Effect.mapError(fail))
          yield* run(into, ["checkout", "--detach", `${ref}^{commit}`], { masker }).pipe(
            Effect.mapError(plainError(operation))
          )
        } else {
          // A shallow clone of one commit: fetch exactly that commit.
          yield* Effect.gen(function* () {
            yield* Effect.promise(() => mkdir(into, { recursive: true }))
            yield* run(into, ["init", "-q"], { masker })
            yield* run(into, ["remote", "add", "origin", "--", url], { masker })
            yield* run(into, ["fetch", ...depthArgs, "origin", ref], { auth, masker })
            yield* run(into, ["checkout", "--detach", "FETCH_HEAD"], { masker })
          }).pipe(
            Effect.mapError(fail),
            Effect.tapError(() => Effect.promise(() => rm(into, { recursive: true, force: true })))
          )
        }
      } else {
        const refArgs = ref === undefined ? [] : ["--branch", ref]
        yield* run(parent, ["clone", ...depthArgs, ...refArgs, "--", url, into], { auth, masker }).pipe(
          Effect.mapError((failure) =>
            ref !== undefined && /Remote branch .* not found/.test(failure.text)
              ? new VcsError({ operation, message: `no branch or tag ${ref} in ${stripUrlCredentials(url)}` })
              : fail(failure)
          )
        )
      }
      remember(into, url)
      const fromFiles = yield* Effect.promise(() => readFreshHead(into))
      const { commit, branch } = fromFiles ?? (yield* head(into, masker, operation))
      yield* Effect.logDebug("git checkout done").pipe(
        Effect.annotateLogs({ url: stripUrlCredentials(remote.url), dir: into, commit })
      )
      return { dir: into, commit, branch }
    })

    const noMasker = new SecretMasker()

    const createBranch = Effect.fn("GitVcs.createBranch")(function* (dir: string, name: string) {
      const operation = "createBranch"
      yield* refArg(operation, name, "branch name")
      yield* run(dir, ["check-ref-format", "--branch", name], { masker: noMasker }).pipe(
        Effect.mapError(() => new VcsError({ operation, message: `invalid branch name: ${JSON.stringify(name)}` }))
      )
      yield* run(dir, ["checkout", "-q", "-b", name], { masker: noMasker }).pipe(Effect.mapError(plainError(operation)))
    })

    const commitAll = Effect.fn("GitVcs.commitAll")(function* (
      dir: string,
      options: { readonly message: string; readonly author: Author }
    ): Effect.fn.Return<CommitOutcome, VcsError> {
      const operation = "commitAll"
      const { name, email } = options.author
      if (name.trim() === "" || email.trim() === "") {
        return yield* new VcsError({ operation, message: "the commit author needs a name and an email" })
      }
      if (options.message.trim() === "")
        return yield* new VcsError({ operation, message: "the commit message is empty" })
      const fail = plainError(operation)
      yield* run(dir, ["add", "-A"], { masker: noMasker }).pipe(Effect.mapError(fail))
      const staged = yield* run(dir, ["diff", "--cached", "--name-only", "-z"], { masker: noMasker }).pipe(
        Effect.mapError(fail)
      )
      if (staged.length === 0) return { _tag: "nothing-to-commit" } as const
      const env = {
        GIT_AUTHOR_NAME: name,
        GIT_AUTHOR_EMAIL: email,
        GIT_COMMITTER_NAME: name,
        GIT_COMMITTER_EMAIL: email
      }
      yield* run(dir, ["commit", "-q", "--no-verify", "-m", options.message], { masker: noMasker, env }).pipe(
        Effect.mapError(fail)
      )
      const { commit } = yield* head(dir, noMasker, operation)
      return { _tag: "committed", commit } as const
    })

    const originUrl = (dir: string, operation: string) =>
      run(dir, ["config", "--get", "remote.origin.url"], { masker: noMasker, okExitCodes: [1] }).pipe(
        Effect.mapError(plainError(operation)),
        Effect.map((out) => (out.trim() === "" ? null : out.trim()))
      )

    const push = Effect.fn("GitVcs.push")(function* (
      dir: string,
      branch: string,
      options: { readonly setUpstream?: boolean; readonly credentials?: Credentials }
    ): Effect.fn.Return<void, VcsError | VcsAuthError | PushRejected> {
      const operation = "push"
      yield* refArg(operation, branch, "branch name")
      const url = yield* originUrl(dir, operation)
      if (url === null) return yield* new VcsError({ operation, message: "the repository has no origin remote" })
      const remote = parseRemote(url)
      if (typeof remote === "string") return yield* new VcsError({ operation, message: remote })
      const { auth, credentials } = yield* authFor(operation, remote, options.credentials)
      const masker = new SecretMasker(secretsOf(credentials, defaultUsername))
      if (auth !== undefined) {
        const expected = checkedOut.get(resolve(dir))
        if (expected !== undefined && stripUrlCredentials(expected) !== remote.url) {
          return yield* new VcsError({
            operation,
            message: `refusing to push with credentials: origin is now ${stripUrlCredentials(url)}, the checkout came from ${stripUrlCredentials(expected)}`
          })
        }
        // Every scope git reads here (repository, worktree, ...) except our own -c settings.
        const listed = yield* run(dir, ["config", "--list", "--show-scope", "--name-only", "--no-includes"], {
          masker,
          okExitCodes: [1]
        }).pipe(Effect.mapError(plainError(operation)))
        const risky = listed
          .split("\n")
          .map((line) => line.split("\t"))
          .filter(([scope, name]) => scope !== "command" && name !== undefined && RISKY_CONFIG_RE.test(name.trim()))
          .map(([, name]) => name!.trim())
        if (risky.length > 0) {
          return yield* new VcsError({
            operation,
            message: `refusing to push with credentials: the repository config sets ${[...new Set(risky)].join(", ")}`
          })
        }
      }
      const args = [
        "push",
        "--no-verify",
        ...(options.setUpstream === true ? ["--set-upstream"] : []),
        "origin",
        `refs/heads/${branch}:refs/heads/${branch}`
      ]
      yield* run(dir, args, { auth, masker }).pipe(
        Effect.mapError((failure) =>
          failure.kind === "failed" && AUTH_RE.test(failure.text)
            ? new VcsAuthError({ operation, message: failure.text })
            : failure.kind === "failed" && REJECT_RE.test(failure.text)
              ? new PushRejected({ branch, message: failure.text })
              : new VcsError({ operation, message: failure.text })
        )
      )
    })

    const changedFiles = Effect.fn("GitVcs.changedFiles")(function* (dir: string, base: string, headRef: string) {
      const operation = "changedFiles"
      yield* refArg(operation, base, "base ref")
      yield* refArg(operation, headRef, "head ref")
      const out = yield* run(dir, ["diff", "--name-only", "-z", "--no-renames", base, headRef, "--"], {
        masker: noMasker
      }).pipe(Effect.mapError(plainError(operation)))
      return out.split("\0").filter((f) => f.length > 0)
    })

    const repoInfo = Effect.fn("GitVcs.repoInfo")(function* (dir: string): Effect.fn.Return<RepoInfo, VcsError> {
      const { commit, branch } = yield* head(dir, noMasker, "repoInfo")
      const url = yield* originUrl(dir, "repoInfo")
      return { commit, branch, remote: url === null ? null : stripUrlCredentials(url) }
    })

    return Vcs.of({ checkout, createBranch, commitAll, push, changedFiles, repoInfo })
  })

/** The `Vcs` port on git. */
export const layer = (config: GitVcsConfig = {}): Layer.Layer<Vcs> => Layer.effect(Vcs, make(config))
