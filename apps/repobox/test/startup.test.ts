import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { requireService, tcpReachable } from "@runlane/testkit"
import { describe, expect, it } from "vitest"

const MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url))

const run = (env: Record<string, string>) =>
  new Promise<{ code: number | null; lines: Array<Record<string, unknown>> }>((resolve) => {
    const child = spawn(process.execPath, ["--conditions=source", MAIN], {
      env: { PATH: process.env.PATH ?? "", ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let out = ""
    child.stdout.on("data", (d) => {
      out += d
    })
    child.on("exit", (code) =>
      resolve({
        code,
        lines: out
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => JSON.parse(l) as Record<string, unknown>)
      })
    )
  })

const redisUp = await requireService("Redis on 127.0.0.1:6379", () => tcpReachable(6379))

describe("start-up refusals", () => {
  it("an unset or empty ENCRYPTION_KEY stops start-up with exit 1 before contacting Redis", async () => {
    for (const env of [{}, { ENCRYPTION_KEY: "" }]) {
      // An unreachable Redis proves the key check comes first.
      const r = await run({ ...env, REDIS_URL: "redis://127.0.0.1:1" })
      expect(r.code).toBe(1)
      expect(r.lines.at(-1)).toMatchObject({
        level: "ERROR",
        msg: "Failed to load config",
        error: "ENCRYPTION_KEY is required"
      })
    }
  })

  it("an unreachable Redis stops start-up with exit 1", async () => {
    const r = await run({ ENCRYPTION_KEY: "a".repeat(64), REDIS_URL: "redis://127.0.0.1:1" })
    expect(r.code).toBe(1)
    expect(r.lines.at(-1)).toMatchObject({ msg: "Failed to connect to Redis" })
  })

  it.skipIf(!redisUp)("a malformed ENCRYPTION_KEY stops start-up with the original's message and exit 1", async () => {
    for (const key of ["abc", "a".repeat(66), "g".repeat(64)]) {
      const r = await run({ ENCRYPTION_KEY: key, REDIS_URL: "redis://127.0.0.1:6379" })
      expect(r.code).toBe(1)
      expect(r.lines.at(-1)).toMatchObject({
        msg: "Failed to create executor",
        error:
          "failed to create decryptor: ENCRYPTION_KEY must be 32 bytes: 64 hex chars, 44 base64 chars, or 32 raw chars"
      })
      expect(JSON.stringify(r.lines)).not.toContain(key === "abc" ? '"abc"' : key)
    }
  })
})
