/** The original's `Job` (redis-agent-worker `src/queue.rs`), fields in serde's order. */
export interface Job {
  readonly id: string
  readonly repo_url: string
  readonly branch: string
  readonly prompt: string
  readonly mcp_connection_url: string | null
}

/**
 * The canonical entry: compact serde JSON, fields in order, `null` written. `JSON.stringify`
 * escapes exactly as serde_json does (`\b \t \n \f \r`, other controls as lowercase `\u00xx`).
 */
export const encodeJob = (job: Job): string =>
  JSON.stringify({
    id: job.id,
    repo_url: job.repo_url,
    branch: job.branch,
    prompt: job.prompt,
    mcp_connection_url: job.mcp_connection_url
  })

/** Why an entry is not a job (the original's "Failed to deserialize job" cause). */
export class JobDecodeError extends Error {
  override readonly name = "JobDecodeError"
}

/**
 * Reads an entry as serde does: `id`, `repo_url`, `branch`, `prompt` strings; `mcp_connection_url`
 * a string, `null` or absent; unknown fields ignored; anything else an error.
 */
export const decodeJob = (text: string): Job => {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new JobDecodeError(error instanceof Error ? error.message : String(error))
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new JobDecodeError("invalid type: expected struct Job")
  }
  const record = value as Record<string, unknown>
  for (const field of ["id", "repo_url", "branch", "prompt"] as const) {
    if (!(field in record)) throw new JobDecodeError(`missing field \`${field}\``)
    if (typeof record[field] !== "string") throw new JobDecodeError(`invalid type for \`${field}\`: expected a string`)
  }
  const mcp = record.mcp_connection_url
  if (mcp !== undefined && mcp !== null && typeof mcp !== "string") {
    throw new JobDecodeError("invalid type for `mcp_connection_url`: expected a string or null")
  }
  return {
    id: record.id as string,
    repo_url: record.repo_url as string,
    branch: record.branch as string,
    prompt: record.prompt as string,
    mcp_connection_url: typeof mcp === "string" ? mcp : null
  }
}
