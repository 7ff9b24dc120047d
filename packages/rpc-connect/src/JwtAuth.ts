import { createPrivateKey, createPublicKey, type KeyObject, sign, verify, X509Certificate } from "node:crypto"
import { Schema } from "effect"

/** The JWT key given to the server or to `token` cannot be used. */
export class JwtKeyError extends Schema.TaggedError<JwtKeyError>()("JwtKeyError", {
  message: Schema.String
}) {}

/** Result of checking one request's `Authorization` header. */
export type AuthResult =
  | { readonly ok: true; readonly subject: string }
  | { readonly ok: false; readonly message: string }

const isP256 = (key: KeyObject): boolean =>
  key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails?.namedCurve === "prime256v1"

/**
 * Parses the server's verification key: a PKIX `PUBLIC KEY` PEM or a certificate PEM holding a
 * P-256 key. An empty string fails with `JWT public key not provided` (the original's text).
 */
export const parsePublicKey = (pem: string): KeyObject => {
  if (pem.trim() === "") throw new JwtKeyError({ message: "JWT public key not provided" })
  let key: KeyObject
  try {
    key = pem.includes("CERTIFICATE") ? new X509Certificate(pem).publicKey : createPublicKey(pem)
  } catch {
    throw new JwtKeyError({ message: "failed to parse JWT public key: invalid PEM" })
  }
  if (!isP256(key)) throw new JwtKeyError({ message: "failed to parse JWT public key: not an ECDSA P-256 key" })
  return key
}

/** Parses a signing key: SEC1 `EC PRIVATE KEY` or PKCS#8 `PRIVATE KEY`, P-256 only. */
export const parsePrivateKey = (pem: string): KeyObject => {
  let key: KeyObject
  try {
    key = createPrivateKey(pem)
  } catch {
    throw new JwtKeyError({ message: "failed to parse private key: invalid PEM" })
  }
  if (!isP256(key)) throw new JwtKeyError({ message: "failed to parse private key: not an ECDSA P-256 key" })
  return key
}

const b64url = (value: string | Uint8Array): string => Buffer.from(value).toString("base64url")

/** An ES256 token as the original's `token` command makes it (claims in its order, whole seconds). */
export const signToken = (
  privateKey: KeyObject,
  subject: string,
  ttlSeconds: number,
  nowMs: number = Date.now()
): string => {
  const now = Math.floor(nowMs / 1000)
  const header = b64url(JSON.stringify({ alg: "ES256", typ: "JWT" }))
  const payload = b64url(JSON.stringify({ iss: "airunner", sub: subject, exp: now + Math.floor(ttlSeconds), iat: now }))
  const signature = sign("sha256", Buffer.from(`${header}.${payload}`), { key: privateKey, dsaEncoding: "ieee-p1363" })
  return `${header}.${payload}.${b64url(signature)}`
}

interface Verified {
  readonly exp: number
  readonly nbf: number | undefined
  readonly subject: string
}

const decodeJson = (part: string): unknown => JSON.parse(Buffer.from(part, "base64url").toString("utf8"))

/**
 * Verifies ES256 bearer tokens with one P-256 key, as the original: `alg` must be ES256, the
 * signature raw R‖S, `exp` present and in the future (no leeway), `nbf` (if any) not in the
 * future. Tokens whose signature checked out are cached (bounded) so a hot client costs one
 * map lookup; `exp`/`nbf` are re-checked on every request.
 */
export class JwtVerifier {
  private readonly key: KeyObject
  private readonly cache = new Map<string, Verified>()
  private readonly maxCache: number
  constructor(key: KeyObject, maxCache = 10_000) {
    this.key = key
    this.maxCache = maxCache
  }

  /** Checks an `Authorization` header value (or its absence). */
  check(authorization: string | undefined, nowMs: number = Date.now()): AuthResult {
    if (
      authorization === undefined ||
      authorization.length < 7 ||
      authorization.slice(0, 7).toLowerCase() !== "bearer "
    )
      return { ok: false, message: "missing bearer token" }
    return this.checkToken(authorization.slice(7), nowMs)
  }

  checkToken(token: string, nowMs: number = Date.now()): AuthResult {
    let verified = this.cache.get(token)
    if (verified === undefined) {
      const parsed = this.verifySignature(token)
      if (typeof parsed === "string") return { ok: false, message: parsed }
      verified = parsed
      if (this.cache.size >= this.maxCache) this.cache.clear()
      this.cache.set(token, verified)
    }
    const now = nowMs / 1000
    if (verified.exp <= now) return { ok: false, message: "invalid token" }
    if (verified.nbf !== undefined && verified.nbf > now) return { ok: false, message: "invalid token" }
    return { ok: true, subject: verified.subject }
  }

  private verifySignature(token: string): Verified | string {
    const parts = token.split(".")
    if (parts.length !== 3) return "invalid token"
    const [headerPart, payloadPart, signaturePart] = parts as [string, string, string]
    let header: unknown
    let claims: unknown
    try {
      header = decodeJson(headerPart)
      claims = decodeJson(payloadPart)
    } catch {
      return "invalid token"
    }
    if (typeof header !== "object" || header === null || (header as { alg?: unknown }).alg !== "ES256")
      return "invalid token"
    if (typeof claims !== "object" || claims === null || Array.isArray(claims)) return "invalid token"
    const signature = Buffer.from(signaturePart, "base64url")
    if (signature.length !== 64) return "invalid token"
    const ok = verify(
      "sha256",
      Buffer.from(`${headerPart}.${payloadPart}`),
      { key: this.key, dsaEncoding: "ieee-p1363" },
      signature
    )
    if (!ok) return "invalid token"
    const { exp, nbf, sub } = claims as { exp?: unknown; nbf?: unknown; sub?: unknown }
    if (exp === undefined || exp === null) return "token missing exp"
    if (typeof exp !== "number") return "invalid token"
    if (nbf !== undefined && typeof nbf !== "number") return "invalid token"
    // golang-jwt's RegisteredClaims: a `sub` of another type does not decode.
    if (sub !== undefined && typeof sub !== "string") return "invalid token"
    return { exp, nbf: nbf as number | undefined, subject: sub ?? "" }
  }
}
