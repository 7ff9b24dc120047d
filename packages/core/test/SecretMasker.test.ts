import { inspect } from "node:util"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import {
  MASK,
  MAX_URL_USERINFO,
  MAX_WHITESPACE_RUN,
  maskStream,
  maskTextStream,
  SecretMasker,
  type SecretMaskerOptions
} from "../src/SecretMasker.ts"

const enc = new TextEncoder()
const dec = new TextDecoder()
const bytes = (s: string) => enc.encode(s)
const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** Masks `chunks` through one state, returning the output bytes. */
const streamBytes = (masker: SecretMasker, chunks: ReadonlyArray<Uint8Array>): Uint8Array => {
  const state = masker.state()
  const out = chunks.map((c) => state.push(c))
  out.push(state.flush())
  return concat(out)
}
const streamText = (masker: SecretMasker, chunks: ReadonlyArray<string | Uint8Array>): string =>
  dec.decode(
    streamBytes(
      masker,
      chunks.map((c) => (typeof c === "string" ? bytes(c) : c))
    )
  )

/** Every way of cutting `text`'s bytes in two, and in one-byte chunks, gives `expected`. */
const expectAllSplits = (masker: SecretMasker, text: string, expected: string) => {
  const b = bytes(text)
  expect(masker.maskString(text)).toBe(expected)
  for (let i = 0; i <= b.length; i++) {
    expect(streamText(masker, [b.subarray(0, i), b.subarray(i)]), `split at byte ${i}`).toBe(expected)
  }
  const ones: Array<Uint8Array> = []
  for (let i = 0; i < b.length; i++) ones.push(b.subarray(i, i + 1))
  expect(streamText(masker, ones), "one-byte chunks").toBe(expected)
}

const masker = (secrets: ReadonlyArray<string>, options?: SecretMaskerOptions) => new SecretMasker(secrets, options)

describe("SecretMasker: registered values", () => {
  it("replaces every occurrence with one fixed marker", () => {
    expect(MASK).toBe("***")
    const m = masker(["hunter2-secret"])
    expect(m.maskString("a hunter2-secret b hunter2-secret")).toBe("a *** b ***")
    expect(m.maskString("nothing to hide")).toBe("nothing to hide")
    expect(m.maskString("")).toBe("")
  })

  it("masks a value split at every byte boundary, in two chunks and in one-byte chunks", () => {
    const m = masker(["s3cr3t-t0ken"])
    expectAllSplits(m, "token=s3cr3t-t0ken; again:s3cr3t-t0ken.", "token=***; again:***.")
  })

  it("masks across three chunks cut at every pair of boundaries", () => {
    const m = masker(["abcdefgh"])
    const text = "xx abcdefgh yy"
    const b = bytes(text)
    for (let i = 0; i <= b.length; i++) {
      for (let j = i; j <= b.length; j++) {
        expect(streamText(m, [b.subarray(0, i), b.subarray(i, j), b.subarray(j)])).toBe("xx *** yy")
      }
    }
  })

  it("merges overlapping values into one marker (no part of either shows)", () => {
    const m = masker(["AAAA-BBBB", "BBBB-CCCC"])
    expectAllSplits(m, "x AAAA-BBBB-CCCC y", "x *** y")
  })

  it("masks a value nested in another, and a value that is a prefix of another, without leaving a tail", () => {
    const nested = masker(["cdefgh", "abcdefghij"])
    expectAllSplits(nested, "1 abcdefghij 2 cdefgh 3", "1 *** 2 *** 3")
    const prefix = masker(["MASKED_VALUE", "MASKED_VALUE_OTHER"])
    expectAllSplits(prefix, "a MASKED_VALUE_OTHER b MASKED_VALUE c", "a *** b *** c")
  })

  it("merges adjacent and repeated values into one marker", () => {
    const m = masker(["alpha1", "beta22"])
    expectAllSplits(m, "[alpha1beta22][alpha1alpha1][alpha1 beta22]", "[***][***][*** ***]")
  })

  it("does not depend on the order values were registered in", () => {
    const values = ["AAAA-BBBB", "BBBB-CCCC", "BB-CC", "CCCC-DDDD-EEEE", "DDDD"]
    const text = "AAAA-BBBB-CCCC-DDDD-EEEE | BB-CC | xDDDDx | CCCC-DDDD"
    const expected = masker(values).maskString(text)
    expect(expected).toBe("*** | *** | x***x | CCCC-***")
    const perms = (xs: ReadonlyArray<string>): Array<Array<string>> =>
      xs.length <= 1
        ? [[...xs]]
        : xs.flatMap((x, i) => perms([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]))
    for (const p of perms(values)) expect(masker(p).maskString(text)).toBe(expected)
  })

  it("restarts a match correctly after a repeated beginning cut by a chunk boundary", () => {
    // GitLab's per-value writer leaks this one: value zzzz5150, text k=zzzzz5150 cut after k=zzzz
    const m = masker(["zzzz5150"])
    expect(streamText(m, ["k=zzzz", "z5150 done"])).toBe("k=z*** done")
    expectAllSplits(m, "k=zzzzz5150 zzzzzzzz5150", "k=z*** zzzz***")
  })

  it("finds overlapping occurrences of one value (tower-shaped values)", () => {
    const m = masker(["abab"])
    expectAllSplits(m, "ababab-abababab-aba", "***-***-aba")
  })

  it("trims values and never registers an empty one", () => {
    const m = masker(["  padded-value\n", "   ", ""])
    expect(m.maskString("x padded-value y")).toBe("x *** y")
    expect(m.maskString("a  b   c")).toBe("a  b   c")
    expect(m.skipped).toHaveLength(2)
    for (const s of m.skipped) expect(s).toContain("empty")
  })

  it("applies a value added at run time to later bytes", () => {
    const m = masker(["first-secret"])
    const state = m.state()
    expect(dec.decode(state.push(bytes("late-secret first-secret | ")))).toBe("late-secret *** | ")
    expect(m.add("late-secret")).toBe(true)
    expect(dec.decode(state.push(bytes("late-secret\n")))).toBe("***\n")
    expect(dec.decode(state.flush())).toBe("")
  })

  it("reports values below the minimum length without printing them", () => {
    const m = masker(["ab", "xyz"])
    expect(m.add("q1", "SHORT_TOKEN")).toBe(false)
    expect(m.skipped).toEqual([
      "secret #1: 2 characters, shorter than the minimum length 3",
      "SHORT_TOKEN: 2 characters, shorter than the minimum length 3"
    ])
    expect(m.maskString("ab xyz q1")).toBe("ab *** q1")
    const strict = masker(["short12", "long-enough-value"], { minLength: 8 })
    expect(strict.skipped).toEqual(["secret #1: 7 characters, shorter than the minimum length 8"])
    expect(strict.maskString("short12 long-enough-value")).toBe("short12 ***")
    // length counts characters, not bytes
    expect(masker(["éé"]).skipped).toHaveLength(1)
    expect(masker(["ééé"]).maskString("<ééé>")).toBe("<***>")
    expect(() => masker([], { minLength: 0 })).toThrow(RangeError)
  })

  it("applies the floor to every form: a value's short forms do not over-mask", () => {
    // "a&b" escapes to "a&amp;b" (long enough) but its 2-char pieces are never registered
    const m = masker(["a&b"])
    expect(m.maskString("a&b a&amp;b a%26b ab a b")).toBe("*** *** *** ab a b")
  })

  it("forks: a copy shares the values, and values added later apply to one side only", () => {
    const global = masker(["global-secret", "x"])
    const job = global.fork()
    expect(job.add("job-only-secret")).toBe(true)
    expect(job.maskString("global-secret job-only-secret")).toBe("*** ***")
    expect(global.maskString("global-secret job-only-secret")).toBe("*** job-only-secret")
    expect(job.skipped).toEqual(global.skipped)
    expect(job.stats.values).toBe(2)
  })

  it("never shows the values when the masker is printed or serialised", () => {
    const m = masker(["printed-secret-1"])
    for (const shown of [String(m), JSON.stringify(m), inspect(m, { depth: 10, showHidden: true })]) {
      expect(shown).not.toContain("printed-secret-1")
    }
    expect(m.stats.values).toBe(1)
  })
})

describe("SecretMasker: holding back", () => {
  it("holds only bytes that can still be a match, and releases them as soon as the match fails", () => {
    const m = masker(["hunter2-secret"])
    const state = m.state()
    expect(dec.decode(state.push(bytes("abc hunt")))).toBe("abc ")
    expect(dec.decode(state.push(bytes("er2")))).toBe("")
    expect(dec.decode(state.push(bytes("!")))).toBe("hunter2!")
    expect(dec.decode(state.push(bytes("plain text\n")))).toBe("plain text\n")
  })

  it("releases a pending partial match unchanged at end of stream", () => {
    const m = masker(["hunter2-secret"])
    const state = m.state()
    expect(dec.decode(state.push(bytes("tail: hunter2-sec")))).toBe("tail: ")
    expect(dec.decode(state.flush())).toBe("hunter2-sec")
  })

  it("never holds more than maxHoldBytes", () => {
    const value = "v".repeat(40)
    const m = masker([value], { maskUrlCredentials: false })
    // the longest form is the base64 of the value: 53 characters fully determined by it
    expect(m.maxHoldBytes).toBe(52)
    const state = m.state()
    let released = 0
    const input = bytes(`${"v".repeat(39)}x${"v".repeat(39)}`)
    for (let i = 0; i < input.length; i++) {
      released += state.push(input.subarray(i, i + 1)).length
      const held = i + 1 - released
      expect(held).toBeLessThanOrEqual(m.maxHoldBytes)
      // a run of v's is held while it can still become the value, released at the "x"
      expect(held).toBe(i < 39 ? i + 1 : i === 39 ? 0 : i - 39)
    }
    expect(released + state.flush().length).toBe(input.length)
  })

  it("finds values at every alignment in long chunks at any byte offset", () => {
    const values = ["Qx7-value", "Zr8_0123456789abcd", "Wt9.abcdefghijklmnopqrstuvwxyz0123456789"]
    const m = masker(values)
    const filler = "lorem ipsum dolor sit amet, build step 42 passed\n"
    let text = ""
    let expected = ""
    for (let pad = 0; pad < 8; pad++) {
      for (const v of values) {
        text += `${filler.slice(0, 17 + pad)}${v}${filler}`
        expected += `${filler.slice(0, 17 + pad)}***${filler}`
      }
    }
    expect(m.maskString(text)).toBe(expected)
    const b = bytes(text)
    for (const offset of [1, 2, 3, 5]) {
      const backing = new Uint8Array(b.length + offset)
      backing.set(b, offset)
      const view = backing.subarray(offset)
      expect(streamText(m, [view.subarray(0, 1000), view.subarray(1000)])).toBe(expected)
    }
    // the longest forms (base64) at every alignment too
    for (let pad = 0; pad < 8; pad++) {
      for (const v of values) {
        const encoded = Buffer.from(v).toString("base64")
        const out = m.maskString(`${filler.repeat(3).slice(0, 40 + pad)}${encoded}${filler}`)
        expect(out).toBe(
          `${filler.repeat(3).slice(0, 40 + pad)}***${encoded.slice(Math.floor((v.length * 8) / 6))}${filler}`
        )
      }
    }
  })

  it("finds the longest form wherever the filter's probe falls inside it", () => {
    // one 20-char value: every form is 20 to 26 bytes, so only every fourth aligned word is probed
    const v = "Kp4mZt8Qw2Lx6Rb0Nc3V"
    const m = masker([v])
    for (let pad = 0; pad < 64; pad++) {
      for (const [prefix, form] of [
        ["", v],
        ["", Buffer.from(v).toString("base64")],
        ["x", Buffer.from(`x${v}`).toString("base64")],
        ["xy", Buffer.from(`xy${v}`).toString("base64")]
      ] as const) {
        const text = `${"-".repeat(300 + pad)}${form}${"-".repeat(300)}`
        const out = m.maskString(text)
        expect(out, `${prefix.length}-byte prefix, pad ${pad}`).toContain("***")
        expect(out.length, `${prefix.length}-byte prefix, pad ${pad}`).toBeLessThanOrEqual(600 + pad + 3 + 7)
      }
    }
  })

  it("does not keep a reference to the caller's buffer", () => {
    const m = masker(["hunter2-secret"])
    const state = m.state()
    const chunk = Buffer.from("x hunter2-se")
    expect(dec.decode(state.push(chunk))).toBe("x ")
    chunk.fill(0x41)
    expect(dec.decode(state.flush())).toBe("hunter2-se")
  })
})

describe("SecretMasker: multi-line values", () => {
  const key = "-----BEGIN TEST KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n0hYpNf3bQ1Kx7Lm2Qz8wPr\n-----END TEST KEY-----\n"

  it("masks the whole value whatever whitespace its line breaks became", () => {
    const m = masker([key])
    const lines = key.trim().split("\n")
    for (const sep of ["\n", "\r\n", "\r\r\n", " ", "\n\n\n", "\n    ", "\t \r\n"]) {
      const text = `key: ${lines.join(sep)} :end`
      expectAllSplits(m, text, "key: *** :end")
    }
  })

  it("masks each line printed on its own when it passes the floor, and never short lines", () => {
    const json = '{\n  "client_secret": "7f3k9x2m4q",\n  "n": 1\n}'
    const m = masker([json])
    // each line, with its trailing comma, is a value of its own; the braces are not
    expect(m.maskString('{"client_secret": "7f3k9x2m4q", "n": 1}')).toBe("{*** ***}")
    expect(m.maskString("if (x) { y } else {}")).toBe("if (x) { y } else {}")
    expect(m.maskString(json)).toBe("***")
    const pem = masker([key])
    expect(pem.maskString("line: 0hYpNf3bQ1Kx7Lm2Qz8wPr.")).toBe("line: ***.")
  })

  it("does not join lines across a whitespace run longer than the limit", () => {
    const m = masker(["first-line-x\nsecond-line-y"])
    const far = `first-line-x${" ".repeat(MAX_WHITESPACE_RUN + 1)}second-line-y`
    // each line is still masked on its own, so two markers instead of one
    expect(m.maskString(far)).toBe(`***${" ".repeat(MAX_WHITESPACE_RUN + 1)}***`)
    const near = `first-line-x${" ".repeat(MAX_WHITESPACE_RUN)}second-line-y`
    expect(m.maskString(near)).toBe("***")
  })
})

describe("SecretMasker: encoded forms", () => {
  const secret = `p@ss/w0rd+"q'<&>`
  const m = masker([secret])
  const b64 = (b: Uint8Array) => Buffer.from(b).toString("base64")
  const b64url = (b: Uint8Array) => Buffer.from(b).toString("base64url")

  it("masks base64 (standard and URL-safe) of the value at every alignment, with anything before or after", () => {
    for (const encode of [b64, b64url]) {
      for (let before = 0; before <= 5; before++) {
        for (const after of ["", "\n", "x", "xy", "xyz"]) {
          const encoded = encode(concat([bytes("P".repeat(before)), bytes(secret), bytes(after)]))
          const out = m.maskString(`data ${encoded} end`)
          const match = /^data ([A-Za-z0-9+/_=-]*)\*\*\*([A-Za-z0-9+/_=-]*) end$/.exec(out)
          expect(match, `${before} before, ${JSON.stringify(after)} after: ${out}`).not.toBeNull()
          // only the characters that mix in the neighbours' bits stay
          expect(match?.[1]?.length ?? 99).toBeLessThanOrEqual(Math.ceil((before * 8) / 6))
          expect((match?.[2] ?? "").replace(/=/g, "").length).toBeLessThanOrEqual(Math.ceil((after.length * 8 + 6) / 6))
        }
      }
    }
  })

  it("masks the text escapes of the value", () => {
    const xml = secret.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
    const forms: Record<string, string> = {
      url: encodeURIComponent(secret),
      form: new URLSearchParams({ k: secret }).toString().slice(2),
      json: JSON.stringify(secret).slice(1, -1),
      "xml &apos;": xml.replace(/'/g, "&apos;"),
      "xml &#39;": xml.replace(/'/g, "&#39;"),
      'backslash-quote \\"': secret.replace(/"/g, '\\"'),
      "doubled single quote": secret.replace(/'/g, "''"),
      "shell -x": `'${secret.replace(/'/g, "'\\''")}'`
    }
    for (const [name, form] of Object.entries(forms)) {
      expect(form, name).not.toBe(secret)
      expectAllSplits(m, `<${form}>`, form.startsWith("'") ? "<'***'>" : "<***>")
    }
  })

  it("masks Go %q and JSON escapes of control characters and non-ASCII text", () => {
    const tricky = masker(["tab\there\nnewline-ü-\u0001"])
    // Go: strconv.Quote("tab\there\nnewline-ü-\x01")
    expect(tricky.maskString(`"tab\\there\\nnewline-ü-\\x01"`)).toBe(`"***"`)
    // JSON (JavaScript) and JSON with ASCII-only escapes (Python's json.dumps)
    expect(tricky.maskString(JSON.stringify("tab\there\nnewline-ü-\u0001"))).toBe(`"***"`)
    expect(tricky.maskString(`"tab\\there\\nnewline-\\u00fc-\\u0001"`)).toBe(`"***"`)
    // bash -x $'...'
    expect(tricky.maskString(`$'tab\\there\\nnewline-ü-\\001'`)).toBe(`$'***'`)
  })
})

describe("SecretMasker: credentials in URLs", () => {
  const m = masker([])

  it("masks the password of scheme://user:password@host even when it is not registered", () => {
    expect(m.maskString("git clone https://x-access-token:ghs_Abc123@github.com/o/r.git")).toBe(
      "git clone https://x-access-token:***@github.com/o/r.git"
    )
    expect(m.maskString("postgres://app:s3cr%40t@db:5432/app")).toBe("postgres://app:***@db:5432/app")
    expect(m.maskString("redis://:only-password@127.0.0.1:6379")).toBe("redis://:***@127.0.0.1:6379")
    expect(m.maskString("odd https://u:p@ss@host/")).toBe("odd https://u:***@host/")
  })

  it("keeps URLs without a password, and text that only looks like one", () => {
    for (const text of [
      "https://user@github.com/o/r",
      "https://github.com/o/r?q=a:b@c",
      "mailto:someone@example.com",
      "at 12:30 @channel",
      "https://u:@host/"
    ]) {
      expect(m.maskString(text)).toBe(text)
    }
  })

  it("masks up to the last @ of the userinfo, also with many of them", () => {
    expectAllSplits(m, "x https://u:a@b@c@host/ y", "x https://u:***@host/ y")
    expectAllSplits(m, "x https://u@:pw@host/ y", "x https://u@:***@host/ y")
    const many = `https://u:${"p@".repeat(1000)}host/`
    expect(m.maskString(many)).toBe("https://u:***@host/")
    // only "@"s within MAX_URL_USERINFO bytes of "://" count
    const tooMany = `https://u:${"p@".repeat(1100)}host/`
    const out = m.maskString(tooMany)
    expect(out.startsWith("https://u:***@p@p@")).toBe(true)
    // the last "@" that counts is at offset 2047 of the userinfo: 2045 password bytes become ***
    expect(out.length).toBe(tooMany.length - (MAX_URL_USERINFO - 3) + 3)
  })

  it("masks a URL password split at every byte boundary", () => {
    expectAllSplits(m, "remote: https://bot:tok-en.123@host.example/x y", "remote: https://bot:***@host.example/x y")
  })

  it("merges a registered value inside a URL with the password rule", () => {
    const both = masker(["bot-user-name"])
    expect(both.maskString("https://bot-user-name:tok3n@host/")).toBe("https://***:***@host/")
  })

  it("ignores userinfo longer than the limit, and can be turned off", () => {
    const long = `https://u:${"x".repeat(MAX_URL_USERINFO)}@host/`
    expect(m.maskString(long)).toBe(long)
    const off = masker(["registered"], { maskUrlCredentials: false })
    expect(off.maskString("https://u:pw12@host registered")).toBe("https://u:pw12@host ***")
  })
})

describe("SecretMasker: UTF-8", () => {
  it("masks multi-byte values cut inside a character and keeps the text around them intact", () => {
    const m = masker(["pässwörd€😀x"])
    expectAllSplits(m, "ä→pässwörd€😀x←😀", "ä→***←😀")
  })

  it("passes any bytes through untouched, invalid UTF-8 included", () => {
    const m = masker(["secret-value"])
    const input = new Uint8Array([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80, 0x41])
    expect(streamBytes(m, [input.subarray(0, 3), input.subarray(3)])).toEqual(input)
  })
})

describe("SecretMasker: text states", () => {
  it("masks and decodes in one step, a character cut by a chunk boundary waiting for its rest", () => {
    const m = masker(["pässwörd"])
    const state = m.textState()
    const b = bytes("é pässwörd ü")
    expect(state.push(b.subarray(0, 1))).toBe("")
    expect(state.push(b.subarray(1, 6))).toBe("é ")
    expect(state.push(b.subarray(6))).toBe("*** ü")
    expect(state.flush()).toBe("")
    const cut = m.textState()
    expect(cut.push(bytes("x ü").subarray(0, 3))).toBe("x ")
    expect(cut.flush()).toBe("\ufffd")
  })
})

describe("maskStream", () => {
  it.effect("masks a Stream of byte chunks, one state per stream", () =>
    Effect.gen(function* () {
      const m = masker(["stream-secret"])
      const split = (s: string, at: number) => [bytes(s.slice(0, at)), bytes(s.slice(at))]
      const run = (chunks: ReadonlyArray<Uint8Array>) =>
        Stream.fromIterable(chunks).pipe(
          maskStream(m),
          Stream.runCollect,
          Effect.map((out) => dec.decode(concat(out)))
        )
      const [stdout, stderr] = yield* Effect.all(
        [run(split("out: stream-secret\n", 10)), run(split("err: stream-secret and stream-sec", 12))],
        { concurrency: 2 }
      )
      expect(stdout).toBe("out: ***\n")
      expect(stderr).toBe("err: *** and stream-sec")
    })
  )

  it.effect("maskTextStream masks and decodes a Stream of byte chunks", () =>
    Effect.gen(function* () {
      const m = masker(["stream-secret"])
      const b = bytes("ü stream-secret ü")
      const out = yield* Stream.fromIterable([b.subarray(0, 1), b.subarray(1, 9), b.subarray(9)]).pipe(
        maskTextStream(m),
        Stream.runCollect
      )
      expect(out.join("")).toBe("ü *** ü")
    })
  )
})
