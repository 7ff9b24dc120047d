export * as MemoryQueue from "./MemoryQueue.ts"
export { type MemoryQueueOptions, makeMemoryQueue } from "./MemoryQueue.ts"
