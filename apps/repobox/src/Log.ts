/** slog-style JSON lines on stdout (`LOG_FORMAT=text` gives plain text). */
export type Logger = (level: "DEBUG" | "INFO" | "WARN" | "ERROR", msg: string, attrs?: Record<string, unknown>) => void

export const makeLogger =
  (format = "json", out: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Logger =>
  (level, msg, attrs = {}) => {
    const time = new Date().toISOString()
    if (format === "text") {
      const rest = Object.entries(attrs)
        .map(([k, v]) => `${k}=${typeof v === "string" ? JSON.stringify(v) : String(v)}`)
        .join(" ")
      out(`time=${time} level=${level} msg=${JSON.stringify(msg)}${rest === "" ? "" : ` ${rest}`}`)
    } else {
      out(JSON.stringify({ time, level, msg, ...attrs }))
    }
  }
