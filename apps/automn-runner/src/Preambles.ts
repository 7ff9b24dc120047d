import { LOG_MARKER, NOTIFY_MARKER, RETURN_MARKER } from "./Markers.ts"

/**
 * The helper functions scripts get, per language (contract 4.4): `AutomnReturn`, `AutomnLog`,
 * `AutomnRunLog`, `AutomnNotify` (+ the run id). Each prints one marker line on stdout.
 */
export type Language = "node" | "python" | "powershell" | "shell"

const nodePreamble = (runId: string): string => `globalThis.AutomnRunId = ${JSON.stringify(runId)};
{
  const out = (line) => process.stdout.write(line + "\\n");
  const notifyLevel = (v) => { const l = typeof v === "string" ? v.toLowerCase() : ""; return l === "warn" || l === "error" ? l : "info"; };
  const show = (v) => { if (typeof v === "string") return v; try { return JSON.stringify(v, null, 2); } catch { return String(v); } };
  globalThis.AutomnReturn = (data) => { try { out(${JSON.stringify(RETURN_MARKER)} + JSON.stringify(data)); } catch (e) { console.error("Failed to serialize AutomnReturn data:", e); } };
  globalThis.AutomnLog = (message, level = "info", context = {}, type = "general") => { try { out(${JSON.stringify(LOG_MARKER)} + JSON.stringify({ message, level, context, type })); } catch (e) { console.error("Failed to serialize AutomnLog data:", e); } };
  globalThis.AutomnRunLog = (...values) => { try { out(values.map(show).join(" ")); } catch (e) { console.error("Failed to serialize AutomnRunLog data:", e); } };
  globalThis.AutomnNotify = (audience, message, level = "info") => { try { out(${JSON.stringify(NOTIFY_MARKER)} + JSON.stringify({ audience, message, level: notifyLevel(level) })); } catch (e) { console.error("Failed to serialize AutomnNotify data:", e); } };
}
`

const pythonPreamble = (runId: string): string => `import json, sys, os
AUTOMN_RUN_ID = ${JSON.stringify(runId)}
def _automn_out(line):
  print(line, flush=True)
def AutomnReturn(data):
  try: _automn_out(${JSON.stringify(RETURN_MARKER)} + json.dumps(data))
  except Exception as e: print("Failed to serialize AutomnReturn data:", e, file=sys.stderr)
def AutomnLog(message, level="info", context=None, log_type="general"):
  try: _automn_out(${JSON.stringify(LOG_MARKER)} + json.dumps({"message": message, "level": level, "context": context, "type": log_type}))
  except Exception as e: print("Failed to serialize AutomnLog data:", e, file=sys.stderr)
def AutomnNotify(audience, message, level="info"):
  try:
    l = level.lower() if isinstance(level, str) else "info"
    _automn_out(${JSON.stringify(NOTIFY_MARKER)} + json.dumps({"audience": audience, "message": message, "level": l if l in ("warn", "error") else "info"}))
  except Exception as e: print("Failed to serialize AutomnNotify data:", e, file=sys.stderr)
def _automn_show(v):
  if isinstance(v, str): return v
  try: return json.dumps(v, indent=2)
  except Exception: return str(v)
def AutomnRunLog(*values):
  try: _automn_out(" ".join(_automn_show(v) for v in values))
  except Exception as e: print("Failed to serialize AutomnRunLog data:", e, file=sys.stderr)
`

/** Shell helpers: JSON normalized by one `node -e` call (the original used `node -`). */
const shellJs = [
  "const [k, ...a] = process.argv.slice(1);",
  "const j = (v) => { if (v === undefined) return null; try { return JSON.parse(v); } catch { return v; } };",
  'const lv = (v) => { const l = String(v || "").toLowerCase(); return ["warn", "error", "success", "debug"].includes(l) ? l : "info"; };',
  'const ty = (v) => (typeof v === "string" ? v.trim().toLowerCase() : "") || "general";',
  "let o;",
  `if (k === "r") o = ${JSON.stringify(RETURN_MARKER)} + JSON.stringify(j(a[0]));`,
  `else if (k === "l") o = ${JSON.stringify(LOG_MARKER)} + JSON.stringify({ message: j(a[0]), level: lv(a[1]), context: a[2] ? j(a[2]) : null, type: ty(a[3]) });`,
  `else o = ${JSON.stringify(NOTIFY_MARKER)} + JSON.stringify({ audience: j(a[0]), message: j(a[1]), level: lv(a[2]) });`,
  'process.stdout.write(o + "\\n");'
].join(" ")

const shellPreamble = (nodePath: string): string => `#!/bin/sh
AUTOMN_RETURN_MARKER='${RETURN_MARKER}'
AUTOMN_LOG_MARKER='${LOG_MARKER}'
AUTOMN_NOTIFY_MARKER='${NOTIFY_MARKER}'
AUTOMN__NODE='${nodePath.replaceAll("'", "'\\''")}'
AUTOMN__JS='${shellJs}'
AutomnReturn() { "$AUTOMN__NODE" -e "$AUTOMN__JS" -- r "$1"; }
AutomnLog() { "$AUTOMN__NODE" -e "$AUTOMN__JS" -- l "$1" "$2" "$3" "$4"; }
AutomnNotify() { "$AUTOMN__NODE" -e "$AUTOMN__JS" -- n "$1" "$2" "$3"; }
AutomnRunLog() { printf "%s\\n" "$@"; }
`

const psString = (value: string): string => `'${value.replaceAll("'", "''")}'`

const powershellPreamble = (
  runId: string
): string => `try { [Console]::OutputEncoding = [System.Text.Encoding]::UTF8 } catch {}
$Global:AutomnRunId = ${psString(runId)}
$AutomnJsonDepth = 32
$Global:AutomnInternalInputJson = $null
$Global:AutomnInternalInput = $null
$Global:AutomnInternalInputError = $null
foreach ($k in @("AUTOMN_INTERNAL_INPUT_JSON", "AUTOMN_INPUT_JSON", "INPUT_JSON")) {
  $v = [System.Environment]::GetEnvironmentVariable($k)
  if (-not [string]::IsNullOrWhiteSpace($v)) { $Global:AutomnInternalInputJson = $v; break }
}
if (-not [string]::IsNullOrWhiteSpace($Global:AutomnInternalInputJson)) {
  try { $Global:AutomnInternalInput = $Global:AutomnInternalInputJson | ConvertFrom-Json -ErrorAction Stop }
  catch { $Global:AutomnInternalInputError = $_.Exception.Message }
}
function AutomnGetInternalInputJson { return $Global:AutomnInternalInputJson }
function AutomnGetInternalInput { return $Global:AutomnInternalInput }
function AutomnGetInternalInputError { return $Global:AutomnInternalInputError }
function AutomnHasInternalInputError { return -not [string]::IsNullOrWhiteSpace($Global:AutomnInternalInputError) }
function AutomnReturn([object]$data) {
  try { Write-Output (${psString(RETURN_MARKER)} + (ConvertTo-Json $data -Depth $AutomnJsonDepth -Compress)) }
  catch { Write-Error "Failed to serialize AutomnReturn data: $_" }
}
function AutomnLog {
  param([Parameter(Mandatory=$true)][string]$Message, [string]$Level = "info", $Context = $null, [string]$Type = "general")
  try { Write-Output (${psString(LOG_MARKER)} + (@{ message = $Message; level = $Level; context = $Context; type = $Type } | ConvertTo-Json -Depth $AutomnJsonDepth -Compress)) }
  catch { Write-Error "Failed to serialize AutomnLog data: $_" }
}
function AutomnRunLog {
  param([Parameter(ValueFromRemainingArguments=$true)][object[]]$Values)
  $parts = @()
  foreach ($v in @($Values)) {
    if ($v -is [string]) { $parts += $v } else { try { $parts += ($v | ConvertTo-Json -Depth $AutomnJsonDepth -Compress) } catch { $parts += ($v | Out-String).Trim() } }
  }
  Write-Output ($parts -join " ")
}
function AutomnNotify {
  param([Parameter(Mandatory=$true)]$Audience, [Parameter(Mandatory=$true)]$Message, [string]$Level = "info")
  $l = if ($Level -eq "warn" -or $Level -eq "error") { $Level } else { "info" }
  try { Write-Output (${psString(NOTIFY_MARKER)} + (@{ audience = $Audience; message = $Message; level = $l } | ConvertTo-Json -Depth $AutomnJsonDepth -Compress)) }
  catch { Write-Error "Failed to serialize AutomnNotify data: $_" }
}
`

/** The file content for `language`: helpers, then the script's code. */
export const scriptSource = (language: Language, code: string, runId: string, nodePath: string): string => {
  switch (language) {
    case "node":
      return `${nodePreamble(runId)}${code}\n`
    case "python":
      return `${pythonPreamble(runId)}${code}\n`
    case "powershell":
      return `${powershellPreamble(runId)}${code}\n`
    case "shell":
      return `${shellPreamble(nodePath)}${code}\n`
  }
}

/** The original's ES-module detection for node scripts (`.mjs` when it matches, else `.cjs`). */
export const usesEsmSyntax = (source: string): boolean => {
  const sanitized = source
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/(^|[^:\\])\/\/.*$/gm, (_, prefix: string) => prefix)
  return [
    /\bimport\s+(?:[^'";]+?\s+from\s+)?['"][^'"\n]+['"]/,
    /\bimport\s*\(/,
    /\bexport\s+(?:default|\{|\*)/,
    /\bimport\.meta\b/
  ].some((pattern) => pattern.test(sanitized))
}
