import { execFileSync } from "node:child_process"
import type { ExecEvent } from "@runlane/core"
import { Effect, Stream } from "effect"

export interface Collected {
  readonly events: Array<ExecEvent>
  readonly stdout: string
  readonly stderr: string
  readonly notes: Array<{ kind: string; message: string }>
  readonly exited: Extract<ExecEvent, { _tag: "exited" }>
}

export const collect = async <E>(stream: Stream.Stream<ExecEvent, E>): Promise<Collected> => {
  const events = await Effect.runPromise(Stream.runCollect(stream))
  const dec = (s: "stdout" | "stderr") =>
    Buffer.concat(events.flatMap((e) => (e._tag === "output" && e.stream === s ? [Buffer.from(e.data)] : []))).toString(
      "utf8"
    )
  const exited = events.at(-1)
  if (exited?._tag !== "exited") throw new Error(`last event is not exited: ${JSON.stringify(exited)}`)
  if (events[0]?._tag !== "started") throw new Error("first event is not started")
  return {
    events,
    stdout: dec("stdout"),
    stderr: dec("stderr"),
    notes: events.flatMap((e) => (e._tag === "note" ? [{ kind: e.kind, message: e.message }] : [])),
    exited
  }
}

/** Pids of live processes whose command line contains `marker`. */
export const processesWith = (marker: string): Array<string> => {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" })
  return out
    .split("\n")
    .filter((l) => l.includes(marker) && !l.includes("ps -eo"))
    .map((l) => l.trim().split(/\s+/)[0] as string)
}
