import { queueContract } from "@runlane/testkit"
import { afterAll } from "vitest"
import { RedisListQueue, RedisStreamQueue } from "../src/index.ts"
import { cleanupPrefix, REDIS_URL, redisAvailable, uniquePrefix } from "./helpers.ts"

const streamPrefix = uniquePrefix("contract-streams")
const listPrefix = uniquePrefix("contract-list")
afterAll(async () => {
  if (!redisAvailable) return
  await cleanupPrefix(streamPrefix)
  await cleanupPrefix(listPrefix)
})

queueContract("redis-streams", () => RedisStreamQueue.layer({ url: REDIS_URL, prefix: streamPrefix }), {
  skip: !redisAvailable
})
queueContract("redis-list", () => RedisListQueue.layer({ url: REDIS_URL, prefix: listPrefix }), {
  skip: !redisAvailable
})
