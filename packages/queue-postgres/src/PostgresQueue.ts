import { PgClient } from "@effect/sql-pg"
import {
  type EnqueueInput,
  EnqueueInput as EnqueueInputSchema,
  type EnqueueResult,
  JobQueue,
  type JobSpec,
  type Lease,
  LeaseLost,
  type LeaseState,
  type NackDecision,
  type PeekEntry,
  QueueError,
  type QueueStats,
  type TakeOptions,
  toJobSpec
} from "@runlane/core"
import { Deferred, Effect, Exit, Layer, Predicate, Queue, Result, Schedule, Schema } from "effect"
import * as Reactivity from "effect/reactivity/Reactivity"
import { makeBatcher } from "./Batcher.ts"
import { channelFor, DEFAULT_SCHEMA, migrate, validateSchemaName } from "./Migrations.ts"

/** Tuning of one micro-batcher (see README: what batching costs in latency). */
export interface BatchOptions {
  /** Most items per statement (default 1000). */
  readonly maxBatch?: number
  /** Extra wait for more items once one is waiting, in ms (default 0: batches form only while a statement is running). */
  readonly lingerMs?: number
  /** Statements of this kind in flight at once (default 2). */
  readonly concurrency?: number
}

export interface PostgresQueueConfig {
  /** PostgreSQL schema holding the tables; created if absent (default `runlane`). */
  readonly schema?: string
  /** Run the migrations when the layer starts (default true). */
  readonly migrate?: boolean
  /** Batching of `ack` calls into one `DELETE ... WHERE token = ANY($1)`. */
  readonly ackBatch?: BatchOptions
  /** Batching of single `enqueue` calls into one multi-row `INSERT`. `enqueueMany` always sends its inputs in chunks of `maxBatch`. */
  readonly enqueueBatch?: BatchOptions
  /**
   * While jobs keep flowing, expired leases are swept back at most this often per queue and
   * process (default 1000 ms). A `take` that finds fewer ready jobs than it asked for always
   * sweeps first, and `recover` always sweeps.
   */
  readonly sweepIntervalMs?: number
  /** While the LISTEN connection is down, long-polling takes re-check this often (default 500 ms). */
  readonly listenDownPollMs?: number
  /**
   * Read-ahead of leases (default off). With `size` > a take's `max`, one query leases up to
   * `size` jobs, the take gets its `max` and the rest wait in this process for the next takes;
   * when fewer than half remain, the next chunk is fetched in the background while jobs run.
   * Costs: leases held here are not available to other processes, a job enqueued later with a
   * higher priority waits until the buffer drains, and a crash leaves them to expire (counted
   * as an attempt). Leases that get within `minRemainingMs` of expiry in the buffer, or are
   * still there when the layer closes, are released (not counted).
   */
  readonly prefetch?: { readonly size: number; readonly minRemainingMs?: number }
  /**
   * Commit lease changes (take, ack, nack, extend, recover) durably (default false: they use a
   * second pool with `synchronous_commit = off`). Enqueues are always durable. A PostgreSQL crash
   * can at worst undo the last fraction of a second of lease changes, which re-delivers those
   * jobs: at-least-once delivery holds either way.
   */
  readonly durableLeaseCommits?: boolean
  /**
   * Acknowledge from local knowledge, write behind (default false). An `ack` of a lease this
   * process took, that is still unsettled here and has more than a second left, resolves at
   * once; the DELETE follows in the next batch. Acks of other tokens are confirmed by the
   * database as usual. Cost: an ack can resolve although the database write then fails (the
   * database was unreachable, or a crash undid the take): the job is delivered again once its
   * lease expires (at-least-once holds, but "acked" no longer means "committed"). Pending writes
   * are flushed when the layer closes.
   */
  readonly writeBehindAcks?: boolean
  /** Forget request ids (idempotency keys) older than this (default 24 h, as the memory queue). */
  readonly idempotencyTtlMs?: number
}

/** A lease token is `<seq>.<uuid>`: the row's key and a random nonce that changes at every delivery. */
const TOKEN = /^([1-9][0-9]{0,18})\.([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/

interface ParsedToken {
  readonly text: string
  /** Decimal digits of a positive int8 (no leading zero). */
  readonly seq: string
  readonly uuid: string
}

const INT8_MAX = "9223372036854775807"

const parseToken = (token: string): ParsedToken | undefined => {
  const match = TOKEN.exec(token)
  if (match === null) return undefined
  const seq = match[1] as string
  // Same length, so the string order is the numeric order.
  return seq.length === INT8_MAX.length && seq > INT8_MAX ? undefined : { text: token, seq, uuid: match[2] as string }
}

/**
 * An array literal of validated token parts (digits, or hex and dashes: nothing to quote), bound
 * as one untyped parameter and cast in the statement: cheaper than an array parameter, which
 * the driver infers and encodes element by element.
 */
const arrayLiteral = (elements: ReadonlyArray<string>): string => `{${elements.join(",")}}`

/** A write-behind ack needs at least this much lease time left; otherwise it is confirmed. */
const WRITE_BEHIND_MARGIN_MS = 1000

const toQueueError =
  (what: string) =>
  (error: { readonly message?: string | undefined }): QueueError =>
    new QueueError({ message: `${what}: ${error.message ?? "PostgreSQL error"}`, cause: error })

const decodeInput = Schema.decodeUnknownResult(EnqueueInputSchema)

const ENQUEUE_KEYS: ReadonlySet<string> = new Set([
  "queue",
  "payload",
  "id",
  "key",
  "priority",
  "maxAttempts",
  "timeoutMs",
  "labels",
  "requestId",
  "delayMs"
])
const isPlainRecord = (u: unknown): u is Record<string, unknown> => {
  if (typeof u !== "object" || u === null) return false
  return Object.getPrototypeOf(u) === Object.prototype && Object.getOwnPropertySymbols(u).length === 0
}
const absentOr = (o: Record<string, unknown>, key: string, ok: (u: unknown) => boolean): boolean =>
  !(key in o) || ok(o[key])
const isNonEmptyString = (u: unknown): boolean => typeof u === "string" && u.length > 0
const isPositiveSafeInt = (u: unknown): boolean => Number.isSafeInteger(u) && (u as number) > 0
/**
 * The common enqueue input, checked by hand: a plain object with only `EnqueueInput`'s keys,
 * each of the right shape, which the `Schema` decoder would return unchanged. The decoder
 * (about half of `enqueueMany`'s client CPU) then only runs for what this does not accept,
 * so it alone decides what is invalid and words the error. Keep in step with `EnqueueInput`.
 */
const isPlainEnqueueInput = (u: unknown): u is EnqueueInput => {
  if (!isPlainRecord(u) || !("payload" in u) || !isNonEmptyString(u.queue)) return false
  for (const key in u) if (!ENQUEUE_KEYS.has(key)) return false
  return (
    absentOr(u, "id", isNonEmptyString) &&
    absentOr(u, "key", Predicate.isString) &&
    absentOr(u, "priority", Number.isSafeInteger) &&
    absentOr(u, "maxAttempts", isPositiveSafeInt) &&
    absentOr(u, "timeoutMs", isPositiveSafeInt) &&
    absentOr(u, "requestId", Predicate.isString) &&
    absentOr(u, "delayMs", (d) => Number.isSafeInteger(d) && (d as number) >= 0) &&
    absentOr(u, "labels", (labels) => {
      if (!isPlainRecord(labels)) return false
      for (const key in labels) if (typeof labels[key] !== "string") return false
      return true
    })
  )
}

/**
 * The shape `JobSpec` requires, checked by hand: this runs for every delivered job, and the
 * `Schema` decoder costs about five times the `JSON.parse` before it. Rows are written by
 * `enqueue` from decoded inputs; this only catches rows written or altered by something else.
 * Keep in step with `JobSpec` in core.
 */
const isPositiveInt = (u: unknown): u is number => Predicate.isNumber(u) && Number.isInteger(u) && u > 0
const isJobSpec = (u: unknown): u is JobSpec => {
  if (!Predicate.isObject(u)) return false
  const o = u as Record<string, unknown>
  if (!Predicate.isString(o.id) || o.id.length === 0) return false
  if (!Predicate.isString(o.queue) || o.queue.length === 0) return false
  if (!Predicate.isNumber(o.priority) || !Number.isInteger(o.priority)) return false
  if (!isPositiveInt(o.maxAttempts)) return false
  if (!Predicate.isNumber(o.enqueuedAt)) return false
  if (o.key !== undefined && !Predicate.isString(o.key)) return false
  if (o.requestId !== undefined && !Predicate.isString(o.requestId)) return false
  if (o.timeoutMs !== undefined && !isPositiveInt(o.timeoutMs)) return false
  if (!Predicate.isObject(o.labels) || Array.isArray(o.labels)) return false
  for (const value of Object.values(o.labels)) if (!Predicate.isString(value)) return false
  return true
}

/** Parses a stored spec; `undefined` when it is not a valid `JobSpec`. */
const parseSpec = (raw: string): JobSpec | undefined => {
  let value: unknown
  try {
    value = JSON.parse(raw)
  } catch {
    return undefined
  }
  if (Predicate.isObject(value) && !("payload" in value)) {
    ;(value as { payload?: unknown }).payload = undefined
  }
  return isJobSpec(value) ? value : undefined
}

interface TakenRow {
  readonly spec: string
  readonly token: string
  readonly attempts: number
  readonly expires: number
}

interface PreparedJob {
  readonly spec: JobSpec
  readonly json: string
  readonly delayMs: number
}

/** Builds the `JobQueue` service on a `PgClient`. */
export const make = (config: PostgresQueueConfig = {}) =>
  Effect.gen(function* () {
    const sql = yield* PgClient.PgClient
    const s = yield* validateSchemaName(config.schema ?? DEFAULT_SCHEMA).pipe(
      Effect.mapError((e) => new QueueError({ message: e.message }))
    )
    if (config.migrate !== false) yield* migrate(sql, s).pipe(Effect.mapError(toQueueError("migration failed")))
    const channel = channelFor(s)
    const sweepIntervalMs = config.sweepIntervalMs ?? 1000
    const listenDownPollMs = config.listenDownPollMs ?? 500
    const writeBehind = config.writeBehindAcks === true
    const held = new Map<string, number>()
    const settling = new Set<string>()
    // Lease changes (take, ack, nack, extend, sweep) may commit without waiting for the WAL
    // flush: a crash can only undo them, which returns jobs to the queue (at-least-once holds).
    const lease: PgClient.PgClient =
      config.durableLeaseCommits === true
        ? sql
        : yield* PgClient.make({
            ...sql.config,
            startupParameters: { ...sql.config.startupParameters, synchronous_commit: "off" },
            // One connection per statement: a 1,000-row read-ahead never delays an ack behind it.
            multiplex: false
          }).pipe(Effect.provide(Reactivity.layer), Effect.mapError(toQueueError("cannot connect")))
    const idempotencyTtlMs = config.idempotencyTtlMs ?? 24 * 60 * 60 * 1000

    // ---- wake-ups: LISTEN on one connection, fan out to waiting takes by queue name ----
    const waiters = new Map<string, Set<Deferred.Deferred<void>>>()
    let listening = false
    const wake = (queue: string) => {
      const set = waiters.get(queue)
      if (set === undefined) return
      waiters.delete(queue)
      for (const d of set) Deferred.doneUnsafe(d, Exit.void)
    }
    const wakeAll = () => {
      for (const queue of [...waiters.keys()]) wake(queue)
    }
    const listener = Effect.scoped(
      Effect.gen(function* () {
        const notifications = yield* sql.listen(channel)
        listening = true
        // Anything may have happened while we were not listening.
        wakeAll()
        while (true) {
          const n = yield* Queue.take(notifications)
          wake(n.payload)
        }
      })
    ).pipe(
      Effect.ensuring(Effect.sync(() => (listening = false))),
      Effect.catchCause(() => Effect.sync(() => (listening = false))),
      Effect.repeat(Schedule.spaced(200))
    )
    yield* Effect.forkScoped(listener)

    // Expired idempotency keys are replaced on conflict; this only keeps the table small.
    yield* Effect.forkScoped(
      sql
        .unsafe(`DELETE FROM ${s}.requests WHERE created_at < ${s}.now_ms() - $1`, [BigInt(idempotencyTtlMs)])
        .pipe(Effect.ignore, Effect.delay(60_000), Effect.forever)
    )
    yield* Effect.addFinalizer(() => Effect.sync(wakeAll))

    // ---- enqueue ----
    const prepare = (raw: EnqueueInput): Result.Result<PreparedJob, QueueError> => {
      let input: EnqueueInput
      if (isPlainEnqueueInput(raw)) input = raw
      else {
        const decoded = decodeInput(raw)
        if (Result.isFailure(decoded)) {
          return Result.fail(new QueueError({ message: `invalid enqueue input: ${String(decoded.failure)}` }))
        }
        input = decoded.success
      }
      const spec = toJobSpec(input)
      let json: string
      try {
        json = JSON.stringify(spec)
      } catch (cause) {
        return Result.fail(new QueueError({ message: `payload is not JSON-serialisable: ${String(cause)}` }))
      }
      return Result.succeed({ spec, json, delayMs: input.delayMs ?? 0 })
    }

    const insertStatement = `
      WITH input AS (
        SELECT id, queue, priority, delay_ms, max_attempts, spec, CASE WHEN has_request THEN request_id END AS request_id, ord
        FROM unnest($1::text[], $2::text[], $3::int4[], $4::int8[], $5::int4[], $6::text[], $7::text[], $10::bool[])
          WITH ORDINALITY AS t(id, queue, priority, delay_ms, max_attempts, spec, request_id, has_request, ord)
      ),
      req AS (
        INSERT INTO ${s}.requests (queue, request_id, job_id, created_at)
        SELECT queue, request_id, id, ${s}.now_ms() FROM input WHERE request_id IS NOT NULL ORDER BY ord
        ON CONFLICT (queue, request_id) DO UPDATE SET job_id = EXCLUDED.job_id, created_at = EXCLUDED.created_at
          WHERE ${s}.requests.created_at < ${s}.now_ms() - $9
        RETURNING job_id
      ),
      ins AS (
        INSERT INTO ${s}.jobs (id, queue, state, priority, run_at, max_attempts, updated_at, spec)
        SELECT id, queue, 'ready', priority, ${s}.now_ms() + delay_ms, max_attempts, ${s}.now_ms(), spec
        FROM input WHERE request_id IS NULL OR id IN (SELECT job_id FROM req)
        ORDER BY ord
        RETURNING id, queue
      ),
      notified AS (SELECT pg_notify($8, q) FROM (SELECT DISTINCT queue AS q FROM ins) d)
      SELECT (SELECT count(*) FROM notified)::int4 AS notified, array(SELECT id FROM ins) AS inserted`

    const insertBatch = (all: ReadonlyArray<PreparedJob>): Effect.Effect<ReadonlyArray<EnqueueResult>, QueueError> =>
      Effect.gen(function* () {
        // A request id repeated within the batch: only its first job is sent.
        const requestKey = (j: PreparedJob) => `${j.spec.queue}\u0000${j.spec.requestId}`
        const firstOf = new Map<string, PreparedJob>()
        const jobs: Array<PreparedJob> = []
        for (const j of all) {
          if (j.spec.requestId !== undefined) {
            if (firstOf.has(requestKey(j))) continue
            firstOf.set(requestKey(j), j)
          }
          jobs.push(j)
        }
        const rows = yield* sql
          .unsafe<{ inserted: ReadonlyArray<string> }>(insertStatement, [
            jobs.map((j) => j.spec.id),
            jobs.map((j) => j.spec.queue),
            jobs.map((j) => j.spec.priority),
            jobs.map((j) => BigInt(j.delayMs)),
            jobs.map((j) => j.spec.maxAttempts),
            jobs.map((j) => j.json),
            // The driver cannot type an array of nulls: "" plus a flag stands for "no request id".
            jobs.map((j) => j.spec.requestId ?? ""),
            channel,
            BigInt(idempotencyTtlMs),
            jobs.map((j) => j.spec.requestId !== undefined)
          ])
          .pipe(Effect.mapError(toQueueError("enqueue failed")))
        const inserted = new Set(rows[0]?.inserted ?? [])
        const missing = jobs.filter((j) => !inserted.has(j.spec.id) && j.spec.requestId !== undefined)
        const existing = new Map<string, string>()
        if (missing.length > 0) {
          const found = yield* sql
            .unsafe<{ queue: string; request_id: string; job_id: string }>(
              `SELECT r.queue, r.request_id, r.job_id FROM ${s}.requests r
               JOIN unnest($1::text[], $2::text[]) AS t(queue, request_id)
                 ON r.queue = t.queue AND r.request_id = t.request_id`,
              [missing.map((j) => j.spec.queue), missing.map((j) => j.spec.requestId ?? "")]
            )
            .pipe(Effect.mapError(toQueueError("enqueue failed")))
          for (const row of found) existing.set(`${row.queue}\u0000${row.request_id}`, row.job_id)
        }
        return all.map((j): EnqueueResult => {
          const id = j.spec.id
          if (j.spec.requestId !== undefined) {
            const first = firstOf.get(requestKey(j))
            if (first === j && inserted.has(id)) return { jobId: id, duplicate: false }
            const firstId = first?.spec.id ?? id
            return {
              jobId: inserted.has(firstId) ? firstId : (existing.get(requestKey(j)) ?? firstId),
              duplicate: true
            }
          }
          return { jobId: id, duplicate: !inserted.has(id) }
        })
      })

    const enqueueOptions = config.enqueueBatch ?? {}
    const maxEnqueueBatch = enqueueOptions.maxBatch ?? 1000
    const enqueueBatcher = yield* makeBatcher<PreparedJob, EnqueueResult, QueueError>({
      maxBatch: maxEnqueueBatch,
      lingerMs: enqueueOptions.lingerMs ?? 0,
      concurrency: enqueueOptions.concurrency ?? 2,
      run: (jobs) => Effect.map(insertBatch(jobs), (results) => results.map((r) => Exit.succeed(r))),
      closed: () => new QueueError({ message: "queue closed" })
    })

    const enqueue = (input: EnqueueInput): Effect.Effect<EnqueueResult, QueueError> =>
      Effect.suspend(() => {
        const prepared = prepare(input)
        return Result.isFailure(prepared) ? Effect.fail(prepared.failure) : enqueueBatcher.submit(prepared.success)
      })

    const enqueueMany = (
      inputs: ReadonlyArray<EnqueueInput>
    ): Effect.Effect<ReadonlyArray<EnqueueResult>, QueueError> =>
      Effect.gen(function* () {
        const prepared: Array<PreparedJob> = []
        for (const input of inputs) {
          const p = prepare(input)
          if (Result.isFailure(p)) return yield* p.failure
          prepared.push(p.success)
        }
        const results: Array<EnqueueResult> = []
        for (let i = 0; i < prepared.length; i += maxEnqueueBatch) {
          results.push(...(yield* insertBatch(prepared.slice(i, i + maxEnqueueBatch))))
        }
        return results
      })

    // ---- leases ----
    // Locked rows are updated through `ctid = ANY(ARRAY(...))`, a TID scan: a join on ctid
    // hashes the whole table (a sequential scan per take, about half the take's cost at 20,000 rows).
    const takeStatement = `
      WITH picked AS (
        SELECT ctid FROM ${s}.jobs
        WHERE queue = $1 AND state = 'ready' AND run_at <= ${s}.now_ms()
        ORDER BY priority DESC, run_at, seq
        LIMIT $2
        FOR UPDATE SKIP LOCKED
      )
      , taken AS (
        UPDATE ${s}.jobs j
        SET state = 'inflight', token = gen_random_uuid(), lease_expires_at = ${s}.now_ms() + $3, consumer = $4
        WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM picked))
        RETURNING j.spec, j.seq, j.token, j.attempts, j.lease_expires_at, j.priority, j.run_at
      )
      SELECT spec, seq::text || '.' || token::text AS token, attempts, lease_expires_at::float8 AS expires
      FROM taken ORDER BY priority DESC, run_at, seq`

    const sweepStatement = `
      WITH expired AS (
        SELECT ctid FROM ${s}.jobs
        WHERE queue = $1 AND state = 'inflight' AND lease_expires_at <= ${s}.now_ms()
        FOR UPDATE SKIP LOCKED
      ),
      moved AS (
        UPDATE ${s}.jobs j
        SET attempts = j.attempts + 1, state = 'ready', reason = 'lease expired',
            token = NULL, lease_expires_at = NULL, consumer = NULL, updated_at = ${s}.now_ms()
        WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM expired))
        RETURNING j.state
      ),
      notified AS (SELECT pg_notify($2, $1) WHERE EXISTS (SELECT 1 FROM moved WHERE state = 'ready'))
      SELECT (SELECT count(*) FROM moved)::int4 AS moved, (SELECT count(*) FROM notified)::int4 AS notified`

    const lastSweep = new Map<string, number>()
    const sweep = (queue: string): Effect.Effect<number, QueueError> =>
      lease.unsafe<{ moved: number }>(sweepStatement, [queue, channel]).pipe(
        Effect.map((rows) => {
          lastSweep.set(queue, Date.now())
          return rows[0]?.moved ?? 0
        }),
        Effect.mapError(toQueueError("recover failed"))
      )

    const deadLetterMalformed = (tokens: ReadonlyArray<string>) =>
      lease
        .unsafe(
          `UPDATE ${s}.jobs SET state = 'dead', reason = 'malformed job spec', token = NULL, lease_expires_at = NULL,
                  updated_at = ${s}.now_ms() WHERE seq = ANY($1::int8[])`,
          [arrayLiteral(tokens.flatMap((token) => parseToken(token)?.seq ?? []))]
        )
        .pipe(Effect.mapError(toQueueError("take failed")))

    const takeOnce = (options: TakeOptions, max: number): Effect.Effect<Array<Lease>, QueueError> =>
      Effect.gen(function* () {
        const rows = yield* lease
          .unsafe<TakenRow>(takeStatement, [options.queue, max, BigInt(options.visibilityMs), options.consumer ?? null])
          .pipe(Effect.mapError(toQueueError("take failed")))
        if (rows.length === 0) return []
        const leases: Array<Lease> = []
        const malformed: Array<string> = []
        for (const row of rows) {
          const job = parseSpec(row.spec)
          if (job === undefined) malformed.push(row.token)
          else {
            leases.push({ job, token: row.token, attempt: row.attempts + 1, expiresAt: row.expires })
            if (writeBehind) held.set(row.token, row.expires)
          }
        }
        if (malformed.length > 0) yield* deadLetterMalformed(malformed)
        if (held.size > 10_000) {
          const now = Date.now()
          for (const [token, expiresAt] of held) if (expiresAt <= now) held.delete(token)
        }
        return leases
      })

    const nextDueStatement = `
      SELECT least(
        (SELECT min(run_at) FROM ${s}.jobs WHERE queue = $1 AND state = 'ready'),
        (SELECT min(lease_expires_at) FROM ${s}.jobs WHERE queue = $1 AND state = 'inflight')
      )::float8 AS due, (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now`

    const validTake = (options: TakeOptions): QueueError | undefined => {
      if (options.queue.length === 0) return new QueueError({ message: "take: queue name must not be empty" })
      if (!Number.isInteger(options.max) || options.max < 1)
        return new QueueError({ message: `take: max must be a positive integer (got ${options.max})` })
      if (!Number.isFinite(options.visibilityMs) || options.visibilityMs <= 0)
        return new QueueError({ message: `take: visibilityMs must be positive (got ${options.visibilityMs})` })
      if (!Number.isFinite(options.waitMs) || options.waitMs < 0)
        return new QueueError({ message: `take: waitMs must be zero or more (got ${options.waitMs})` })
      return undefined
    }

    const takeRaw = (options: TakeOptions): Effect.Effect<Array<Lease>, QueueError> =>
      Effect.gen(function* () {
        const due = Date.now() - (lastSweep.get(options.queue) ?? 0) >= sweepIntervalMs
        if (due) yield* sweep(options.queue)
        const leases = yield* takeOnce(options, options.max)
        if (leases.length < options.max && !due) {
          // Fewer ready jobs than asked for: return expired leases now and top up.
          const moved = yield* sweep(options.queue)
          if (moved > 0) leases.push(...(yield* takeOnce(options, options.max - leases.length)))
        }
        return leases
      })

    // ---- read-ahead buffers (config.prefetch), keyed by queue, visibility and consumer ----
    const prefetchSize = Math.max(0, Math.floor(config.prefetch?.size ?? 0))
    interface Buffer {
      /** Buffered leases from `head` on (a queue without shifting the array at every take). */
      leases: Array<Lease>
      head: number
      fetching: Deferred.Deferred<void> | undefined
    }
    const buffered = (buffer: Buffer) => buffer.leases.length - buffer.head
    const buffers = new Map<string, Buffer>()
    const layerScope = yield* Effect.scope

    /** Puts never-delivered buffered leases back where they were (no attempt counted, FIFO kept). */
    const releaseLeases = (leases: ReadonlyArray<Lease>): Effect.Effect<void> => {
      const parsed = leases.flatMap((l) => {
        const p = parseToken(l.token)
        return p === undefined ? [] : [p]
      })
      if (parsed.length === 0) return Effect.void
      return lease
        .unsafe(
          `WITH moved AS (
             UPDATE ${s}.jobs j SET state = 'ready', token = NULL, lease_expires_at = NULL, consumer = NULL
             FROM unnest($1::int8[], $2::uuid[]) AS t(seq, token)
             WHERE j.seq = t.seq AND j.token = t.token
             RETURNING j.queue
           )
           SELECT pg_notify($3, q) FROM (SELECT DISTINCT queue AS q FROM moved) d`,
          [arrayLiteral(parsed.map((p) => p.seq)), arrayLiteral(parsed.map((p) => p.uuid)), channel]
        )
        .pipe(Effect.ignore)
    }

    /** Hands out up to `max` buffered leases that still have time left; releases stale ones. */
    const fromBuffer = (buffer: Buffer, max: number, visibilityMs: number): Array<Lease> => {
      const margin = config.prefetch?.minRemainingMs ?? Math.min(1000, Math.floor(visibilityMs / 2))
      const now = Date.now()
      const out: Array<Lease> = []
      const stale: Array<Lease> = []
      let i = buffer.head
      for (; i < buffer.leases.length && out.length < max; i++) {
        const lease = buffer.leases[i] as Lease
        if (lease.expiresAt - now > margin) out.push(lease)
        else stale.push(lease)
      }
      buffer.head = i
      if (buffer.head === buffer.leases.length) {
        buffer.leases = []
        buffer.head = 0
      }
      if (stale.length > 0) Effect.runFork(releaseLeases(stale))
      return out
    }

    const fill = (buffer: Buffer, options: TakeOptions, count: number): Effect.Effect<void, QueueError> => {
      const done = Deferred.makeUnsafe<void>()
      buffer.fetching = done
      return takeRaw({ ...options, max: count }).pipe(
        Effect.flatMap((leases) =>
          Effect.sync(() => {
            if (buffer.head > 0) {
              buffer.leases = buffer.leases.slice(buffer.head)
              buffer.head = 0
            }
            buffer.leases.push(...leases)
          })
        ),
        Effect.ensuring(
          Effect.sync(() => {
            buffer.fetching = undefined
            Deferred.doneUnsafe(done, Exit.void)
          })
        )
      )
    }

    const bufferFor = (options: TakeOptions): Buffer => {
      const key = `${options.queue}\u0000${options.visibilityMs}\u0000${options.consumer ?? ""}`
      let buffer = buffers.get(key)
      if (buffer === undefined) {
        buffer = { leases: [], head: 0, fetching: undefined }
        buffers.set(key, buffer)
      }
      return buffer
    }

    const readAhead = (buffer: Buffer, options: TakeOptions) =>
      Effect.forkIn(Effect.ignore(fill(buffer, options, prefetchSize - buffered(buffer))), layerScope)

    /** The common case without a round trip: enough buffered leases for this take. */
    const takeFromBuffer = (options: TakeOptions): Array<Lease> | undefined => {
      const buffer = bufferFor(options)
      if (buffered(buffer) < options.max) return undefined
      const out = fromBuffer(buffer, options.max, options.visibilityMs)
      if (out.length < options.max) {
        // Some were stale: put the good ones back in front and take the slow path.
        buffer.leases.splice(buffer.head, 0, ...out)
        return undefined
      }
      return out
    }

    const takeBuffered = (options: TakeOptions): Effect.Effect<Array<Lease>, QueueError> =>
      Effect.gen(function* () {
        const buffer = bufferFor(options)
        const out = fromBuffer(buffer, options.max, options.visibilityMs)
        if (out.length < options.max) {
          if (buffer.fetching !== undefined) yield* Deferred.await(buffer.fetching)
          else yield* fill(buffer, options, prefetchSize)
          out.push(...fromBuffer(buffer, options.max - out.length, options.visibilityMs))
        }
        if (buffer.fetching === undefined && buffered(buffer) < prefetchSize / 2 && out.length > 0) {
          // Read ahead while the jobs just handed out run.
          yield* readAhead(buffer, options)
        }
        return out
      })

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        const left = [...buffers.values()].flatMap((b) => b.leases.slice(b.head))
        buffers.clear()
        return releaseLeases(left).pipe(Effect.timeout(5000), Effect.ignore)
      })
    )

    const takeAvailable = (options: TakeOptions): Effect.Effect<Array<Lease>, QueueError> =>
      prefetchSize > options.max ? takeBuffered(options) : takeRaw(options)

    const take = (options: TakeOptions): Effect.Effect<ReadonlyArray<Lease>, QueueError> =>
      Effect.suspend(() => {
        const invalid = validTake(options)
        if (invalid !== undefined) return Effect.fail(invalid)
        const visibilityMs = Math.ceil(options.visibilityMs)
        const opts = { ...options, visibilityMs }
        if (prefetchSize > opts.max) {
          const fast = takeFromBuffer(opts)
          if (fast !== undefined) {
            const buffer = bufferFor(opts)
            if (buffer.fetching === undefined && buffered(buffer) < prefetchSize / 2) {
              return Effect.as(readAhead(buffer, opts), fast)
            }
            return Effect.succeed(fast)
          }
        }
        return takeWaiting(opts)
      })

    const takeWaiting = (opts: TakeOptions): Effect.Effect<ReadonlyArray<Lease>, QueueError> =>
      Effect.gen(function* () {
        const options = opts
        const deadline = Date.now() + options.waitMs
        while (true) {
          // Register before looking, so a NOTIFY between the look and the wait is not lost.
          const waiter = options.waitMs > 0 ? Deferred.makeUnsafe<void>() : undefined
          if (waiter !== undefined) {
            const set = waiters.get(options.queue) ?? new Set()
            set.add(waiter)
            waiters.set(options.queue, set)
          }
          const unregister = Effect.sync(() => {
            if (waiter !== undefined) waiters.get(options.queue)?.delete(waiter)
          })
          const leases = yield* takeAvailable(opts).pipe(Effect.onError(() => unregister))
          const remaining = deadline - Date.now()
          if (leases.length > 0 || remaining <= 0 || waiter === undefined) {
            yield* unregister
            return leases
          }
          const next = yield* sql.unsafe<{ due: number | null; now: number }>(nextDueStatement, [options.queue]).pipe(
            Effect.mapError(toQueueError("take failed")),
            Effect.onError(() => unregister)
          )
          const row = next[0]
          let waitMs = remaining
          if (row !== undefined && row.due !== null) waitMs = Math.min(waitMs, Math.max(1, row.due - row.now + 1))
          if (!listening) waitMs = Math.min(waitMs, listenDownPollMs)
          yield* Deferred.await(waiter).pipe(Effect.timeoutOption(waitMs), Effect.ensuring(unregister))
        }
      })

    // Rows are matched by (seq, token) only: a row has a token exactly while it is inflight (every
    // statement that leaves 'inflight' clears it), and a `state = 'inflight'` condition lets the
    // planner, on statistics taken while few rows were inflight, read the whole jobs_inflight index
    // into a hash join for every batch instead of one primary-key lookup per token.
    const ackStatement = `
      DELETE FROM ${s}.jobs j USING unnest($1::int8[], $2::uuid[]) AS t(seq, token)
      WHERE j.seq = t.seq AND j.token = t.token AND j.lease_expires_at > ${s}.now_ms()
      RETURNING j.seq::text || '.' || j.token::text AS token`

    const ackOptions = config.ackBatch ?? {}
    const ackBatcher = yield* makeBatcher<ParsedToken, void, LeaseLost | QueueError>({
      maxBatch: ackOptions.maxBatch ?? 1000,
      lingerMs: ackOptions.lingerMs ?? 0,
      concurrency: ackOptions.concurrency ?? 2,
      run: (tokens) =>
        lease
          .unsafe<{ token: string }>(ackStatement, [
            arrayLiteral(tokens.map((t) => t.seq)),
            arrayLiteral(tokens.map((t) => t.uuid))
          ])
          .pipe(
            Effect.mapError(toQueueError("ack failed")),
            Effect.map((rows) => {
              const acked = new Set<string>()
              for (const row of rows) acked.add(row.token)
              return tokens.map(({ text }) => {
                if (acked.has(text)) {
                  // A token repeated within one batch: only its first ack wins.
                  acked.delete(text)
                  return Exit.void
                }
                return Exit.fail(new LeaseLost({ message: "lease expired, already acked, or never issued" }))
              })
            })
          ),
      closed: () => new QueueError({ message: "queue closed" })
    })

    const leaseLost = (what: string) =>
      new LeaseLost({ message: `${what}: lease expired, already acked, or never issued` })

    // Write-behind acks (config.writeBehindAcks): leases taken here and not yet settled, and
    // tokens acked here whose DELETE has not completed yet.
    let pendingWrites = 0
    const writeBehindAck = (parsed: ParsedToken): Effect.Effect<void, LeaseLost | QueueError> => {
      const expiresAt = held.get(parsed.text)
      held.delete(parsed.text)
      if (expiresAt === undefined || expiresAt - Date.now() <= WRITE_BEHIND_MARGIN_MS) return ackBatcher.submit(parsed)
      settling.add(parsed.text)
      pendingWrites++
      ackBatcher.fire(parsed, (exit) => {
        settling.delete(parsed.text)
        pendingWrites--
        if (Exit.isFailure(exit)) {
          Effect.runFork(
            Effect.logWarning(
              `write-behind ack of job row ${parsed.seq} failed; the job will be delivered again`,
              exit.cause
            )
          )
        }
      })
      return Effect.void
    }
    // Before the batcher closes, let write-behind acks reach the database.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        const deadline = Date.now() + 5000
        while (pendingWrites > 0 && Date.now() < deadline) yield* Effect.sleep(5)
      })
    )

    const ack = (token: string): Effect.Effect<void, LeaseLost | QueueError> => {
      const parsed = parseToken(token)
      if (parsed === undefined || settling.has(token)) return Effect.fail(leaseLost("ack"))
      return writeBehind ? writeBehindAck(parsed) : ackBatcher.submit(parsed)
    }

    const nackStatement = (decision: NackDecision): string => {
      switch (decision._tag) {
        case "retry":
          return `attempts = attempts + 1, state = 'ready', run_at = ${s}.now_ms() + $2, reason = coalesce($3::text, reason)`
        case "release":
          return `state = 'ready', run_at = ${s}.now_ms() + $2, reason = coalesce($3::text, reason)`
        case "dead":
          return `attempts = attempts + 1, state = 'dead', reason = $3::text`
      }
    }

    const nack = (token: string, decision: NackDecision): Effect.Effect<void, LeaseLost | QueueError> =>
      Effect.gen(function* () {
        const parsed = parseToken(token)
        if (parsed === undefined || settling.has(token)) return yield* leaseLost("nack")
        held.delete(token)
        const delayMs = decision._tag === "dead" ? 0 : decision.delayMs
        if (!Number.isFinite(delayMs) || delayMs < 0)
          return yield* new QueueError({ message: `nack: delayMs must be zero or more (got ${delayMs})` })
        const reason =
          decision._tag === "dead" ? decision.reason : decision._tag === "retry" ? (decision.error ?? null) : null
        const rows = yield* lease
          .unsafe<{ queue: string }>(
            `WITH moved AS (
               UPDATE ${s}.jobs SET ${nackStatement(decision)},
                 token = NULL, lease_expires_at = NULL, consumer = NULL, updated_at = ${s}.now_ms()
               WHERE seq = $1 AND token = $5::uuid AND state = 'inflight' AND lease_expires_at > ${s}.now_ms()
               RETURNING queue, state
             ),
             notified AS (SELECT pg_notify($4, queue) FROM moved WHERE state = 'ready')
             SELECT queue, (SELECT count(*) FROM notified)::int4 AS notified FROM moved`,
            [BigInt(parsed.seq), BigInt(Math.ceil(delayMs)), reason, channel, parsed.uuid]
          )
          .pipe(Effect.mapError(toQueueError("nack failed")))
        if (rows.length === 0) return yield* leaseLost("nack")
      })

    const extend = (token: string, visibilityMs: number): Effect.Effect<number, LeaseLost | QueueError> =>
      Effect.gen(function* () {
        const parsed = parseToken(token)
        if (parsed === undefined || settling.has(token)) return yield* leaseLost("extend")
        if (!Number.isFinite(visibilityMs) || visibilityMs <= 0)
          return yield* new QueueError({ message: `extend: visibilityMs must be positive (got ${visibilityMs})` })
        const rows = yield* lease
          .unsafe<{ expires: number }>(
            `UPDATE ${s}.jobs SET lease_expires_at = ${s}.now_ms() + $2
             WHERE seq = $1 AND token = $3::uuid AND state = 'inflight' AND lease_expires_at > ${s}.now_ms()
             RETURNING lease_expires_at::float8 AS expires`,
            [BigInt(parsed.seq), BigInt(Math.ceil(visibilityMs)), parsed.uuid]
          )
          .pipe(Effect.mapError(toQueueError("extend failed")))
        const row = rows[0]
        if (row === undefined) return yield* leaseLost("extend")
        if (held.has(token)) held.set(token, row.expires)
        return row.expires
      })

    const recover = (queue: string): Effect.Effect<number, QueueError> => sweep(queue)

    const stats = (queue: string): Effect.Effect<QueueStats, QueueError> =>
      sql
        .unsafe<{ ready: number; delayed: number; inflight: number; dead: number }>(
          // An expired lease counts as ready (the next take or recover returns it), as in the memory queue.
          `SELECT
             ((SELECT count(*) FROM ${s}.jobs WHERE queue = $1 AND state = 'ready' AND run_at <= ${s}.now_ms())
              + (SELECT count(*) FROM ${s}.jobs WHERE queue = $1 AND state = 'inflight' AND lease_expires_at <= ${s}.now_ms()))::int4 AS ready,
             (SELECT count(*) FROM ${s}.jobs WHERE queue = $1 AND state = 'ready' AND run_at > ${s}.now_ms())::int4 AS delayed,
             (SELECT count(*) FROM ${s}.jobs WHERE queue = $1 AND state = 'inflight' AND lease_expires_at > ${s}.now_ms())::int4 AS inflight,
             (SELECT count(*) FROM ${s}.jobs WHERE queue = $1 AND state = 'dead')::int4 AS dead`,
          [queue]
        )
        .pipe(
          Effect.mapError(toQueueError("stats failed")),
          Effect.map((rows) => {
            const row = rows[0]
            return {
              queue,
              ready: row?.ready ?? 0,
              delayed: row?.delayed ?? 0,
              inflight: row?.inflight ?? 0,
              dead: row?.dead ?? 0
            }
          })
        )

    const peekWhere: Record<LeaseState, string> = {
      ready: `state = 'ready' AND run_at <= ${s}.now_ms() ORDER BY priority DESC, run_at, seq`,
      delayed: `state = 'ready' AND run_at > ${s}.now_ms() ORDER BY run_at, seq`,
      inflight: `state = 'inflight' ORDER BY lease_expires_at`,
      dead: `state = 'dead' ORDER BY updated_at DESC`
    }

    const peek = (
      queue: string,
      options: { readonly state: LeaseState; readonly limit: number }
    ): Effect.Effect<ReadonlyArray<PeekEntry>, QueueError> =>
      Effect.gen(function* () {
        const where = peekWhere[options.state]
        if (where === undefined)
          return yield* new QueueError({ message: `peek: unknown state ${String(options.state)}` })
        const limit = Math.max(0, Math.floor(options.limit))
        const rows = yield* sql
          .unsafe<{ spec: string; attempts: number; reason: string | null }>(
            `SELECT spec, attempts, reason FROM ${s}.jobs WHERE queue = $1 AND ${where} LIMIT $2`,
            [queue, limit]
          )
          .pipe(Effect.mapError(toQueueError("peek failed")))
        return rows.map((row): PeekEntry => {
          const job = parseSpec(row.spec)
          const attempt = options.state === "inflight" ? row.attempts + 1 : row.attempts
          const entry: { -readonly [K in keyof PeekEntry]: PeekEntry[K] } = { state: options.state, attempt }
          if (job !== undefined) entry.job = job
          else entry.raw = row.spec
          if (row.reason !== null) entry.reason = row.reason
          return entry
        })
      })

    return JobQueue.of({ enqueue, enqueueMany, take, ack, nack, extend, recover, stats, peek })
  })

/** `JobQueue` on PostgreSQL; needs a `PgClient` (see `PgClient.layer`). */
export const layer = (config: PostgresQueueConfig = {}): Layer.Layer<JobQueue, QueueError, PgClient.PgClient> =>
  Layer.effect(JobQueue, make(config))
