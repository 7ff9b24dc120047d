export type { RedisQueueConfig } from "./QueueSupport.ts"
export { DEFAULT_REDIS_URL, type RedisConnectionConfig } from "./RedisConnection.ts"
export type { RedisStreamQueueConfig } from "./RedisStreamQueue.ts"
export * as RedisStreamQueue from "./RedisStreamQueue.ts"
