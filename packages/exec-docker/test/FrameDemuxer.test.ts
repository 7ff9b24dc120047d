import { FrameDemuxer } from "@runlane/exec-docker"
import { describe, expect, it } from "vitest"

const frame = (type: number, payload: string) => {
  const body = Buffer.from(payload)
  const header = Buffer.alloc(8)
  header[0] = type
  header.writeUInt32BE(body.length, 4)
  return Buffer.concat([header, body])
}

const collect = (chunks: ReadonlyArray<Uint8Array>) => {
  const demux = new FrameDemuxer()
  const out = { stdout: "", stderr: "" }
  for (const chunk of chunks) for (const e of demux.push(chunk)) out[e.stream] += Buffer.from(e.data).toString()
  return { ...out, truncated: demux.truncated }
}

describe("FrameDemuxer", () => {
  const wire = Buffer.concat([
    frame(1, "hello "),
    frame(2, "oops\n"),
    frame(1, ""),
    frame(1, "world\n"),
    frame(3, "engine\n")
  ])

  it("splits frames delivered in one read", () => {
    expect(collect([wire])).toEqual({ stdout: "hello world\n", stderr: "oops\nengine\n", truncated: false })
  })

  it("handles every split point, including inside headers", () => {
    for (let cut = 1; cut < wire.length; cut++) {
      expect(collect([wire.subarray(0, cut), wire.subarray(cut)])).toEqual({
        stdout: "hello world\n",
        stderr: "oops\nengine\n",
        truncated: false
      })
    }
    expect(collect(Array.from(wire, (b) => Uint8Array.of(b)))).toMatchObject({ stdout: "hello world\n" })
  })

  it("reports a stream cut in the middle of a frame", () => {
    expect(collect([wire.subarray(0, 10)]).truncated).toBe(true)
  })
})
