export { channelFor, DEFAULT_SCHEMA, InvalidSchemaName, migrate, validateSchemaName } from "./Migrations.ts"
export * as PostgresJobStore from "./PostgresJobStore.ts"
export * as PostgresQueue from "./PostgresQueue.ts"
