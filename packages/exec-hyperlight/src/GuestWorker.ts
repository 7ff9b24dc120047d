/**
 * The guest's "hypervisor" thread: a worker that runs one QuickJS guest at a time, so a guest
 * busy computing never holds the runner's event loop, and a guest that will not stop can be
 * ended by terminating the thread. Host functions (and their checks) run here too.
 */
import { parentPort } from "node:worker_threads"
import { type GuestAgentOptions, preloadQuickJS, runGuestOnce, Stop } from "./GuestCore.ts"

export type GuestRequest =
  | { readonly type: "run"; readonly id: number; readonly opts: Omit<GuestAgentOptions, "onNote"> }
  | { readonly type: "abort"; readonly id: number }

export type GuestReply =
  | { readonly type: "ready" }
  | { readonly type: "note"; readonly id: number; readonly kind: string; readonly message: string }
  | { readonly type: "done"; readonly id: number; readonly text: string }
  | { readonly type: "failed"; readonly id: number; readonly reason: Stop["reason"]; readonly message: string }

const port = parentPort
if (port !== null) {
  const post = (reply: GuestReply) => port.postMessage(reply)
  const aborters = new Map<number, AbortController>()
  port.on("message", (msg: GuestRequest) => {
    if (msg.type === "abort") {
      aborters.get(msg.id)?.abort()
      return
    }
    const { id } = msg
    const aborter = new AbortController()
    aborters.set(id, aborter)
    runGuestOnce({ ...msg.opts, onNote: (kind, message) => post({ type: "note", id, kind, message }) }, aborter.signal)
      .then(
        (text) => post({ type: "done", id, text }),
        (e: unknown) =>
          post({
            type: "failed",
            id,
            reason: e instanceof Stop ? e.reason : "exception",
            message: e instanceof Error ? e.message : String(e)
          })
      )
      .finally(() => aborters.delete(id))
  })
  preloadQuickJS().then(
    () => post({ type: "ready" }),
    (e: unknown) => {
      throw e
    }
  )
}
