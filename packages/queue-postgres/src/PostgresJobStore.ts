import { PgClient } from "@effect/sql-pg"
import {
  JobNotFound,
  type JobPage,
  type JobPatch,
  JobRecord,
  JobStore,
  JobStoreError,
  type ListFilter
} from "@runlane/core"
import { Effect, Layer, Result, Schema } from "effect"
import { DEFAULT_SCHEMA, migrate, validateSchemaName } from "./Migrations.ts"

export interface PostgresJobStoreConfig {
  /** PostgreSQL schema holding the tables; created if absent (default `runlane`). */
  readonly schema?: string
  /** Run the migrations when the layer starts (default true). */
  readonly migrate?: boolean
}

const decodeRecord = Schema.decodeUnknownResult(JobRecord)

const toStoreError =
  (what: string) =>
  (error: { readonly message?: string | undefined }): JobStoreError =>
    new JobStoreError({ message: `${what}: ${error.message ?? "PostgreSQL error"}`, cause: error })

const MAX_LIMIT = 1000
const encodeCursor = (seq: string): string => Buffer.from(seq).toString("base64url")
const decodeCursor = (cursor: string): bigint | undefined => {
  const text = Buffer.from(cursor, "base64url").toString()
  return /^[1-9][0-9]{0,18}$/.test(text) ? BigInt(text) : undefined
}

/** Builds the `JobStore` service on a `PgClient`. */
export const make = (config: PostgresJobStoreConfig = {}) =>
  Effect.gen(function* () {
    const sql = yield* PgClient.PgClient
    const s = yield* validateSchemaName(config.schema ?? DEFAULT_SCHEMA).pipe(
      Effect.mapError((e) => new JobStoreError({ message: e.message }))
    )
    if (config.migrate !== false) yield* migrate(sql, s).pipe(Effect.mapError(toStoreError("migration failed")))

    const parseDoc = (doc: unknown): Effect.Effect<JobRecord, JobStoreError> => {
      const decoded = decodeRecord(doc)
      return Result.isSuccess(decoded)
        ? Effect.succeed(decoded.success)
        : Effect.fail(new JobStoreError({ message: `stored record is malformed: ${String(decoded.failure)}` }))
    }

    const serialise = (value: unknown): Result.Result<string, JobStoreError> => {
      try {
        return Result.succeed(JSON.stringify(value))
      } catch (cause) {
        return Result.fail(new JobStoreError({ message: `record is not JSON-serialisable: ${String(cause)}` }))
      }
    }

    const create = (record: JobRecord): Effect.Effect<void, JobStoreError> =>
      Effect.gen(function* () {
        const decoded = decodeRecord(record)
        if (Result.isFailure(decoded)) {
          return yield* new JobStoreError({ message: `invalid job record: ${String(decoded.failure)}` })
        }
        const json = serialise(decoded.success)
        if (Result.isFailure(json)) return yield* json.failure
        yield* sql
          .unsafe(
            `INSERT INTO ${s}.records (id, queue, key, status, doc) VALUES ($1, $2, $3::text, $4, $5::jsonb)
             ON CONFLICT (id) DO NOTHING`,
            [record.id, record.queue, record.key ?? null, record.status, json.success]
          )
          .pipe(Effect.mapError(toStoreError("create failed")))
      })

    /** Read, merge and check, then write, in one transaction: a bad patch changes nothing. */
    const update = (jobId: string, patch: JobPatch): Effect.Effect<JobRecord, JobStoreError | JobNotFound> =>
      sql
        .withTransaction(
          Effect.gen(function* () {
            const rows = yield* sql.unsafe<{ doc: unknown }>(`SELECT doc FROM ${s}.records WHERE id = $1 FOR UPDATE`, [
              jobId
            ])
            const row = rows[0]
            if (row === undefined) return yield* new JobNotFound({ jobId })
            const current = yield* parseDoc(row.doc)
            const merged = { ...current, ...patch, id: current.id, createdAt: current.createdAt }
            const decoded = decodeRecord({ ...merged, updatedAt: patch.updatedAt ?? Date.now() })
            if (Result.isFailure(decoded)) {
              return yield* new JobStoreError({ message: `invalid job patch: ${String(decoded.failure)}` })
            }
            const next = decoded.success
            const json = serialise(next)
            if (Result.isFailure(json)) return yield* json.failure
            yield* sql.unsafe(
              `UPDATE ${s}.records SET doc = $2::jsonb, status = $3, queue = $4, key = $5::text WHERE id = $1`,
              [jobId, json.success, next.status, next.queue, next.key ?? null]
            )
            return next
          })
        )
        .pipe(Effect.catchTag("SqlError", (e) => Effect.fail(toStoreError("update failed")(e))))

    const get = (jobId: string): Effect.Effect<JobRecord, JobStoreError | JobNotFound> =>
      Effect.gen(function* () {
        const rows = yield* sql
          .unsafe<{ doc: unknown }>(`SELECT doc FROM ${s}.records WHERE id = $1`, [jobId])
          .pipe(Effect.mapError(toStoreError("get failed")))
        const row = rows[0]
        if (row === undefined) return yield* new JobNotFound({ jobId })
        return yield* parseDoc(row.doc)
      })

    const list = (filter: ListFilter): Effect.Effect<JobPage, JobStoreError> =>
      Effect.gen(function* () {
        const limit = Math.max(1, Math.min(Math.floor(filter.limit ?? 50), MAX_LIMIT))
        const where: Array<string> = []
        const params: Array<unknown> = []
        const add = (clause: (n: number) => string, value: unknown) => {
          params.push(value)
          where.push(clause(params.length))
        }
        if (filter.status !== undefined) add((n) => `status = $${n}`, filter.status)
        if (filter.queue !== undefined) add((n) => `queue = $${n}`, filter.queue)
        if (filter.key !== undefined) add((n) => `key = $${n}`, filter.key)
        if (filter.cursor !== undefined) {
          const seq = decodeCursor(filter.cursor)
          if (seq === undefined) return yield* new JobStoreError({ message: "invalid cursor" })
          add((n) => `seq < $${n}`, seq)
        }
        params.push(limit + 1)
        const rows = yield* sql
          .unsafe<{ position: string; doc: unknown }>(
            `SELECT seq::text AS position, doc FROM ${s}.records ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
             ORDER BY seq DESC LIMIT $${params.length}`,
            params
          )
          .pipe(Effect.mapError(toStoreError("list failed")))
        const page = rows.slice(0, limit)
        const items = yield* Effect.forEach(page, (row) => parseDoc(row.doc))
        const last = page[page.length - 1]
        return { items, nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last.position) : null }
      })

    return JobStore.of({ create, update, get, list })
  })

/** `JobStore` on PostgreSQL; needs a `PgClient` (see `PgClient.layer`). */
export const layer = (config: PostgresJobStoreConfig = {}): Layer.Layer<JobStore, JobStoreError, PgClient.PgClient> =>
  Layer.effect(JobStore, make(config))
