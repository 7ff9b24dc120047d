import { execFileSync } from "node:child_process"
import { randomUUID } from "node:crypto"
import { existsSync } from "node:fs"
import { mkdir, unlink, writeFile } from "node:fs/promises"
import { join } from "node:path"
import { type ExecEvent, type ExecSpec, Executor, type SecretMasker } from "@runlane/core"
import { Deferred, Effect, Stream } from "effect"
import type { Executables } from "./Config.ts"
import { type AutomnLog, type AutomnNotification, RETURN_MARKER, resultFields } from "./Markers.ts"
import { missingDependencies, npmInstallArgs, rememberDependencies } from "./NodeDependencies.ts"
import { type Language, scriptSource, usesEsmSyntax } from "./Preambles.ts"

/** The `data` of the final `result` frame (contract 3.5). */
export interface RunResult {
  readonly runId: string
  readonly stdout: string
  readonly stderr: string
  readonly code: number
  readonly duration: number
  readonly returnData: unknown
  /** Extracted logs; a dependency failure has one `{level, message, type: "system"}` entry. */
  readonly automnLogs: ReadonlyArray<
    AutomnLog | { readonly level: string; readonly message: string; readonly type: string }
  >
  readonly automnNotifications: ReadonlyArray<AutomnNotification>
  readonly input: unknown
  /** Only on a node dependency failure: `Try again later` / `NODE_DEPENDENCY_INSTALL_FAILED`. */
  readonly clientMessage?: string
  readonly errorCode?: string
}

export interface RunInput {
  readonly runId: string
  readonly script: Readonly<Record<string, unknown>>
  readonly reqBody: unknown
}

export interface RunContext {
  readonly scriptsDir: string
  readonly workdirDir: string
  readonly executables: Executables
  /** The environment scripts start from (the runner's, without its secrets: decision 5). */
  readonly baseEnv: Readonly<Record<string, string>>
  readonly masker: SecretMasker
  /** npm for node scripts' dependencies (default `npm`). */
  readonly npmPath?: string | null | undefined
  /** Runs when the script has ended, before the result frame is emitted (frees its slot). */
  readonly onFinish?: Effect.Effect<void> | undefined
}

/** Output arriving within this window leaves in one write. */
export const COALESCE_MS = 2

const concatBytes = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  let size = 0
  for (const part of parts) size += part.length
  const out = new Uint8Array(size)
  let offset = 0
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}

/** After a return marker, a script still running this long later is terminated. */
export const RETURN_GRACE_MS = 300

const LANGUAGES: ReadonlySet<string> = new Set(["node", "python", "powershell", "shell"])

const commandWorks = (command: string, args: ReadonlyArray<string>): boolean => {
  try {
    execFileSync(command, [...args], { stdio: "ignore", timeout: 5000 })
    return true
  } catch {
    return false
  }
}

const resolved = new Map<string, string | null>()
const firstWorking = (key: string, candidates: ReadonlyArray<string>, args: ReadonlyArray<string>): string | null => {
  const cacheKey = `${key}\0${candidates.join("\0")}`
  const cached = resolved.get(cacheKey)
  if (cached !== undefined) return cached
  const found = candidates.find((candidate) => commandWorks(candidate, args)) ?? null
  resolved.set(cacheKey, found)
  return found
}

/** `python3` or `python` (or the configured one), the first answering `--version`. */
export const resolvePython = (preferred: string | null): string | null =>
  firstWorking("python", [...(preferred === null ? [] : [preferred]), "python3", "python"], ["--version"])

/** `bash`, then `sh` (or the configured one). */
export const resolveShell = (preferred: string | null): string | null =>
  firstWorking("shell", [...(preferred === null ? [] : [preferred]), "bash", "sh"], ["-c", "exit 0"])

/** `pwsh`, then `powershell` (or the configured one); null when none is installed. */
export const resolvePowerShell = (preferred: string | null): string | null =>
  firstWorking(
    "powershell",
    [...(preferred === null ? [] : [preferred]), "pwsh", "powershell"],
    ["-NoLogo", "-NoProfile", "-NonInteractive", "-Command", "exit 0"]
  )

/** The original's node folder name: chars outside `[a-zA-Z0-9-_]` become `-`. */
export const sanitizeIdentifier = (value: string): string => (value || "anonymous").replace(/[^a-zA-Z0-9-_]/g, "-")

/** Deep JSON copy of the input (`{}` when absent). */
export const cloneInput = (input: unknown): unknown => {
  try {
    return JSON.parse(JSON.stringify(input ?? {}))
  } catch {
    return input ?? null
  }
}

const stringifyInput = (input: unknown): string => {
  try {
    return JSON.stringify(input ?? {}) ?? "{}"
  } catch (error) {
    return JSON.stringify({ error: "Failed to serialize input payload", message: (error as Error).message })
  }
}

const encoder = new TextEncoder()
/** One NDJSON frame. */
export const frame = (value: unknown): Uint8Array => encoder.encode(line(value))
const line = (value: unknown): string => `${JSON.stringify(value)}\n`

const early = (input: RunInput, stderr: string): RunResult => ({
  runId: input.runId,
  stdout: "",
  stderr,
  code: 1,
  duration: 0,
  returnData: null,
  automnLogs: [],
  automnNotifications: [],
  input: cloneInput(input.reqBody)
})

/** The script folder's `package.json` (`automn-script-<id>`, private, 1.0.0) when missing. */
export const ensureManifest = async (folder: string, id: string): Promise<void> => {
  await mkdir(folder, { recursive: true })
  const pkg = join(folder, "package.json")
  if (!existsSync(pkg)) {
    await writeFile(
      pkg,
      `${JSON.stringify({ name: `automn-script-${sanitizeIdentifier(id)}`, private: true, version: "1.0.0" }, null, 2)}\n`
    )
  }
}

interface Prepared {
  readonly argv: ReadonlyArray<string>
  readonly cwd: string | undefined
  readonly file: string
  /** node: the script's packages and those that do not resolve from its folder. */
  readonly deps?: {
    readonly all: string[]
    readonly missing: string[]
    readonly folder: string
    readonly scriptId: string
  }
}

/** Writes the script file and picks the command; `string` is an early failure's stderr. */
const prepare = async (
  input: RunInput,
  context: RunContext,
  language: Language,
  code: string
): Promise<Prepared | string> => {
  const { script } = input
  const exe = context.executables
  if (language === "node") {
    const id = String(script.id || script.preassignedRunId || input.runId)
    const folder = join(context.workdirDir, sanitizeIdentifier(id))
    await ensureManifest(folder, id)
    const file = join(folder, `${randomUUID()}.${usesEsmSyntax(code) ? "mjs" : "cjs"}`)
    await writeFile(file, scriptSource("node", code, input.runId, exe.node ?? process.execPath))
    const deps = missingDependencies(code, folder)
    return { argv: [exe.node ?? "node", file], cwd: folder, file, deps: { ...deps, folder, scriptId: id } }
  }
  const command =
    language === "python"
      ? resolvePython(exe.python)
      : language === "shell"
        ? resolveShell(exe.shell)
        : (resolvePowerShell(exe.powershell) ?? exe.powershell ?? "pwsh")
  if (command === null) return "Unsupported language"
  await mkdir(context.scriptsDir, { recursive: true })
  const ext = language === "python" ? "py" : language === "shell" ? "sh" : "ps1"
  const file = join(context.scriptsDir, `${randomUUID()}.${ext}`)
  await writeFile(file, scriptSource(language, code, input.runId, exe.node ?? process.execPath))
  const argv =
    language === "powershell" ? [command, "-NoLogo", "-NoProfile", "-NonInteractive", "-File", file] : [command, file]
  return { argv, cwd: undefined, file }
}

/** The script's environment: base + its variables + run id + input JSON (decision 5). */
const scriptEnv = (input: RunInput, context: RunContext): Record<string, string> => {
  const env: Record<string, string> = { ...context.baseEnv }
  const variables = input.script.variables
  if (Array.isArray(variables)) {
    for (const variable of variables) {
      if (variable === null || typeof variable !== "object") continue
      const { envName, value } = variable as { envName?: unknown; value?: unknown }
      if (!envName) continue
      env[String(envName)] = value === null || value === undefined ? "" : String(value)
    }
  }
  env.AUTOMN_RUN_ID = input.runId
  const json = stringifyInput(input.reqBody)
  env.AUTOMN_INTERNAL_INPUT_JSON = json
  env.AUTOMN_INPUT_JSON = json
  env.INPUT_JSON = json
  return env
}

/**
 * Runs one script and yields its NDJSON frames as they arrive: one `log` frame per masked output
 * chunk (stdout and stderr in arrival order), then exactly one `result` frame. Interrupting the
 * stream (the host disconnected) kills the script's process group.
 */
export const runScript = (input: RunInput, context: RunContext): Stream.Stream<Uint8Array, never, Executor> => {
  const finish = context.onFinish ?? Effect.void
  const resultFrame = (data: RunResult) => Stream.fromEffect(Effect.as(finish, frame({ type: "result", data })))
  return Stream.unwrap(
    Effect.gen(function* () {
      const { script } = input
      const language = script.language
      const code = script.code
      if (!language || typeof code !== "string") {
        return resultFrame(early(input, "Unsupported language"))
      }
      if (typeof language !== "string" || !LANGUAGES.has(language)) {
        return resultFrame(early(input, "Unsupported language"))
      }
      const prepared = yield* Effect.tryPromise(() => prepare(input, context, language as Language, code)).pipe(
        Effect.catch((error) => Effect.succeed(context.masker.maskString(String(error.cause ?? error.message))))
      )
      if (typeof prepared === "string") {
        return resultFrame(early(input, prepared))
      }
      const executor = yield* Executor
      const deps = prepared.deps
      if (deps === undefined || deps.missing.length === 0) {
        if (deps !== undefined && deps.all.length > 0) {
          rememberDependencies(context.workdirDir, deps.folder, deps.scriptId, deps.all)
        }
        return yield* runPrepared(prepared)
      }
      // install the missing packages first, streaming npm's output, then run (or fail with code 90)
      let failure: string | undefined
      const install = installDependencies(executor, context, deps.missing, deps.folder, (message) => {
        failure = message
      })
      const after = Stream.unwrap(
        Effect.suspend(() => {
          if (failure === undefined) {
            rememberDependencies(context.workdirDir, deps.folder, deps.scriptId, deps.all)
            return runPrepared(prepared)
          }
          const message = failure
          return Effect.promise(() => unlink(prepared.file).catch(() => undefined)).pipe(
            Effect.as(
              Stream.concat(
                Stream.make(encoder.encode(line({ type: "log", line: `${message}\n` }))),
                resultFrame({
                  ...early(input, message),
                  code: 90,
                  automnLogs: [{ level: "error", message, type: "system" }],
                  clientMessage: "Try again later",
                  errorCode: "NODE_DEPENDENCY_INSTALL_FAILED"
                })
              )
            )
          )
        })
      )
      return Stream.concat(
        Stream.make(
          encoder.encode(line({ type: "log", line: `Installing npm dependencies: ${deps.missing.join(", ")}\n` }))
        ),
        Stream.concat(install, after)
      )
    })
  )

  function runPrepared(prepared: Prepared) {
    return Effect.gen(function* () {
      const executor = yield* Executor
      const { script } = input
      const timeoutSeconds = typeof script.timeout === "number" ? script.timeout : Number(script.timeout)
      const spec: ExecSpec = {
        argv: prepared.argv,
        env: scriptEnv(input, context),
        ...(prepared.cwd === undefined ? {} : { cwd: prepared.cwd }),
        ...(timeoutSeconds > 0 ? { timeoutMs: Math.max(1, Math.round(timeoutSeconds * 1000)) } : {})
      }
      const sawReturn = yield* Deferred.make<void>()
      const masks = { stdout: context.masker.state(), stderr: context.masker.state() }
      const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() }
      const stdoutParts: string[] = []
      const stderrParts: string[] = []
      let stdoutTail = ""
      let returnSeen = false
      let timedOut = false
      let exited: Extract<ExecEvent, { _tag: "exited" }> | undefined
      let spawnError: string | undefined
      const started = Date.now()

      const text = (stream: "stdout" | "stderr", bytes: Uint8Array, final: boolean): string[] => {
        const decoded = decoders[stream].decode(bytes, { stream: !final })
        if (decoded === "") return []
        if (stream === "stdout") {
          // only the new text and the previous tail are searched (a flat string is never rebuilt)
          if (!returnSeen && `${stdoutTail}${decoded}`.includes(RETURN_MARKER)) {
            returnSeen = true
            Deferred.doneUnsafe(sawReturn, Effect.void)
          }
          stdoutTail =
            decoded.length >= RETURN_MARKER.length
              ? decoded.slice(-RETURN_MARKER.length)
              : (stdoutTail + decoded).slice(-RETURN_MARKER.length)
          stdoutParts.push(decoded)
        } else {
          stderrParts.push(decoded)
        }
        return [line({ type: "log", line: decoded })]
      }

      const onEvent = (event: ExecEvent): ReadonlyArray<string> => {
        switch (event._tag) {
          case "output":
            return text(event.stream, masks[event.stream].push(event.data), false)
          case "exited": {
            exited = event
            const out = [...text("stdout", masks.stdout.flush(), true), ...text("stderr", masks.stderr.flush(), true)]
            if (event.reason === "timeout") {
              timedOut = true
              out.push(line({ type: "log", line: "Timeout exceeded.\n" }))
            }
            return out
          }
          default:
            return []
        }
      }

      const output = executor.run(spec).pipe(
        Stream.interruptWhen(Deferred.await(sawReturn).pipe(Effect.andThen(Effect.sleep(RETURN_GRACE_MS)))),
        // one buffer per batch of events, so a burst of output is one write
        Stream.mapArray((events) => [encoder.encode(events.flatMap(onEvent).join(""))] as const),
        Stream.filter((bytes) => bytes.length > 0),
        // coalesce what arrives within COALESCE_MS into one write (a chatty script is not one syscall per line)
        Stream.groupedWithin(256, COALESCE_MS),
        Stream.map((batch) => (batch.length === 1 ? (batch[0] as Uint8Array) : concatBytes(batch))),
        Stream.catch((error) => {
          spawnError = context.masker.maskString(error.message)
          return Stream.empty
        })
      )

      const result = Stream.suspend(() => {
        const flushed: string[] = []
        if (exited === undefined && spawnError === undefined) {
          // terminated after its return marker: release what the masks and decoders still hold
          flushed.push(...text("stdout", masks.stdout.flush(), true), ...text("stderr", masks.stderr.flush(), true))
        }
        let data: RunResult
        if (spawnError !== undefined) {
          data = { ...early(input, spawnError), duration: Date.now() - started }
        } else {
          // no exit event: terminated after its return marker
          const code = exited === undefined ? 1 : (exited.code ?? 1)
          const duration = exited === undefined ? Date.now() - started : Math.round(exited.durationMs)
          const stderr = stderrParts.join("") + (timedOut ? "\nTimeout exceeded." : "")
          const fields = resultFields(stdoutParts.join(""), stderr)
          data = {
            runId: input.runId,
            stdout: fields.stdout,
            stderr: fields.stderr,
            code,
            duration,
            returnData: fields.returnData,
            automnLogs: fields.automnLogs,
            automnNotifications: fields.automnNotifications,
            input: cloneInput(input.reqBody)
          }
        }
        const tail = flushed.length === 0 ? Stream.empty : Stream.make(encoder.encode(flushed.join("")))
        return Stream.concat(tail, resultFrame(data))
      })

      return Stream.concat(output, result).pipe(
        Stream.ensuring(Effect.promise(() => unlink(prepared.file).catch(() => undefined)))
      )
    })
  }
}

const summarize = (text: string, maxLines = 20, maxLength = 2000): string => {
  const lines = text.trim().split("\n")
  const tail = lines.slice(-maxLines).join("\n")
  return tail.length > maxLength ? tail.slice(-maxLength) : tail
}

/**
 * `npm install` of `packages` in `folder` through the executor: each output chunk becomes a
 * `[npm] …` frame; a failure is reported through `onFailure` with the original's message.
 */
export const installDependencies = (
  executor: Executor["Service"],
  context: RunContext,
  packages: ReadonlyArray<string>,
  folder: string,
  onFailure: (message: string) => void
): Stream.Stream<Uint8Array> => {
  const npm = context.npmPath ?? "npm"
  const args = npmInstallArgs(packages)
  const headline = `Failed to install npm dependencies: ${packages.join(", ")}`
  const collected = { stdout: "", stderr: "" }
  const masks = { stdout: context.masker.state(), stderr: context.masker.state() }
  const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() }
  const text = (stream: "stdout" | "stderr", bytes: Uint8Array, final: boolean): string[] => {
    const decoded = decoders[stream].decode(bytes, { stream: !final })
    collected[stream] += decoded
    return decoded.trim() === "" ? [] : [line({ type: "log", line: `[npm] ${decoded}` })]
  }
  return executor.run({ argv: [npm, ...args], env: { ...context.baseEnv }, cwd: folder }).pipe(
    Stream.mapArray((events) => {
      const out: string[] = []
      for (const event of events) {
        if (event._tag === "output") out.push(...text(event.stream, masks[event.stream].push(event.data), false))
        else if (event._tag === "exited") {
          out.push(...text("stdout", masks.stdout.flush(), true), ...text("stderr", masks.stderr.flush(), true))
          if (event.code !== 0) {
            const detail = summarize(collected.stderr) || summarize(collected.stdout)
            const head = `npm install exited with code ${event.code ?? event.signal} (${npm} ${args.join(" ")}).`
            onFailure(`${headline}\n${detail === "" ? head : `${head}\nstderr:\n${detail}`}`)
          }
        }
      }
      return [encoder.encode(out.join(""))] as const
    }),
    Stream.filter((bytes) => bytes.length > 0),
    Stream.catch((error) => {
      onFailure(`${headline}\n${context.masker.maskString(error.message)}`)
      return Stream.empty
    })
  )
}
