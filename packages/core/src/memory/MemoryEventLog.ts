import { Effect, Layer, Queue, Stream } from "effect"
import { EventLog } from "../EventLog.ts"
import type { JobEvent, JobEventInput } from "../JobEvent.ts"

interface JobLog {
  readonly events: Array<JobEvent>
  readonly followers: Set<(events: ReadonlyArray<JobEvent>) => void>
}

export interface MemoryEventLogOptions {
  /** Keep the events of at most this many jobs; the oldest finished jobs are forgotten first. */
  readonly maxJobs?: number
}

/**
 * The in-process `EventLog`: per-job arrays with live followers. A follower registers and
 * replays in the same tick, so it sees every event exactly once and in order.
 */
export const makeMemoryEventLog = (options: MemoryEventLogOptions = {}): EventLog["Service"] => {
  const maxJobs = options.maxJobs ?? 100_000
  const logs = new Map<string, JobLog>()
  const finished: Array<string> = []

  const logOf = (jobId: string): JobLog => {
    let log = logs.get(jobId)
    if (log === undefined) {
      log = { events: [], followers: new Set() }
      logs.set(jobId, log)
    }
    return log
  }

  const evict = () => {
    while (logs.size > maxJobs && finished.length > 0) {
      const jobId = finished.shift()!
      const log = logs.get(jobId)
      if (log !== undefined && log.followers.size === 0) logs.delete(jobId)
    }
  }

  const from = (log: JobLog, fromSeq: number): ReadonlyArray<JobEvent> =>
    fromSeq <= 1 ? log.events : log.events.slice(fromSeq - 1)

  return EventLog.of({
    append: (jobId, inputs) =>
      Effect.sync(() => {
        const log = logOf(jobId)
        const now = Date.now()
        const added: Array<JobEvent> = []
        for (const input of inputs) {
          const event = { ...input, jobId, seq: log.events.length + 1, at: input.at ?? now } as JobEvent
          log.events.push(event)
          added.push(event)
          if (event._tag === "finished") finished.push(jobId)
        }
        for (const follower of log.followers) follower(added)
        if (logs.size > maxJobs) evict()
        return added
      }),
    read: (jobId, readOptions) =>
      Effect.sync(() => {
        const log = logs.get(jobId)
        if (log === undefined) return []
        const events = from(log, readOptions?.fromSeq ?? 1)
        return readOptions?.limit === undefined ? events.slice() : events.slice(0, readOptions.limit)
      }),
    follow: (jobId, followOptions) =>
      Stream.callback<JobEvent>((queue) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            const log = logOf(jobId)
            const deliver = (events: ReadonlyArray<JobEvent>) => {
              for (const event of events) {
                Queue.offerUnsafe(queue, event)
                if (event._tag === "finished") {
                  Queue.endUnsafe(queue)
                  log.followers.delete(deliver)
                  return
                }
              }
            }
            log.followers.add(deliver)
            deliver(from(log, followOptions?.fromSeq ?? 1))
            return { log, deliver }
          }),
          ({ log, deliver }) => Effect.sync(() => log.followers.delete(deliver))
        )
      )
  })
}

export const layer = (options: MemoryEventLogOptions = {}): Layer.Layer<EventLog> =>
  Layer.sync(EventLog, () => makeMemoryEventLog(options))

export type { JobEventInput }
