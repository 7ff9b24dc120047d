import { requireService, tcpReachable } from "@runlane/testkit"
import { Redis } from "ioredis"

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379"

/** True when the local Redis answers (fails in CI when it does not; skips loudly locally). */
export const redisAvailable = await requireService("Redis (127.0.0.1:6379)", () => tcpReachable(6379))

/** A key prefix no other suite (or run) uses. */
export const uniquePrefix = (name: string): string =>
  `rltest:${name}:${process.pid}:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}:`

/** Deletes every key under the prefix (SCAN on the test's own prefix only). */
export const cleanupPrefix = async (prefix: string): Promise<void> => {
  const client = new Redis(REDIS_URL)
  try {
    let cursor = "0"
    do {
      const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000)
      cursor = next
      if (keys.length > 0) await client.unlink(...keys)
    } while (cursor !== "0")
  } finally {
    client.disconnect()
  }
}
