import { Schema } from "effect"

/**
 * The requested sandbox backend cannot run on this machine. `missing` names each missing piece
 * (e.g. the Hyperlight binary, `/dev/kvm` with hardware virtualization, `/dev/mshv`, `bwrap`).
 */
export class SandboxUnavailable extends Schema.TaggedError<SandboxUnavailable>()("SandboxUnavailable", {
  backend: Schema.String,
  missing: Schema.Array(Schema.String),
  message: Schema.String
}) {}

/** The guest (QuickJS) agent failed: its code threw, or it was stopped by a limit. */
export class GuestFailure extends Schema.TaggedError<GuestFailure>()("GuestFailure", {
  reason: Schema.Literals(["exception", "timeout", "oom", "invalid-agent"]),
  message: Schema.String
}) {}
