import type { LogLevel } from "./config.ts"

const RANK: Record<LogLevel, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4 }
const COLOUR: Record<LogLevel, string> = {
  trace: "\x1b[35m",
  debug: "\x1b[34m",
  info: "\x1b[32m",
  warn: "\x1b[33m",
  error: "\x1b[31m"
}

export interface Logger {
  readonly log: (level: LogLevel, message: string) => void
}

/**
 * tracing-subscriber's line as the original prints it, on stdout:
 * `<RFC 3339 UTC timestamp> <LEVEL right-aligned to 5> <message>`, coloured unless `NO_COLOR`.
 */
export const makeLogger = (
  min: LogLevel,
  write: (line: string) => void,
  colour = process.env.NO_COLOR === undefined
): Logger => ({
  log: (level, message) => {
    if (RANK[level] < RANK[min]) return
    const name = level.toUpperCase().padStart(5)
    const shown = colour ? `${COLOUR[level]}${name}\x1b[0m` : name
    write(`${new Date().toISOString()} ${shown} ${message}\n`)
  }
})
