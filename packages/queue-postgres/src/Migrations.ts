import { Effect, Schema } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"

/** The PostgreSQL schema name is not a plain lower-case identifier. */
export class InvalidSchemaName extends Schema.TaggedError<InvalidSchemaName>()("InvalidSchemaName", {
  message: Schema.String
}) {}

export const DEFAULT_SCHEMA = "runlane"

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/

/** Checks a schema name: lower-case letters, digits and `_`, at most 63 characters. */
export const validateSchemaName = (schema: string): Effect.Effect<string, InvalidSchemaName> =>
  IDENTIFIER.test(schema)
    ? Effect.succeed(schema)
    : Effect.fail(
        new InvalidSchemaName({
          message: `schema name must match ${IDENTIFIER.source} (got ${JSON.stringify(schema).slice(0, 80)})`
        })
      )

/** The NOTIFY channel a schema's queue uses; the payload is the queue name. */
export const channelFor = (schema: string): string => `runlane_${schema}`

/**
 * Migrations, in order. Each is a list of statements run in one transaction. `{s}` is the
 * schema name (validated as an identifier before it gets here). Times are epoch milliseconds
 * taken from the database clock (`now_ms()`), so every process agrees on lease expiry.
 */
const migrations: ReadonlyArray<{
  readonly id: number
  readonly name: string
  readonly statements: ReadonlyArray<string>
}> = [
  {
    id: 1,
    name: "queue_and_store",
    statements: [
      `CREATE FUNCTION {s}.now_ms() RETURNS bigint LANGUAGE sql STABLE PARALLEL SAFE
         AS $$ SELECT (extract(epoch FROM now()) * 1000)::bigint $$`,
      // The queue. `state` is ready | inflight | dead; "delayed" is a ready row whose run_at
      // is still in the future. `attempts` counts deliveries that ended in failure or expiry.
      // `seq` is the key (cheap, append-only btree) and FIFO order; a lease token is
      // `<seq>.<uuid>`, so acks find rows through the primary key and tokens need no index.
      `CREATE TABLE {s}.jobs (
         seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         id text NOT NULL,
         queue text NOT NULL,
         state text NOT NULL CHECK (state IN ('ready', 'inflight', 'dead')),
         priority integer NOT NULL DEFAULT 0,
         run_at bigint NOT NULL,
         attempts integer NOT NULL DEFAULT 0,
         max_attempts integer NOT NULL,
         token uuid,
         lease_expires_at bigint,
         consumer text,
         reason text,
         updated_at bigint NOT NULL,
         spec text NOT NULL
       )`,
      `CREATE INDEX jobs_ready ON {s}.jobs (queue, priority DESC, run_at, seq) WHERE state = 'ready'`,
      `CREATE INDEX jobs_inflight ON {s}.jobs (queue, lease_expires_at) WHERE state = 'inflight'`,
      `CREATE INDEX jobs_dead ON {s}.jobs (queue, updated_at DESC) WHERE state = 'dead'`,
      // Idempotency keys outlive the jobs they created (acked jobs are deleted).
      `CREATE TABLE {s}.requests (
         queue text NOT NULL,
         request_id text NOT NULL,
         job_id text NOT NULL,
         created_at bigint NOT NULL,
         PRIMARY KEY (queue, request_id)
       )`,
      // The job store: filterable columns plus the whole record as JSON; listed newest first
      // in insertion order (`seq`), as the memory store.
      `CREATE TABLE {s}.records (
         id text PRIMARY KEY,
         seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
         queue text NOT NULL,
         key text,
         status text NOT NULL,
         doc jsonb NOT NULL
       )`,
      `CREATE INDEX records_status ON {s}.records (status, seq DESC)`,
      `CREATE INDEX records_queue ON {s}.records (queue, seq DESC)`,
      `CREATE INDEX records_key ON {s}.records (key, seq DESC) WHERE key IS NOT NULL`
    ]
  }
]

/**
 * Creates the schema if absent and applies the migrations it has not seen, under an advisory
 * lock so concurrent starters do not race. Safe to call at every start.
 */
export const migrate = (sql: SqlClient, schema: string): Effect.Effect<void, SqlError | InvalidSchemaName> =>
  Effect.gen(function* () {
    const s = yield* validateSchemaName(schema)
    const run = (statement: string) => sql.unsafe(statement.replaceAll("{s}", s)).unprepared
    yield* sql.withTransaction(
      Effect.gen(function* () {
        yield* sql.unsafe(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`runlane-migrate:${s}`]).unprepared
        yield* run(`CREATE SCHEMA IF NOT EXISTS {s}`)
        yield* run(
          `CREATE TABLE IF NOT EXISTS {s}.migrations (id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`
        )
        const rows = yield* sql.unsafe<{ id: number }>(`SELECT id FROM ${s}.migrations`).unprepared
        const done = new Set(rows.map((row) => Number(row.id)))
        for (const migration of migrations) {
          if (done.has(migration.id)) continue
          for (const statement of migration.statements) yield* run(statement)
          yield* sql.unsafe(`INSERT INTO ${s}.migrations (id, name) VALUES ($1, $2)`, [migration.id, migration.name])
            .unprepared
        }
      })
    )
  })
