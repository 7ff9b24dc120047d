import { Effect, Layer } from "effect"
import type { JobRecord } from "../JobSpec.ts"
import { JobNotFound, type JobPage, JobStore } from "../JobStore.ts"

/** Cursor: the position after which the next page starts, in insertion order (newest first). */
const encodeCursor = (index: number): string => Buffer.from(String(index)).toString("base64url")
const decodeCursor = (cursor: string): number => {
  const n = Number(Buffer.from(cursor, "base64url").toString())
  return Number.isInteger(n) && n >= 0 ? n : -1
}

/** The in-process `JobStore`: records by id, listed newest first with filters and cursors. */
export const makeMemoryJobStore = (): JobStore["Service"] => {
  const records = new Map<string, JobRecord>()
  const order: Array<string> = []

  return JobStore.of({
    create: (record) =>
      Effect.sync(() => {
        if (records.has(record.id)) return
        records.set(record.id, record)
        order.push(record.id)
      }),
    update: (jobId, patch) =>
      Effect.suspend(() => {
        const current = records.get(jobId)
        if (current === undefined) return Effect.fail(new JobNotFound({ jobId }))
        const next = { ...current, ...patch, updatedAt: patch.updatedAt ?? Date.now() } as JobRecord
        records.set(jobId, next)
        return Effect.succeed(next)
      }),
    get: (jobId) =>
      Effect.suspend(() => {
        const record = records.get(jobId)
        return record === undefined ? Effect.fail(new JobNotFound({ jobId })) : Effect.succeed(record)
      }),
    list: (filter) =>
      Effect.sync((): JobPage => {
        const limit = Math.max(1, Math.min(filter.limit ?? 50, 1000))
        let i = filter.cursor === undefined ? order.length - 1 : decodeCursor(filter.cursor) - 1
        const items: Array<JobRecord> = []
        for (; i >= 0 && items.length < limit; i--) {
          const record = records.get(order[i]!)!
          if (filter.status !== undefined && record.status !== filter.status) continue
          if (filter.queue !== undefined && record.queue !== filter.queue) continue
          if (filter.key !== undefined && record.key !== filter.key) continue
          items.push(record)
        }
        // i is the next index to look at; the page is complete if nothing is left before it.
        let more = false
        for (let j = i; j >= 0; j--) {
          const record = records.get(order[j]!)!
          if (filter.status !== undefined && record.status !== filter.status) continue
          if (filter.queue !== undefined && record.queue !== filter.queue) continue
          if (filter.key !== undefined && record.key !== filter.key) continue
          more = true
          break
        }
        return { items, nextCursor: more ? encodeCursor(i + 1) : null }
      })
  })
}

export const layer = (): Layer.Layer<JobStore> => Layer.sync(JobStore, makeMemoryJobStore)
