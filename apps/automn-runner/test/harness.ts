import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer, type IncomingMessage, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const MAIN = fileURLToPath(new URL("../src/main.ts", import.meta.url))

export interface Registration {
  readonly runnerId: string
  readonly body: Record<string, unknown>
  readonly at: number
}

/**
 * An Automn host stand-in: `POST /api/settings/runner-hosts/:id/register` answers as the real
 * host (400 missing secret/endpoint, 404 unknown id, 401 wrong secret, 200 with `runnerHost`), and
 * records every request.
 */
export class FakeHost {
  readonly registrations: Registration[] = []
  /** runner id → the secret the host accepts. */
  readonly runners = new Map<string, string>()
  private server: Server | undefined
  url = ""

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res))
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve))
    const { port } = this.server.address() as AddressInfo
    this.url = `http://127.0.0.1:${port}`
    return this
  }

  private async handle(req: IncomingMessage, res: import("node:http").ServerResponse) {
    let text = ""
    for await (const chunk of req) text += chunk
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" })
      res.end(JSON.stringify(body))
    }
    const match = /^\/api\/settings\/runner-hosts\/([^/]+)\/register$/.exec(req.url ?? "")
    if (req.method !== "POST" || match === null) return send(404, { error: "Not found" })
    const runnerId = decodeURIComponent(match[1] as string)
    const body = JSON.parse(text) as Record<string, unknown>
    this.registrations.push({ runnerId, body, at: Date.now() })
    const secret = typeof body.secret === "string" ? body.secret.trim() : ""
    if (secret === "") return send(400, { error: "Runner secret is required" })
    if (!body.endpoint) return send(400, { error: "Runner endpoint is required" })
    const expected = this.runners.get(runnerId)
    if (expected === undefined) return send(404, { error: "Runner host not found" })
    if (expected !== secret) return send(401, { error: "Invalid runner secret", code: "invalid_secret" })
    send(200, {
      runnerHost: { id: runnerId, name: runnerId, status: "healthy", endpoint: body.endpoint },
      registered: true,
      hostVersion: "0.2.16",
      minimumRunnerVersion: "0.2.15"
    })
  }

  reasons(runnerId: string): string[] {
    return this.registrations
      .filter((r) => r.runnerId === runnerId)
      .map((r) => /\(([^)]*)\)$/.exec(String(r.body.statusMessage))?.[1] ?? "")
  }

  async stop() {
    this.server?.closeAllConnections()
    await new Promise<void>((resolve) => this.server?.close(() => resolve()))
  }
}

export const freePort = async (): Promise<number> => {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

export const waitFor = async <A>(what: string, f: () => Promise<A | undefined> | A | undefined, timeoutMs = 15_000) => {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await f()
      if (value !== undefined && value !== false) return value
    } catch (error) {
      last = error
    }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`timed out waiting for ${what}${last === undefined ? "" : `: ${String(last)}`}`)
}

/** One runner service process (`node --conditions=source src/main.ts`) with its own data dir. */
export class RunnerProcess {
  readonly env: Record<string, string>
  readonly dataDir: string
  port = 0
  url = ""
  output = ""
  private child: ChildProcess | undefined

  constructor(env: Record<string, string>, dataDir?: string) {
    this.env = env
    this.dataDir = dataDir ?? mkdtempSync(join(tmpdir(), "runlane-automn-"))
  }

  get stateFile() {
    return join(this.dataDir, "state", "runner-state.json")
  }

  readState(): Record<string, unknown> {
    return JSON.parse(readFileSync(this.stateFile, "utf8")) as Record<string, unknown>
  }

  async start(): Promise<this> {
    this.port = await freePort()
    this.url = `http://127.0.0.1:${this.port}`
    const child = spawn(process.execPath, ["--conditions=source", MAIN], {
      env: {
        PATH: process.env.PATH ?? "/usr/bin:/bin",
        HOME: process.env.HOME ?? "/tmp",
        AUTOMN_RUNNER_PORT: String(this.port),
        AUTOMN_RUNNER_DATA_DIR: this.dataDir,
        ...this.env
      },
      stdio: ["ignore", "pipe", "pipe"]
    })
    this.child = child
    child.stdout?.on("data", (d) => {
      this.output += String(d)
    })
    child.stderr?.on("data", (d) => {
      this.output += String(d)
    })
    await waitFor(`runner on ${this.url} (output: ${this.output})`, async () => {
      if (child.exitCode !== null) throw new Error(`runner exited: ${this.output}`)
      const res = await fetch(`${this.url}/status`)
      return res.ok ? true : undefined
    })
    return this
  }

  status = async (): Promise<{ runner: Record<string, unknown>; config: Record<string, unknown> }> =>
    (await (await fetch(`${this.url}/status`)).json()) as {
      runner: Record<string, unknown>
      config: Record<string, unknown>
    }

  async stop() {
    const child = this.child
    if (child === undefined || child.exitCode !== null) return
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
    child.kill("SIGTERM")
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000)
    await exited
    clearTimeout(timer)
  }

  async dispose() {
    await this.stop()
    rmSync(this.dataDir, { recursive: true, force: true })
  }
}

export interface Frame {
  readonly type: string
  readonly line?: string
  readonly data?: Record<string, unknown>
}

/** POSTs to /api/run and reads the NDJSON frames to the end. */
export const postRun = async (
  url: string,
  secret: string | undefined,
  body: unknown,
  init: { contentType?: string; raw?: string } = {}
): Promise<{ status: number; headers: Headers; frames: Frame[]; text: string }> => {
  const headers: Record<string, string> = { "content-type": init.contentType ?? "application/json" }
  if (secret !== undefined) headers["x-automn-runner-secret"] = secret
  const res = await fetch(`${url}/api/run`, { method: "POST", headers, body: init.raw ?? JSON.stringify(body) })
  const text = await res.text()
  const frames =
    res.status === 200
      ? text
          .split("\n")
          .filter((l) => l.trim() !== "")
          .map((l) => JSON.parse(l) as Frame)
      : []
  return { status: res.status, headers: res.headers, frames, text }
}

export const logText = (frames: ReadonlyArray<Frame>) =>
  frames
    .filter((f) => f.type === "log")
    .map((f) => f.line)
    .join("")

export const resultOf = (frames: ReadonlyArray<Frame>) => {
  const results = frames.filter((f) => f.type === "result")
  if (results.length !== 1) throw new Error(`expected one result frame, got ${results.length}`)
  if (frames[frames.length - 1]?.type !== "result") throw new Error("the result frame is not last")
  return results[0]?.data as Record<string, unknown>
}

/** True when `pid` runs (a zombie counts as gone). */
export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch {
    return false
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
  } catch {
    return false
  }
}
