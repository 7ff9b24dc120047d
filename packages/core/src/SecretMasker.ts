/**
 * Secret masking for job output: a byte-level, streaming, multi-pattern masker.
 *
 * Every registered value is expanded into its forms (literal, base64, URL, JSON, XML, shell and Go
 * quoting, and a whitespace-tolerant form for multi-line values). All occurrences of all forms are
 * found (overlapping ones included), touching or overlapping hits are merged, and each merged range
 * becomes one `***`. Credentials in URLs (`scheme://user:TOKEN@host`) are masked by a separate
 * pattern rule even when nobody registered them. See packages/core/MASKING.md.
 */
import { Stream } from "effect"

/** The replacement printed once for every merged range of masked bytes. */
export const MASK = "***"

export interface SecretMaskerOptions {
  /**
   * Values, lines of multi-line values and encoded forms shorter than this many characters
   * (Unicode code points) are not registered. Skipped values are reported in `skipped`. Default 3;
   * must be at least 1.
   */
  readonly minLength?: number
  /** Mask the password of `scheme://user:password@host` even when it is not registered. Default true. */
  readonly maskUrlCredentials?: boolean
}

/** Stateful masking of one output stream (stdout or stderr). */
export interface MaskingState {
  /** Masked bytes that can be released now; bytes that may still be part of a secret are held back. */
  push(chunk: Uint8Array): Uint8Array
  /** Releases whatever is held back (masked where complete) at end of stream. */
  flush(): Uint8Array
}

/** The longest run of whitespace that stands for one line break of a multi-line value. */
export const MAX_WHITESPACE_RUN = 256
/** The longest `user:password` part (bytes between `://` and `@`) the URL rule recognises. */
export const MAX_URL_USERINFO = 2048

const encoder = new TextEncoder()
const MASK_BYTES = encoder.encode(MASK)
const EMPTY = new Uint8Array(0)

// ---------------------------------------------------------------------------------------------
// Byte classes
// ---------------------------------------------------------------------------------------------

/** Whitespace a line break of a multi-line value may turn into: space, \t, \n, \v, \f, \r. */
const IS_WS = new Uint8Array(256)
for (const b of [0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]) IS_WS[b] = 1

/** Bytes allowed in a URL's userinfo (RFC 3986 unreserved, pct-encoded, sub-delims, ":"), plus "@". */
const IS_USERINFO = new Uint8Array(256)
for (let b = 0x30; b <= 0x39; b++) IS_USERINFO[b] = 1
for (let b = 0x41; b <= 0x5a; b++) IS_USERINFO[b] = 1
for (let b = 0x61; b <= 0x7a; b++) IS_USERINFO[b] = 1
for (const c of "-._~%!$&'()*+,;=:@") IS_USERINFO[c.charCodeAt(0)] = 1

const COLON = 0x3a
const SLASH = 0x2f
const AT = 0x40

// ---------------------------------------------------------------------------------------------
// Fast byte search: Node's Buffer#indexOf is memchr-based; plain Uint8Array#indexOf elsewhere.
// ---------------------------------------------------------------------------------------------

type ByteIndexOf = (data: Uint8Array, byte: number, from: number) => number
const NodeBuffer = (
  globalThis as {
    readonly Buffer?: {
      from(buffer: ArrayBufferLike, byteOffset: number, length: number): Uint8Array
      allocUnsafe(size: number): Uint8Array
    }
  }
).Buffer
/** A new array the caller fills completely (not zero-filled first where Node allows it). */
const allocFilled: (size: number) => Uint8Array =
  NodeBuffer === undefined
    ? (size) => new Uint8Array(size)
    : (size) => {
        const b = NodeBuffer.allocUnsafe(size)
        return new Uint8Array(b.buffer, b.byteOffset, size)
      }
/** A plain Uint8Array copy (a Buffer's `slice` would be a view). */
const copyOf = (bytes: Uint8Array): Uint8Array => {
  const out = new Uint8Array(bytes.length)
  out.set(bytes)
  return out
}
const byteIndexOf: ByteIndexOf =
  NodeBuffer === undefined
    ? (data, byte, from) => data.indexOf(byte, from)
    : (data, byte, from) =>
        data.length < 256
          ? data.indexOf(byte, from)
          : NodeBuffer.from(data.buffer, data.byteOffset, data.length).indexOf(byte, from)

// ---------------------------------------------------------------------------------------------
// Forms of a value
// ---------------------------------------------------------------------------------------------

const B64_STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
const B64_URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

/**
 * The base64 characters fully determined by `bytes` when they are preceded by `offset` (0, 1 or 2)
 * other bytes and followed by anything: the characters mixing in neighbouring bits and the padding
 * are left out.
 */
const base64Core = (bytes: Uint8Array, offset: number, alphabet: string): string => {
  const totalBits = (offset + bytes.length) * 8
  const first = Math.ceil((offset * 8) / 6)
  const last = Math.floor(totalBits / 6) // exclusive
  let out = ""
  for (let c = first; c < last; c++) {
    const bit = c * 6 - offset * 8 // bit index inside `bytes`, >= 0
    const byte = bit >> 3
    const shift = bit & 7
    const hi = bytes[byte] ?? 0
    const lo = bytes[byte + 1] ?? 0
    const v = (((hi << 8) | lo) >> (10 - shift)) & 0x3f
    out += alphabet[v]
  }
  return out
}

const hex2 = (n: number): string => n.toString(16).padStart(2, "0")
const hex4 = (n: number): string => n.toString(16).padStart(4, "0")

/** Go's strconv.Quote without the surrounding quotes (Buildkite's `%q` form). */
const goQuoteInner = (v: string): string => {
  let out = ""
  for (const ch of v) {
    const cp = ch.codePointAt(0) ?? 0
    switch (ch) {
      case '"':
        out += '\\"'
        continue
      case "\\":
        out += "\\\\"
        continue
      case "\x07":
        out += "\\a"
        continue
      case "\b":
        out += "\\b"
        continue
      case "\f":
        out += "\\f"
        continue
      case "\n":
        out += "\\n"
        continue
      case "\r":
        out += "\\r"
        continue
      case "\t":
        out += "\\t"
        continue
      case "\v":
        out += "\\v"
        continue
    }
    if (cp < 0x20 || cp === 0x7f) out += `\\x${hex2(cp)}`
    else if (cp >= 0x80 && cp < 0xa0) out += `\\u${hex4(cp)}`
    else out += ch
  }
  return out
}

/** JSON string escaping with every non-ASCII character as `\uXXXX` (Python's json.dumps default). */
const jsonAsciiInner = (v: string): string => {
  const s = JSON.stringify(v).slice(1, -1)
  let out = ""
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    out += c < 0x80 ? s[i] : `\\u${hex4(c)}`
  }
  return out
}

/** bash's `$'...'` quoting (printed by `set -x` for values with control characters), inner part. */
const ansiCQuoteInner = (v: string): string => {
  let out = ""
  for (const ch of v) {
    const cp = ch.codePointAt(0) ?? 0
    if (ch === "\\") out += "\\\\"
    else if (ch === "'") out += "\\'"
    else if (ch === "\n") out += "\\n"
    else if (ch === "\t") out += "\\t"
    else if (ch === "\r") out += "\\r"
    else if (cp < 0x20 || cp === 0x7f) out += `\\${cp.toString(8).padStart(3, "0")}`
    else out += ch
  }
  return out
}

const xmlEscape = (v: string, apos: string, quot: boolean): string => {
  let out = v.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
  if (quot) out = out.replace(/"/g, "&quot;")
  if (apos !== "'") out = out.replace(/'/g, apos)
  return out
}

const formUrlEncode = (v: string): string => new URLSearchParams([["", v]]).toString().slice(1)

/** Every text form of a value that is worth searching for (unfiltered, may repeat). */
const textForms = (value: string): Array<string> => {
  const forms = [value]
  const bytes = encoder.encode(value)
  for (const alphabet of [B64_STD, B64_URL]) {
    for (const offset of [0, 1, 2]) forms.push(base64Core(bytes, offset, alphabet))
  }
  forms.push(
    encodeURIComponent(value),
    formUrlEncode(value),
    JSON.stringify(value).slice(1, -1),
    jsonAsciiInner(value),
    JSON.stringify(value).slice(1, -1).replace(/\//g, "\\/"),
    xmlEscape(value, "&apos;", true),
    xmlEscape(value, "&#39;", true),
    xmlEscape(value, "'", false),
    value.replace(/"/g, '\\"'),
    value.replace(/'/g, "''"),
    goQuoteInner(value),
    value.replace(/'/g, "'\\''"),
    ansiCQuoteInner(value)
  )
  // Actions: a value wrapped in double quotes is also masked without them.
  if (value.length > 2 && value.startsWith('"') && value.endsWith('"')) forms.push(value.slice(1, -1).trim())
  return forms
}

const codePoints = (s: string): number => {
  let n = 0
  for (const _ of s) n++
  return n
}

/** Lines of a value: split on CR, LF or CRLF, each trimmed, blank ones dropped. */
const linesOf = (value: string): Array<string> =>
  value
    .split(/\r\n|\r|\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0)

// ---------------------------------------------------------------------------------------------
// Patterns and the matcher
// ---------------------------------------------------------------------------------------------

/**
 * A pattern is a sequence of literal byte segments. Between two segments any run of 1 to
 * MAX_WHITESPACE_RUN whitespace bytes matches (a line break of a multi-line value). Segments start
 * and end with non-whitespace, so a match is determined by its first byte.
 */
interface Pattern {
  readonly segs: ReadonlyArray<Uint8Array>
  /** Index of the longest segment: the one the fast filter looks for. */
  readonly anchor: number
  /** The most bytes a match can cover. */
  readonly span: number
}

const makePattern = (segs: ReadonlyArray<Uint8Array>): Pattern => {
  let anchor = 0
  let span = 0
  segs.forEach((s, i) => {
    span += s.length
    if (s.length > (segs[anchor]?.length ?? 0)) anchor = i
  })
  span += (segs.length - 1) * MAX_WHITESPACE_RUN
  return { segs, anchor, span }
}

const FAIL = -1
const PARTIAL = -2

/**
 * Matches `p` forward from `start`: the end of the match, FAIL, or PARTIAL when the data ran out
 * while the match was still possible.
 */
const matchForward = (p: Pattern, data: Uint8Array, start: number, end: number): number => {
  let i = start
  const segs = p.segs
  for (let k = 0; k < segs.length; k++) {
    if (k > 0) {
      let g = 0
      while (i < end && IS_WS[data[i]!] === 1) {
        i++
        if (++g > MAX_WHITESPACE_RUN) return FAIL
      }
      if (i >= end) return PARTIAL
      if (g === 0) return FAIL
    }
    const s = segs[k]!
    const n = s.length
    for (let j = 0; j < n; j++, i++) {
      if (i >= end) return PARTIAL
      if (data[i] !== s[j]) return FAIL
    }
  }
  return i
}

/** Wu-Manber block size and hash. */
const BLOCK = 3
const HASH_BITS = 16
const HASH_MASK = (1 << HASH_BITS) - 1
const hash3 = (a: number, b: number, c: number): number => ((a << 10) ^ (b << 3) ^ c) & HASH_MASK

/** The 4-gram filter: a bitset over hashed 4-byte words, used when every anchor has 7+ bytes. */
const GRAM_MULTIPLIER = 0x9e3779b1
const FILTER_MIN_BYTES = 256
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1
/** The 4 bytes at s[j..j+3] as the platform's Uint32Array would read them. */
const word4 = (s: Uint8Array, j: number): number =>
  LITTLE_ENDIAN
    ? (s[j]! | (s[j + 1]! << 8) | (s[j + 2]! << 16) | (s[j + 3]! << 24)) >>> 0
    : ((s[j]! << 24) | (s[j + 1]! << 16) | (s[j + 2]! << 8) | s[j + 3]!) >>> 0

/** Sorted, merged ranges are collected here as [start, end) pairs. */
type Ranges = Array<number>

/**
 * An immutable search structure over a set of patterns. Matches are found with a Wu-Manber
 * multi-pattern filter over the anchor segments (3-byte blocks, so a window of `m` bytes is skipped
 * when its last block appears in no anchor), each candidate verified byte by byte, forward and
 * backward through the whitespace gaps of multi-line patterns. When every anchor has 7+ bytes, an
 * aligned 4-gram filter runs first and Wu-Manber only around the words that pass it.
 */
class Matcher {
  readonly patterns: ReadonlyArray<Pattern>
  /** Longest span of any pattern (0 when none). */
  readonly maxSpan: number
  /** Shortest anchor, capped at 255: the Wu-Manber window. */
  private readonly m: number
  private readonly shift: Uint8Array | undefined
  /** Patterns by the hash of the block ending their anchor's first `m` bytes. */
  private readonly buckets: Map<number, Array<number>>
  /** Patterns by the first byte of their first segment. */
  private readonly byFirst: Array<Array<number> | undefined>
  /** Longest anchor. */
  private readonly maxAnchor: number
  /** Aligned words every anchor occurrence covers (0: no 4-gram filter). */
  private readonly stride: number
  /** Bitset of the hashed 4-grams of every anchor. */
  private readonly grams: Uint8Array | undefined
  /** A 4-gram's hash is its word times GRAM_MULTIPLIER, shifted right by this. */
  private readonly gramShift: number

  constructor(patterns: ReadonlyArray<Pattern>) {
    this.patterns = patterns
    this.maxSpan = patterns.reduce((m, p) => Math.max(m, p.span), 0)
    this.byFirst = new Array(256)
    patterns.forEach((p, id) => {
      const b = p.segs[0]![0]!
      const list = this.byFirst[b] ?? []
      list.push(id)
      this.byFirst[b] = list
    })
    const minAnchor = patterns.reduce((m, p) => Math.min(m, p.segs[p.anchor]!.length), Number.POSITIVE_INFINITY)
    this.m = Math.min(minAnchor, 255)
    this.buckets = new Map()
    if (patterns.length > 0 && this.m >= BLOCK) {
      const m = this.m
      const shift = new Uint8Array(HASH_MASK + 1).fill(m - BLOCK + 1)
      patterns.forEach((p, id) => {
        const a = p.segs[p.anchor]!
        for (let j = BLOCK - 1; j < m; j++) {
          const h = hash3(a[j - 2]!, a[j - 1]!, a[j]!)
          const s = m - 1 - j
          if (s < shift[h]!) shift[h] = s
          if (s === 0) {
            const bucket = this.buckets.get(h)
            if (bucket === undefined) this.buckets.set(h, [id])
            else bucket.push(id)
          }
        }
      })
      this.shift = shift
    } else {
      this.shift = undefined
    }
    this.maxAnchor = patterns.reduce((m, p) => Math.max(m, p.segs[p.anchor]!.length), 0)
    this.stride = this.shift === undefined ? 0 : Math.max(0, Math.floor((this.m - 3) / 4))
    // about 32 bits per 4-gram (a few % of probes pass by chance), between 2^16 and 2^22 bits
    const gramCount = patterns.reduce((n, p) => n + Math.max(0, p.segs[p.anchor]!.length - 3), 0)
    this.gramShift = 32 - Math.min(22, Math.max(16, Math.ceil(Math.log2(Math.max(1, gramCount) * 32))))
    if (this.stride > 0) {
      const grams = new Uint8Array(1 << (32 - this.gramShift - 3))
      for (const p of patterns) {
        const a = p.segs[p.anchor]!
        for (let j = 0; j + 4 <= a.length; j++) {
          const h = Math.imul(word4(a, j), GRAM_MULTIPLIER) >>> this.gramShift
          grams[h >>> 3] = grams[h >>> 3]! | (1 << (h & 7))
        }
      }
      this.grams = grams
    } else {
      this.grams = undefined
    }
  }

  /** Appends the [start, end) of every complete match inside data[0, end) to `out`. */
  findAll(data: Uint8Array, end: number, out: Ranges): void {
    if (this.patterns.length === 0) return
    if (this.shift === undefined) this.findAllSlow(data, end, out)
    else if (this.stride > 0 && end >= FILTER_MIN_BYTES) this.findAllFiltered(data, end, out)
    else this.scan(data, 0, end, end, out)
  }

  /**
   * Wu-Manber over the anchor starts in [from, to) (matches may end anywhere before `end`).
   */
  private scan(data: Uint8Array, from: number, to: number, end: number, out: Ranges): void {
    const shift = this.shift!
    const m = this.m
    const buckets = this.buckets
    const limit = Math.min(end, to + m - 1)
    let i = from + m - 1
    while (i < limit) {
      const h = hash3(data[i - 2]!, data[i - 1]!, data[i]!)
      const s = shift[h]!
      if (s !== 0) {
        i += s
        continue
      }
      const bucket = buckets.get(h)!
      const st = i - m + 1
      for (let b = 0; b < bucket.length; b++) this.verify(bucket[b]!, data, st, end, out)
      i++
    }
  }

  /**
   * The aligned 4-gram filter in front of Wu-Manber. Every anchor occurrence covers at least
   * `stride` consecutive aligned 4-byte words of the data, so probing every stride-th word finds
   * it: a probe word that is no 4-gram of any anchor rules out every occurrence covering it. Only
   * around probe words that pass (with a neighbour that passes too) does Wu-Manber run.
   */
  private findAllFiltered(data: Uint8Array, end: number, out: Ranges): void {
    const stride = this.stride
    const grams = this.grams!
    const maxAnchor = this.maxAnchor
    const gramShift = this.gramShift
    const first = (4 - (data.byteOffset & 3)) & 3
    const words = (end - first) >> 2
    const u = new Uint32Array(data.buffer, data.byteOffset + first, words)
    let done = 0
    for (let j = stride - 1; j < words; j += stride) {
      let h = Math.imul(u[j]!, GRAM_MULTIPLIER) >>> gramShift
      if ((grams[h >>> 3]! & (1 << (h & 7))) === 0) continue
      if (stride > 1) {
        // an occurrence covering word j covers `stride` consecutive words around it: all must pass
        let run = 1
        for (let l = j - 1; l >= 0 && run < stride; l--) {
          h = Math.imul(u[l]!, GRAM_MULTIPLIER) >>> gramShift
          if ((grams[h >>> 3]! & (1 << (h & 7))) === 0) break
          run++
        }
        for (let r = j + 1; r < words && run < stride; r++) {
          h = Math.imul(u[r]!, GRAM_MULTIPLIER) >>> gramShift
          if ((grams[h >>> 3]! & (1 << (h & 7))) === 0) break
          run++
        }
        if (run < stride) continue
      }
      // anchors covering the word [w, w + 4) start in [w + 4 - maxAnchor, w]
      const w = first + 4 * j
      const from = Math.max(done, w + 4 - maxAnchor, 0)
      if (from <= w) {
        this.scan(data, from, w + 1, end, out)
        done = w + 1
      }
    }
  }

  /** Used when some anchor is shorter than the Wu-Manber block (a minimum length below 3). */
  private findAllSlow(data: Uint8Array, end: number, out: Ranges): void {
    const byFirst = this.byFirst
    for (let p = 0; p < end; p++) {
      const list = byFirst[data[p]!]
      if (list === undefined) continue
      for (let k = 0; k < list.length; k++) {
        const e = matchForward(this.patterns[list[k]!]!, data, p, end)
        if (e >= 0) out.push(p, e)
      }
    }
  }

  /** Verifies pattern `id` whose anchor segment would start at `st`. */
  private verify(id: number, data: Uint8Array, st: number, end: number, out: Ranges): void {
    const p = this.patterns[id]!
    const segs = p.segs
    const a = segs[p.anchor]!
    const n = a.length
    if (st + n > end) return
    for (let j = 0; j < n; j++) if (data[st + j] !== a[j]) return
    let e = st + n
    // forward through the segments after the anchor
    for (let k = p.anchor + 1; k < segs.length; k++) {
      let g = 0
      while (e < end && IS_WS[data[e]!] === 1) {
        e++
        if (++g > MAX_WHITESPACE_RUN) return
      }
      if (g === 0) return
      const s = segs[k]!
      if (e + s.length > end) return
      for (let j = 0; j < s.length; j++, e++) if (data[e] !== s[j]) return
    }
    // backward through the segments before it
    let b = st
    for (let k = p.anchor - 1; k >= 0; k--) {
      let g = 0
      while (b > 0 && IS_WS[data[b - 1]!] === 1) {
        b--
        if (++g > MAX_WHITESPACE_RUN) return
      }
      if (g === 0) return
      const s = segs[k]!
      if (b - s.length < 0) return
      b -= s.length
      for (let j = 0; j < s.length; j++) if (data[b + j] !== s[j]) return
    }
    out.push(b, e)
  }

  /**
   * The smallest position p such that data[p, end) is a proper beginning of some pattern
   * (a match that the next bytes may complete), or `end` when there is none.
   */
  partialStart(data: Uint8Array, end: number): number {
    const byFirst = this.byFirst
    const patterns = this.patterns
    for (let p = Math.max(0, end - this.maxSpan + 1); p < end; p++) {
      const list = byFirst[data[p]!]
      if (list === undefined) continue
      for (let k = 0; k < list.length; k++) {
        const pat = patterns[list[k]!]!
        if (pat.span > end - p && matchForward(pat, data, p, end) === PARTIAL) return p
      }
    }
    return end
  }
}

// ---------------------------------------------------------------------------------------------
// URL credentials (a pattern rule, independent of registered values)
// ---------------------------------------------------------------------------------------------

/** True when data[q-2, q] is "://". */
const isSchemeSep = (data: Uint8Array, q: number): boolean =>
  q >= 2 && data[q] === SLASH && data[q - 1] === SLASH && data[q - 2] === COLON

/**
 * For every "@" in data[0, end): if it closes the userinfo of `scheme://user:password@`, the
 * password range is appended to `out`.
 */
const findUrlCredentials = (data: Uint8Array, end: number, out: Ranges): void => {
  // Consecutive "@"s in one run of userinfo bytes share its start and its first ":": both are
  // carried from one "@" to the next, so a long run of "@"s costs linear time.
  let prevAt = -1
  let prevQ = -1
  let prevColon = -1
  let at = byteIndexOf(data, AT, 0)
  while (at !== -1 && at < end) {
    // scan back over userinfo bytes to the "//" of "://"
    const limit = Math.max(0, at - MAX_URL_USERINFO - 1)
    let q = at - 1
    while (q > prevAt && q >= limit && IS_USERINFO[data[q]!] === 1) q--
    const continued = prevAt >= 0 && q === prevAt
    if (continued) q = prevQ
    let colon = -1
    if (q >= 0 && at - q - 1 <= MAX_URL_USERINFO && isSchemeSep(data, q)) {
      colon = continued && prevColon !== -1 ? prevColon : continued ? prevAt + 1 : q + 1
      while (colon < at && data[colon] !== COLON) colon++
      if (colon + 1 < at) out.push(colon + 1, at)
      if (colon >= at) colon = -1
    }
    prevAt = at
    prevQ = q
    prevColon = colon
    at = byteIndexOf(data, AT, at + 1)
  }
}

/**
 * Where a URL whose userinfo is still arriving begins at the end of data[0, end) (its "://", or a
 * trailing ":" / ":/"), or `end`.
 */
const urlPartialStart = (data: Uint8Array, end: number): number => {
  const limit = Math.max(0, end - MAX_URL_USERINFO - 1)
  let q = end - 1
  while (q >= limit && IS_USERINFO[data[q]!] === 1) q--
  if (q >= 0 && end - q - 1 <= MAX_URL_USERINFO && isSchemeSep(data, q)) return q - 2
  if (end >= 2 && data[end - 2] === COLON && data[end - 1] === SLASH) return end - 2
  if (end >= 1 && data[end - 1] === COLON) return end - 1
  return end
}

// ---------------------------------------------------------------------------------------------
// Range merging and output
// ---------------------------------------------------------------------------------------------

/** Sorts [start, end) pairs by start and merges overlapping or touching ones, in place. */
const mergeRanges = (r: Ranges): Ranges => {
  const n = r.length / 2
  if (n <= 1) return r
  let sorted = true
  for (let i = 1; i < n; i++) {
    if (r[2 * i]! < r[2 * i - 2]!) {
      sorted = false
      break
    }
  }
  let pairs = r
  if (!sorted) {
    const idx = Array.from({ length: n }, (_, i) => i).sort((x, y) => r[2 * x]! - r[2 * y]!)
    pairs = []
    for (const i of idx) pairs.push(r[2 * i]!, r[2 * i + 1]!)
  }
  const out: Ranges = [pairs[0]!, pairs[1]!]
  for (let i = 1; i < n; i++) {
    const s = pairs[2 * i]!
    const e = pairs[2 * i + 1]!
    const last = out.length - 1
    if (s <= out[last]!) {
      if (e > out[last]!) out[last] = e
    } else out.push(s, e)
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// The masker
// ---------------------------------------------------------------------------------------------

/** Reads a masker's current matcher (set by the class's static block; the field stays private). */
let matcherOf: (masker: SecretMasker) => Matcher = () => new Matcher([])

/** Counts of what a masker registered (never the values). */
export interface SecretMaskerStats {
  /** Values registered (each with its forms). */
  readonly values: number
  /** Distinct byte patterns searched for (all forms, lines and multi-line patterns). */
  readonly patterns: number
  /** The most bytes one stream can hold back between two pushes. */
  readonly maxHoldBytes: number
}

/**
 * Masks registered secret values (and credentials in URLs) in byte streams and strings.
 *
 * `add` registers a value at any time; it applies to every byte pushed afterwards (and to bytes a
 * stream is still holding back). The values themselves are kept only as search patterns in private
 * fields: printing or serialising the masker shows counts, never values.
 */
export class SecretMasker {
  /** What was not registered and why (never the value itself). */
  readonly skipped: Array<string> = []
  readonly minLength: number
  readonly maskUrlCredentials: boolean
  #values = 0
  #added = 0
  #keys = new Set<string>()
  #patterns: Array<Pattern> = []
  /** Built lazily from #patterns on first use after a change; immutable once built. */
  #matcher: Matcher | undefined = undefined

  constructor(secrets: Iterable<string> = [], options: SecretMaskerOptions = {}) {
    const min = options.minLength ?? 3
    if (!Number.isInteger(min) || min < 1) throw new RangeError(`SecretMasker: minLength must be an integer >= 1`)
    this.minLength = min
    this.maskUrlCredentials = options.maskUrlCredentials ?? true
    this.#register(secrets, undefined)
  }

  /**
   * Registers a secret value (trimmed) with all its forms. `name` (for example the environment
   * variable's name) only labels the report when the value is skipped. Returns true when the value
   * was registered, false when it was skipped (see `skipped`).
   */
  add(secret: string, name?: string): boolean {
    return this.#register([secret], name)
  }

  /** Registers several values at once (one rebuild of the search structure). */
  addAll(secrets: Iterable<string>): void {
    this.#register(secrets, undefined)
  }

  get stats(): SecretMaskerStats {
    return { values: this.#values, patterns: this.#patterns.length, maxHoldBytes: this.maxHoldBytes }
  }

  /** The most bytes a `MaskingState` can hold back after a push. */
  get maxHoldBytes(): number {
    const urls = this.maskUrlCredentials ? MAX_URL_USERINFO + 3 : 0
    return Math.max(0, matcherOf(this).maxSpan - 1, urls)
  }

  #register(secrets: Iterable<string>, name: string | undefined): boolean {
    let changed = false
    let all = true
    for (const secret of secrets) {
      const n = ++this.#added
      const label = name ?? `secret #${n}`
      const value = secret.trim()
      if (value.length === 0) {
        this.skipped.push(`${label}: empty after trimming, not registered`)
        all = false
        continue
      }
      const length = codePoints(value)
      if (length < this.minLength) {
        this.skipped.push(`${label}: ${length} characters, shorter than the minimum length ${this.minLength}`)
        all = false
        continue
      }
      this.#values++
      for (const form of textForms(value)) changed = this.#addLiteral(form) || changed
      const lines = linesOf(value)
      if (lines.length > 1) {
        // keys: "L" + literal, "M" + lines joined with NUL (a multi-line pattern)
        const key = `M${lines.join("\u0000")}`
        if (!this.#keys.has(key)) {
          this.#keys.add(key)
          this.#patterns.push(makePattern(lines.map((l) => encoder.encode(l))))
          changed = true
        }
        for (const line of lines) changed = this.#addLiteral(line) || changed
      }
    }
    if (changed) this.#matcher = undefined
    return all
  }

  #addLiteral(form: string): boolean {
    const f = form.trim()
    const key = `L${f}`
    if (f.length === 0 || this.#keys.has(key) || codePoints(f) < this.minLength) return false
    this.#keys.add(key)
    this.#patterns.push(makePattern([encoder.encode(f)]))
    return true
  }

  /** Masks a whole string at once (error messages, records, anything printed or stored). */
  maskString(text: string): string {
    if (text.length === 0) return text
    const state = this.textState()
    return state.push(encoder.encode(text)) + state.flush()
  }

  /** Masks a whole byte array at once. */
  maskBytes(bytes: Uint8Array): Uint8Array {
    const state = this.state()
    const a = state.push(bytes)
    const b = state.flush()
    if (b.length === 0) return a
    const all = new Uint8Array(a.length + b.length)
    all.set(a)
    all.set(b, a.length)
    return all
  }

  /** A new per-stream state (give stdout and stderr one each). */
  state(): MaskingState {
    return new StreamState(this)
  }

  /** A new per-stream state that also decodes UTF-8: `push` returns masked text. */
  textState(): TextMaskingState {
    return new TextState(this)
  }

  static {
    matcherOf = (masker) => {
      if (masker.#matcher === undefined) masker.#matcher = new Matcher(masker.#patterns)
      return masker.#matcher
    }
  }

  /**
   * A new masker with the same values, options and search structure (shared, not rebuilt). Values
   * added to either afterwards apply to that one only: for example one masker per job forked from
   * one holding the runner's global secrets.
   */
  fork(): SecretMasker {
    const copy = new SecretMasker([], { minLength: this.minLength, maskUrlCredentials: this.maskUrlCredentials })
    copy.skipped.push(...this.skipped)
    copy.#values = this.#values
    copy.#added = this.#added
    copy.#keys = new Set(this.#keys)
    copy.#patterns = this.#patterns.slice()
    copy.#matcher = this.#matcher
    return copy
  }

  toString(): string {
    return `SecretMasker(${this.#values} values, ${this.#patterns.length} patterns)`
  }

  toJSON(): unknown {
    return { _id: "SecretMasker", values: this.#values, patterns: this.#patterns.length, skipped: this.skipped }
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString()
  }
}

/**
 * What one step releases: `data` and triples (from, to, mask) meaning "data[from, to), then one
 * `***` when mask is 1".
 */
interface Release {
  readonly data: Uint8Array
  /** data is the state's scratch buffer: bytes must be copied out before the next step. */
  readonly scratch: boolean
  readonly segments: ReadonlyArray<number>
}

/** The per-stream state shared by the byte and text forms: held bytes and the carried range. */
class MaskingCore {
  readonly #masker: SecretMasker
  /** Bytes received but not released yet. */
  #pending: Uint8Array = EMPTY
  /**
   * -1: the released output did not end inside a masked range. k >= 0: the last released `***`
   * covers the first k pending bytes (k = 0: it ended exactly at the boundary, so a range starting
   * at the first pending byte continues it).
   */
  #carry = -1
  #scratch: Uint8Array = EMPTY

  constructor(masker: SecretMasker) {
    this.#masker = masker
  }

  push(chunk: Uint8Array): Release {
    const pending = this.#pending
    if (pending.length === 0) return this.#step(chunk, false, false)
    // held bytes + the new chunk, in a scratch buffer this state reuses (never handed out)
    const total = pending.length + chunk.length
    if (this.#scratch.length < total) this.#scratch = new Uint8Array(Math.max(total, this.#scratch.length * 2))
    const data = this.#scratch.subarray(0, total)
    data.set(pending)
    data.set(chunk, pending.length)
    return this.#step(data, false, true)
  }

  flush(): Release {
    const data = this.#pending
    if (data.length === 0) {
      this.#carry = -1
      return { data, scratch: false, segments: [] }
    }
    return this.#step(data, true, false)
  }

  #step(data: Uint8Array, final: boolean, scratch: boolean): Release {
    const masker = this.#masker
    const matcher = matcherOf(masker)
    const end = data.length
    const found: Ranges = []
    matcher.findAll(data, end, found)
    if (masker.maskUrlCredentials) findUrlCredentials(data, end, found)
    let release = end
    if (!final) {
      release = matcher.partialStart(data, end)
      if (masker.maskUrlCredentials) release = Math.min(release, urlPartialStart(data, end))
    }
    const carry = this.#carry
    if (carry >= 0) found.push(0, carry)
    const ranges = mergeRanges(found)

    const segments: Array<number> = []
    let newCarry = -1
    let pos = 0
    for (let i = 0; i < ranges.length; i += 2) {
      const s = ranges[i]!
      if (s >= release) break
      const e = ranges[i + 1]!
      // a range starting at 0 while a range is carried continues the last `***`
      segments.push(pos, s, carry >= 0 && s === 0 ? 0 : 1)
      pos = Math.min(e, release)
      newCarry = e >= release ? e - release : -1
    }
    if (pos < release) segments.push(pos, release, 0)
    // nothing released: a carried range stays carried
    if (release === 0) newCarry = carry
    if (final) {
      this.#pending = EMPTY
      this.#carry = -1
    } else {
      this.#pending = release === end ? EMPTY : copyOf(data.subarray(release))
      this.#carry = newCarry
    }
    return { data, scratch, segments }
  }
}

/** Renders a release as bytes: a view of the caller's chunk when nothing changed, else a copy. */
const releaseBytes = ({ data, scratch, segments }: Release): Uint8Array => {
  const n = segments.length
  if (n === 0) return EMPTY
  if (n === 3 && segments[2] === 0 && !scratch) return data.subarray(segments[0]!, segments[1]!)
  let size = 0
  for (let i = 0; i < n; i += 3)
    size += segments[i + 1]! - segments[i]! + (segments[i + 2] === 1 ? MASK_BYTES.length : 0)
  const out = allocFilled(size)
  let o = 0
  for (let i = 0; i < n; i += 3) {
    const from = segments[i]!
    const to = segments[i + 1]!
    if (to > from) {
      out.set(data.subarray(from, to), o)
      o += to - from
    }
    if (segments[i + 2] === 1) {
      out.set(MASK_BYTES, o)
      o += MASK_BYTES.length
    }
  }
  return out
}

class StreamState implements MaskingState {
  readonly #core: MaskingCore
  constructor(masker: SecretMasker) {
    this.#core = new MaskingCore(masker)
  }
  push(chunk: Uint8Array): Uint8Array {
    if (chunk.length === 0) return EMPTY
    return releaseBytes(this.#core.push(chunk))
  }
  flush(): Uint8Array {
    return releaseBytes(this.#core.flush())
  }
}

/** Stateful masking and UTF-8 decoding of one output stream: push returns masked text. */
export interface TextMaskingState {
  /** Masked text that can be released now (a character cut by the chunk boundary waits for its rest). */
  push(chunk: Uint8Array): string
  /** Releases whatever is held back, and ends the decoding (an incomplete character becomes U+FFFD). */
  flush(): string
}

class TextState implements TextMaskingState {
  readonly #core: MaskingCore
  readonly #decoder = new TextDecoder()
  constructor(masker: SecretMasker) {
    this.#core = new MaskingCore(masker)
  }
  /** Reused buffer for assembling masked bytes before decoding (never handed out). */
  #assembly: Uint8Array = EMPTY
  #render({ data, segments }: Release): string {
    const n = segments.length
    if (n === 0) return ""
    const decoder = this.#decoder
    if (n === 3 && segments[2] === 0) return decoder.decode(data.subarray(segments[0]!, segments[1]!), { stream: true })
    // assemble the masked bytes in a reused buffer and decode them once: one flat string
    let size = 0
    for (let i = 0; i < n; i += 3)
      size += segments[i + 1]! - segments[i]! + (segments[i + 2] === 1 ? MASK_BYTES.length : 0)
    if (this.#assembly.length < size) this.#assembly = new Uint8Array(Math.max(size, this.#assembly.length * 2))
    const out = this.#assembly
    let o = 0
    for (let i = 0; i < n; i += 3) {
      const from = segments[i]!
      const to = segments[i + 1]!
      if (to > from) {
        out.set(data.subarray(from, to), o)
        o += to - from
      }
      if (segments[i + 2] === 1) {
        out.set(MASK_BYTES, o)
        o += MASK_BYTES.length
      }
    }
    return decoder.decode(out.subarray(0, size), { stream: true })
  }
  push(chunk: Uint8Array): string {
    if (chunk.length === 0) return ""
    return this.#render(this.#core.push(chunk))
  }
  flush(): string {
    return this.#render(this.#core.flush()) + this.#decoder.decode()
  }
}

/** Stream transform: masks every registered secret in a byte stream (one state per stream). */
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

/**
 * Stream transform: masks a byte stream and decodes it as UTF-8 in one step (one state per
 * stream). Same result as `maskStream` followed by a streaming TextDecoder, without copying the
 * bytes first: what output events need.
 */
export const maskTextStream =
  (masker: SecretMasker) =>
  <E, R>(self: Stream.Stream<Uint8Array, E, R>): Stream.Stream<string, E, R> =>
    Stream.suspend(() => {
      const state = masker.textState()
      return self.pipe(
        Stream.map((chunk) => state.push(chunk)),
        Stream.concat(Stream.sync(() => state.flush())),
        Stream.filter((text) => text.length > 0)
      )
    })
