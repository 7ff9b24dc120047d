import { type ChildProcess, execFile, spawn } from "node:child_process"
import { generateKeyPairSync, X509Certificate } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { connect } from "node:tls"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const here = dirname(fileURLToPath(import.meta.url))
const bin = join(here, "..", "src", "bin.ts")

const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" })
const signingPem = privateKey.export({ type: "sec1", format: "pem" }).toString()
const publicPem = publicKey.export({ type: "spki", format: "pem" }).toString()

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer()
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number }
      s.close(() => resolve(port))
    })
  })

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

const baseEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env }
  delete env.JWT_PUBLIC_KEY
  delete env.JWT_SIGNING_KEY
  delete env.AIRUNNER_TOKEN
  return env
}

const cli = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}, timeout = 60_000) =>
  new Promise<Run>((resolve) => {
    execFile(
      process.execPath,
      ["--conditions=source", bin, ...args],
      { env: { ...baseEnv(), ...env }, timeout },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
        resolve({ code, stdout, stderr })
      }
    )
  })

/** The served certificate (to trust it as the original trusts the system store). */
const fetchCert = (port: number) =>
  new Promise<string | undefined>((resolve) => {
    const socket = connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
      const cert = socket.getPeerCertificate()
      socket.end()
      resolve(cert.raw === undefined ? undefined : new X509Certificate(cert.raw).toString())
    })
    socket.on("error", () => resolve(undefined))
  })

const waitForCert = async (port: number) => {
  for (let i = 0; i < 200; i++) {
    const cert = await fetchCert(port)
    if (cert !== undefined) return cert
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error("server did not start")
}

let dir: string
let port: number
let server: ChildProcess
let worker: ChildProcess
let serverUrl: string
let env: NodeJS.ProcessEnv
let workerLog = ""

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "airunner-cli-"))
  port = await freePort()
  serverUrl = `https://127.0.0.1:${port}`
  server = spawn(process.execPath, ["--conditions=source", bin, "rpc-server", "--listen", `127.0.0.1:${port}`], {
    env: { ...baseEnv(), JWT_PUBLIC_KEY: publicPem },
    stdio: ["ignore", "ignore", "pipe"]
  })
  const cert = await waitForCert(port)
  writeFileSync(join(dir, "ca.pem"), cert)
  const token = await cli(["token", "--subject", "tester", "--ttl", "1h"], { JWT_SIGNING_KEY: signingPem })
  expect(token.code).toBe(0)
  env = { SSL_CERT_FILE: join(dir, "ca.pem"), AIRUNNER_TOKEN: token.stdout.trim() }
  worker = spawn(
    process.execPath,
    ["--conditions=source", bin, "worker", "--server", serverUrl, "--queue", "cli-test", "--debug"],
    { env: { ...baseEnv(), ...env }, stdio: ["ignore", "ignore", "pipe"] }
  )
  worker.stderr?.on("data", (c: Buffer) => {
    workerLog += c.toString()
  })
}, 60_000)

afterAll(() => {
  worker?.kill("SIGKILL")
  server?.kill("SIGKILL")
  rmSync(dir, { recursive: true, force: true })
})

describe("airunner CLI end to end (rpc-server, token, worker, submit, monitor, list)", { timeout: 150_000 }, () => {
  it("token prints one ES256 JWT and a newline", async () => {
    const out = await cli(["token", "--subject", "a@b", `--signing-key=${signingPem}`])
    expect(out.code).toBe(0)
    expect(out.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/)
    const claims = JSON.parse(Buffer.from(out.stdout.split(".")[1]!, "base64url").toString())
    expect(claims.iss).toBe("airunner")
    expect(claims.sub).toBe("a@b")
    expect(claims.exp - claims.iat).toBe(3600)
    const bad = await cli(["token", "--subject", "x", "--signing-key", "not a key"])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^airunner-cli: error: /)
    const usage = await cli(["token", "--signing-key", signingPem])
    expect(usage.code).toBe(80)
  })

  it("submit --monitor runs a pipe job on the worker and reports its real exit code", async () => {
    const out = await cli(
      [
        "submit",
        "--server",
        serverUrl,
        "--queue",
        "cli-test",
        "--process-type",
        "pipe",
        "--command",
        "sh",
        "--args=-c,echo out-line; echo err-line >&2; exit 3",
        "https://github.com/example/repo"
      ],
      env
    )
    expect(out.code).toBe(0)
    const lines = out.stdout.split("\n")
    expect(lines[0]).toBe(`Submitting job for repository https://github.com/example/repo to server ${serverUrl}`)
    expect(lines[1]).toMatch(/^Job submitted successfully with ID: [0-9a-f-]{36}$/)
    expect(lines[2]).toMatch(/^Streaming events for job [0-9a-f-]{36}:$/)
    expect(lines[3]).toBe("=".repeat(50))
    expect(lines[4]).toMatch(/^\[\d\d:\d\d:\d\d\] 🚀 Process started \(PID: \d+\)$/)
    expect(out.stdout).toContain("out-line\n")
    expect(out.stdout).toContain("err-line\n")
    expect(out.stdout).toMatch(
      /❌ FAILED Process ended \(PID: \d+, Exit Code: 3, Duration: [\d.]+m?s\)\nMonitoring finished\n$/
    )
    const jobId = lines[1]!.split(": ")[1]!
    const listed = await cli(["list", "--server", serverUrl, "--state", "FAILED"], env)
    expect(listed.code).toBe(0)
    expect(listed.stdout).toContain("Jobs (queue: all, state: FAILED, page: 1/1):")
    const row = listed.stdout.split("\n").find((l) => l.startsWith(jobId))
    expect(row).toMatch(
      new RegExp(`^${jobId} unknown {6}FAILED {10}https://github.com/exa\\.\\.\\. airunner-user {8}\\d{4}-`)
    )
  })

  it("a PTY job with an exact environment succeeds; monitor replays it from a sequence", async () => {
    const out = await cli(
      [
        "submit",
        "--server",
        serverUrl,
        "--queue=cli-test",
        "--command=env",
        "--env",
        "ONLY=this;SECOND=2",
        "--metadata=queue=cli-test",
        "repo"
      ],
      env
    )
    expect(out.code).toBe(0)
    expect(out.stdout).toContain("ONLY=this")
    expect(out.stdout).toContain("SECOND=2")
    // Nothing inherited from the worker (exec-process itself adds a minimal PATH, and TERM in a PTY).
    expect(out.stdout).not.toContain("AIRUNNER_TOKEN=")
    expect(out.stdout).not.toContain("HOME=")
    expect(out.stdout).toMatch(/✅ SUCCESS Process ended \(PID: \d+, Exit Code: 0, Duration: /)
    const jobId = out.stdout.split("\n")[1]!.split(": ")[1]!
    const monitored = await cli(["monitor", "--server", serverUrl, "--from-sequence", "2", jobId], env)
    expect(monitored.code).toBe(0)
    expect(monitored.stdout.startsWith(`Monitoring job ${jobId} on server ${serverUrl}\n`)).toBe(true)
    expect(monitored.stdout).not.toContain("Process started")
    expect(monitored.stdout).toContain("ONLY=this")
    expect(monitored.stdout).toMatch(/Monitoring finished\n$/)
    const listed = await cli(["list", "--server", serverUrl, "--queue", "cli-test", "--state", "completed"], env)
    expect(listed.stdout).toMatch(new RegExp(`${jobId} cli-test {5}COMPLETED`))
  })

  it("a command that cannot start gives PROCESS_ERROR and a FAILED job", async () => {
    const out = await cli(
      [
        "submit",
        "--server",
        serverUrl,
        "--queue",
        "cli-test",
        "--command",
        "no-such-command-xyz",
        "--timeout",
        "4s",
        "r"
      ],
      env
    )
    expect(out.stdout).toMatch(
      /❌ ERROR: failed to start process no-such-command-xyz: exec: "no-such-command-xyz": executable file not found in \$PATH\n/
    )
    // No PROCESS_END: the follow ends by the client timeout, as the original.
    expect(out.code).toBe(1)
    expect(out.stderr).toContain("airunner-cli: error: failed to monitor job: stream error: deadline_exceeded")
    const jobId = out.stdout.split("\n")[1]!.split(": ")[1]!
    const listed = await cli(["list", "--server", serverUrl, "--state", "failed", "--page-size", "100"], env)
    expect(listed.stdout).toContain(jobId)
  })

  it("client errors: missing command, bad config, no token", async () => {
    const noCommand = await cli(["submit", "--server", serverUrl, "r"], env)
    expect([noCommand.code, noCommand.stderr]).toEqual([
      1,
      "airunner-cli: error: command is required (use --command flag or --config file)\n"
    ])
    const badConfig = await cli(["submit", "--server", serverUrl, "--config", join(dir, "missing.yaml"), "r"], env)
    expect(badConfig.code).toBe(1)
    expect(badConfig.stderr).toMatch(/^airunner-cli: error: failed to load config file: failed to read config file: /)
    const noToken = await cli(["list", "--server", serverUrl], { SSL_CERT_FILE: env.SSL_CERT_FILE })
    expect([noToken.code, noToken.stderr]).toEqual([
      1,
      "airunner-cli: error: failed to list jobs: unauthenticated: missing bearer token\n"
    ])
    const yamlFile = join(dir, "job.yaml")
    writeFileSync(yamlFile, "command: env\nprocessType: pipe\nenvironment:\n  FROM_CONFIG: b\n")
    const fromConfig = await cli(
      ["submit", "--server", serverUrl, "--queue", "cli-test", "--config", yamlFile, "r"],
      env
    )
    expect(fromConfig.code).toBe(0)
    expect(fromConfig.stdout).toContain("FROM_CONFIG=b\n")
    // The file's environment replaces the defaults (the flag map was never given).
    expect(fromConfig.stdout).not.toContain("BUILD_TYPE=")
  })

  it("list --watch prints the list and refreshes; a bad JSON config fails to parse", async () => {
    const child = spawn(process.execPath, ["--conditions=source", bin, "list", "--server", serverUrl, "--watch"], {
      env: { ...baseEnv(), ...env },
      stdio: ["ignore", "pipe", "ignore"]
    })
    let stdout = ""
    child.stdout?.on("data", (c: Buffer) => {
      stdout += c.toString()
    })
    for (let i = 0; i < 200 && !stdout.includes("Jobs (updated at "); i++) await new Promise((r) => setTimeout(r, 100))
    child.kill("SIGKILL")
    expect(stdout.startsWith("Watching jobs (press Ctrl+C to stop)...\n\nJobs (queue: all, state: all, page: 1/")).toBe(
      true
    )
    expect(stdout).toContain("\x1b[2J\x1b[HJobs (updated at ")
    expect(stdout).toMatch(/Jobs \(updated at \d\d:\d\d:\d\d\)\n\nJobs \(queue: all/)
    const jsonFile = join(dir, "job.JSON")
    writeFileSync(jsonFile, "{ not json")
    const bad = await cli(["submit", "--server", serverUrl, "--config", jsonFile, "r"], env)
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/^airunner-cli: error: failed to load config file: failed to parse JSON config: /)
  })

  it("monitor cancels its stream on SIGINT and fails as the original", async () => {
    const submitted = await cli(
      ["submit", "--server", serverUrl, "--queue", "nobody-works-here", "--command", "true", "--monitor=false", "r"],
      env
    )
    const jobId = submitted.stdout.split("\n")[1]!.split(": ")[1]!
    const child = spawn(process.execPath, ["--conditions=source", bin, "monitor", "--server", serverUrl, jobId], {
      env: { ...baseEnv(), ...env },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout?.on("data", (c: Buffer) => {
      stdout += c.toString()
    })
    child.stderr?.on("data", (c: Buffer) => {
      stderr += c.toString()
    })
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
    for (let i = 0; i < 200 && !stdout.includes("=".repeat(50)); i++) await new Promise((r) => setTimeout(r, 100))
    child.kill("SIGINT")
    expect(await exited).toBe(1)
    expect(stdout).toContain("Received interrupt signal, shutting down...\n")
    expect(stderr).toBe("airunner-cli: error: failed to monitor job: stream error: canceled: context canceled\n")
  })

  it("the worker polled with --debug", () => {
    expect(workerLog).toContain("Looking for jobs...")
  })
})

describe("rpc-server start", () => {
  it("refuses to start without a key unless --no-auth", async () => {
    const p = await freePort()
    const refused = await cli(["rpc-server", "--listen", `127.0.0.1:${p}`], {}, 20_000)
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain(
      "airunner-server: error: failed to initialize JWT auth: JWT public key not provided\n"
    )
    const badKey = await cli(["rpc-server", "--listen", `127.0.0.1:${p}`, "--jwt-public-key", "garbage"], {}, 20_000)
    expect(badKey.code).toBe(1)

    const open = spawn(
      process.execPath,
      ["--conditions=source", bin, "rpc-server", "--listen", `127.0.0.1:${p}`, "--no-auth"],
      {
        env: baseEnv(),
        stdio: ["ignore", "ignore", "pipe"]
      }
    )
    let log = ""
    open.stderr?.on("data", (c: Buffer) => {
      log += c.toString()
    })
    try {
      const cert = await waitForCert(p)
      const x509 = new X509Certificate(cert)
      expect(x509.subject).toBe("CN=localhost")
      expect(x509.subjectAltName).toBe("IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1")
      expect(x509.serialNumber).toBe("01")
      writeFileSync(join(dir, "open-ca.pem"), cert)
      const listed = await cli(["list", "--server", `https://127.0.0.1:${p}`], {
        SSL_CERT_FILE: join(dir, "open-ca.pem")
      })
      expect([listed.code, listed.stdout]).toEqual([0, "Jobs (queue: all, state: all, page: 1/1):\nNo jobs found.\n"])
      expect(log).toContain('"message":"JWT authentication disabled"')
      expect(log).toContain('"message":"generated self-signed certificate"')
    } finally {
      open.kill("SIGKILL")
    }
  }, 60_000)
})
