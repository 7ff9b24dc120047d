/** The original's Redis key names (no prefix, not configurable). */
export const STREAM = "jobs:stream"
export const GROUP = "jobs:stream:runners"
export const jobKey = (jobId: string) => `job:${jobId}`
export const outputKey = (jobId: string) => `job:${jobId}:output`
export const providerKey = (userId: string, providerId: string) => `git_provider:${userId}:${providerId}`
export const userCounterKey = (userId: string) => `runner:user:${userId}:running`
export const OUTPUT_TTL_SECONDS = 86400
export const COUNTER_TTL_SECONDS = 86400
export const RECLAIM_IDLE_MS = 5 * 60_000
