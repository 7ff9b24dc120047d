import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"

const bin = fileURLToPath(new URL("../src/bin.ts", import.meta.url))

const freePort = () =>
  new Promise<number>((resolve) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

describe("runlane automn-runner", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "runlane-cli-automn-"))
  let child: ChildProcess | undefined
  afterAll(() => {
    child?.kill("SIGKILL")
    rmSync(dataDir, { recursive: true, force: true })
  })

  it("serves the Automn runner with --port and --data-dir over the env configuration", async () => {
    const port = await freePort()
    const secret = "cli-runner-secret-123456"
    let output = ""
    child = spawn(
      process.execPath,
      ["--conditions=source", bin, "automn-runner", "--port", String(port), "--data-dir", dataDir],
      {
        env: {
          PATH: process.env.PATH ?? "/usr/bin:/bin",
          AUTOMN_RUNNER_SECRET: secret,
          AUTOMN_RUNNER_HEARTBEAT_MS: "-1",
          AUTOMN_RUNNER_PORT: "1"
        },
        stdio: ["ignore", "pipe", "pipe"]
      }
    )
    child.stdout?.on("data", (d) => (output += d))
    child.stderr?.on("data", (d) => (output += d))
    const url = `http://127.0.0.1:${port}`
    let status: { config: { scriptsDir: string; secretManagedByEnv: boolean } } | undefined
    for (let i = 0; i < 600 && status === undefined; i++) {
      if (child.exitCode !== null) throw new Error(`runlane exited: ${output}`)
      try {
        status = (await (await fetch(`${url}/status`)).json()) as typeof status
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    }
    expect(status?.config.scriptsDir).toBe(join(dataDir, "scripts"))
    expect(status?.config.secretManagedByEnv).toBe(true)
    const res = await fetch(`${url}/api/run`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-automn-runner-secret": secret },
      body: JSON.stringify({ runId: "cli-1", script: { language: "shell", code: "echo from-cli" } })
    })
    const frames = (await res.text())
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { type: string; data?: { stdout: string; code: number } })
    expect(frames.at(-1)?.data).toMatchObject({ stdout: "from-cli", code: 0 })
    const exited = new Promise<number | null>((resolve) => child?.once("exit", (code) => resolve(code)))
    child.kill("SIGTERM")
    expect(await exited).not.toBeNull()
  })
})
