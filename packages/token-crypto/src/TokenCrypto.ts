import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto"
import { Effect, Schema } from "effect"

/** `ENCRYPTION_KEY` is in none of the three accepted forms (or is empty). */
export class InvalidEncryptionKey extends Schema.TaggedError<InvalidEncryptionKey>()("InvalidEncryptionKey", {
  message: Schema.String
}) {}

/** An encrypted token that cannot be decrypted; `message` is the Repobox runner's text. */
export class TokenDecryptError extends Schema.TaggedError<TokenDecryptError>()("TokenDecryptError", {
  message: Schema.String
}) {}

export const KEY_REQUIRED_MESSAGE = "ENCRYPTION_KEY is required"
export const KEY_FORM_MESSAGE = "ENCRYPTION_KEY must be 32 bytes: 64 hex chars, 44 base64 chars, or 32 raw chars"

const HEX_KEY = /^[0-9a-fA-F]{64}$/
const STD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
const IV_BYTES = 12
const TAG_BYTES = 16

/**
 * Reads an AES-256 key in the order the Repobox web app and runner use: 64 hex characters,
 * then 44 standard-base64 characters decoding to 32 bytes, then any string of 32 bytes (UTF-8),
 * taken as its bytes. Returns undefined for anything else.
 */
export const parseKeyOrUndefined = (raw: string): Buffer | undefined => {
  if (HEX_KEY.test(raw)) return Buffer.from(raw, "hex")
  if (raw.length === 44 && STD_BASE64.test(raw)) {
    const decoded = Buffer.from(raw, "base64")
    if (decoded.length === 32) return decoded
  }
  const bytes = Buffer.from(raw, "utf8")
  if (bytes.length === 32) return bytes
  return undefined
}

/** Synchronous key parse; throws {@link InvalidEncryptionKey}. */
export const parseKeySync = (raw: string | undefined): Buffer => {
  if (raw === undefined || raw === "") throw new InvalidEncryptionKey({ message: KEY_REQUIRED_MESSAGE })
  const key = parseKeyOrUndefined(raw)
  if (key === undefined) throw new InvalidEncryptionKey({ message: KEY_FORM_MESSAGE })
  return key
}

/** Parses an `ENCRYPTION_KEY` value; fails with {@link InvalidEncryptionKey}. */
export const parseKey = (raw: string | undefined): Effect.Effect<Buffer, InvalidEncryptionKey> =>
  Effect.try({ try: () => parseKeySync(raw), catch: (e) => e as InvalidEncryptionKey })

// Go's base64.StdEncoding reports the offset of the first byte it cannot use.
const base64Error = (s: string): string | undefined => {
  if (STD_BASE64.test(s)) return undefined
  const bad = s.search(/[^A-Za-z0-9+/=]/)
  if (bad >= 0) return `illegal base64 data at input byte ${bad}`
  const pad = s.indexOf("=")
  const at = pad >= 0 ? pad : s.length - (s.length % 4)
  return `illegal base64 data at input byte ${at}`
}

const fail = (message: string): never => {
  throw new TokenDecryptError({ message })
}

/**
 * Decrypts `base64(iv):base64(tag):base64(ciphertext)` (AES-256-GCM, 12-byte IV, 16-byte tag,
 * no associated data) to its UTF-8 plaintext. Throws {@link TokenDecryptError} with the
 * Repobox runner's messages.
 */
export const decryptTokenSync = (key: Uint8Array, encrypted: string): string => {
  const parts = encrypted.split(":")
  if (parts.length !== 3) fail("invalid encrypted data format: expected iv:authTag:ciphertext")
  const [ivText, tagText, dataText] = parts as [string, string, string]
  const ivErr = base64Error(ivText)
  if (ivErr !== undefined) fail(`failed to decode IV: ${ivErr}`)
  const iv = Buffer.from(ivText, "base64")
  if (iv.length !== IV_BYTES) fail(`invalid IV length: expected ${IV_BYTES}, got ${iv.length}`)
  const tagErr = base64Error(tagText)
  if (tagErr !== undefined) fail(`failed to decode auth tag: ${tagErr}`)
  const tag = Buffer.from(tagText, "base64")
  if (tag.length !== TAG_BYTES) fail(`invalid auth tag length: expected ${TAG_BYTES}, got ${tag.length}`)
  const dataErr = base64Error(dataText)
  if (dataErr !== undefined) fail(`failed to decode ciphertext: ${dataErr}`)
  const data = Buffer.from(dataText, "base64")
  if (key.length !== 32) fail("decryption failed: crypto/aes: invalid key size")
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES })
    decipher.setAuthTag(tag)
    return Buffer.concat([decipher.update(data), decipher.final()]).toString("utf8")
  } catch {
    return fail("decryption failed: cipher: message authentication failed")
  }
}

/** Effect form of {@link decryptTokenSync}. */
export const decryptToken = (key: Uint8Array, encrypted: string): Effect.Effect<string, TokenDecryptError> =>
  Effect.try({ try: () => decryptTokenSync(key, encrypted), catch: (e) => e as TokenDecryptError })

/** Encrypts like the Repobox web app (random 12-byte IV). */
export const encryptToken = (key: Uint8Array, plaintext: string): string => {
  const iv = randomBytes(IV_BYTES)
  const cipher = createCipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES })
  const data = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()])
  return `${iv.toString("base64")}:${cipher.getAuthTag().toString("base64")}:${data.toString("base64")}`
}

/** Repobox masking: 12 characters or fewer become `****`, longer ones `first4****last4`. */
export const maskToken = (token: string): string =>
  token.length <= 12 ? "****" : `${token.slice(0, 4)}****${token.slice(-4)}`

/** Replaces every occurrence of `token` in `text` with {@link maskToken}; an empty token changes nothing. */
export const maskInString = (text: string, token: string): string =>
  token === "" ? text : text.split(token).join(maskToken(token))
