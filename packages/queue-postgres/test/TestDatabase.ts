import { PgClient } from "@effect/sql-pg"
import { Effect, Layer } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"

export const PG_HOST = "127.0.0.1"
export const PG_PORT = 5432

let counter = 0
/** A database name unique to this process and call. */
export const uniqueDatabaseName = (tag: string): string =>
  `rl_qpg_${tag}_${process.pid}_${Date.now().toString(36)}_${++counter}`.toLowerCase()

const admin = (port: number) => PgClient.layer({ host: PG_HOST, port, username: "postgres", database: "postgres" })

/** Creates a database, runs `use` on it, drops it afterwards (even on failure). */
export const createDatabase = (name: string, port = PG_PORT): Effect.Effect<void, SqlError> =>
  Effect.gen(function* () {
    const sql = yield* PgClient.PgClient
    yield* sql.unsafe(`CREATE DATABASE ${name}`).unprepared
  }).pipe(Effect.provide(admin(port)))

export const dropDatabase = (name: string, port = PG_PORT): Effect.Effect<void> =>
  Effect.gen(function* () {
    const sql = yield* PgClient.PgClient
    yield* sql.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).unprepared
  }).pipe(Effect.provide(admin(port)), Effect.ignore)

/**
 * A `PgClient` on a fresh database that exists only for this layer's lifetime: created when
 * the layer is built, dropped (with FORCE) when it is released.
 */
export const freshDatabaseLayer = (
  tag: string,
  options: { readonly port?: number; readonly multiplex?: boolean } = {}
): Layer.Layer<PgClient.PgClient | SqlClient, SqlError> => {
  const port = options.port ?? PG_PORT
  return Layer.unwrap(
    Effect.gen(function* () {
      const name = uniqueDatabaseName(tag)
      yield* Effect.acquireRelease(createDatabase(name, port), () => dropDatabase(name, port))
      return PgClient.layer({
        host: PG_HOST,
        port,
        username: "postgres",
        database: name,
        multiplex: options.multiplex ?? true
      })
    })
  )
}
