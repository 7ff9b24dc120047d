import type { ExecEvent, OutputStream } from "@runlane/core"

type Output = Extract<ExecEvent, { _tag: "output" }>

/**
 * Splits Docker's multiplexed attach stream (non-TTY containers) into stdout and stderr
 * chunks. Each frame is an 8-byte header (stream type, 3 zero bytes, big-endian payload
 * length) followed by the payload; headers and payloads may be split across reads.
 */
export class FrameDemuxer {
  private readonly header = new Uint8Array(8)
  private headerLength = 0
  private remaining = 0
  private stream: OutputStream = "stdout"

  push(chunk: Uint8Array): Array<Output> {
    const out: Array<Output> = []
    let i = 0
    while (i < chunk.length) {
      if (this.remaining === 0) {
        const n = Math.min(8 - this.headerLength, chunk.length - i)
        this.header.set(chunk.subarray(i, i + n), this.headerLength)
        this.headerLength += n
        i += n
        if (this.headerLength === 8) {
          // 1 = stdout, 2 = stderr, 3 = the engine's own error stream (reported as stderr)
          this.stream = this.header[0] === 1 ? "stdout" : "stderr"
          this.remaining = new DataView(this.header.buffer).getUint32(4)
          this.headerLength = 0
        }
        continue
      }
      const n = Math.min(this.remaining, chunk.length - i)
      out.push({ _tag: "output", stream: this.stream, data: chunk.subarray(i, i + n) })
      this.remaining -= n
      i += n
    }
    return out
  }

  /** True when the stream ended in the middle of a frame. */
  get truncated(): boolean {
    return this.headerLength > 0 || this.remaining > 0
  }
}
