/**
 * One Repobox job: running → token → clone → branch → agent (or placeholder) → commit → push →
 * success with branch and line counts, or failed with `error_message` and an `Error: ...` line.
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import type { Executor, Vcs } from "@runlane/core"
import { decryptToken } from "@runlane/token-crypto"
import { isLoopbackHost, type RepositoryJobEvent, runRepoboxFlow, type Workspace } from "@runlane/vcs-git"
import { Deferred, Effect, Redacted } from "effect"
import type { Redis } from "ioredis"
import type { RepoboxConfig } from "./Config.ts"
import { jobKey, OUTPUT_TTL_SECONDS, outputKey, providerKey } from "./Keys.ts"
import type { Logger } from "./Log.ts"

const execFileAsync = promisify(execFile)

export interface JobContext {
  readonly redis: Redis
  readonly config: RepoboxConfig
  readonly key: Uint8Array
  readonly log: Logger
  /** Completed when the shutdown grace period has ended: running jobs are killed and fail. */
  readonly kill: Deferred.Deferred<void>
}

/** A job failure; `message` is the `error_message` (never holds the plain token). */
class JobFailure {
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

type Stream = "stdout" | "stderr"

/** Appends one output entry (`{"line","stream","timestamp"}`) and refreshes the list's 24 h TTL. */
export const appendOutput = (redis: Redis, jobId: string, line: string, stream: Stream = "stdout") =>
  Effect.promise(() =>
    redis
      .multi()
      .rpush(outputKey(jobId), JSON.stringify({ line, stream, timestamp: Date.now() }))
      .expire(outputKey(jobId), OUTPUT_TTL_SECONDS)
      .exec()
  ).pipe(Effect.ignore)

const maskToken = (token: string) => (token.length <= 12 ? "****" : `${token.slice(0, 4)}****${token.slice(-4)}`)
const maskAll = (text: string, token: string) => (token === "" ? text : text.split(token).join(maskToken(token)))

/** `repobox: {prompt}`, cut to 47 bytes + `...` past 50 bytes (by bytes, like the original). */
export const commitMessage = (prompt: string): string => {
  const bytes = Buffer.from(prompt, "utf8")
  const p = bytes.length > 50 ? `${bytes.subarray(0, 47).toString("utf8")}...` : prompt
  return `repobox: ${p}`
}

const PLACEHOLDER = `
const fs = require("node:fs")
const [id, prompt] = process.argv.slice(1)
console.log("AI agent would execute here (Phase 07)...")
console.log("Prompt: " + prompt)
try {
  fs.writeFileSync(".repobox-test.md", "# Repobox Job " + id + "\\n\\nPrompt: " + prompt + "\\n\\nExecuted at: " + new Date().toISOString().replace(/\\.\\d{3}Z$/, "Z") + "\\n")
} catch (e) { console.error("failed to create test file") }
`

/** Splits executor output into lines like Go's bufio.Scanner (trailing \r dropped, last line kept). */
const lineSplitter = (emit: (line: string, stream: Stream) => Effect.Effect<void>) => {
  const partial: Record<Stream, string> = { stdout: "", stderr: "" }
  const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() }
  return {
    push: (stream: Stream, data: Uint8Array) =>
      Effect.suspend(() => {
        const text = partial[stream] + decoders[stream].decode(data, { stream: true })
        const lines = text.split("\n")
        partial[stream] = lines.pop() ?? ""
        return Effect.forEach(lines, (l) => emit(l.replace(/\r$/, ""), stream), { discard: true })
      }),
    flush: () =>
      Effect.suspend(() => {
        const rest = (["stdout", "stderr"] as const).filter((s) => partial[s] !== "")
        const out = rest.map((s) => [partial[s].replace(/\r$/, ""), s] as const)
        partial.stdout = ""
        partial.stderr = ""
        return Effect.forEach(out, ([l, s]) => emit(l, s), { discard: true })
      })
  }
}

const STEP_LOG: ReadonlyArray<readonly [string, string]> = [
  ["Cloning", "cloning repository"],
  ["Creating branch", "creating branch"],
  ["Committing changes", "committing changes"],
  ["Pushing to remote", "pushing branch"]
]

const STEP_PREFIX: ReadonlyArray<readonly [string, string]> = [
  ["Pushing to remote", "push failed: git push failed"],
  ["Committing changes", "commit failed: git commit failed"],
  ["Creating branch", "create branch failed: git checkout -b failed"],
  ["Cloning", "clone failed: git clone failed"]
]

/** Runs a job whose `job:{id}` hash is `fields`; never fails (the outcome is written to Redis). */
export const runJob = (
  ctx: JobContext,
  jobId: string,
  providerId: string,
  fields: Record<string, string>
): Effect.Effect<void, never, Vcs | Executor | Workspace.Workspace> =>
  Effect.gen(function* () {
    const { redis, config, log } = ctx
    const userId = fields.user_id ?? ""
    const repoUrl = fields.repo_url ?? ""
    const prompt = fields.prompt ?? ""
    const out = (line: string, stream: Stream = "stdout") => appendOutput(redis, jobId, line, stream)
    let token = ""

    const started = yield* Effect.tryPromise(() =>
      redis.hset(jobKey(jobId), "status", "running", "started_at", String(Date.now()))
    ).pipe(Effect.result)
    if (started._tag === "Failure") {
      log("ERROR", "failed to update status to running", { job_id: jobId })
      return
    }
    log("INFO", "starting job execution", { job_id: jobId })

    let lastStep = ""
    const flow = Effect.gen(function* () {
      const provider = yield* Effect.tryPromise({
        try: () => redis.hgetall(providerKey(userId, providerId)),
        catch: (e) => new JobFailure(`failed to get token: ${String(e)}`)
      })
      if (Object.keys(provider).length === 0)
        return yield* Effect.fail(new JobFailure(`failed to get token: provider not found: ${providerId}`))
      const encrypted = provider.token
      if (encrypted === undefined)
        return yield* Effect.fail(new JobFailure(`failed to get token: token not found for provider: ${providerId}`))
      token = yield* decryptToken(ctx.key, encrypted).pipe(
        Effect.mapError((e) => new JobFailure(`failed to get token: failed to decrypt token: ${e.message}`))
      )
      yield* out("Starting job execution...")
      if (token !== "") {
        let url: URL
        try {
          url = new URL(repoUrl)
        } catch (e) {
          return yield* Effect.fail(
            new JobFailure(`clone failed: failed to embed token: invalid URL: ${(e as Error).message}`)
          )
        }
        const scheme = url.protocol.replace(/:$/, "")
        if (!(scheme === "https" || (scheme === "http" && isLoopbackHost(url.hostname))))
          return yield* Effect.fail(
            new JobFailure(`clone failed: failed to embed token: only HTTPS URLs supported, got: ${scheme}`)
          )
      }
      // AI_MAX_OUTPUT_LINES per stream; past it one truncation entry, later lines dropped.
      const counts: Record<Stream, number> = { stdout: 0, stderr: 0 }
      const max = config.aiMaxOutputLines
      const splitter = lineSplitter((line, stream) => {
        counts[stream] += 1
        if (counts[stream] <= max) return out(line, stream)
        if (counts[stream] === max + 1) return out(`... output truncated after ${max} lines`, stream)
        return Effect.void
      })
      const onEvent = (event: RepositoryJobEvent): Effect.Effect<void> => {
        if (event._tag === "step") {
          lastStep = event.message
          const logMsg = STEP_LOG.find(([prefix]) => event.message.startsWith(prefix))?.[1]
          if (logMsg !== undefined) log("INFO", logMsg, { job_id: jobId })
          if (event.message === "Nothing to commit.") return Effect.void
          if (event.message.startsWith("Cloning ")) return out(`Cloning ${repoUrl}...`)
          if (event.message === "Committing changes...")
            return splitter.flush().pipe(Effect.andThen(out(event.message)))
          return out(event.message)
        }
        if (event._tag === "output") return splitter.push(event.stream === "stderr" ? "stderr" : "stdout", event.data)
        return Effect.void
      }
      const agentOn = config.aiEnabled
      const command = agentOn
        ? [config.aiCliPath, "--print", "--output-format", "text", "-p", prompt]
        : [process.execPath, "-e", PLACEHOLDER, jobId, prompt]
      if (agentOn) lastStep = "agent"
      const result = yield* runRepoboxFlow({
        jobId,
        repo: {
          url: repoUrl,
          ...(token === "" ? {} : { credentials: { username: "oauth2", token: Redacted.make(token) } })
        },
        command,
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/tmp" },
        ...(agentOn ? { secrets: { ANTHROPIC_API_KEY: Redacted.make(config.anthropicApiKey) } } : {}),
        author: { name: config.gitAuthorName, email: config.gitAuthorEmail },
        message: commitMessage(prompt),
        branchPrefix: "repobox/",
        pushUnchanged: true,
        onEvent
      }).pipe(
        Effect.mapError((e) => {
          const msg = maskAll(e.message, token)
          if (e._tag === "CommandFailed") {
            return new JobFailure(
              e.exitCode === null
                ? `agent execution failed: ${msg}`
                : `agent execution failed: agent exited with code ${e.exitCode}: exit status ${e.exitCode}`
            )
          }
          const prefix = STEP_PREFIX.find(([s]) => lastStep.startsWith(s))?.[1] ?? "job failed"
          return new JobFailure(`${prefix}: ${msg}`)
        })
      )
      let added = 0
      let removed = 0
      if (result._tag === "pushed") {
        try {
          const { stdout } = yield* Effect.promise(() =>
            execFileAsync("git", ["diff", "--numstat", `${result.baseCommit}...${result.commit}`], {
              cwd: `${config.tempDir}/${jobId}/repo`
            })
          )
          for (const row of stdout.split("\n")) {
            const [a, r] = row.split("\t")
            if (a !== undefined && r !== undefined && a !== "-") {
              added += Number.parseInt(a, 10) || 0
              removed += Number.parseInt(r, 10) || 0
            }
          }
        } catch {
          // the original gives 0/0 on error
        }
      }
      return { branch: result.branch, added, removed }
    })

    const killed = Deferred.await(ctx.kill).pipe(
      Effect.andThen(Effect.fail(new JobFailure("job cancelled: runner shutting down"))),
      Effect.asVoid
    )
    const timedOut = Effect.sleep(config.jobTimeout * 1000).pipe(
      Effect.andThen(Effect.fail(new JobFailure(`job timed out after ${config.jobTimeout}s`)))
    )
    const outcome = yield* Effect.raceFirst(
      flow,
      Effect.raceFirst(killed, timedOut) as Effect.Effect<never, JobFailure>
    ).pipe(
      Effect.catchDefect((d) => Effect.fail(new JobFailure(`job failed: ${maskAll(String(d), token)}`))),
      Effect.result
    )
    if (outcome._tag === "Success") {
      const { branch, added, removed } = outcome.success
      yield* Effect.tryPromise(() =>
        redis.hset(
          jobKey(jobId),
          "status",
          "success",
          "finished_at",
          String(Date.now()),
          "branch",
          branch,
          "lines_added",
          String(added),
          "lines_removed",
          String(removed)
        )
      ).pipe(
        Effect.catch(() => Effect.sync(() => log("ERROR", "failed to update status to success", { job_id: jobId })))
      )
      log("INFO", "job completed successfully", { job_id: jobId, branch, lines_added: added, lines_removed: removed })
    } else {
      const message = maskAll(outcome.failure.message, token)
      yield* out(`Error: ${message}`, "stderr")
      yield* Effect.tryPromise(() =>
        redis.hset(jobKey(jobId), "status", "failed", "finished_at", String(Date.now()), "error_message", message)
      ).pipe(Effect.ignore)
      log("ERROR", "job failed", { job_id: jobId, error: message })
    }
  })
