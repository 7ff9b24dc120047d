/**
 * `pnpm bench:masker`: MB/s through the SecretMasker with 20 registered secrets (16 to 64
 * characters) over ~64 MiB of generated log text in 64 KiB chunks, against the same chunks through
 * the same pipeline without the masking step, measured in the same run.
 *
 * Pipelines, all starting from Stream.fromIterable(chunks) and folding the decoded character count:
 * - unmasked (the anchor): streaming UTF-8 decode (TextDecoder), as output events need text;
 * - runlane-masker: maskTextStream (mask and decode in one step, no copy of the bytes);
 * - runlane-masker-bytes: maskStream (masked bytes, copied where they change) then the decode.
 * Each round times the three back to back, each after a full GC. `mbPerSec` is per CPU-second of this process (user +
 * system, all threads, GC included; the machine is shared, so wall time mostly measures the other
 * tenants), `wallMbPerSec` per wall-clock second; both are medians over ROUNDS rounds. `ratio` is
 * the median of the per-round CPU-time ratios (unmasked time / masked time).
 */
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { Effect, Stream } from "effect"
import { MASK, maskStream, maskTextStream, SecretMasker } from "../src/SecretMasker.ts"

const TOTAL_BYTES = 64 * 1024 * 1024
const CHUNK = 64 * 1024
const SECRETS = 20
const ROUNDS = 9

/** xorshift32: deterministic input, so every run measures the same bytes. */
const rng = (seed: number) => {
  let s = seed >>> 0 || 1
  return (): number => {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s / 4294967296
  }
}
const random = rng(20261123)
const pick = <A>(xs: ArrayLike<A>): A => xs[Math.floor(random() * xs.length)]!

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
const SYMBOLS = `${ALNUM}+/=_-.@!#%&"'<>`
const makeSecret = (i: number): string => {
  const length = 16 + Math.floor(random() * 49)
  const prefix = ["ghp_", "xoxb-", "AKIA", "sk-", "", "", "", ""][i % 8]!
  const alphabet = i % 3 === 0 ? SYMBOLS : ALNUM
  let s = prefix
  while (s.length < length) s += pick(alphabet)
  return s
}
const secrets = Array.from({ length: SECRETS }, (_, i) => makeSecret(i))

const WORDS = (
  "the of and to in is was build step run test compile link install fetch download package module error " +
  "warning info debug cache hit miss docker image layer pull push git clone checkout commit branch origin main " +
  "node npm pnpm vitest passed failed skipped duration ms seconds resolving dependencies done added removed"
).split(" ")
const b64 = (s: string): string => btoa(String.fromCharCode(...new TextEncoder().encode(s)))

const makeLine = (n: number): string => {
  const t = `2026-11-23T14:${String(n % 60).padStart(2, "0")}:${String((n >> 6) % 60).padStart(2, "0")}.${String(n % 1000).padStart(3, "0")}Z`
  let line = `${t} [${pick(["INFO", "WARN", "DEBUG", "INFO"])}] `
  const words = 5 + Math.floor(random() * 12)
  for (let j = 0; j < words; j++) line += `${pick(WORDS)} `
  if (n % 7 === 0) line += `/home/runner/work/repo/src/module${n % 97}/file${n % 13}.ts:${n % 400} `
  if (n % 11 === 0)
    line += `sha ${Math.floor(random() * 2 ** 32).toString(16)}${Math.floor(random() * 2 ** 32).toString(16)} `
  if (n % 13 === 0) line += `npm http fetch GET 200 https://registry.npmjs.org/@effect%2fvitest 41ms `
  if (n % 29 === 0) line += `author: dev${n % 50}@example.com `
  if (n % 500 === 0) line += `token=${secrets[n % SECRETS]} `
  if (n % 1500 === 0) line += `Authorization: Basic ${b64(`user:${secrets[(n >> 1) % SECRETS]}`)} `
  if (n % 2000 === 0) line += `remote: https://x-access-token:${secrets[(n >> 2) % SECRETS]}@github.com/o/r.git `
  return `${line}\n`
}

const makeLog = (): Uint8Array => {
  const out = new Uint8Array(TOTAL_BYTES)
  const encoder = new TextEncoder()
  let filled = 0
  let n = 0
  while (filled < TOTAL_BYTES) {
    const { written } = encoder.encodeInto(makeLine(++n), out.subarray(filled))
    if (written === 0) break
    filled += written
  }
  return out.subarray(0, filled)
}

const log = makeLog()
const chunks: Array<Uint8Array> = []
for (let i = 0; i < log.length; i += CHUNK) chunks.push(log.subarray(i, Math.min(log.length, i + CHUNK)))
const masker = new SecretMasker(secrets)

const decodeAll = <E, R>(stream: Stream.Stream<Uint8Array, E, R>) =>
  Effect.suspend(() => {
    const decoder = new TextDecoder()
    return stream.pipe(
      Stream.map((bytes) => decoder.decode(bytes, { stream: true })),
      Stream.runFold(
        () => 0,
        (n, text: string) => n + text.length
      )
    )
  })
const countChars = <E, R>(stream: Stream.Stream<string, E, R>) =>
  stream.pipe(
    Stream.runFold(
      () => 0,
      (n, text: string) => n + text.length
    )
  )

/** The anchor: chunk → streaming UTF-8 decode. */
const unmasked = decodeAll(Stream.fromIterable(chunks))
/** chunk → mask and decode in one step (maskTextStream): what output events need. */
const masked = countChars(Stream.fromIterable(chunks).pipe(maskTextStream(masker)))
/** chunk → mask to bytes (maskStream) → streaming UTF-8 decode. */
const maskedBytes = decodeAll(Stream.fromIterable(chunks).pipe(maskStream(masker)))

/**
 * Times one run: CPU time of this process (user + system, every thread: GC included) and wall time.
 * The machine is shared with other suites, so CPU time is the figure that measures the work.
 */
setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void

const timeIt = (
  effect: Effect.Effect<number>
): { readonly cpuMs: number; readonly wallMs: number; readonly chars: number } => {
  // start every run from a collected heap, so no run pays for the garbage of the one before
  gc()
  const cpu0 = process.cpuUsage()
  const start = performance.now()
  const chars = Effect.runSync(effect)
  const wallMs = performance.now() - start
  const cpu = process.cpuUsage(cpu0)
  return { cpuMs: (cpu.user + cpu.system) / 1000, wallMs, chars }
}

// Correctness check outside the timed runs: no secret survives, the masks are there.
const check = (): number => {
  const text = new TextDecoder().decode(masker.maskBytes(log))
  for (const s of secrets) if (text.includes(s)) throw new Error("masker bench: a secret survived masking")
  let masks = 0
  for (let i = text.indexOf(MASK); i !== -1; i = text.indexOf(MASK, i + 1)) masks++
  return masks
}
const masks = check()

// warm-up, then interleaved rounds: each round times the three pipelines back to back
timeIt(unmasked)
timeIt(masked)
timeIt(maskedBytes)
type Times = { cpu: Array<number>; wall: Array<number> }
const times: Record<"unmasked" | "masked" | "bytes", Times> = {
  unmasked: { cpu: [], wall: [] },
  masked: { cpu: [], wall: [] },
  bytes: { cpu: [], wall: [] }
}
const ratios: Record<"masked" | "bytes", Array<number>> = { masked: [], bytes: [] }
for (let r = 0; r < ROUNDS; r++) {
  const u = timeIt(unmasked)
  const m = timeIt(masked)
  const b = timeIt(maskedBytes)
  if (m.chars !== b.chars) throw new Error("masker bench: text and byte pipelines disagree")
  for (const [key, t] of [
    ["unmasked", u],
    ["masked", m],
    ["bytes", b]
  ] as const) {
    times[key].cpu.push(t.cpuMs)
    times[key].wall.push(t.wallMs)
  }
  ratios.masked.push(u.cpuMs / m.cpuMs)
  ratios.bytes.push(u.cpuMs / b.cpuMs)
}
const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

const mb = log.length / 1e6
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d
const figures = (t: Times) => ({
  cpuMs: round(median(t.cpu)),
  mbPerSec: round(mb / (median(t.cpu) / 1000)),
  wallMs: round(median(t.wall)),
  wallMbPerSec: round(mb / (median(t.wall) / 1000))
})
const common = { bytes: log.length, chunkBytes: CHUNK, rounds: ROUNDS }
const maskerInfo = { secrets: SECRETS, patterns: masker.stats.patterns, masks }
console.log(
  JSON.stringify({
    bench: "masker",
    system: "runlane-masker",
    pipeline: "maskTextStream",
    ...common,
    ...maskerInfo,
    ...figures(times.masked),
    ratio: round(median(ratios.masked), 3)
  })
)
console.log(
  JSON.stringify({
    bench: "masker",
    system: "runlane-masker-bytes",
    pipeline: "maskStream+TextDecoder",
    ...common,
    ...maskerInfo,
    ...figures(times.bytes),
    ratio: round(median(ratios.bytes), 3)
  })
)
console.log(
  JSON.stringify({
    bench: "masker",
    system: "unmasked",
    pipeline: "TextDecoder",
    ...common,
    ...figures(times.unmasked)
  })
)
