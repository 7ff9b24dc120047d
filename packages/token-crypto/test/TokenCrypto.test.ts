import { createCipheriv, randomBytes } from "node:crypto"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import {
  decryptToken,
  decryptTokenSync,
  encryptToken,
  InvalidEncryptionKey,
  KEY_FORM_MESSAGE,
  KEY_REQUIRED_MESSAGE,
  maskInString,
  maskToken,
  parseKey,
  parseKeySync,
  TokenDecryptError
} from "../src/index.ts"

const KEY_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
const KEY = Buffer.from(KEY_HEX, "hex")

// Produced once with Node's crypto (createCipheriv aes-256-gcm, fixed IVs), not with this package.
const FIXED_VECTORS: ReadonlyArray<readonly [string, string]> = [
  [
    "ghp_1234567890abcdefghijklmnop",
    "CgsMDQ4PEBESExQV:cfsS7gY0TObVGbPlDqzTuw==:CNVKl1rv5EGDMu8155yEKp56uknYApfegDWm+D4t"
  ],
  ["", "AAAAAAAAAAAAAAAB:Nn74KIgxVXQI4QKVChbiag==:"],
  [
    "žluťoučký kůň 🐎 token:with:colons",
    "/+7dzLuqmYh3ZlVE:gqi/lcT7nsrP/sG9Z8lEVQ==:G/hkfohQj7bN4QaOjLzJ5GQqDUbI/J2JjlWq3wH+o0+3Aec/3iZjdJl8"
  ]
]

// The web app's encrypt, written directly against node:crypto.
const webEncrypt = (key: Buffer, plaintext: string): string => {
  const iv = randomBytes(12)
  const cipher = createCipheriv("aes-256-gcm", key, iv)
  const data = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()])
  return [iv, cipher.getAuthTag(), data].map((b) => b.toString("base64")).join(":")
}

const decryptError = (key: Uint8Array, data: string): string => {
  try {
    decryptTokenSync(key, data)
  } catch (e) {
    expect(e).toBeInstanceOf(TokenDecryptError)
    return (e as TokenDecryptError).message
  }
  throw new Error("expected a decrypt error")
}

const keyError = (raw: string | undefined): string => {
  try {
    parseKeySync(raw)
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidEncryptionKey)
    return (e as InvalidEncryptionKey).message
  }
  throw new Error("expected a key error")
}

describe("key forms", () => {
  const bytes = randomBytes(32)
  it("accepts 64 hex characters in either case", () => {
    expect(parseKeySync(bytes.toString("hex"))).toEqual(bytes)
    expect(parseKeySync(bytes.toString("hex").toUpperCase())).toEqual(bytes)
  })
  it("accepts 44 base64 characters", () => {
    expect(parseKeySync(bytes.toString("base64"))).toEqual(bytes)
  })
  it("accepts a 32-character raw string as its bytes", () => {
    expect(parseKeySync("abcdefghijklmnopqrstuvwxyz012345")).toEqual(Buffer.from("abcdefghijklmnopqrstuvwxyz012345"))
  })
  it("prefers hex over raw and base64 over raw", () => {
    // 64 hex chars are never 32 raw bytes; a 44-char base64 string is never 32 raw bytes either,
    // so check order with a 64-char hex string that is also valid base64-alphabet text.
    expect(parseKeySync("a".repeat(64))).toEqual(Buffer.alloc(32, 0xaa))
  })
  it("rejects missing, empty, short and 66-hex keys with the runner's messages", () => {
    expect(keyError(undefined)).toBe(KEY_REQUIRED_MESSAGE)
    expect(keyError("")).toBe("ENCRYPTION_KEY is required")
    expect(keyError("abc")).toBe("ENCRYPTION_KEY must be 32 bytes: 64 hex chars, 44 base64 chars, or 32 raw chars")
    expect(keyError("a".repeat(66))).toBe(KEY_FORM_MESSAGE)
    expect(keyError("g".repeat(64))).toBe(KEY_FORM_MESSAGE)
    // 44 chars, base64 alphabet but decodes to 33 bytes? no: bad padding makes it not base64 and not 32 raw.
    expect(keyError("A".repeat(44))).toBe(KEY_FORM_MESSAGE)
  })
  it("parseKey fails in the error channel", async () => {
    const result = await Effect.runPromise(Effect.flip(parseKey("abc")))
    expect(result._tag).toBe("InvalidEncryptionKey")
  })
})

describe("decrypt", () => {
  it("decrypts fixed vectors produced by Node's crypto", () => {
    for (const [plain, enc] of FIXED_VECTORS) expect(decryptTokenSync(KEY, enc)).toBe(plain)
  })

  it("decrypts the web app's output for every key form", async () => {
    const bytes = randomBytes(32)
    const raw = "0123456789abcdefghijklmnopqrstuv"
    const cases: ReadonlyArray<readonly [string, Buffer]> = [
      [bytes.toString("hex"), bytes],
      [bytes.toString("base64"), bytes],
      [raw, Buffer.from(raw)]
    ]
    const plaintexts = ["ghp_1234567890abcdefghijklmnop", "x", "a".repeat(5000), "sp€cial !@#$%^&*()_+=:;'\"<>?/", ""]
    for (const [form, keyBytes] of cases) {
      const key = parseKeySync(form)
      for (const p of plaintexts) {
        expect(decryptTokenSync(key, webEncrypt(keyBytes, p))).toBe(p)
        expect(await Effect.runPromise(decryptToken(key, webEncrypt(keyBytes, p)))).toBe(p)
      }
    }
  })

  it("encryptToken output decrypts with node:crypto semantics and uses a random IV", () => {
    const a = encryptToken(KEY, "same")
    const b = encryptToken(KEY, "same")
    expect(a).not.toBe(b)
    expect(decryptTokenSync(KEY, a)).toBe("same")
    expect(a.split(":")).toHaveLength(3)
  })

  it("rejects malformed data with the runner's messages", () => {
    const good = FIXED_VECTORS[0]![1].split(":") as [string, string, string]
    expect(decryptError(KEY, "invaliddata")).toBe("invalid encrypted data format: expected iv:authTag:ciphertext")
    expect(decryptError(KEY, "part1:part2")).toBe("invalid encrypted data format: expected iv:authTag:ciphertext")
    expect(decryptError(KEY, "not-valid-format")).toMatch(/^invalid encrypted data format/)
    expect(decryptError(KEY, `a:b:c:d`)).toMatch(/^invalid encrypted data format/)
    expect(decryptError(KEY, `!!!!:${good[1]}:${good[2]}`)).toBe(
      "failed to decode IV: illegal base64 data at input byte 0"
    )
    expect(decryptError(KEY, `AAAA:${good[1]}:${good[2]}`)).toBe("invalid IV length: expected 12, got 3")
    expect(decryptError(KEY, `${good[0]}:@@@@:${good[2]}`)).toBe(
      "failed to decode auth tag: illegal base64 data at input byte 0"
    )
    expect(decryptError(KEY, `${good[0]}:AAAA:${good[2]}`)).toBe("invalid auth tag length: expected 16, got 3")
    expect(decryptError(KEY, `${good[0]}:${good[1]}:abc`)).toMatch(/^failed to decode ciphertext: illegal base64/)
  })

  it("rejects a wrong key and tampered tag or ciphertext", () => {
    const [, enc] = FIXED_VECTORS[0]!
    const [iv, tag, data] = enc.split(":") as [string, string, string]
    const auth = "decryption failed: cipher: message authentication failed"
    expect(decryptError(randomBytes(32), enc)).toBe(auth)
    const flip = (b64: string) => {
      const buf = Buffer.from(b64, "base64")
      buf[0] = buf[0]! ^ 1
      return buf.toString("base64")
    }
    expect(decryptError(KEY, `${iv}:${flip(tag)}:${data}`)).toBe(auth)
    expect(decryptError(KEY, `${iv}:${tag}:${flip(data)}`)).toBe(auth)
  })

  it("decryptToken fails in the error channel", async () => {
    const err = await Effect.runPromise(Effect.flip(decryptToken(KEY, "invaliddata")))
    expect(err._tag).toBe("TokenDecryptError")
  })
})

describe("masking", () => {
  it("masks like the original", () => {
    expect(maskToken("ghp_1234567890abcdefghijklmnop")).toBe("ghp_****mnop")
    expect(maskToken("glpat-xxxxxxxxxxxxxxxxxxxx")).toBe("glpa****xxxx")
    expect(maskToken("short")).toBe("****")
    expect(maskToken("123456789012")).toBe("****")
    expect(maskToken("1234567890123")).toBe("1234****0123")
  })
  it("replaces every occurrence and leaves other text unchanged", () => {
    const t = "ghp_1234567890abcdefghijklmnop"
    expect(maskInString(`fatal: https://oauth2:${t}@h/r ${t}`, t)).toBe(
      "fatal: https://oauth2:ghp_****mnop@h/r ghp_****mnop"
    )
    expect(maskInString("no token here", t)).toBe("no token here")
    expect(maskInString("text", "")).toBe("text")
  })
})
