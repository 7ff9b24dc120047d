export * as ProcessExecutor from "./ProcessExecutor.ts"
export { isGroupAlive, isProcessAlive, terminateGroup } from "./processGroup.ts"
export * from "./spawnStream.ts"
