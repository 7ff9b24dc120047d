import { create } from "@bufbuild/protobuf"
import { durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt"
import { EventType, JobEventSchema, JobSchema, JobState, ListJobsResponseSchema } from "@runlane/rpc-connect"
import { describe, expect, it } from "vitest"
import { formatGoDuration, parseGoDuration, printEvent, renderList } from "../src/index.ts"

describe("Go durations", () => {
  it("parses flags as Go does", () => {
    expect(parseGoDuration("5m")).toBe(300_000)
    expect(parseGoDuration("1h30m")).toBe(5_400_000)
    expect(parseGoDuration("300ms")).toBe(300)
    expect(parseGoDuration("1.5s")).toBe(1500)
    expect(parseGoDuration("0")).toBe(0)
    expect(parseGoDuration("5")).toBeUndefined()
    expect(parseGoDuration("abc")).toBeUndefined()
  })
  it("prints as Duration.String()", () => {
    const ms = (n: number) => BigInt(n) * 1_000_000n
    expect(formatGoDuration(0n)).toBe("0s")
    expect(formatGoDuration(ms(850))).toBe("850ms")
    expect(formatGoDuration(ms(1500))).toBe("1.5s")
    expect(formatGoDuration(ms(123_004))).toBe("2m3.004s")
    expect(formatGoDuration(ms(3_600_000))).toBe("1h0m0s")
    expect(formatGoDuration(12_000_000n)).toBe("12ms")
    expect(formatGoDuration(1500n)).toBe("1.5µs")
  })
})

describe("monitor and list output", () => {
  it("prints events as the original", () => {
    let out = ""
    const write = (t: string | Uint8Array) => {
      out += typeof t === "string" ? t : new TextDecoder().decode(t)
    }
    const at = timestampFromMs(Date.UTC(2025, 11, 7, 1, 2, 3))
    const end = create(JobEventSchema, {
      sequence: 3n,
      timestamp: at,
      eventType: EventType.PROCESS_END,
      eventData: { case: "processEnd", value: { pid: 42, exitCode: 0, runDuration: durationFromMs(1500) } }
    })
    expect(printEvent(end, write)).toBe(true)
    const unknown = create(JobEventSchema, { sequence: 9n, timestamp: at, eventType: EventType.UNSPECIFIED })
    expect(printEvent(unknown, write)).toBe(false)
    expect(out).toBe(
      "[01:02:03] ✅ SUCCESS Process ended (PID: 42, Exit Code: 0, Duration: 1.5s)\n" +
        "[01:02:03] ❓ Unknown event type: EVENT_TYPE_UNSPECIFIED (Sequence: 9)\n"
    )
  })

  it("renders the list table with truncation and paging hints", () => {
    const job = create(JobSchema, {
      jobId: "3f0e0000-0000-4000-8000-000000000000",
      state: JobState.RUNNING,
      createdAt: timestampFromMs(Date.UTC(2025, 11, 7, 1, 2, 3)),
      jobParams: {
        repository: "https://github.com/example/a-long-repository",
        owner: "someone-with-a-long-name",
        metadata: { queue: "default" }
      }
    })
    const text = renderList(create(ListJobsResponseSchema, { jobs: [job], lastPage: 3 }), {
      queue: "",
      state: "running",
      page: 1
    })
    const lines = text.split("\n")
    expect(lines[0]).toBe("Jobs (queue: all, state: running, page: 1/3):")
    expect(lines[2]).toBe("─".repeat(130))
    expect(lines[3]).toBe(
      `${"3f0e0000-0000-4000-8000-000000000000"} ${"default".padEnd(12)} ${"RUNNING".padEnd(15)} ${"https://github.com/exa...".padEnd(25)} ${"someone-with-a-lo...".padEnd(20)} ${"2025-12-07 01:02:03".padEnd(20)}`
    )
    expect(lines.slice(4)).toEqual([
      "",
      "Total jobs on this page: 1",
      "Pages: 1/3",
      "Use --page=2 to see next page",
      ""
    ])
  })
})

describe("global flags", () => {
  it("moves kong's global --dev/--debug after the command, dropping them where unused", async () => {
    const { normalizeArgs } = await import("../src/index.ts")
    expect(normalizeArgs(["--debug", "worker", "--queue", "q"])).toEqual(["worker", "--debug", "--queue", "q"])
    expect(normalizeArgs(["--dev", "rpc-server", "--no-auth"])).toEqual(["rpc-server", "--dev", "--no-auth"])
    expect(normalizeArgs(["list", "--debug", "--page", "2"])).toEqual(["list", "--page", "2"])
    expect(normalizeArgs(["rpc-server", "--dev=false"])).toEqual(["rpc-server", "--dev=false"])
  })
})
