import { execFileSync } from "node:child_process"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { requireService, tcpReachable } from "@runlane/testkit"

/** The worker's entry point, run as TypeScript by the tests. */
export const bin = join(dirname(fileURLToPath(import.meta.url)), "..", "src", "bin.ts")

export const redisUp = await requireService("Redis at 127.0.0.1:6379", () => tcpReachable(6379))

export const bwrapUp = await requireService("bubblewrap", async () => {
  try {
    execFileSync("bwrap", ["--version"])
    return true
  } catch {
    return false
  }
})

/** Polls `check` every 100 ms until it holds, or fails naming `what`. */
export const waitFor = async (what: string, check: () => Promise<boolean> | boolean, ms = 90_000): Promise<void> => {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`timed out waiting for ${what}`)
}
