/** Entry point: `pnpm --filter @runlane/app-repobox start`. Configured only by the environment. */
import { parseKeyOrUndefined } from "@runlane/token-crypto"
import { Redis } from "ioredis"
import { loadConfig, type RepoboxConfig } from "./Config.ts"
import { startConsumer } from "./Consumer.ts"
import { makeLogger } from "./Log.ts"

const SHUTDOWN_GRACE_MS = 30_000

const main = async () => {
  let log = makeLogger(process.env.LOG_FORMAT === "text" ? "text" : "json")
  log("INFO", "Starting Repobox Runner...")
  let config: RepoboxConfig
  try {
    config = loadConfig(process.env)
  } catch (e) {
    log("ERROR", "Failed to load config", { error: (e as Error).message })
    process.exit(1)
  }
  log = makeLogger(config.logFormat)

  let redis: Redis
  try {
    const url = new URL(config.redisUrl)
    if (url.protocol !== "redis:" && url.protocol !== "rediss:")
      throw new Error(`redis: invalid URL scheme: ${url.protocol.replace(/:$/, "")}`)
    redis = new Redis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 3, retryStrategy: () => null })
    await redis.connect()
    await redis.ping()
  } catch (e) {
    log("ERROR", "Failed to connect to Redis", { error: (e as Error).message })
    process.exit(1)
  }
  redis.options.retryStrategy = (times: number) => Math.min(times * 100, 2000)
  log("INFO", "Connected to Redis", {
    runner_id: config.runnerId,
    max_concurrent_jobs: config.maxConcurrentJobs,
    max_jobs_per_user: config.maxJobsPerUser
  })

  const key = parseKeyOrUndefined(config.encryptionKey)
  if (key === undefined) {
    log("ERROR", "Failed to create executor", {
      error:
        "failed to create decryptor: ENCRYPTION_KEY must be 32 bytes: 64 hex chars, 44 base64 chars, or 32 raw chars"
    })
    redis.disconnect()
    process.exit(1)
  }
  log("INFO", "worker pool started", { workers: config.maxConcurrentJobs })

  const runner = await startConsumer(config, redis, key, log)
  let signalled = false
  const onSignal = (signal: string) => {
    if (signalled) return
    signalled = true
    log("INFO", "Received shutdown signal", { signal })
    void runner.stop(SHUTDOWN_GRACE_MS).then(() => {
      log("INFO", "Runner shutdown complete")
      redis.disconnect()
      process.exit(0)
    })
  }
  process.on("SIGINT", () => onSignal("interrupt"))
  process.on("SIGTERM", () => onSignal("terminated"))
}

void main()
