import { DEFAULT_MAX_ATTEMPTS, JobSpec } from "@runlane/core"
import { Predicate, Result, Schema } from "effect"

/** A stored value decoded into a job, or the reason it could not be. */
export type Decoded = { readonly ok: true; readonly job: JobSpec } | { readonly ok: false; readonly reason: string }

const decodeSpec = Schema.decodeResult(JobSpec)

const parseJson = (raw: string): { ok: true; value: unknown } | { ok: false; reason: string } => {
  try {
    return { ok: true, value: JSON.parse(raw) }
  } catch (error) {
    return { ok: false, reason: `not JSON: ${error instanceof Error ? error.message : String(error)}` }
  }
}

/** Decodes runlane's own JSON encoding of a `JobSpec` (validated by its schema). */
export const decodeJob = (raw: string, queue?: string): Decoded => {
  const parsed = parseJson(raw)
  if (!parsed.ok) return parsed
  const result = decodeSpec(parsed.value as typeof JobSpec.Encoded)
  if (Result.isFailure(result)) return { ok: false, reason: `not a JobSpec: ${String(result.failure.message)}` }
  if (queue !== undefined && result.success.queue !== queue)
    return { ok: false, reason: `job belongs to queue ${JSON.stringify(result.success.queue)}` }
  return { ok: true, job: result.success }
}

/**
 * Decodes a job pushed by another program in the reliable-list seed's format: a JSON object
 * with a non-empty string (or number) `id`; the whole object becomes the payload.
 */
export const decodeForeignJob = (
  raw: string,
  queue: string,
  defaults: { readonly maxAttempts?: number; readonly now: number }
): Decoded => {
  const parsed = parseJson(raw)
  if (!parsed.ok) return parsed
  const value = parsed.value
  if (!Predicate.isObject(value) || Array.isArray(value)) return { ok: false, reason: "not a JSON object" }
  const id = (value as { readonly id?: unknown }).id
  const idText = Predicate.isString(id) ? id : Predicate.isNumber(id) && Number.isFinite(id) ? String(id) : ""
  if (idText.length === 0) return { ok: false, reason: "missing a non-empty string `id`" }
  return {
    ok: true,
    job: {
      id: idText,
      queue,
      payload: value,
      priority: 0,
      maxAttempts: defaults.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      labels: {},
      enqueuedAt: defaults.now
    }
  }
}

export const encodeJob = (job: JobSpec): string => JSON.stringify(job)
