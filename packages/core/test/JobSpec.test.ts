import { describe, expect, it } from "@effect/vitest"
import { EnqueueInput, JobSpec, toJobSpec } from "@runlane/core"
import { Schema } from "effect"

describe("JobSpec", () => {
  it("fills defaults and round-trips through the schema", () => {
    const input = Schema.decodeUnknownSync(EnqueueInput)({ queue: "q", payload: { a: 1 }, key: "u1" })
    const spec = toJobSpec(input, 1000)
    expect(spec.maxAttempts).toBe(3)
    expect(spec.priority).toBe(0)
    expect(Schema.decodeUnknownSync(JobSpec)(JSON.parse(JSON.stringify(spec)))).toEqual(spec)
  })
  it("rejects a job without a queue", () => {
    expect(() => Schema.decodeUnknownSync(EnqueueInput)({ payload: 1 })).toThrow()
  })
})
