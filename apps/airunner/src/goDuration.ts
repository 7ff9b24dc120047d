/** Go `time.Duration` text: parsing flags such as `5m`, `1h30m`, `300ms`, and printing as Go does. */

const UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000
}

/** Milliseconds of a Go duration (`0`, `1.5s`, `1h30m`, `-2m`); `undefined` when it does not parse. */
export const parseGoDuration = (text: string): number | undefined => {
  if (text === "0" || text === "+0" || text === "-0") return 0
  const match = /^([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)$/.exec(text)
  if (match === null) return undefined
  let total = 0
  for (const part of match[2]!.matchAll(/(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) {
    total += Number(part[1]) * UNITS[part[2]!]!
  }
  return match[1] === "-" ? -total : total
}

const fraction = (value: bigint, unit: bigint): string => {
  const whole = value / unit
  const rest = value % unit
  if (rest === 0n) return whole.toString()
  const digits = rest
    .toString()
    .padStart(unit.toString().length - 1, "0")
    .replace(/0+$/, "")
  return `${whole}.${digits}`
}

/** Go's `Duration.String()` of a number of nanoseconds: `0s`, `850ms`, `1.5s`, `2m3.004s`, `1h0m0s`. */
export const formatGoDuration = (nanos: bigint): string => {
  if (nanos === 0n) return "0s"
  const negative = nanos < 0n
  let u = negative ? -nanos : nanos
  let out: string
  if (u < 1_000_000_000n) {
    if (u < 1000n) out = `${u}ns`
    else if (u < 1_000_000n) out = `${fraction(u, 1000n)}µs`
    else out = `${fraction(u, 1_000_000n)}ms`
  } else {
    const hours = u / 3_600_000_000_000n
    u %= 3_600_000_000_000n
    const minutes = u / 60_000_000_000n
    u %= 60_000_000_000n
    out = `${fraction(u, 1_000_000_000n)}s`
    if (hours > 0n || minutes > 0n) out = `${minutes}m${out}`
    if (hours > 0n) out = `${hours}h${out}`
  }
  return negative ? `-${out}` : out
}
