import { Redis } from "ioredis"
import { encodeJob, type Job } from "./job.ts"

/** A runtime error printed as anyhow does: `Error: <context>`, then the causes. */
export class Failure extends Error {
  override readonly name = "Failure"
  readonly causes: ReadonlyArray<string>
  constructor(context: string, causes: ReadonlyArray<string> = []) {
    super(context)
    this.causes = causes
  }
}

/** anyhow's `{:?}` of an error chain. */
export const renderFailure = (failure: Failure): string => {
  if (failure.causes.length === 0) return `Error: ${failure.message}\n`
  const causes =
    failure.causes.length === 1
      ? `    ${failure.causes[0]}\n`
      : failure.causes.map((c, i) => `    ${i}: ${c}\n`).join("")
  return `Error: ${failure.message}\n\nCaused by:\n${causes}`
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** Atomic NACK (runlane decision 3): remove the canonical entry and, only if it was there, push it back. */
const NACK = `local n = redis.call('LREM', KEYS[1], 1, ARGV[1])
if n > 0 then redis.call('LPUSH', KEYS[2], ARGV[1]) end
return n`

/** Moves an entry from the processing list to the dead list with its reason, in one step. */
const DEAD = `local n = redis.call('LREM', KEYS[1], 1, ARGV[1])
if n > 0 then redis.call('LPUSH', KEYS[2], ARGV[2]) end
return n`

/**
 * The original's reliable list on exactly its keys: `<queue>` and `<queue>_processing` (plus
 * runlane's `<queue>_dead`). Entries are the producers' bytes; ack/nack use the canonical form.
 */
export class OriginalQueue {
  readonly client: Redis
  readonly main: string
  readonly processing: string
  readonly dead: string
  constructor(client: Redis, queueName: string) {
    this.client = client
    this.main = queueName
    this.processing = `${queueName}_processing`
    this.dead = `${queueName}_dead`
  }

  static async connect(url: string, queueName: string): Promise<OriginalQueue> {
    if (!/^(redis|rediss|redis\+unix|unix):\/\//.test(url)) {
      throw new Failure("Failed to create Redis client", [`Redis URL did not parse- InvalidClientConfig`])
    }
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
    client.on("error", () => undefined)
    try {
      await client.connect()
    } catch (error) {
      client.disconnect()
      throw new Failure("Failed to connect to Redis", [messageOf(error)])
    }
    return new OriginalQueue(client, queueName)
  }

  /** `LPUSH <queue> <json>`. */
  async enqueue(job: Job): Promise<void> {
    await this.client.lpush(this.main, encodeJob(job))
  }

  async stats(): Promise<{ readonly pending: number; readonly processing: number }> {
    const [pending, processing] = await Promise.all([this.client.llen(this.main), this.client.llen(this.processing)])
    return { pending, processing }
  }

  /** `LINDEX <queue> -1`: the next entry to be taken, raw. */
  async peek(): Promise<string | null> {
    return this.client.lindex(this.main, -1)
  }

  /** `RPOPLPUSH <queue>_processing <queue>` until nil; the number moved. */
  async recover(): Promise<number> {
    let moved = 0
    while ((await this.client.rpoplpush(this.processing, this.main)) !== null) moved++
    return moved
  }

  /** `BRPOPLPUSH <queue> <queue>_processing <timeout>` on a connection of its own; raw bytes or null. */
  async take(blocker: Redis, timeoutSeconds: number): Promise<string | null> {
    return blocker.brpoplpush(this.main, this.processing, timeoutSeconds)
  }

  /** `LREM <queue>_processing 1 <canonical json>`; whether one was removed. */
  async ack(job: Job): Promise<boolean> {
    return (await this.client.lrem(this.processing, 1, encodeJob(job))) > 0
  }

  /** Atomic NACK (one script); whether the entry was found and pushed back. */
  async nack(job: Job): Promise<boolean> {
    return ((await this.client.eval(NACK, 2, this.processing, this.main, encodeJob(job))) as number) > 0
  }

  /** Processing → `<queue>_dead` with the reason, in one script (decisions 4 and 5). */
  async deadLetter(raw: string, reason: string, attempts?: number): Promise<boolean> {
    const record = JSON.stringify({ reason, attempts: attempts ?? null, entry: raw })
    return ((await this.client.eval(DEAD, 2, this.processing, this.dead, raw, record)) as number) > 0
  }

  async close(): Promise<void> {
    await this.client.quit().catch(() => undefined)
  }
}
