import { Effect } from "effect"

/** An instance as the allocator lends it (extra fields dropped). */
export interface Instance {
  readonly id: string
  readonly mcp_connection_url: string
  readonly api_url: string
}

/** A job step failed; `chain` is anyhow's context chain (outermost first). */
export class StepFailed extends Error {
  override readonly name = "StepFailed"
  readonly chain: ReadonlyArray<string>
  constructor(chain: ReadonlyArray<string>) {
    super(chain.join(": "))
    this.chain = chain
  }
}

const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** `<status code> <reason>` as reqwest prints a status. */
const statusText = (response: Response) => `${response.status} ${response.statusText}`.trimEnd()

/** `POST <base>/borrow` (plain concatenation of the base URL and the route, as the original). */
export const borrow = (base: string): Effect.Effect<Instance, StepFailed> =>
  Effect.tryPromise({
    try: async (signal) => {
      let response: Response
      try {
        response = await fetch(`${base}/borrow`, { method: "POST", signal })
      } catch (error) {
        throw new StepFailed(["Failed to send borrow request", messageOf(error)])
      }
      const text = await response.text()
      if (!response.ok) throw new StepFailed([`Failed to borrow instance: ${statusText(response)} - ${text}`])
      let body: unknown
      try {
        body = JSON.parse(text)
      } catch (error) {
        throw new StepFailed(["Failed to parse instance response", messageOf(error)])
      }
      const b = body as Record<string, unknown> | null
      if (
        typeof b !== "object" ||
        b === null ||
        typeof b.id !== "string" ||
        typeof b.mcp_connection_url !== "string" ||
        typeof b.api_url !== "string"
      ) {
        throw new StepFailed([
          "Failed to parse instance response",
          "expected id, mcp_connection_url and api_url strings"
        ])
      }
      return { id: b.id, mcp_connection_url: b.mcp_connection_url, api_url: b.api_url }
    },
    catch: (error) => (error instanceof StepFailed ? error : new StepFailed([messageOf(error)]))
  })

/** `POST <base>/return` with the instance re-serialised in the original's field order. */
export const giveBack = (base: string, instance: Instance): Effect.Effect<void, StepFailed> =>
  Effect.tryPromise({
    try: async () => {
      let response: Response
      try {
        response = await fetch(`${base}/return`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            id: instance.id,
            mcp_connection_url: instance.mcp_connection_url,
            api_url: instance.api_url
          })
        })
      } catch (error) {
        throw new StepFailed(["Failed to send return request", messageOf(error)])
      }
      const text = await response.text()
      if (!response.ok) throw new StepFailed([`Failed to return instance: ${statusText(response)} - ${text}`])
    },
    catch: (error) => (error instanceof StepFailed ? error : new StepFailed([messageOf(error)]))
  })
