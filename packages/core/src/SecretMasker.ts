// PLACEHOLDER: replaced by the full implementation (see packages/core/README.md).
import { Stream } from "effect"

export const MASK = "***"

export interface SecretMaskerOptions {
  /** Values (and encoded forms) shorter than this are not registered; they are reported in `skipped`. */
  readonly minLength?: number
}

/** Stateful masking of one output stream (stdout or stderr). */
export interface MaskingState {
  /** Masked bytes that can be released now; bytes that may still be part of a secret are held back. */
  push(chunk: Uint8Array): Uint8Array
  /** Releases whatever is held back (masked where complete) at end of stream. */
  flush(): Uint8Array
}

export class SecretMasker {
  readonly secrets: Array<string> = []
  readonly skipped: Array<string> = []
  readonly minLength: number
  constructor(secrets: Iterable<string> = [], options: SecretMaskerOptions = {}) {
    this.minLength = options.minLength ?? 3
    for (const s of secrets) this.add(s)
  }
  add(secret: string): void {
    const v = secret.trim()
    if (v.length === 0) return
    if (v.length < this.minLength) {
      this.skipped.push(`${v.length}-char value`)
      return
    }
    this.secrets.push(v)
  }
  maskString(text: string): string {
    let out = text
    for (const s of [...this.secrets].sort((a, b) => b.length - a.length)) out = out.split(s).join(MASK)
    return out
  }
  state(): MaskingState {
    let held = ""
    const dec = new TextDecoder()
    const enc = new TextEncoder()
    const maxLen = Math.max(0, ...this.secrets.map((s) => s.length))
    return {
      push: (chunk) => {
        const text = this.maskString(held + dec.decode(chunk, { stream: true }))
        const keep = Math.min(text.length, Math.max(0, maxLen - 1))
        held = text.slice(text.length - keep)
        return enc.encode(text.slice(0, text.length - keep))
      },
      flush: () => {
        const text = this.maskString(held + dec.decode())
        held = ""
        return enc.encode(text)
      }
    }
  }
}

/** Stream transform: masks every registered secret in a byte stream. */
export const maskStream =
  (masker: SecretMasker) =>
  <E, R>(self: Stream.Stream<Uint8Array, E, R>): Stream.Stream<Uint8Array, E, R> =>
    Stream.suspend(() => {
      const state = masker.state()
      return self.pipe(
        Stream.map((chunk) => state.push(chunk)),
        Stream.concat(Stream.sync(() => state.flush())),
        Stream.filter((chunk) => chunk.length > 0)
      )
    })
