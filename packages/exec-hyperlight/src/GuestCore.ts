import {
  getQuickJS,
  type QuickJSContext,
  type QuickJSDeferredPromise,
  type QuickJSHandle,
  type QuickJSRuntime,
  type QuickJSWASMModule
} from "quickjs-emscripten"
import { type McpOrigin, parseMcpOrigin, sameOrigin } from "./McpOrigin.ts"

/**
 * The `guest` backend: Hyperlight's programming model, in process. The agent is JavaScript run
 * by QuickJS compiled to WebAssembly. It has no ambient I/O (no fetch, no fs, no timers, no
 * console); it reaches the world only through the three host functions of the original's
 * Hyperlight host, each returning a Promise:
 *
 * - `InitializeMCPConnection(url)`: refused unless scheme, host and port equal the allowed MCP URL
 *   (and always refused when there is none).
 * - `GetMCPTools()`: GET `<mcp origin>/tools`, resolves to the body text.
 * - `ExecuteMCPTool(name, argsJson)`: POST `<mcp origin>/tools/<name>` (JSON body), resolves to the body text.
 *
 * The host calls the agent's global `ExecuteAgent(prompt, mcpUrl)` (sync or async) and takes its
 * result as a string.
 */
export interface GuestAgentOptions {
  /** The agent's JavaScript source; it must define a global function `ExecuteAgent`. */
  readonly source: string
  readonly prompt: string
  /** The one MCP server the agent may reach; undefined = all network access refused. */
  readonly mcpUrl?: string | undefined
  /** QuickJS heap limit (default 64 MiB). */
  readonly memoryBytes?: number | undefined
  /** Wall-clock limit for create + ExecuteAgent (default 30 s). */
  readonly timeoutMs?: number | undefined
  /** Called for every refused host-function call (kind `network-refused`). */
  readonly onNote?: ((kind: string, message: string) => void) | undefined
}

export const DEFAULT_GUEST_MEMORY = 64 * 1024 * 1024
export const DEFAULT_GUEST_TIMEOUT_MS = 30_000

/** The original's guest (`guest/src/lib.rs`), as a QuickJS agent: lists the MCP tools and reports. */
export const DEFAULT_AGENT_SOURCE = `
async function ExecuteAgent(prompt, mcpUrl) {
  let tools = "(no MCP server)"
  if (mcpUrl !== "") {
    await InitializeMCPConnection(mcpUrl)
    tools = await GetMCPTools()
  }
  return "Agent processed prompt: '" + prompt + "'\\nAvailable tools: " + tools + "\\n\\nAgent is running securely in Hyperlight guest!"
}
`

let modulePromise: Promise<QuickJSWASMModule> | undefined
const loadModule = (): Promise<QuickJSWASMModule> => {
  modulePromise ??= getQuickJS()
  return modulePromise
}

/** Loads the QuickJS WebAssembly module ahead of the first guest. */
export const preloadQuickJS = async (): Promise<void> => {
  await loadModule()
}

/** Why a guest run ended without a result. */
export class Stop extends Error {
  readonly reason: "timeout" | "oom" | "exception" | "invalid-agent"
  constructor(reason: "timeout" | "oom" | "exception" | "invalid-agent", message: string) {
    super(message)
    this.reason = reason
  }
}

const errorText = (ctx: QuickJSContext, handle: QuickJSHandle): string => {
  const dumped: unknown = ctx.dump(handle)
  if (dumped && typeof dumped === "object" && "message" in dumped) {
    const d = dumped as { name?: unknown; message?: unknown }
    return `${typeof d.name === "string" ? `${d.name}: ` : ""}${String(d.message)}`
  }
  return String(dumped)
}

const isOutOfMemory = (message: string): boolean => /out of memory/i.test(message)

/** Runs the agent once in a fresh QuickJS runtime; rejects with `Stop`. */
export const runGuestOnce = async (opts: GuestAgentOptions, signal: AbortSignal): Promise<string> => {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_GUEST_TIMEOUT_MS
  const deadline = Date.now() + timeoutMs
  const allowed: McpOrigin | undefined = opts.mcpUrl ? parseMcpOrigin(opts.mcpUrl) : undefined
  if (opts.mcpUrl && !allowed) throw new Stop("invalid-agent", `Invalid MCP connection URL: ${opts.mcpUrl}`)
  const QuickJS = await loadModule()
  const runtime: QuickJSRuntime = QuickJS.newRuntime()
  const aborter = new AbortController()
  const onAbort = () => aborter.abort()
  signal.addEventListener("abort", onAbort)
  const timer = setTimeout(() => aborter.abort(), Math.max(0, deadline - Date.now()))
  const pending = new Set<QuickJSDeferredPromise>()
  let ctx: QuickJSContext | undefined
  let wake: (() => void) | undefined
  const stopped = (): boolean => aborter.signal.aborted || Date.now() > deadline
  try {
    runtime.setMemoryLimit(opts.memoryBytes ?? DEFAULT_GUEST_MEMORY)
    runtime.setMaxStackSize(1024 * 1024)
    runtime.setInterruptHandler(() => stopped())
    const vm = runtime.newContext()
    ctx = vm

    const refuse = (message: string): never => {
      opts.onNote?.("network-refused", message)
      throw new Error(message)
    }
    const requireMcp = (): McpOrigin => allowed ?? refuse("Network access not allowed: no MCP server configured")

    /** Bridges a host Promise to a guest Promise; settles wake the host loop. */
    const async = (work: () => Promise<string>): QuickJSHandle => {
      const deferred = vm.newPromise()
      pending.add(deferred)
      work().then(
        (text) => {
          if (!deferred.alive) return
          const h = vm.newString(text)
          deferred.resolve(h)
          h.dispose()
        },
        (e: unknown) => {
          if (!deferred.alive) return
          const h = vm.newError(e instanceof Error ? e.message : String(e))
          deferred.reject(h)
          h.dispose()
        }
      )
      void deferred.settled.then(() => {
        pending.delete(deferred)
        wake?.()
      })
      return deferred.handle
    }

    const http = async (url: URL, init: RequestInit): Promise<string> => {
      const res = await fetch(url, { ...init, signal: aborter.signal, redirect: "manual" })
      return await res.text()
    }

    const init = vm.newFunction("InitializeMCPConnection", (urlH) => {
      const raw = urlH ? vm.getString(urlH) : ""
      return async(async () => {
        const target = parseMcpOrigin(raw)
        if (!target) throw new Error(`Invalid URL: ${raw}`)
        if (!allowed) return refuse(`Network access not allowed: blocked connection to ${target.url.origin}`)
        if (!sameOrigin(target, allowed))
          return refuse(
            `Unauthorized network access: blocked ${target.url.origin}, only ${allowed.url.origin} is allowed`
          )
        return ""
      })
    })
    const tools = vm.newFunction("GetMCPTools", () =>
      async(async () => {
        const mcp = requireMcp()
        return http(new URL("/tools", mcp.url), { method: "GET" })
      })
    )
    const exec = vm.newFunction("ExecuteMCPTool", (nameH, argsH) => {
      const name = nameH ? vm.getString(nameH) : ""
      const args = argsH ? vm.getString(argsH) : ""
      return async(async () => {
        const mcp = requireMcp()
        return http(new URL(`/tools/${encodeURIComponent(name)}`, mcp.url), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: args
        })
      })
    })
    for (const [name, fn] of [
      ["InitializeMCPConnection", init],
      ["GetMCPTools", tools],
      ["ExecuteMCPTool", exec]
    ] as const) {
      vm.setProp(vm.global, name, fn)
      fn.dispose()
    }
    // Leave the guest no way to reach wasm/host internals beyond the above (QuickJS has none by default).

    const fail = (handle: QuickJSHandle, phase: string): never => {
      const message = errorText(vm, handle)
      handle.dispose()
      if (stopped()) throw new Stop("timeout", `guest stopped after ${timeoutMs} ms`)
      if (isOutOfMemory(message)) throw new Stop("oom", `guest exceeded its memory limit: ${message}`)
      throw new Stop(phase === "load" ? "invalid-agent" : "exception", message)
    }

    const loaded = vm.evalCode(opts.source, "agent.js")
    if (loaded.error) fail(loaded.error, "load")
    else loaded.value.dispose()

    const fnH = vm.getProp(vm.global, "ExecuteAgent")
    if (vm.typeof(fnH) !== "function") {
      fnH.dispose()
      throw new Stop("invalid-agent", "the agent does not define a function ExecuteAgent(prompt, mcpUrl)")
    }
    const promptH = vm.newString(opts.prompt)
    const urlH = vm.newString(opts.mcpUrl ?? "")
    const called = vm.callFunction(fnH, vm.undefined, promptH, urlH)
    fnH.dispose()
    promptH.dispose()
    urlH.dispose()
    if (called.error) return fail(called.error, "call")
    const resultH = called.value

    // Drive the guest's promise: run its jobs, then wait for a host call to settle.
    for (;;) {
      const jobs = runtime.executePendingJobs()
      if (jobs.error) {
        resultH.dispose()
        return fail(jobs.error, "call")
      }
      const state = vm.getPromiseState(resultH)
      if (state.type === "fulfilled") {
        const value = state.value
        const text = vm.typeof(value) === "string" ? vm.getString(value) : (JSON.stringify(vm.dump(value)) ?? "")
        if (!state.notAPromise) value.dispose()
        resultH.dispose()
        return text
      }
      if (state.type === "rejected") {
        resultH.dispose()
        return fail(state.error, "call")
      }
      if (stopped()) {
        resultH.dispose()
        throw new Stop("timeout", `guest stopped after ${timeoutMs} ms`)
      }
      if (pending.size === 0 && !runtime.hasPendingJob()) {
        resultH.dispose()
        throw new Stop("exception", "ExecuteAgent returned a promise that can never settle")
      }
      await new Promise<void>((resolve) => {
        wake = resolve
        aborter.signal.addEventListener("abort", () => resolve(), { once: true })
        if (runtime.hasPendingJob()) resolve()
      })
      wake = undefined
    }
  } catch (e) {
    if (e instanceof Stop) throw e
    const message = e instanceof Error ? e.message : String(e)
    if (isOutOfMemory(message)) throw new Stop("oom", `guest exceeded its memory limit: ${message}`)
    if (stopped()) throw new Stop("timeout", `guest stopped after ${timeoutMs} ms`)
    throw new Stop("exception", message)
  } finally {
    clearTimeout(timer)
    signal.removeEventListener("abort", onAbort)
    aborter.abort()
    for (const d of pending) if (d.alive) d.dispose()
    try {
      ctx?.dispose()
      runtime.dispose()
    } catch {
      // A runtime stopped mid-allocation may not free cleanly: drop this WASM module and
      // load a fresh one for the next guest, so a broken heap is never reused.
      modulePromise = undefined
    }
  }
}
