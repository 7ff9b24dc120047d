import { execFile } from "node:child_process"
import { mkdir, rm } from "node:fs/promises"
import { join } from "node:path"
import { Vcs } from "@runlane/core"
import { SandboxExecutor } from "@runlane/exec-hyperlight"
import { GitVcs } from "@runlane/vcs-git"
import { Effect, Stream } from "effect"
import { borrow, giveBack, type Instance, StepFailed } from "./allocator.ts"
import type { Config } from "./config.ts"
import { decodeJob, encodeJob, type Job } from "./job.ts"
import type { Logger } from "./log.ts"
import { Failure, OriginalQueue } from "./queue.ts"

const messageOf = (error: unknown): string => {
  if (error instanceof StepFailed) return error.chain.join(": ")
  if (typeof error === "object" && error !== null && "message" in error) return String(error.message)
  return String(error)
}

const step =
  (context: string) =>
  <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, StepFailed, R> =>
    Effect.mapError(self, (error) =>
      error instanceof StepFailed
        ? new StepFailed([context, ...error.chain])
        : new StepFailed([context, messageOf(error)])
    )

const attempt = <A>(context: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (error) => new StepFailed([context, messageOf(error)]) })

/** The configured git identity (`user.name`, `user.email`) as git sees it in the checkout. */
const gitIdentity = (dir: string) =>
  attempt("Failed to commit changes", async () => {
    const get = (key: string) =>
      new Promise<string>((resolve, reject) =>
        execFile("git", ["config", "--get", key], { cwd: dir }, (error, stdout) =>
          error === null && stdout.trim() !== "" ? resolve(stdout.trim()) : reject(new Error(`no ${key} configured`))
        )
      )
    return { name: await get("user.name"), email: await get("user.email") }
  })

/** Any entry in `git status` (untracked and ignored files count, as libgit2's defaults). */
const hasChanges = (dir: string) =>
  attempt(
    "Failed to check git status",
    () =>
      new Promise<boolean>((resolve, reject) =>
        execFile("git", ["status", "--porcelain", "--ignored"], { cwd: dir }, (error, stdout) =>
          error === null ? resolve(stdout.trim() !== "") : reject(error)
        )
      )
  )

/** The agent through the sandbox: argv `[HYPERLIGHT_PATH, "--prompt", prompt]`, network limited to the MCP URL. */
const runAgent = (
  sandbox: SandboxExecutor.SandboxExecutorService,
  config: Config,
  logger: Logger,
  dir: string,
  prompt: string,
  mcpUrl: string
) =>
  Effect.gen(function* () {
    const stderrLines: Array<string> = []
    const partial = { stdout: "", stderr: "" }
    const flush = (stream: "stdout" | "stderr", text: string, end: boolean) => {
      const lines = (partial[stream] + text).split("\n")
      partial[stream] = end ? "" : (lines.pop() ?? "")
      for (const line of lines) {
        if (end && line === "") continue
        if (stream === "stdout") logger.log("info", `[Agent stdout] ${line}`)
        else {
          stderrLines.push(line)
          logger.log("warn", `[Agent stderr] ${line}`)
        }
      }
    }
    const decoder = new TextDecoder()
    let code: number | null = null
    yield* sandbox
      .runPolicy([config.hyperlightPath, "--prompt", prompt], {
        network: { _tag: "mcp-only", url: mcpUrl },
        workingDir: dir,
        readOnlyPaths: [config.hyperlightPath]
      })
      .pipe(
        Stream.runForEach((event) =>
          Effect.sync(() => {
            if (event._tag === "output")
              flush(event.stream === "stderr" ? "stderr" : "stdout", decoder.decode(event.data), false)
            else if (event._tag === "exited") code = event.code ?? -1
            else if (event._tag === "note") logger.log("warn", `[Agent sandbox] ${event.message}`)
          })
        ),
        step("Failed to execute agent")
      )
    flush("stdout", "", true)
    flush("stderr", "", true)
    if (code !== 0) {
      return yield* Effect.fail(
        new StepFailed([`Agent execution failed with exit code ${code}: ${stderrLines.join("\n")}`])
      )
    }
  })

/** One job attempt: borrow (scoped: every successful borrow is returned), checkout, agent, commit, push. */
const processJob = (job: Job, config: Config, logger: Logger, sandbox: SandboxExecutor.SandboxExecutorService) =>
  Effect.scoped(
    Effect.gen(function* () {
      const vcs = yield* Vcs
      let returned = false
      const instance: Instance = yield* Effect.acquireRelease(borrow(config.allocatorApiUrl), (held) =>
        returned
          ? Effect.void
          : giveBack(config.allocatorApiUrl, held).pipe(
              Effect.catch((error) =>
                Effect.sync(() => logger.log("error", `Failed to return instance: ${messageOf(error)}`))
              )
            )
      )
      const dir = join(config.workDir, job.id)
      yield* attempt("Failed to prepare checkout directory", () => rm(dir, { recursive: true, force: true }))
      yield* vcs.checkout({ url: job.repo_url, ref: job.branch, into: dir }).pipe(step("Failed to clone repository"))
      const mcpUrl = job.mcp_connection_url ?? instance.mcp_connection_url
      yield* runAgent(sandbox, config, logger, dir, job.prompt, mcpUrl)
      // As the original: the git identity is needed only when there is something to commit.
      const changed = yield* hasChanges(dir)
      if (!changed) logger.log("warn", "No changes detected after agent execution")
      else {
        const author = yield* gitIdentity(dir)
        const outcome = yield* vcs
          .commitAll(dir, { message: `Agent changes for job: ${job.id}\n\nPrompt: ${job.prompt}`, author })
          .pipe(step("Failed to commit changes"))
        if (outcome._tag === "nothing-to-commit") logger.log("warn", "No changes detected after agent execution")
        else yield* vcs.push(dir, job.branch, {}).pipe(step("Failed to push changes"))
      }
      yield* attempt("Failed to remove checkout directory", () => rm(dir, { recursive: true, force: true }))
      // As the original: the explicit return is awaited before the ack; a failing return fails the job.
      returned = true
      yield* giveBack(config.allocatorApiUrl, instance)
    })
  )

/** The `run` loop: connect, create WORK_DIR, recover, then take/process/ack-or-nack forever. */
export const runWorker = (
  config: Config,
  timeoutSeconds: number,
  logger: Logger,
  stop: Promise<void> = new Promise<void>(() => undefined)
) =>
  Effect.gen(function* () {
    logger.log("info", "Starting worker")
    logger.log("info", "Initializing worker")
    const queue = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () => OriginalQueue.connect(config.redisUrl, config.queueName),
        catch: (error) =>
          error instanceof Failure
            ? new Failure("Failed to create queue", [error.message, ...error.causes])
            : new Failure("Failed to create queue", [messageOf(error)])
      }),
      (q) => Effect.promise(() => q.close())
    )
    // One blocking connection per concurrent loop (decision 9: CONCURRENCY, default 1 = the original).
    const blockers = yield* Effect.acquireRelease(
      Effect.sync(() => Array.from({ length: config.concurrency }, () => queue.client.duplicate())),
      (cs) =>
        Effect.sync(() => {
          for (const c of cs) c.disconnect()
        })
    )
    yield* Effect.tryPromise({
      try: () => mkdir(config.workDir, { recursive: true }),
      catch: (error) => new Failure("Failed to create work directory", [messageOf(error)])
    })
    const sandbox = yield* SandboxExecutor.make({ backend: config.agentSandbox }).pipe(
      Effect.mapError((error) => new Failure("Failed to initialize agent sandbox", [messageOf(error)]))
    )
    logger.log("info", "Recovering stalled jobs from processing queue")
    const recovered = yield* Effect.promise(() => queue.recover())
    if (recovered > 0) logger.log("info", `Recovered ${recovered} stalled jobs`)
    logger.log("info", "Worker initialized successfully")
    logger.log("info", "Starting worker loop")
    // Failed attempts per job (canonical entry), counted by this process: MAX_ATTEMPTS (decision 4)
    // writes no key besides the original's two lists and `<QUEUE_NAME>_dead`.
    const failures = new Map<string, number>()
    let stopped = false
    const iteration = (blocker: (typeof blockers)[number]) =>
      Effect.gen(function* () {
        const raw = yield* Effect.tryPromise({
          try: () => queue.take(blocker, timeoutSeconds),
          catch: (error) => new StepFailed([messageOf(error)])
        })
        if (raw === null) {
          logger.log("debug", "No jobs available, waiting...")
          return
        }
        let job: Job
        try {
          job = decodeJob(raw)
        } catch (error) {
          // Decision 5: the entry stays in the processing list, bytes unchanged; the next job runs.
          logger.log("error", `Error processing job: Failed to deserialize job: ${messageOf(error)}`)
          return
        }
        logger.log("info", `Processing job: ${job.id}`)
        // Interrupted (the shutdown grace period ran out): the scope has returned the instance, then NACK.
        const outcome = yield* Effect.exit(
          processJob(job, config, logger, sandbox).pipe(
            Effect.onInterrupt(() =>
              Effect.promise(() => queue.nack(job)).pipe(
                Effect.andThen(
                  Effect.sync(() => logger.log("warn", `Job moved back to main queue for retry: ${job.id}`))
                ),
                Effect.ignore
              )
            )
          )
        )
        if (outcome._tag === "Success") {
          failures.delete(encodeJob(job))
          const found = yield* Effect.promise(() => queue.ack(job))
          if (!found) logger.log("warn", `Job not found in processing queue: ${job.id}`)
          logger.log("info", `Job completed successfully: ${job.id}`)
          return
        }
        const error = outcome.cause.reasons.find((r) => r._tag === "Fail")
        const chain = error === undefined ? String(outcome.cause) : messageOf(error.error)
        logger.log("error", `Job failed: ${job.id} - ${chain}`)
        if (config.maxAttempts !== undefined) {
          const key = encodeJob(job)
          const failed = (failures.get(key) ?? 0) + 1
          if (failed >= config.maxAttempts) {
            failures.delete(key)
            const moved = yield* Effect.promise(() => queue.deadLetter(key, chain, failed))
            if (moved) logger.log("warn", `Job moved to dead-letter queue after ${failed} failed attempts: ${job.id}`)
            else logger.log("error", `Job not found in processing queue during NACK: ${job.id}`)
            return
          }
          failures.set(key, failed)
        }
        const pushed = yield* Effect.promise(() => queue.nack(job))
        if (pushed) logger.log("warn", `Job moved back to main queue for retry: ${job.id}`)
        else logger.log("error", `Job not found in processing queue during NACK: ${job.id}`)
      }).pipe(
        Effect.catch((error) =>
          Effect.sync(() => {
            if (!stopped) logger.log("error", `Error processing job: ${messageOf(error)}`)
          })
        )
      )
    // A stop request: no new take (the blocking one is cut by closing its connection; an entry it had
    // already moved stays in the processing list for the next recovery); the running job finishes.
    void stop.then(() => {
      stopped = true
      logger.log("info", "Stop requested: finishing the current job")
      for (const blocker of blockers) blocker.disconnect()
    })
    yield* Effect.forEach(
      blockers,
      (blocker) =>
        Effect.gen(function* () {
          while (!stopped) yield* iteration(blocker)
        }),
      { concurrency: "unbounded", discard: true }
    )
    logger.log("info", "Worker stopped")
  }).pipe(Effect.scoped, Effect.provide(GitVcs.layer()))
