import { createConnection } from "node:net"

/** True when running in CI (`CI=true`), where no suite may skip. */
export const inCI = (): boolean => process.env.CI === "true" || process.env.CI === "1"

/** Resolves true when a TCP connection to host:port opens within `timeoutMs`. */
export const tcpReachable = (port: number, host = "127.0.0.1", timeoutMs = 1000): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = createConnection({ port, host })
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once("connect", () => done(true))
    socket.once("error", () => done(false))
  })

/**
 * Decides whether a suite that needs an external service runs. Returns true when the service
 * is there. When it is missing: in CI it throws (a skipped suite is a defect there); locally
 * it prints a loud reason and returns false so the caller can `describe.skipIf(!available)`.
 */
export const requireService = async (name: string, available: () => Promise<boolean>): Promise<boolean> => {
  if (await available()) return true
  const reason = `${name} is not reachable`
  if (inCI()) throw new Error(`${reason}: in CI every suite must run (.ci/run starts the services)`)
  console.warn(`\n*** SKIPPING suites that need ${name}: ${reason}. Start it (see .ci/run) to run them. ***\n`)
  return false
}
export * from "./queueContract.ts"
