import { Worker } from "node:worker_threads"
import { Effect } from "effect"
import { type GuestAgentOptions, Stop } from "./GuestCore.ts"
import type { GuestReply, GuestRequest } from "./GuestWorker.ts"
import { GuestFailure } from "./SandboxErrors.ts"

export {
  DEFAULT_AGENT_SOURCE,
  DEFAULT_GUEST_MEMORY,
  DEFAULT_GUEST_TIMEOUT_MS,
  type GuestAgentOptions
} from "./GuestCore.ts"

/** After the deadline, a guest thread that has not answered is terminated after this long. */
const TERMINATE_GRACE_MS = 1000
/** Warm guest threads kept for the next runs. */
const MAX_IDLE_WORKERS = 4

const workerUrl = new URL(import.meta.url.endsWith(".ts") ? "./GuestWorker.ts" : "./GuestWorker.js", import.meta.url)

interface GuestThread {
  readonly worker: Worker
  readonly ready: Promise<void>
  broken: boolean
}

const idle: Array<GuestThread> = []

const startThread = (): GuestThread => {
  const worker = new Worker(workerUrl)
  const thread: GuestThread = { worker, ready: Promise.resolve(), broken: false }
  const ready = new Promise<void>((resolve, reject) => {
    const onMessage = (m: GuestReply) => {
      if (m.type !== "ready") return
      worker.off("message", onMessage)
      resolve()
    }
    worker.on("message", onMessage)
    worker.once("error", (e) => {
      thread.broken = true
      reject(e)
    })
    worker.once("exit", () => {
      thread.broken = true
      reject(new Error("guest thread exited"))
    })
  })
  ready.catch(() => {})
  return Object.assign(thread, { ready })
}

const release = (thread: GuestThread): void => {
  if (!thread.broken && idle.length < MAX_IDLE_WORKERS) {
    thread.worker.unref()
    idle.push(thread)
  } else void thread.worker.terminate()
}

let nextId = 0

/** Runs one guest on a pooled thread; rejects with `Stop`. */
const runOnThread = (opts: GuestAgentOptions, signal: AbortSignal): Promise<string> =>
  new Promise<string>((resolve, reject) => {
    const thread = idle.pop() ?? startThread()
    const { worker } = thread
    worker.ref()
    const id = nextId++
    const timeoutMs = opts.timeoutMs ?? 30_000
    let settled = false
    let killer: ReturnType<typeof setTimeout> | undefined
    const finish = (outcome: { text: string } | { stop: Stop }, keep: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(backstop)
      if (killer !== undefined) clearTimeout(killer)
      signal.removeEventListener("abort", onAbort)
      worker.off("message", onMessage)
      worker.off("error", onError)
      worker.off("exit", onExit)
      if (keep) release(thread)
      else {
        thread.broken = true
        void worker.terminate()
      }
      if ("text" in outcome) resolve(outcome.text)
      else reject(outcome.stop)
    }
    const onMessage = (m: GuestReply) => {
      if (m.type === "note" && m.id === id) opts.onNote?.(m.kind, m.message)
      else if (m.type === "done" && m.id === id) finish({ text: m.text }, true)
      else if (m.type === "failed" && m.id === id) finish({ stop: new Stop(m.reason, m.message) }, true)
    }
    const onError = (e: Error) => {
      const oom = (e as NodeJS.ErrnoException).code === "ERR_WORKER_OUT_OF_MEMORY"
      finish({ stop: new Stop(oom ? "oom" : "exception", `guest thread failed: ${e.message}`) }, false)
    }
    const onExit = () => finish({ stop: new Stop("exception", "guest thread exited") }, false)
    const hardStop = (why: string) =>
      finish({ stop: new Stop("timeout", `guest did not stop (${why}); its thread was terminated`) }, false)
    // The guest's own interrupt handler stops it at the deadline; if its thread does not answer
    // shortly after, the thread is terminated, as a VM would be killed.
    const backstop = setTimeout(() => hardStop(`deadline of ${timeoutMs} ms`), timeoutMs + TERMINATE_GRACE_MS)
    const onAbort = () => {
      worker.postMessage({ type: "abort", id } satisfies GuestRequest)
      killer ??= setTimeout(() => hardStop("interrupted"), TERMINATE_GRACE_MS)
    }
    worker.on("message", onMessage)
    worker.on("error", onError)
    worker.on("exit", onExit)
    signal.addEventListener("abort", onAbort, { once: true })
    const { onNote: _onNote, ...plain } = opts
    worker.postMessage({ type: "run", id, opts: plain } satisfies GuestRequest)
  })

/**
 * Creates a fresh guest (a new QuickJS runtime on a warm guest thread), registers the host
 * functions and calls `ExecuteAgent(prompt, mcpUrl)`. A guest that loops forever is interrupted
 * at its deadline (and its thread terminated if it does not stop); one that allocates without end
 * hits the memory limit; the runner's own thread is never blocked by a guest.
 */
export const runGuestAgent = (opts: GuestAgentOptions): Effect.Effect<string, GuestFailure> =>
  Effect.tryPromise({
    try: (signal) => runOnThread(opts, signal),
    catch: (e) =>
      e instanceof Stop
        ? new GuestFailure({ reason: e.reason, message: e.message })
        : new GuestFailure({ reason: "exception", message: String(e) })
  })
