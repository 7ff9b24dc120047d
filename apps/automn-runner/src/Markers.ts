/**
 * The script markers and how stdout becomes the result's fields (contract 4.5): the first
 * `__SCRIPTRETURN__` line is the return value, `__SCRIPTNOTIFY__` payloads become notifications
 * (at most 50), `__SCRIPTLOG__` payloads structured logs.
 */
export const RETURN_MARKER = "__SCRIPTRETURN__"
export const LOG_MARKER = "__SCRIPTLOG__"
export const NOTIFY_MARKER = "__SCRIPTNOTIFY__"
export const MAX_NOTIFICATIONS = 50

export interface AutomnNotification {
  readonly order: number
  readonly audience: string | null
  readonly message: string
  readonly level: "info" | "warn" | "error"
  readonly raw: unknown
  readonly timestamp: string
}

export interface AutomnLog {
  readonly message: string
  readonly level: "info" | "warn" | "error" | "success" | "debug"
  readonly type: string
  readonly context: unknown
  readonly order: number
  readonly timestamp: string
}

export interface ReturnExtraction {
  readonly strippedStdout: string
  readonly returnData: unknown
  readonly hadMarker: boolean
  readonly parseError: Error | null
}

export const extractReturnPayload = (stdout: string): ReturnExtraction => {
  const markerIndex = stdout.indexOf(RETURN_MARKER)
  if (markerIndex === -1) return { strippedStdout: stdout, returnData: null, hadMarker: false, parseError: null }
  const after = stdout.slice(markerIndex + RETURN_MARKER.length)
  const newline = after.indexOf("\n")
  let payload = newline === -1 ? after : after.slice(0, newline)
  const remainder = newline === -1 ? "" : after.slice(newline + 1)
  if (payload.endsWith("\r")) payload = payload.slice(0, -1)
  let returnData: unknown = null
  let parseError: Error | null = null
  try {
    returnData = JSON.parse(payload)
  } catch (error) {
    parseError = error as Error
  }
  return { strippedStdout: `${stdout.slice(0, markerIndex)}${remainder}`, returnData, hadMarker: true, parseError }
}

/** Walks every `marker` occurrence: `parse` gets the payload (rest of the line) and returns false to keep it. */
const extractMarked = (text: string, marker: string, take: (payload: string) => "taken" | "kept" | "drop-marker") => {
  let cleaned = ""
  let remaining = text
  while (remaining.length > 0) {
    const index = remaining.indexOf(marker)
    if (index === -1) {
      cleaned += remaining
      break
    }
    cleaned += remaining.slice(0, index)
    remaining = remaining.slice(index + marker.length)
    const newline = remaining.indexOf("\n")
    let payload = newline === -1 ? remaining : remaining.slice(0, newline)
    remaining = newline === -1 ? "" : remaining.slice(newline + 1)
    if (payload.endsWith("\r")) payload = payload.slice(0, -1)
    const outcome = take(payload)
    if (outcome === "kept") cleaned += marker + payload
    else if (outcome === "drop-marker") cleaned += payload
    if (newline !== -1) cleaned += "\n"
  }
  return cleaned
}

const isObject = (value: unknown): value is Record<string, unknown> => value !== null && typeof value === "object"

export const extractNotifications = (text: string): { cleaned: string; notifications: AutomnNotification[] } => {
  const notifications: AutomnNotification[] = []
  const cleaned = extractMarked(text, NOTIFY_MARKER, (payload) => {
    if (notifications.length >= MAX_NOTIFICATIONS) return "drop-marker"
    let parsed: unknown
    try {
      parsed = JSON.parse(payload)
    } catch {
      return "kept"
    }
    const p = isObject(parsed) ? parsed : {}
    const audienceSource = [p.audience, p.target, p.user, p.scope].find((v): v is string => typeof v === "string")
    const audience =
      audienceSource !== undefined && audienceSource.trim() !== "" ? audienceSource.trim().slice(0, 256) : null
    const messageValue = p.message === null || p.message === undefined ? p.text : p.message
    const message = messageValue === null || messageValue === undefined ? "" : String(messageValue).slice(0, 2000)
    const levelValue = typeof p.level === "string" ? p.level : typeof p.type === "string" ? p.type : "info"
    const normalized = (levelValue || "info").toLowerCase().trim()
    const level = normalized === "error" || normalized === "warn" ? normalized : "info"
    notifications.push({
      order: notifications.length,
      audience,
      message,
      level,
      raw: parsed,
      timestamp: new Date().toISOString()
    })
    return "taken"
  })
  return { cleaned, notifications }
}

const logLevel = (value: unknown): AutomnLog["level"] => {
  const normalized = typeof value === "string" ? value.toLowerCase().trim() : ""
  if (normalized === "warn" || normalized === "warning") return "warn"
  if (normalized === "error" || normalized === "success" || normalized === "debug") return normalized
  return "info"
}

const logType = (value: unknown): string => {
  const raw =
    typeof value === "string" ? value : isObject(value) && typeof value.category === "string" ? value.category : null
  const normalized = raw === null ? "" : raw.trim().toLowerCase()
  return normalized === "" ? "general" : normalized
}

const logContext = (value: unknown): unknown => {
  if (isObject(value) && !Array.isArray(value)) return value
  if (value === undefined || value === null) return {}
  return { value }
}

export const extractLogs = (text: string): { cleaned: string; logs: AutomnLog[] } => {
  const logs: AutomnLog[] = []
  const cleaned = extractMarked(text, LOG_MARKER, (payload) => {
    let parsed: unknown
    try {
      parsed = JSON.parse(payload)
    } catch {
      return "kept"
    }
    if (parsed === null || parsed === undefined) return "kept" // the original throws reading a field of null
    const p = (isObject(parsed) ? parsed : {}) as Record<string, unknown>
    const messageValue = p.message === null || p.message === undefined ? "" : p.message
    logs.push({
      message: typeof messageValue === "string" ? messageValue : String(messageValue),
      level: logLevel(p.level),
      type: logType(p.type ?? p.category),
      context: logContext(p.context),
      order: logs.length,
      timestamp: new Date().toISOString()
    })
    return "taken"
  })
  return { cleaned, logs }
}

export interface ResultFields {
  readonly stdout: string
  readonly stderr: string
  readonly returnData: unknown
  readonly automnLogs: AutomnLog[]
  readonly automnNotifications: AutomnNotification[]
}

/** stdout and stderr of a finished run to the result's fields, as the original's `finalize`. */
export const resultFields = (stdout: string, stderr: string): ResultFields => {
  const ret = extractReturnPayload(stdout)
  let stderrOut = stderr
  if (ret.parseError !== null) {
    const details = ret.parseError.message ? `: ${ret.parseError.message}` : ""
    const message = `Bad return JSON${details}`
    stderrOut = stderrOut === "" ? message : `${stderrOut}\n${message}`
  }
  const notified = extractNotifications(ret.strippedStdout)
  const logged = extractLogs(notified.cleaned)
  let display = logged.cleaned
  if (ret.hadMarker) display = display.replace(/^\s*\n/, "")
  display = display.trimEnd()
  return {
    stdout: display,
    stderr: stderrOut,
    returnData: ret.parseError !== null ? null : ret.returnData,
    automnLogs: logged.logs,
    automnNotifications: notified.notifications
  }
}
