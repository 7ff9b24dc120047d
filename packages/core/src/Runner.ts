import { Cause, Effect, Exit, Fiber, Option } from "effect"
import { EventLog } from "./EventLog.ts"
import type { JobEventInput } from "./JobEvent.ts"
import type { InvalidPayload, JobContext, JobFailed, JobHandler, JobOutcome } from "./JobHandler.ts"
import { JobQueue, type Lease, type NackDecision } from "./JobQueue.ts"
import type { JobRecord, JobStatus } from "./JobSpec.ts"
import { JobStore } from "./JobStore.ts"
import { Limiter } from "./Limiter.ts"
import { SecretMasker } from "./SecretMasker.ts"

export interface BackoffConfig {
  /** Delay before the second attempt (default 1 s); doubles each attempt. */
  readonly baseMs?: number
  /** Upper bound of a delay (default 5 min). */
  readonly maxMs?: number
  /** Randomise each delay between 50% and 100% of its value (default true). */
  readonly jitter?: boolean
}

export interface RunnerConfig {
  readonly queue: string
  /** Identifies this runner in events, leases and limiter permits (default: host-pid-random). */
  readonly runnerId?: string
  /** Jobs run at once by this runner (default 10). */
  readonly concurrency?: number
  /** Leases taken per round trip (default: the free slots, at most `concurrency`). */
  readonly batchSize?: number
  /**
   * Leases held ready beyond `concurrency` (default: `batchSize` when batches are larger than 1,
   * else 0), so the next batch is taken while the current one runs. Held leases are extended by
   * the heartbeat and released at once on shutdown.
   */
  readonly prefetch?: number
  /** Lease duration (default 30 s); extended every `heartbeatMs` while a job runs. */
  readonly visibilityMs?: number
  /** Default: a third of `visibilityMs`. */
  readonly heartbeatMs?: number
  /** Long-poll wait of each take (default 1 s). */
  readonly pollWaitMs?: number
  /** Jobs with the same partition key running at once across all runners sharing the Limiter. */
  readonly maxPerKey?: number
  /** Delay before a job whose key is at its limit is offered again (default 250 ms). */
  readonly keyBusyDelayMs?: number
  readonly backoff?: BackoffConfig
  /** Timeout for jobs whose spec has none (default: none). */
  readonly defaultTimeoutMs?: number
  /** Retry a timed-out job while attempts remain (default false: `timed_out` is final). */
  readonly retryOnTimeout?: boolean
  /** On shutdown, how long in-flight jobs may finish before they are interrupted (default 10 s). */
  readonly shutdownGraceMs?: number
  /** Secrets masked in every job's output and messages, besides those a handler registers. */
  readonly secrets?: ReadonlyArray<string>
  /** Stop once the queue has nothing ready, delayed or in flight (for one-shot runs and tests). */
  readonly stopWhenIdle?: boolean
  /** Record transitions in the JobStore and events in the EventLog (default true). */
  readonly record?: boolean
}

interface InFlight {
  readonly id: number
  readonly lease: Lease
  readonly key: string | undefined
  /** `held`: taken, waiting for a slot; `running`: its handler runs; `settling`: being recorded and settled. */
  phase: "held" | "running" | "settling"
  fiber: Fiber.Fiber<void> | undefined
}

const defaultRunnerId = () =>
  `${process.env.HOSTNAME ?? "runner"}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`

/** The backoff delay before attempt `attempt + 1`. */
export const backoffDelay = (attempt: number, config: BackoffConfig = {}): number => {
  const base = config.baseMs ?? 1000
  const max = config.maxMs ?? 5 * 60 * 1000
  const delay = Math.min(max, base * 2 ** Math.max(0, attempt - 1))
  return config.jitter === false ? delay : Math.round(delay / 2 + (Math.random() * delay) / 2)
}

const errorMessage = (cause: Cause.Cause<unknown>): string => {
  const failure = Cause.findErrorOption(cause)
  if (Option.isSome(failure)) {
    const error = failure.value
    if (typeof error === "object" && error !== null && "message" in error) return String(error.message)
    return String(error)
  }
  return Cause.pretty(cause).split("\n")[0] ?? "defect"
}

/**
 * The loop every app shares: take leases in batches, run each job's handler under the
 * concurrency bound and its key's Limiter permit, extend leases while jobs run, enforce
 * timeouts, then ack, retry with backoff or dead-letter, recording every transition in the
 * JobStore and every event in the EventLog. Interrupting `run` is a graceful shutdown: no new
 * takes, in-flight jobs get `shutdownGraceMs` to finish, then are interrupted and released
 * (not counted as an attempt) so another runner takes them.
 */
export const run = <R>(
  config: RunnerConfig,
  handler: JobHandler<R>
): Effect.Effect<void, never, R | JobQueue | JobStore | EventLog | Limiter> =>
  Effect.gen(function* () {
    const queue = yield* JobQueue
    const store = yield* JobStore
    const eventLog = yield* EventLog
    const limiter = yield* Limiter

    const runnerId = config.runnerId ?? defaultRunnerId()
    const concurrency = Math.max(1, config.concurrency ?? 10)
    const batchSize = Math.max(1, config.batchSize ?? concurrency)
    const visibilityMs = config.visibilityMs ?? 30_000
    const heartbeatMs = config.heartbeatMs ?? Math.max(50, Math.floor(visibilityMs / 3))
    const pollWaitMs = config.pollWaitMs ?? 1000
    const keyBusyDelayMs = config.keyBusyDelayMs ?? 250
    const graceMs = config.shutdownGraceMs ?? 10_000
    const record = config.record !== false
    const baseMasker = new SecretMasker(config.secrets ?? [])

    const prefetch = Math.max(0, config.prefetch ?? (batchSize > 1 ? batchSize : 0))
    // Outcomes being recorded and settled while the next jobs already run: up to two slots' worth.
    const maxSettling = 2 * concurrency
    /** Every lease this runner holds, whatever its phase; the heartbeat extends them all. */
    const inflight = new Map<number, InFlight>()
    const held: Array<InFlight> = []
    let running = 0
    let settling = 0
    let localIds = 0
    let takerWaiter: (() => void) | undefined
    let stopping = false

    const wakeTaker = () => {
      const wake = takerWaiter
      takerWaiter = undefined
      wake?.()
    }
    const capacity = () => concurrency + prefetch - running - held.length
    // With batches, wait until a good part of a batch can be taken at once.
    const takeThreshold = batchSize > 1 ? Math.max(1, Math.ceil(Math.min(batchSize, concurrency + prefetch) / 2)) : 1
    const canTake = () =>
      stopping || (settling < maxSettling && (capacity() >= takeThreshold || (running === 0 && held.length === 0)))
    const waitToTake = Effect.callback<void>((resume) => {
      if (canTake()) return resume(Effect.void)
      const wake = () => {
        if (canTake()) resume(Effect.void)
        else takerWaiter = wake
      }
      takerWaiter = wake
    })

    const emit = (jobId: string, events: ReadonlyArray<JobEventInput>) =>
      record ? eventLog.append(jobId, events).pipe(Effect.ignore) : Effect.void

    const setStatus = (
      lease: Lease,
      from: JobStatus | null,
      to: JobStatus,
      patch: Partial<Omit<JobRecord, "id" | "createdAt">>,
      extra: ReadonlyArray<JobEventInput> = []
    ) =>
      record
        ? Effect.andThen(
            store.update(lease.job.id, { status: to, ...patch }).pipe(Effect.ignore),
            emit(lease.job.id, [{ _tag: "status-changed", from, to }, ...extra])
          )
        : Effect.void

    const settle = (lease: Lease, decision: NackDecision | "ack") =>
      (decision === "ack" ? queue.ack(lease.token) : queue.nack(lease.token, decision)).pipe(
        Effect.catchTag("LeaseLost", (e) =>
          Effect.logWarning(`job ${lease.job.id}: lease lost before it could be settled (${e.message})`)
        ),
        Effect.catch((e) => Effect.logError(`job ${lease.job.id}: queue error while settling: ${e.message}`))
      )

    const finish = (
      lease: Lease,
      status: JobStatus,
      decision: NackDecision | "ack",
      details: { readonly exitCode?: number | null; readonly error?: string; readonly result?: unknown }
    ): Effect.Effect<void> => {
      const patch: { -readonly [K in keyof JobRecord]?: JobRecord[K] } = { attempts: lease.attempt }
      if (status !== "queued") patch.finishedAt = Date.now()
      if (details.exitCode !== undefined) patch.exitCode = details.exitCode
      if (details.error !== undefined) patch.error = details.error
      if (details.result !== undefined) patch.result = details.result
      const finished: Array<JobEventInput> = []
      if (status !== "queued") {
        const event: Record<string, unknown> = { _tag: "finished", status }
        if (details.exitCode !== undefined) event.exitCode = details.exitCode
        if (details.error !== undefined) event.error = details.error
        finished.push(event as JobEventInput)
      }
      // Record first, then settle: a record never lags behind the queue.
      return Effect.andThen(setStatus(lease, "running", status, patch, finished), settle(lease, decision))
    }

    /** Turns the exit of one attempt into the record's status and the queue's decision. */
    const conclude = (
      lease: Lease,
      exit: Exit.Exit<Option.Option<JobOutcome>, JobFailed | InvalidPayload>,
      masker: SecretMasker,
      timeoutMs: number | undefined
    ): Effect.Effect<void> => {
      const { job } = lease
      const canRetry = lease.attempt < job.maxAttempts
      const retry = (error: string): NackDecision => ({
        _tag: "retry",
        delayMs: backoffDelay(lease.attempt, config.backoff),
        error
      })
      if (Exit.isSuccess(exit)) {
        if (Option.isSome(exit.value)) {
          const outcome = exit.value.value
          const details: { exitCode?: number | null; result?: unknown } = {}
          if (outcome.exitCode !== undefined) details.exitCode = outcome.exitCode
          if (outcome.result !== undefined) details.result = outcome.result
          return finish(lease, "succeeded", "ack", details)
        }
        const error = `timed out after ${timeoutMs} ms`
        return config.retryOnTimeout === true && canRetry
          ? finish(lease, "queued", retry(error), { error })
          : finish(lease, "timed_out", { _tag: "dead", reason: error }, { error })
      }
      const cause = exit.cause
      if (Cause.hasInterruptsOnly(cause)) {
        // Shutdown or a lost lease: give the job back without counting the attempt.
        return finish(lease, "queued", { _tag: "release", delayMs: 0 }, { error: "interrupted: runner stopped" })
      }
      const failure = Option.getOrUndefined(Cause.findErrorOption(cause))
      const error = masker.maskString(errorMessage(cause))
      if (failure?._tag === "InvalidPayload") {
        const reason = `invalid payload: ${error}`
        return finish(lease, "dead", { _tag: "dead", reason }, { error: reason })
      }
      const details: { exitCode?: number | null; error: string } = { error }
      if (failure?._tag === "JobFailed" && failure.exitCode !== undefined) details.exitCode = failure.exitCode
      const retryable = !(failure?._tag === "JobFailed" && failure.retryable === false)
      if (retryable && canRetry) return finish(lease, "queued", retry(error), details)
      const reason = `failed after ${lease.attempt} attempt(s): ${error}`
      return finish(lease, "failed", { _tag: "dead", reason }, details)
    }

    /** Records the start of an attempt, runs the handler under its timeout, then settles. */
    const attempt = (
      lease: Lease,
      restore: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
      handlerDone: Effect.Effect<void>
    ) => {
      const { job } = lease
      const masker = baseMasker.fork()
      const jobContext: JobContext = {
        job,
        attempt: lease.attempt,
        runnerId,
        masker,
        emit: (events) => emit(job.id, events)
      }
      const timeoutMs = job.timeoutMs ?? config.defaultTimeoutMs
      // Job fibers are forked from the runner's own fiber and inherit its context, which has R.
      const body = (
        Effect.suspend(() => handler(jobContext)) as Effect.Effect<JobOutcome, JobFailed | InvalidPayload>
      ).pipe(timeoutMs === undefined ? Effect.asSome : Effect.timeoutOption(timeoutMs))
      const started = record
        ? ensureRecord(lease).pipe(
            Effect.andThen(store.update(job.id, { status: "running", attempts: lease.attempt, startedAt: Date.now() })),
            Effect.ignore,
            Effect.andThen(
              emit(job.id, [
                { _tag: "started", attempt: lease.attempt, runner: runnerId },
                { _tag: "status-changed", from: "queued", to: "running" }
              ])
            )
          )
        : Effect.void
      return started.pipe(
        Effect.andThen(Effect.exit(restore(body))),
        // The slot is free once the handler is done; recording and settling go on beside the next job.
        Effect.tap(() => handlerDone),
        Effect.flatMap((exit) => conclude(lease, exit, masker, timeoutMs))
      )
    }

    /** Starts held leases while slots are free (and settling is not too far behind). */
    const pump: Effect.Effect<void> = Effect.suspend(() => {
      const starting: Array<InFlight> = []
      while (!stopping && running < concurrency && settling < maxSettling && held.length > 0) {
        const entry = held.shift()!
        entry.phase = "running"
        running++
        starting.push(entry)
      }
      if (starting.length === 0) return Effect.void
      return Effect.forEach(
        starting,
        (entry) =>
          Effect.forkDetach(processLease(entry)).pipe(
            Effect.tap((fiber) =>
              Effect.sync(() => {
                entry.fiber = fiber
              })
            )
          ),
        { discard: true }
      )
    })

    /** Runs one leased job from start to settlement; never fails. */
    const processLease = (entry: InFlight): Effect.Effect<void> => {
      const { lease } = entry
      const { job } = lease
      const limited = entry.key !== undefined && config.maxPerKey !== undefined
      const handlerDone = Effect.suspend(() => {
        if (entry.phase !== "running") return Effect.void
        entry.phase = "settling"
        running--
        settling++
        wakeTaker()
        return pump
      })
      const release = Effect.suspend(() => {
        if (entry.phase === "running") running--
        else settling--
        inflight.delete(entry.id)
        wakeTaker()
        return Effect.andThen(
          limited ? limiter.release(entry.key!, lease.token).pipe(Effect.ignore) : Effect.void,
          pump
        )
      })
      const run = Effect.uninterruptibleMask((restore) => {
        if (lease.attempt > job.maxAttempts) {
          const reason = `delivered ${lease.attempt} times without finishing (max attempts ${job.maxAttempts}); last: lease expired`
          return Effect.andThen(ensureRecord(lease), finish(lease, "dead", { _tag: "dead", reason }, { error: reason }))
        }
        if (!limited) return attempt(lease, restore, handlerDone)
        return limiter.tryAcquire(entry.key!, lease.token, { limit: config.maxPerKey!, ttlMs: visibilityMs }).pipe(
          Effect.orElseSucceed(() => false),
          Effect.flatMap((ok) =>
            ok ? attempt(lease, restore, handlerDone) : settle(lease, { _tag: "release", delayMs: keyBusyDelayMs })
          )
        )
      })
      return Effect.ensuring(run, release)
    }

    const ensureRecord = (lease: Lease) => {
      if (!record) return Effect.void
      const { job } = lease
      const now = Date.now()
      const rec: { -readonly [K in keyof JobRecord]: JobRecord[K] } = {
        id: job.id,
        queue: job.queue,
        status: "queued",
        attempts: 0,
        maxAttempts: job.maxAttempts,
        labels: job.labels,
        createdAt: job.enqueuedAt,
        updatedAt: now
      }
      if (job.key !== undefined) rec.key = job.key
      return store.create(rec).pipe(Effect.ignore)
    }

    const heartbeat = Effect.gen(function* () {
      for (;;) {
        yield* Effect.sleep(heartbeatMs)
        const entries = [...inflight.values()]
        yield* Effect.forEach(
          entries,
          (entry) =>
            Effect.suspend(() =>
              inflight.has(entry.id) ? queue.extend(entry.lease.token, visibilityMs) : Effect.void
            ).pipe(
              Effect.andThen(
                entry.key !== undefined && config.maxPerKey !== undefined
                  ? limiter.refresh(entry.key, entry.lease.token, visibilityMs).pipe(Effect.ignore)
                  : Effect.void
              ),
              Effect.catchTag("LeaseLost", () =>
                Effect.suspend(() => {
                  // Settled meanwhile: nothing was lost.
                  if (!inflight.has(entry.id) || entry.phase === "settling") return Effect.void
                  if (entry.phase === "held") {
                    held.splice(held.indexOf(entry), 1)
                    inflight.delete(entry.id)
                    wakeTaker()
                    return Effect.logWarning(`job ${entry.lease.job.id}: held lease lost before it started`)
                  }
                  return Effect.logWarning(`job ${entry.lease.job.id}: lease lost; stopping it here`).pipe(
                    Effect.andThen(
                      entry.fiber === undefined ? Effect.void : Effect.forkDetach(Fiber.interrupt(entry.fiber))
                    )
                  )
                })
              ),
              Effect.catch((e) => Effect.logWarning(`heartbeat failed: ${e.message}`))
            ),
          { concurrency: 16, discard: true }
        )
      }
    })

    const isIdle = queue.stats(config.queue).pipe(
      Effect.map((s) => s.ready + s.delayed + s.inflight === 0 && inflight.size === 0),
      Effect.orElseSucceed(() => false)
    )

    const takeLoop = Effect.gen(function* () {
      while (!stopping) {
        yield* waitToTake
        if (stopping) break
        const leases = yield* queue
          .take({
            queue: config.queue,
            max: Math.max(1, Math.min(batchSize, capacity())),
            visibilityMs,
            waitMs: pollWaitMs,
            consumer: runnerId
          })
          .pipe(
            Effect.catch((e) =>
              Effect.logError(`take failed: ${e.message}; retrying`).pipe(
                Effect.andThen(Effect.sleep(Math.min(1000, pollWaitMs + 100))),
                Effect.as([] as ReadonlyArray<Lease>)
              )
            )
          )
        for (const lease of leases) {
          const entry: InFlight = { id: ++localIds, lease, key: lease.job.key, phase: "held", fiber: undefined }
          inflight.set(entry.id, entry)
          held.push(entry)
        }
        yield* pump
        if (leases.length === 0) {
          if (config.stopWhenIdle === true && (yield* isIdle)) break
          // A take that does not long-poll must not spin while jobs run.
          if (pollWaitMs === 0) yield* Effect.sleep(5)
        }
      }
    })

    const fibers = () => [...inflight.values()].flatMap((e) => (e.fiber === undefined ? [] : [e.fiber]))

    const drain = Effect.gen(function* () {
      stopping = true
      wakeTaker()
      // Held leases never started: give them back at once.
      const unstarted = held.splice(0, held.length)
      for (const entry of unstarted) inflight.delete(entry.id)
      yield* Effect.forEach(unstarted, (entry) => settle(entry.lease, { _tag: "release", delayMs: 0 }), {
        discard: true,
        concurrency: 16
      })
      const all = fibers()
      if (all.length === 0) return
      yield* Effect.logInfo(`runner ${runnerId}: waiting up to ${graceMs} ms for ${all.length} job(s)`)
      const done = yield* Fiber.joinAll(all).pipe(Effect.timeoutOption(graceMs))
      if (Option.isNone(done)) {
        const left = fibers()
        yield* Effect.logWarning(`runner ${runnerId}: interrupting ${left.length} job(s) and releasing their leases`)
        yield* Fiber.interruptAll(left)
      }
    })

    const heartbeatFiber = yield* Effect.forkDetach(heartbeat)
    yield* takeLoop.pipe(
      Effect.andThen(() => Fiber.joinAll(fibers())),
      Effect.onInterrupt(() => drain),
      Effect.ensuring(Fiber.interrupt(heartbeatFiber))
    )
  })
