import { Schema } from "effect"
import { Labels } from "./JobSpec.ts"

export const Mount = Schema.Struct({
  source: Schema.String,
  target: Schema.String,
  readOnly: Schema.optionalKey(Schema.Boolean)
})
export type Mount = typeof Mount.Type

export const NetworkPolicy = Schema.Union([
  Schema.TaggedStruct("none", {}),
  Schema.TaggedStruct("host", {}),
  /** Only these `host:port` destinations may be reached. */
  Schema.TaggedStruct("allow", { destinations: Schema.Array(Schema.String) })
])
export type NetworkPolicy = typeof NetworkPolicy.Type

export const Resources = Schema.Struct({
  /** CPUs, fractional allowed. */
  cpus: Schema.optionalKey(Schema.Number),
  memoryBytes: Schema.optionalKey(Schema.Int),
  pids: Schema.optionalKey(Schema.Int)
})
export type Resources = typeof Resources.Type

/**
 * One command to run, the same for every executor. `argv` is never a shell string.
 * Each executor documents which fields it honours and refuses (with `UnsupportedSpec`) a
 * field it cannot honour; it never silently ignores a security setting.
 */
export const ExecSpec = Schema.Struct({
  argv: Schema.Array(Schema.String).check(Schema.isMinLength(1)),
  env: Schema.optionalKey(Schema.Record(Schema.String, Schema.String)),
  /** Secret environment variables: passed to the process, masked in all output. */
  secrets: Schema.optionalKey(Schema.Record(Schema.String, Schema.Redacted(Schema.String))),
  cwd: Schema.optionalKey(Schema.String),
  mounts: Schema.optionalKey(Schema.Array(Mount)),
  image: Schema.optionalKey(Schema.String),
  resources: Schema.optionalKey(Resources),
  network: Schema.optionalKey(NetworkPolicy),
  tty: Schema.optionalKey(Schema.Boolean),
  user: Schema.optionalKey(Schema.String),
  labels: Schema.optionalKey(Labels),
  timeoutMs: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThan(0)))
})
export type ExecSpec = typeof ExecSpec.Type
