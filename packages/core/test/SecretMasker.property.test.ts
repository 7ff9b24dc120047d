import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { MASK, MAX_URL_USERINFO, SecretMasker } from "../src/SecretMasker.ts"

const textStreamed = (masker: SecretMasker, chunks: ReadonlyArray<Uint8Array>): string => {
  const state = masker.textState()
  return chunks.map((c) => state.push(c)).join("") + state.flush()
}

const enc = new TextEncoder()
const dec = new TextDecoder()

/** Cuts `b` into chunks whose sizes cycle through `sizes` (all >= 1). */
const chunked = (b: Uint8Array, sizes: ReadonlyArray<number>): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  let i = 0
  let k = 0
  while (i < b.length) {
    const n = sizes.length === 0 ? b.length : sizes[k++ % sizes.length]!
    out.push(b.subarray(i, i + n))
    i += n
  }
  return out
}

const streamed = (masker: SecretMasker, chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  const state = masker.state()
  const parts = chunks.map((c) => state.push(c))
  parts.push(state.flush())
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/**
 * The reference: every occurrence of every value (overlapping ones included), ranges merged when
 * they overlap or touch, one marker per merged range.
 */
const reference = (text: string, values: ReadonlyArray<string>): string => {
  const ranges: Array<[number, number]> = []
  for (const v of values) {
    for (let i = text.indexOf(v); i !== -1; i = text.indexOf(v, i + 1)) ranges.push([i, i + v.length])
  }
  ranges.sort((a, b) => a[0] - b[0])
  let out = ""
  let pos = 0
  let k = 0
  while (k < ranges.length) {
    const [s] = ranges[k]!
    let e = ranges[k]![1]
    while (k + 1 < ranges.length && ranges[k + 1]![0] <= e) e = Math.max(e, ranges[++k]![1])
    k++
    out += text.slice(pos, s) + MASK
    pos = e
  }
  return out + text.slice(pos)
}

const Sizes = Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 40 }))).check(
  Schema.isBetweenLength(0, 12)
)

describe("SecretMasker properties", () => {
  // Values over {a, b} and text over {a, b, c, space, newline}: overlapping, nested, prefix,
  // adjacent and repeated values all happen often. None of the values' encoded forms can occur in
  // such text (their base64 forms start with Y, F, h or i), so the reference needs only literals.
  it.prop(
    "streamed output equals the reference for any chunking: no value survives, everything else is byte-identical",
    {
      values: Schema.Array(Schema.Array(Schema.Literals(["a", "b"])).check(Schema.isBetweenLength(3, 7))).check(
        Schema.isBetweenLength(1, 4)
      ),
      text: Schema.Array(Schema.Literals(["a", "b", "c", " ", "\n", "ab", "ba"])).check(Schema.isBetweenLength(0, 120)),
      sizes: Sizes
    },
    ({ values, text, sizes }) => {
      const secrets = values.map((v) => v.join(""))
      const input = text.join("")
      const masker = new SecretMasker(secrets, { maskUrlCredentials: false })
      const expected = reference(input, secrets)
      const out = dec.decode(streamed(masker, chunked(enc.encode(input), sizes)))
      expect(out).toBe(expected)
      for (const s of secrets) expect(out).not.toContain(s)
      expect(masker.maskString(input)).toBe(expected)
    },
    { timeout: 120_000, arbitrary: { runs: 1500 } }
  )

  // Longer values and texts of 256+ bytes: the aligned 4-gram filter in front of the search runs
  // (it needs anchors of 7+ bytes), with values at every alignment and chunks at odd offsets.
  it.prop(
    "the filtered search finds what the reference finds (long values, long texts)",
    {
      values: Schema.Array(Schema.Array(Schema.Literals(["a", "b"])).check(Schema.isBetweenLength(7, 24))).check(
        Schema.isBetweenLength(1, 4)
      ),
      text: Schema.Array(Schema.Literals(["a", "b", "c", " ", "\n", "ab", "ba", "cccc", "aabb"])).check(
        Schema.isBetweenLength(80, 400)
      ),
      sizes: Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 1, maximum: 700 }))).check(
        Schema.isBetweenLength(0, 6)
      )
    },
    ({ values, text, sizes }) => {
      const secrets = values.map((v) => v.join(""))
      const input = text.join("")
      const masker = new SecretMasker(secrets, { maskUrlCredentials: false })
      const expected = reference(input, secrets)
      expect(dec.decode(streamed(masker, chunked(enc.encode(input), sizes)))).toBe(expected)
      expect(masker.maskString(input)).toBe(expected)
    },
    { timeout: 120_000, arbitrary: { runs: 1000 } }
  )

  // The URL rule against a direct reading of it: for every "@", the run of userinfo bytes before it
  // must start right after "://" (within MAX_URL_USERINFO bytes); the password is between the
  // run's first ":" and that "@".
  const urlReference = (text: string): string => {
    const userinfo = /[A-Za-z0-9\-._~%!$&'()*+,;=:@]/
    const ranges: Array<[number, number]> = []
    for (let at = text.indexOf("@"); at !== -1; at = text.indexOf("@", at + 1)) {
      let q = at - 1
      while (q >= 0 && userinfo.test(text[q]!)) q--
      if (q < 2 || text.slice(q - 2, q + 1) !== "://" || at - q - 1 > MAX_URL_USERINFO) continue
      const colon = text.indexOf(":", q + 1)
      if (colon !== -1 && colon + 1 < at) ranges.push([colon + 1, at])
    }
    let out = ""
    let pos = 0
    let k = 0
    while (k < ranges.length) {
      const s = ranges[k]![0]
      let e = ranges[k]![1]
      while (k + 1 < ranges.length && ranges[k + 1]![0] <= e) e = Math.max(e, ranges[++k]![1])
      k++
      out += text.slice(pos, s) + MASK
      pos = e
    }
    return out + text.slice(pos)
  }
  it.prop(
    "URL credentials: streamed output equals a direct reading of the rule",
    {
      parts: Schema.Array(Schema.Literals(["https://", "://", "u", ":", "@", "pw", "/", " ", "x@y", ":/"])).check(
        Schema.isBetweenLength(0, 60)
      ),
      sizes: Sizes
    },
    ({ parts, sizes }) => {
      const masker = new SecretMasker([])
      const input = parts.join("")
      const expected = urlReference(input)
      expect(dec.decode(streamed(masker, chunked(enc.encode(input), sizes)))).toBe(expected)
      expect(masker.maskString(input)).toBe(expected)
    },
    { timeout: 120_000, arbitrary: { runs: 1500 } }
  )

  // Arbitrary bytes, invalid UTF-8 included: masking then decoding, and masking while decoding
  // (textState), give the same text for any chunking.
  const byteFragments: ReadonlyArray<Uint8Array> = [
    enc.encode("s3cret-v4lue"),
    enc.encode("s3cret"),
    enc.encode("é€"),
    new Uint8Array([0xe2]),
    new Uint8Array([0x82, 0xac]),
    new Uint8Array([0xf0, 0x9f]),
    new Uint8Array([0xff]),
    enc.encode(" https://u:pw@h "),
    enc.encode("\n")
  ]
  it.prop(
    "masking while decoding equals masking then decoding, for any bytes and chunking",
    {
      parts: Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: byteFragments.length - 1 }))).check(
        Schema.isBetweenLength(0, 30)
      ),
      sizes: Sizes
    },
    ({ parts, sizes }) => {
      const masker = new SecretMasker(["s3cret-v4lue"])
      const pieces = parts.map((i) => byteFragments[i]!)
      const input = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0))
      let o = 0
      for (const p of pieces) {
        input.set(p, o)
        o += p.length
      }
      const expected = dec.decode(masker.maskBytes(input))
      expect(textStreamed(masker, chunked(input, sizes))).toBe(expected)
      expect(expected).not.toContain("s3cret-v4lue")
    },
    { timeout: 120_000, arbitrary: { runs: 1500 } }
  )

  // Rich text: multi-byte UTF-8, URLs with credentials, a multi-line value with varied line
  // breaks, base64 and escaped forms. Cutting the bytes anywhere (inside characters too) must not
  // change the result, and no registered value may survive.
  const single = "k3y-Ünï€😀-77"
  const multi = "-----BEGIN-----\nQm9ndXMga2V5\nZGF0YQ==x\n-----END-----"
  const fragments = [
    "plain ",
    "é",
    "😀",
    "€",
    "\n",
    "\r\n",
    "  ",
    single,
    single.slice(0, 6),
    Buffer.from(`x${single}`).toString("base64"),
    encodeURIComponent(single),
    JSON.stringify(single),
    "https://user:pa55word@host/",
    "https://",
    "user:",
    "@",
    ":/",
    multi,
    multi.replace(/\n/g, "\r\r\n"),
    multi.replace(/\n/g, " "),
    "-----BEGIN-----",
    "Qm9ndXMga2V5",
    "ZGF0YQ==x"
  ] as const
  it.prop(
    "any chunking gives the same bytes as masking the whole text at once",
    {
      parts: Schema.Array(Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: fragments.length - 1 }))).check(
        Schema.isBetweenLength(0, 40)
      ),
      sizes: Sizes
    },
    ({ parts, sizes }) => {
      const masker = new SecretMasker([single, multi])
      const input = enc.encode(parts.map((i) => fragments[i]!).join(""))
      const whole = masker.maskBytes(input)
      expect(streamed(masker, chunked(input, sizes))).toEqual(whole)
      expect(textStreamed(masker, chunked(input, sizes))).toBe(dec.decode(whole))
      const text = dec.decode(whole)
      for (const s of [single, "Qm9ndXMga2V5", "ZGF0YQ==x", "pa55word"]) expect(text).not.toContain(s)
    },
    { timeout: 120_000, arbitrary: { runs: 1500 } }
  )
})
