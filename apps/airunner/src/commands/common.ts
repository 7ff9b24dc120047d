import { Config } from "effect"
import { Flag } from "effect/cli"

export const serverFlag = Flag.String("server").pipe(
  Flag.withDescription("Server URL."),
  Flag.withDefault("https://localhost:8993")
)
export const tokenFlag = Flag.String("token").pipe(
  Flag.withDescription("JWT token for authentication ($AIRUNNER_TOKEN)."),
  Flag.withFallbackConfig(Config.String("AIRUNNER_TOKEN")),
  Flag.withDefault("")
)
export const debugFlag = Flag.Boolean("debug").pipe(Flag.withDescription("Enable debug mode."), Flag.withDefault(false))

/** Parses kong map flags: `K=V` pairs separated by `;`, or the flag repeated. */
export const parseMap = (values: ReadonlyArray<string>): Record<string, string> | string => {
  const out: Record<string, string> = {}
  for (const value of values) {
    for (const pair of value.split(";")) {
      if (pair === "") continue
      const eq = pair.indexOf("=")
      if (eq < 0) return `expected "key=value" but got "${pair}"`
      out[pair.slice(0, eq)] = pair.slice(eq + 1)
    }
  }
  return out
}

/** Splits a kong slice flag on `,` (repeated flags add up). */
export const parseSlice = (values: ReadonlyArray<string>): Array<string> =>
  values.flatMap((value) => (value === "" ? [] : value.split(",")))
