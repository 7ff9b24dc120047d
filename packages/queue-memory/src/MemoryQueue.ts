import { randomBytes } from "node:crypto"
import {
  type EnqueueInput,
  type EnqueueResult,
  JobQueue,
  type JobSpec,
  type Lease,
  LeaseLost,
  type LeaseState,
  type NackDecision,
  type PeekEntry,
  type QueueStats,
  type TakeOptions,
  toJobSpec
} from "@runlane/core"
import { Effect, Layer } from "effect"
import { Fifo } from "./Fifo.ts"
import { MinHeap } from "./MinHeap.ts"

interface Entry {
  readonly job: JobSpec
  state: LeaseState
  attempt: number
  /** Number of the current lease (0 when not leased); the token is `<lease>.<secret>`. */
  lease: number
  secret: string
  expiresAt: number
  reason?: string
}

/** Unguessable token suffixes, cut from a pool of random bytes (one syscall per 340 leases). */
let pool = randomBytes(0)
let poolOffset = 0
const secretBytes = 12
const nextSecret = (): string => {
  if (poolOffset + secretBytes > pool.length) {
    pool = randomBytes(secretBytes * 340)
    poolOffset = 0
  }
  const secret = pool.toString("base64url", poolOffset, poolOffset + secretBytes)
  poolOffset += secretBytes
  return secret
}

/** Splits a token into its lease number and secret; lease 0 for a malformed token. */
const parseToken = (token: string): { readonly lease: number; readonly secret: string } => {
  const dot = token.indexOf(".")
  const lease = dot > 0 ? Number(token.slice(0, dot)) : 0
  return Number.isSafeInteger(lease) && lease > 0 ? { lease, secret: token.slice(dot + 1) } : { lease: 0, secret: "" }
}

class QueueState {
  private readonly leases: Map<number, QueueState>
  constructor(leases: Map<number, QueueState>) {
    this.leases = leases
  }
  /** Ready entries by priority; `priorities` is kept sorted, highest first. */
  readonly levels = new Map<number, Fifo<Entry>>()
  priorities: Array<number> = []
  ready = 0
  readonly delayed = new MinHeap<Entry>()
  readonly inflight = new Map<number, Entry>()
  /** No lease expires before this (a lower bound: acks do not raise it). */
  private nextExpiry = Number.POSITIVE_INFINITY
  readonly dead: Array<Entry> = []
  readonly waiters = new Set<() => void>()

  pushReady(entry: Entry): void {
    entry.state = "ready"
    entry.lease = 0
    let level = this.levels.get(entry.job.priority)
    if (level === undefined) {
      level = new Fifo()
      this.levels.set(entry.job.priority, level)
      this.priorities = [...this.levels.keys()].sort((a, b) => b - a)
    }
    level.push(entry)
    this.ready++
  }

  shiftReady(): Entry | undefined {
    for (const priority of this.priorities) {
      const entry = this.levels.get(priority)!.shift()
      if (entry !== undefined) {
        this.ready--
        return entry
      }
    }
    return undefined
  }

  schedule(entry: Entry, now: number, delayMs: number): void {
    if (delayMs <= 0) {
      this.pushReady(entry)
      return
    }
    entry.state = "delayed"
    entry.lease = 0
    this.delayed.push(now + delayMs, entry)
  }

  /**
   * Moves due delayed jobs and expired leases back to ready; returns how many leases expired.
   * Leases are scanned only when one may have expired (or when `force`), so `take` stays O(batch).
   */
  tick(now: number, force = false): number {
    while (this.delayed.size > 0 && this.delayed.peekKey()! <= now) this.pushReady(this.delayed.pop()!)
    if (!force && now < this.nextExpiry) return 0
    let expired = 0
    let next = Number.POSITIVE_INFINITY
    for (const [lease, entry] of this.inflight) {
      if (entry.expiresAt > now) {
        if (entry.expiresAt < next) next = entry.expiresAt
        continue
      }
      this.inflight.delete(lease)
      this.leases.delete(lease)
      entry.reason = "lease expired"
      this.pushReady(entry)
      expired++
    }
    this.nextExpiry = next
    return expired
  }

  /** A lease was given or extended to `expiresAt`. */
  noteExpiry(expiresAt: number): void {
    if (expiresAt < this.nextExpiry) this.nextExpiry = expiresAt
  }

  /** Milliseconds until the next delayed job is due or lease expires (Infinity when none). */
  nextDueIn(now: number): number {
    const a = this.delayed.peekKey() ?? Number.POSITIVE_INFINITY
    const b = this.nextExpiry
    return Math.max(0, Math.min(a, b) - now)
  }

  wake(): void {
    if (this.waiters.size === 0) return
    const waiters = [...this.waiters]
    this.waiters.clear()
    for (const w of waiters) w()
  }
}

export interface MemoryQueueOptions {
  /** Forget request ids older than this (default 24 h). */
  readonly idempotencyTtlMs?: number
}

/**
 * The in-process `JobQueue`: FIFO per priority level, visibility timeouts, task tokens,
 * idempotent enqueue by request id, long-polling `take` woken by enqueue, delayed retries and
 * inspectable dead letters. State lives in this process only.
 */
export const makeMemoryQueue = (options: MemoryQueueOptions = {}): JobQueue["Service"] => {
  const idempotencyTtlMs = options.idempotencyTtlMs ?? 24 * 60 * 60 * 1000
  const queues = new Map<string, QueueState>()
  const requests = new Map<string, { readonly jobId: string; readonly at: number }>()
  const leases = new Map<number, QueueState>()
  let leaseCounter = 0
  let requestsSweptAt = Date.now()

  const stateOf = (queue: string): QueueState => {
    let state = queues.get(queue)
    if (state === undefined) {
      state = new QueueState(leases)
      queues.set(queue, state)
    }
    return state
  }

  const sweepRequests = (now: number) => {
    if (now - requestsSweptAt < 60_000) return
    requestsSweptAt = now
    for (const [key, value] of requests) if (now - value.at > idempotencyTtlMs) requests.delete(key)
  }

  const enqueueOne = (input: EnqueueInput, now: number): EnqueueResult => {
    if (input.requestId !== undefined) {
      const requestKey = `${input.queue}\u0000${input.requestId}`
      const earlier = requests.get(requestKey)
      if (earlier !== undefined && now - earlier.at <= idempotencyTtlMs)
        return { jobId: earlier.jobId, duplicate: true }
      const job = toJobSpec(input, now)
      requests.set(requestKey, { jobId: job.id, at: now })
      insert(job, input.delayMs ?? 0, now)
      return { jobId: job.id, duplicate: false }
    }
    const job = toJobSpec(input, now)
    insert(job, input.delayMs ?? 0, now)
    return { jobId: job.id, duplicate: false }
  }

  const insert = (job: JobSpec, delayMs: number, now: number) => {
    const state = stateOf(job.queue)
    state.schedule({ job, state: "ready", attempt: 0, lease: 0, secret: "", expiresAt: 0 }, now, delayMs)
    state.wake()
  }

  const tryTake = (options: TakeOptions, now: number): Array<Lease> => {
    const state = stateOf(options.queue)
    state.tick(now)
    const taken: Array<Lease> = []
    const expiresAt = now + options.visibilityMs
    while (taken.length < options.max) {
      const entry = state.shiftReady()
      if (entry === undefined) break
      const lease = ++leaseCounter
      const secret = nextSecret()
      entry.state = "inflight"
      entry.lease = lease
      entry.secret = secret
      entry.attempt++
      entry.expiresAt = expiresAt
      state.inflight.set(lease, entry)
      state.noteExpiry(expiresAt)
      leases.set(lease, state)
      taken.push({ job: entry.job, token: `${lease}.${secret}`, attempt: entry.attempt, expiresAt })
    }
    return taken
  }

  const waitForWork = (state: QueueState, deadline: number) =>
    Effect.callback<void>((resume) => {
      const now = Date.now()
      let timer: ReturnType<typeof setTimeout> | undefined
      const wake = () => {
        if (timer !== undefined) clearTimeout(timer)
        state.waiters.delete(wake)
        resume(Effect.void)
      }
      state.waiters.add(wake)
      timer = setTimeout(wake, Math.max(1, Math.min(deadline - now, state.nextDueIn(now) + 1)))
      return Effect.sync(() => {
        clearTimeout(timer)
        state.waiters.delete(wake)
      })
    })

  const take = (options: TakeOptions): Effect.Effect<ReadonlyArray<Lease>> =>
    Effect.suspend(() => {
      const first = tryTake(options, Date.now())
      if (first.length > 0 || options.waitMs <= 0) return Effect.succeed(first)
      const deadline = Date.now() + options.waitMs
      const state = stateOf(options.queue)
      const loop: Effect.Effect<ReadonlyArray<Lease>> = Effect.flatMap(waitForWork(state, deadline), () => {
        const now = Date.now()
        const leases = tryTake(options, now)
        return leases.length > 0 || now >= deadline ? Effect.succeed(leases) : loop
      })
      return loop
    })

  /** The in-flight entry for a token, provided its lease is still valid. */
  const holder = (token: string, now: number): { state: QueueState; entry: Entry } | LeaseLost => {
    const { lease, secret } = parseToken(token)
    const state = leases.get(lease)
    const entry = state?.inflight.get(lease)
    if (state === undefined || entry === undefined || entry.secret !== secret) {
      return new LeaseLost({ message: "unknown or spent task token" })
    }
    if (entry.expiresAt <= now) {
      state.tick(now, true)
      return new LeaseLost({ message: "lease expired" })
    }
    return { state, entry }
  }

  const release = (state: QueueState, entry: Entry) => {
    state.inflight.delete(entry.lease)
    leases.delete(entry.lease)
    entry.lease = 0
  }

  return JobQueue.of({
    enqueue: (input) =>
      Effect.sync(() => {
        const now = Date.now()
        sweepRequests(now)
        return enqueueOne(input, now)
      }),
    enqueueMany: (inputs) =>
      Effect.sync(() => {
        const now = Date.now()
        sweepRequests(now)
        return inputs.map((input) => enqueueOne(input, now))
      }),
    take,
    ack: (token) =>
      Effect.suspend(() => {
        const found = holder(token, Date.now())
        if (found instanceof LeaseLost) return Effect.fail(found)
        release(found.state, found.entry)
        return Effect.void
      }),
    nack: (token: string, decision: NackDecision) =>
      Effect.suspend(() => {
        const now = Date.now()
        const found = holder(token, now)
        if (found instanceof LeaseLost) return Effect.fail(found)
        const { state, entry } = found
        release(state, entry)
        switch (decision._tag) {
          case "dead":
            entry.state = "dead"
            entry.reason = decision.reason
            state.dead.push(entry)
            break
          case "release":
            entry.attempt = Math.max(0, entry.attempt - 1)
            state.schedule(entry, now, decision.delayMs)
            break
          case "retry":
            if (decision.error !== undefined) entry.reason = decision.error
            state.schedule(entry, now, decision.delayMs)
            break
        }
        state.wake()
        return Effect.void
      }),
    extend: (token, visibilityMs) =>
      Effect.suspend(() => {
        const now = Date.now()
        const found = holder(token, now)
        if (found instanceof LeaseLost) return Effect.fail(found)
        found.entry.expiresAt = now + visibilityMs
        found.state.noteExpiry(found.entry.expiresAt)
        return Effect.succeed(found.entry.expiresAt)
      }),
    recover: (queue) =>
      Effect.sync(() => {
        const state = stateOf(queue)
        const expired = state.tick(Date.now(), true)
        if (state.ready > 0) state.wake()
        return expired
      }),
    stats: (queue) =>
      Effect.sync((): QueueStats => {
        const state = stateOf(queue)
        state.tick(Date.now(), true)
        return {
          queue,
          ready: state.ready,
          delayed: state.delayed.size,
          inflight: state.inflight.size,
          dead: state.dead.length
        }
      }),
    peek: (queue, { state: wanted, limit }) =>
      Effect.sync(() => {
        const state = stateOf(queue)
        state.tick(Date.now(), true)
        const out: Array<PeekEntry> = []
        const add = (entry: Entry) => {
          if (out.length >= limit) return
          const item: { -readonly [K in keyof PeekEntry]: PeekEntry[K] } = {
            state: entry.state,
            job: entry.job,
            attempt: entry.attempt
          }
          if (entry.reason !== undefined) item.reason = entry.reason
          out.push(item)
        }
        if (wanted === "ready") {
          for (const priority of state.priorities) for (const entry of state.levels.get(priority)!) add(entry)
        } else if (wanted === "inflight") {
          for (const entry of state.inflight.values()) add(entry)
        } else if (wanted === "delayed") {
          const all: Array<Entry> = []
          const copy = new MinHeap<Entry>()
          while (state.delayed.size > 0) {
            const key = state.delayed.peekKey()!
            const entry = state.delayed.pop()!
            all.push(entry)
            copy.push(key, entry)
          }
          while (copy.size > 0) {
            const key = copy.peekKey()!
            state.delayed.push(key, copy.pop()!)
          }
          for (const entry of all) add(entry)
        } else {
          for (const entry of state.dead) add(entry)
        }
        return out
      })
  })
}

/** Layer providing the in-process `JobQueue`. */
export const layer = (options: MemoryQueueOptions = {}): Layer.Layer<JobQueue> =>
  Layer.sync(JobQueue, () => makeMemoryQueue(options))
