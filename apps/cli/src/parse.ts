import { UsageError } from "./ExitCode.ts"

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }

/** Parses `500ms`, `30s`, `10m`, `1h`, `1h30m` (a bare number is seconds) into milliseconds. */
export const parseDuration = (text: string): number => {
  const trimmed = text.trim()
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Math.round(Number(trimmed) * 1000)
  const parts = [...trimmed.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)]
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== trimmed) {
    throw new UsageError(`malformed duration "${text}" (examples: 500ms, 30s, 10m, 1h30m)`)
  }
  const ms = parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]!]!, 0)
  if (ms <= 0) throw new UsageError(`duration must be positive: "${text}"`)
  return Math.round(ms)
}

/** Parses repeated `K=V` flags into a record. */
export const parseKeyValues = (flag: string, pairs: ReadonlyArray<string>): Record<string, string> => {
  const out: Record<string, string> = {}
  for (const pair of pairs) {
    const eq = pair.indexOf("=")
    if (eq <= 0) throw new UsageError(`--${flag} expects KEY=VALUE, got "${pair}"`)
    out[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return out
}

/** Parses a byte size such as `512m`, `1g`, `1024k` or a plain number of bytes. */
export const parseBytes = (text: string): number => {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)b?$/i.exec(text.trim())
  if (m === null) throw new UsageError(`malformed size "${text}" (examples: 512m, 1g)`)
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as "" | "k" | "m" | "g"]
  return Math.round(Number(m[1]) * mult)
}
