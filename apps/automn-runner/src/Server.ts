import { createHash, randomUUID, timingSafeEqual } from "node:crypto"
import { join } from "node:path"
import { Executor, SecretMasker } from "@runlane/core"
import { Effect, Layer, Option, Schema, Stream } from "effect"
import { HttpRouter, type HttpServerRequest, HttpServerResponse } from "effect/http"
import type { RunnerConfig } from "./Config.ts"
import { clearPackageCache, isSatisfied, rememberDependencies } from "./NodeDependencies.ts"
import { notFoundPage, type PageMessage, renderHomePage } from "./OperatorPage.ts"
import { performRegistration, type RegistrationReason } from "./Registration.ts"
import { RunnerState, SecretRejected } from "./RunnerState.ts"
import { ensureManifest, installDependencies, type RunContext, runScript, sanitizeIdentifier } from "./ScriptRun.ts"

/** Bodies over this many bytes are refused with 500 (the original's `express.json({limit: "1mb"})`). */
export const BODY_LIMIT = 1024 * 1024

/** Runner env names a script never sees (decision 5); their values are masked in output. */
const SECRET_NAME = /SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|AUTH/i

/** The runner's environment without the runner's secrets, and the removed values. */
export const scriptBaseEnv = (
  env: Readonly<Record<string, string | undefined>>
): { env: Record<string, string>; removed: string[] } => {
  const out: Record<string, string> = {}
  const removed: string[] = []
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) continue
    if (key === "AUTOMN_RUNNER_SECRET" || key === "AUTOMN_RUNNER_RESET_TOKEN" || SECRET_NAME.test(key)) {
      removed.push(value)
      continue
    }
    out[key] = value
  }
  return { env: out, removed }
}

/** Everything the routes share. */
export class RunnerApp {
  readonly config: RunnerConfig
  readonly state: RunnerState
  readonly masker: SecretMasker
  readonly baseEnv: Record<string, string>
  activeRuns = 0

  constructor(config: RunnerConfig, env: Readonly<Record<string, string | undefined>> = process.env) {
    this.config = config
    this.masker = new SecretMasker([], { minLength: 6 })
    const base = scriptBaseEnv(env)
    this.baseEnv = base.env
    for (const value of base.removed) this.masker.add(value)
    this.state = new RunnerState(config)
    this.state.onSecret = (secret) => {
      this.masker.add(secret)
    }
  }

  /** What a script run needs from the runner. */
  runContext(): RunContext {
    return {
      scriptsDir: this.config.scriptsDir,
      workdirDir: this.config.workdirDir,
      executables: this.state.executables,
      baseEnv: this.baseEnv,
      masker: this.masker,
      npmPath: this.config.npmPath
    }
  }

  register(reason: RegistrationReason) {
    return Effect.promise(() => performRegistration(this.state, reason))
  }
}

/** Constant-time comparison (decision 3): both sides hashed, so lengths never leak either. */
export const secretsEqual = (a: string, b: string): boolean =>
  timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest())

const jsonError = (status: number, error: string, extra: Record<string, unknown> = {}) =>
  HttpServerResponse.jsonUnsafe({ error, ...extra }, { status, contentType: "application/json; charset=utf-8" })

const json = (body: unknown, status = 200) =>
  HttpServerResponse.jsonUnsafe(body, { status, contentType: "application/json; charset=utf-8" })

const html = (body: string, status = 200) =>
  HttpServerResponse.text(body, { status, contentType: "text/html; charset=utf-8" })

/** A request body that could not be taken: bad JSON (400, decision 4) or too large (500). */
class BodyRejected {
  readonly response: HttpServerResponse.HttpServerResponse
  constructor(response: HttpServerResponse.HttpServerResponse) {
    this.response = response
  }
}

/**
 * The body as the original's middleware sees it: JSON (`application/json`, `+json`; objects and
 * arrays only, as Express's strict parser), urlencoded forms, anything else `undefined`.
 */
export const readBody = (request: HttpServerRequest.HttpServerRequest): Effect.Effect<unknown, BodyRejected> =>
  Effect.gen(function* () {
    const type = (request.headers["content-type"] ?? "").toLowerCase()
    const isJson = /^application\/(?:[\w.+-]+\+)?json\b/.test(type)
    const isForm = type.startsWith("application/x-www-form-urlencoded")
    const declared = Number(request.headers["content-length"] ?? "0")
    if (declared > BODY_LIMIT) return yield* Effect.fail(new BodyRejected(jsonError(500, "Runner internal error")))
    const buffer = yield* request.arrayBuffer.pipe(
      Effect.mapError(() => new BodyRejected(jsonError(500, "Runner internal error")))
    )
    if (buffer.byteLength > BODY_LIMIT)
      return yield* Effect.fail(new BodyRejected(jsonError(500, "Runner internal error")))
    if (!isJson && !isForm) return undefined
    const text = new TextDecoder().decode(buffer)
    if (isForm) {
      const out: Record<string, string | string[]> = {}
      for (const [key, value] of new URLSearchParams(text)) {
        const existing = out[key]
        out[key] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value]
      }
      return out
    }
    if (text.trim() === "") return {}
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (error) {
      return yield* Effect.fail(new BodyRejected(jsonError(400, `Invalid JSON body: ${(error as Error).message}`)))
    }
    if (parsed === null || typeof parsed !== "object") {
      return yield* Effect.fail(new BodyRejected(jsonError(400, "Invalid JSON body: expected an object or an array")))
    }
    return parsed
  })

/** `POST /api/run`'s body; the contract's checks come after decoding. */
export const RunRequest = Schema.Struct({
  runId: Schema.optionalKey(Schema.Unknown),
  script: Schema.optionalKey(Schema.Unknown),
  reqBody: Schema.optionalKey(Schema.Unknown)
})
/** A script payload is an object (not null, not an array is allowed by the original: any object). */
export const ScriptPayload = Schema.Record(Schema.String, Schema.Unknown)
export const ResetRequest = Schema.Struct({
  token: Schema.optionalKey(Schema.Unknown),
  secret: Schema.optionalKey(Schema.Unknown)
})
export const PackagesRequest = Schema.Struct({
  scriptId: Schema.optionalKey(Schema.Unknown),
  packages: Schema.optionalKey(Schema.Unknown),
  directoryKey: Schema.optionalKey(Schema.Unknown),
  installMissing: Schema.optionalKey(Schema.Unknown)
})
export const SecretForm = Schema.Struct({ secret: Schema.optionalKey(Schema.Unknown) })
export const ExecutablesForm = Schema.Struct({
  node: Schema.optionalKey(Schema.Unknown),
  python: Schema.optionalKey(Schema.Unknown),
  powershell: Schema.optionalKey(Schema.Unknown)
})

const decodeOr = <S extends Schema.Top & { readonly DecodingServices: never }>(
  schema: S,
  body: unknown
): S["Type"] | undefined => Option.getOrUndefined(Schema.decodeUnknownOption(schema)(body))

/** The original's `normalizeUrl` for header and `runId` values: first element of an array, trimmed. */
const firstTrimmed = (value: unknown): string => {
  const v = Array.isArray(value) ? value[0] : value
  return typeof v === "string" ? v.trim() : ""
}

const withBody = <E, R>(
  request: HttpServerRequest.HttpServerRequest,
  f: (body: unknown) => Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
) =>
  readBody(request).pipe(
    Effect.matchEffect({ onFailure: (rejected) => Effect.succeed(rejected.response), onSuccess: f })
  )

const STREAM_HEADERS = {
  "cache-control": "no-cache, no-transform",
  "x-content-type-options": "nosniff",
  connection: "keep-alive"
}

/** The routes of the runner service (contract 3). */
export const routes = (app: RunnerApp) => {
  const { state, config } = app
  const home = (message: PageMessage = {}, status = 200) => html(renderHomePage(state, message), status)
  const runContext = () => app.runContext()

  const run = (request: HttpServerRequest.HttpServerRequest) =>
    withBody(request, (body) =>
      Effect.gen(function* () {
        const configured = state.secret
        if (configured === null) return jsonError(503, "Runner secret not configured")
        const provided = firstTrimmed(request.headers["x-automn-runner-secret"])
        if (provided === "" || !secretsEqual(provided, configured)) return jsonError(401, "Invalid runner secret")
        const cap = config.localMaxConcurrency
        if (cap !== null && cap > 0 && app.activeRuns >= cap) return jsonError(429, "Runner is at capacity")
        const decoded = decodeOr(RunRequest, body) ?? {}
        const runId = firstTrimmed(decoded.runId) || randomUUID()
        const script = decodeOr(ScriptPayload, decoded.script)
        if (script === undefined || decoded.script === null || typeof decoded.script !== "object") {
          return jsonError(400, "Script payload is required")
        }
        const reqBody = decoded.reqBody || {}
        const label = String(
          script.name || script.slug || script.id || script.versionId || script.preassignedRunId || "unknown-script"
        )
        app.activeRuns += 1
        let released = false
        const release = Effect.sync(() => {
          if (released) return
          released = true
          app.activeRuns = Math.max(0, app.activeRuns - 1)
          console.log(`[runner] Finished run ${runId} for ${app.masker.maskString(label)} (active: ${app.activeRuns})`)
        })
        // if the response stream never starts (client gone), the request scope still frees the slot
        yield* Effect.addFinalizer(() => release)
        console.log(`[runner] Starting run ${runId} for ${app.masker.maskString(label)} (active: ${app.activeRuns})`)
        const frames = runScript({ runId, script, reqBody }, { ...runContext(), onFinish: release })
        // an empty first chunk makes Node send the headers before the script starts
        const executor = yield* Executor
        const responseBody = Stream.concat(Stream.make(new Uint8Array(0)), frames).pipe(
          Stream.provideService(Executor, executor),
          Stream.ensuring(release)
        )
        return HttpServerResponse.stream(responseBody, {
          contentType: "application/jsonl; charset=utf-8",
          headers: STREAM_HEADERS
        })
      })
    )

  const reset = (request: HttpServerRequest.HttpServerRequest) =>
    withBody(request, (body) =>
      Effect.gen(function* () {
        if (config.resetToken === null) return jsonError(404, "Reset endpoint disabled")
        const decoded = decodeOr(ResetRequest, body) ?? {}
        const token = typeof decoded.token === "string" ? decoded.token.trim() : ""
        if (token === "" || !secretsEqual(token, config.resetToken)) return jsonError(403, "Invalid reset token")
        const secret = typeof decoded.secret === "string" ? decoded.secret.trim() : ""
        try {
          if (secret !== "") {
            state.setSecret(secret)
            const outcome = yield* app.register("secret-rotation")
            return json({
              reset: true,
              secretUpdated: true,
              registration: state.summary(),
              registrationResult: outcome
            })
          }
          state.clearSecret()
          return json({ reset: true, secretCleared: true, runner: state.summary() })
        } catch (error) {
          return jsonError(400, error instanceof SecretRejected ? error.message : "Failed to reset secret")
        }
      })
    )

  const register = (request: HttpServerRequest.HttpServerRequest) =>
    withBody(request, (body) =>
      Effect.gen(function* () {
        if (!state.secretConfigurable)
          return home({ error: "Runner secret is managed via environment variables." }, 403)
        const decoded = decodeOr(SecretForm, body) ?? {}
        try {
          state.setSecret(decoded.secret)
        } catch (error) {
          return home({ error: error instanceof SecretRejected ? error.message : "Failed to store secret" }, 400)
        }
        const outcome = yield* app.register("initial")
        return home(
          outcome.ok
            ? { success: "Registration request sent. Awaiting confirmation from host." }
            : { error: outcome.error }
        )
      })
    )

  const setExecutables = (request: HttpServerRequest.HttpServerRequest) =>
    withBody(request, (body) =>
      Effect.sync(() => {
        if (state.locked) return home({ error: "Runner is locked. Executable paths cannot be changed." }, 403)
        if (!state.executablesConfigurable()) {
          return home({ error: "Executable paths are managed via environment variables." }, 403)
        }
        const decoded = decodeOr(ExecutablesForm, body) ?? {}
        try {
          state.setExecutables(decoded)
        } catch (error) {
          return home(
            { error: error instanceof SecretRejected ? error.message : "Failed to update runtime executables" },
            400
          )
        }
        return home({ success: "Runtime executables updated." })
      })
    )

  const packagesStatus = (request: HttpServerRequest.HttpServerRequest) =>
    withBody(request, (body) =>
      Effect.gen(function* () {
        const configured = state.secret
        if (configured === null) return jsonError(503, "Runner secret not configured")
        const provided = firstTrimmed(request.headers["x-automn-runner-secret"])
        if (provided === "" || !secretsEqual(provided, configured)) return jsonError(401, "Invalid runner secret")
        const b = decodeOr(PackagesRequest, body) ?? {}
        const packages = [
          ...new Set(
            (Array.isArray(b.packages) ? b.packages : [])
              .map((p) => (typeof p === "string" ? p.trim() : ""))
              .filter((p) => p !== "")
          )
        ]
        const scriptId = typeof b.scriptId === "string" && b.scriptId.trim() !== "" ? b.scriptId.trim() : null
        const directoryKey = typeof b.directoryKey === "string" ? b.directoryKey.trim() : ""
        const installMissing = b.installMissing !== false
        if (packages.length === 0) return json({ scriptId, packages: [], installMissing, error: null })
        const directory = directoryKey || sanitizeIdentifier(scriptId ?? "anonymous")
        const folder = join(config.workdirDir, directory)
        const outcome = yield* Effect.tryPromise(() => ensureManifest(folder, scriptId ?? directory)).pipe(
          Effect.result
        )
        if (outcome._tag === "Failure") return jsonError(500, "Failed to check package status")
        const statuses = packages.map((name) => {
          const ok = isSatisfied(name, folder)
          return { name, status: ok ? "installed" : "not_installed", message: ok ? null : "Package not present" }
        })
        const missing = statuses.filter((s) => s.status === "not_installed").map((s) => s.name)
        let error: string | null = null
        if (installMissing && missing.length > 0) {
          console.log(`[runner] Installing npm packages for ${directory}: ${missing.join(", ")}`)
          const executor = yield* Executor
          yield* Stream.runDrain(
            installDependencies(executor, runContext(), missing, folder, (message) => {
              error = message
            })
          )
          for (const s of statuses) {
            if (!missing.includes(s.name)) continue
            s.status = error === null ? "installed" : "error"
            s.message = error ?? "Installed"
          }
        }
        if (error === null) rememberDependencies(config.workdirDir, folder, scriptId ?? directory, packages)
        return json({ scriptId, packages: statuses, installMissing, error })
      })
    )

  return Layer.mergeAll(
    HttpRouter.add("GET", "/favicon.ico", HttpServerResponse.empty({ status: 404 })),
    HttpRouter.add("GET", "/status", () =>
      Effect.sync(() =>
        json({
          runner: state.summary(),
          config: {
            endpointUrl: state.endpointUrl,
            hostUrl: state.hostUrl ?? config.hostUrl ?? null,
            runnerId: state.runnerId ?? config.runnerId ?? null,
            heartbeatInterval: config.heartbeatInterval,
            scriptsDir: config.scriptsDir,
            workdirDir: config.workdirDir,
            secretManagedByEnv: !state.secretConfigurable
          }
        })
      )
    ),
    HttpRouter.add("GET", "/", () => Effect.sync(() => home())),
    HttpRouter.add("GET", "/ui/reregister", () =>
      app
        .register("manual")
        .pipe(
          Effect.map((outcome) =>
            home(outcome.ok ? { success: "Registration attempt sent to host." } : { error: outcome.error })
          )
        )
    ),
    HttpRouter.add("POST", "/ui/register", register),
    HttpRouter.add("POST", "/ui/runtime-executables", setExecutables),
    HttpRouter.add("POST", "/ui/package-cache/clear", (request) =>
      withBody(request, () =>
        Effect.sync(() => {
          try {
            clearPackageCache(config.workdirDir)
            return home({ success: "Package cache cleared. Dependencies will reinstall as needed." })
          } catch (error) {
            return home({ error: (error as Error).message || "Failed to clear package cache" }, 500)
          }
        })
      )
    ),
    HttpRouter.add("POST", "/internal/reset", reset),
    HttpRouter.add("POST", "/api/packages/status", packagesStatus),
    HttpRouter.add("POST", "/api/run", run),
    HttpRouter.add("*", "*", (request) =>
      withBody(request, () =>
        Effect.succeed(html(notFoundPage(request.method, new URL(request.url, "http://x").pathname), 404))
      )
    )
  )
}
