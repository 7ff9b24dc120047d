import type { LogFn } from "@runlane/rpc-connect"

const pad = (n: number) => String(n).padStart(2, "0")
const order = { debug: 0, info: 1, warn: 2, error: 3 } as const
const short = { debug: "DBG", info: "INF", warn: "WRN", error: "ERR" } as const

/** zerolog-like logs on stderr: JSON lines, or console format (`--dev`, the worker). */
export const makeLogger = (options: { readonly console: boolean; readonly level: keyof typeof order }): LogFn => {
  const min = order[options.level]
  return (level, message, fields = {}) => {
    if (order[level] < min) return
    const now = new Date()
    if (options.console) {
      const extra = Object.entries(fields)
        .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
        .join(" ")
      // zerolog's ConsoleWriter default: time.Kitchen ("3:04PM").
      const hours = now.getHours() % 12 === 0 ? 12 : now.getHours() % 12
      const time = `${hours}:${pad(now.getMinutes())}${now.getHours() < 12 ? "AM" : "PM"}`
      process.stderr.write(`${time} ${short[level]} ${message}${extra === "" ? "" : ` ${extra}`}\n`)
    } else {
      process.stderr.write(
        `${JSON.stringify({ level, time: now.toISOString(), caller: "airunner", ...fields, message })}\n`
      )
    }
  }
}
