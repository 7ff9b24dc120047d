/**
 * Per-job working directories: `<root>/<safe job id>`, created fresh for each attempt and
 * removed when the job's scope closes unless cleanup is off.
 */
import { createHash } from "node:crypto"
import { mkdir, rm, stat, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { isAbsolute, join, relative, resolve } from "node:path"
import { Context, Effect, Layer, Schema, type Scope } from "effect"

/** A workspace could not be prepared, or a name would leave it. */
export class WorkspaceError extends Schema.TaggedError<WorkspaceError>()("WorkspaceError", {
  jobId: Schema.String,
  message: Schema.String
}) {}

export interface WorkspaceConfig {
  /** Where job directories go (`TEMP_DIR`); the OS temp dir when absent. */
  readonly root?: string
  /** Remove the job directory after the job (`CLEANUP_AFTER_JOB`); default true. */
  readonly cleanup?: boolean
}

/** One job's directory. */
export interface JobWorkspace {
  readonly jobId: string
  readonly dir: string
  /**
   * A path inside the workspace from user-supplied segments. Fails rather than leave the
   * workspace (`..`, absolute paths, NUL).
   */
  readonly path: (...segments: ReadonlyArray<string>) => Effect.Effect<string, WorkspaceError>
}

/** Marks a directory as a runlane workspace; only such a directory is ever replaced. */
export const MARKER = ".runlane-workspace"

const SAFE_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/

/**
 * A directory name for a user-supplied name (a job id): the name itself when it is plain
 * (letters, digits, `._-`, not starting with a dot, at most 64 characters); otherwise the
 * name with every other character replaced, plus a hash of the original, so distinct names
 * never share a directory and none can be `.`, `..` or contain a separator.
 */
export const safeName = (name: string): string => {
  if (SAFE_RE.test(name)) return name
  const cleaned = name
    .replace(/[^A-Za-z0-9._-]/g, "_")
    .replace(/^\.+/, "_")
    .slice(0, 48)
  const hash = createHash("sha256").update(name).digest("hex").slice(0, 12)
  return `${cleaned.length === 0 ? "job" : cleaned}-${hash}`
}

/** Go's `strconv.ParseBool`; anything else gives the default. */
const parseBool = (value: string | undefined, fallback: boolean): boolean => {
  if (value === undefined || value === "") return fallback
  if (["1", "t", "T", "TRUE", "true", "True"].includes(value)) return true
  if (["0", "f", "F", "FALSE", "false", "False"].includes(value)) return false
  return fallback
}

/** `TEMP_DIR` and `CLEANUP_AFTER_JOB` from an environment (Repobox's variables and rules). */
export const configFromEnv = (env: Record<string, string | undefined> = process.env): WorkspaceConfig => {
  const root = env.TEMP_DIR
  return {
    ...(root === undefined || root === "" ? {} : { root }),
    cleanup: parseBool(env.CLEANUP_AFTER_JOB, true)
  }
}

const inside = (root: string, candidate: string): boolean => {
  const rel = relative(root, candidate)
  return rel !== "" && !rel.startsWith("..") && !isAbsolute(rel)
}

/** Hands out job workspaces. */
export class Workspace extends Context.Service<
  Workspace,
  {
    readonly root: string
    readonly cleanup: boolean
    /**
     * Creates `<root>/<safe job id>` afresh for the life of the scope. A stale workspace (one with
     * the marker file) is replaced; any other existing directory is an error, never deleted.
     */
    readonly acquire: (jobId: string) => Effect.Effect<JobWorkspace, WorkspaceError, Scope.Scope>
  }
>()("@runlane/vcs-git/Workspace") {}

export const make = (config: WorkspaceConfig = {}): Workspace["Service"] => {
  const root = resolve(config.root ?? tmpdir())
  const cleanup = config.cleanup ?? true
  const acquire = (jobId: string): Effect.Effect<JobWorkspace, WorkspaceError, Scope.Scope> => {
    const dir = join(root, safeName(jobId))
    const fail = (message: string) => new WorkspaceError({ jobId, message })
    if (!inside(root, dir)) return Effect.fail(fail("the job id does not give a directory inside the root"))
    const workspace: JobWorkspace = {
      jobId,
      dir,
      path: (...segments) => {
        if (segments.some((s) => s.includes("\0"))) return Effect.fail(fail("a path segment contains NUL"))
        const target = resolve(dir, ...segments)
        return target === dir || inside(dir, target)
          ? Effect.succeed(target)
          : Effect.fail(fail(`the path ${JSON.stringify(segments.join("/"))} leaves the workspace`))
      }
    }
    return Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          await mkdir(root, { recursive: true })
          const existing = await stat(dir).catch(() => undefined)
          if (existing !== undefined) {
            // A stale workspace of an earlier attempt is replaced; anything else is left alone.
            const marked = await stat(join(dir, MARKER)).then(
              (st) => st.isFile(),
              () => false
            )
            if (!marked) throw new Error(`${dir} exists and is not a runlane workspace`)
            await rm(dir, { recursive: true, force: true })
          }
          await mkdir(dir, { mode: 0o700 })
          await writeFile(join(dir, MARKER), `${jobId}\n`)
          return workspace
        },
        catch: (e) => fail(`cannot create ${dir}: ${e instanceof Error ? e.message : String(e)}`)
      }),
      () =>
        cleanup
          ? Effect.tryPromise(() => rm(dir, { recursive: true, force: true, maxRetries: 3 })).pipe(
              Effect.catch((e) => Effect.logWarning("failed to cleanup work dir", { jobId, dir, error: String(e) }))
            )
          : Effect.logDebug("keeping work dir", { jobId, dir })
    )
  }
  return Workspace.of({ root, cleanup, acquire })
}

export const layer = (config: WorkspaceConfig = {}): Layer.Layer<Workspace> => Layer.succeed(Workspace, make(config))

/** The layer configured from `TEMP_DIR` and `CLEANUP_AFTER_JOB`. */
export const layerFromEnv = (env: Record<string, string | undefined> = process.env): Layer.Layer<Workspace> =>
  layer(configFromEnv(env))
