import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { PgClient } from "@effect/sql-pg"
import { type EnqueueInput, JobQueue, type QueueStats } from "@runlane/core"
import { PostgresQueue } from "@runlane/queue-postgres"
import { inCI, requireService, tcpReachable } from "@runlane/testkit"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createDatabase, dropDatabase, PG_PORT, uniqueDatabaseName } from "./TestDatabase.ts"

const available = await requireService("PostgreSQL", () => tcpReachable(PG_PORT))
const PG_BIN = "/usr/lib/postgresql/15/bin"
const SCHEMA = "rl_proc"
const WORKER = join(import.meta.dirname, "fixtures", "worker.ts")

interface WorkerEvent {
  readonly worker: string
  readonly event: "took" | "acked" | "holding"
  readonly jobId: string
  readonly token: string
  readonly attempt: number
  readonly expiresAt: number
  readonly ok: boolean
  readonly at: number
}

interface Worker {
  readonly proc: ChildProcess
  readonly events: Array<WorkerEvent>
  readonly exited: Promise<number | null>
  readonly stderr: () => string
}

/** Every worker this file started, killed when the file ends (even when a test failed early). */
const spawned = new Set<ChildProcess>()
afterAll(() => {
  for (const proc of spawned) if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL")
})

const startWorker = (env: Record<string, string>): Worker => {
  const proc = spawn(process.execPath, ["--conditions=source", WORKER], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  spawned.add(proc)
  const events: Array<WorkerEvent> = []
  let buffered = ""
  let stderr = ""
  proc.stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString()
    const lines = buffered.split("\n")
    buffered = lines.pop() ?? ""
    for (const line of lines) if (line.trim() !== "") events.push(JSON.parse(line) as WorkerEvent)
  })
  proc.stderr?.on("data", (chunk: Buffer) => {
    stderr += chunk.toString()
  })
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)))
  return { proc, events, exited, stderr: () => stderr }
}

const waitFor = async (what: string, condition: () => boolean, timeoutMs = 60_000) => {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

const withQueue = <A>(port: number, database: string, use: (q: JobQueue["Service"]) => Effect.Effect<A, unknown>) =>
  Effect.runPromise(
    Effect.flatMap(Effect.service(JobQueue), use).pipe(
      Effect.provide(
        PostgresQueue.layer({ schema: SCHEMA }).pipe(
          Layer.provide(PgClient.layer({ host: "127.0.0.1", port, username: "postgres", database }))
        )
      )
    )
  )

const enqueue = (port: number, database: string, queue: string, inputs: ReadonlyArray<Omit<EnqueueInput, "queue">>) =>
  withQueue(port, database, (q) => q.enqueueMany(inputs.map((input) => ({ ...input, queue }))))

const stats = (port: number, database: string, queue: string): Promise<QueueStats> =>
  withQueue(port, database, (q) => q.stats(queue))

/** Per job: the deliveries in order, and the successful acks. */
const byJob = (events: ReadonlyArray<WorkerEvent>) => {
  const jobs = new Map<string, { took: Array<WorkerEvent>; ok: Array<WorkerEvent> }>()
  for (const e of events) {
    if (e.event === "holding") continue
    const entry = jobs.get(e.jobId) ?? { took: [], ok: [] }
    if (e.event === "took") entry.took.push(e)
    if (e.event === "acked" && e.ok) entry.ok.push(e)
    jobs.set(e.jobId, entry)
  }
  for (const entry of jobs.values()) entry.took.sort((a, b) => a.at - b.at)
  return jobs
}

describe.skipIf(!available)("PostgresQueue across processes", () => {
  const database = uniqueDatabaseName("proc")
  beforeAll(async () => {
    await Effect.runPromise(createDatabase(database))
  })
  afterAll(async () => {
    await Effect.runPromise(dropDatabase(database))
  })

  it("two worker processes never both hold a valid lease on one job", async () => {
    const queue = `two-${Date.now()}`
    // Every tenth job outlives its lease, so it is delivered again while its first holder still acts.
    const inputs = Array.from({ length: 120 }, (_, i) => ({ payload: i % 10 === 0 ? { holdMs: 900 } : { i } }))
    const ids = (await enqueue(PG_PORT, database, queue, inputs)).map((r) => r.jobId)
    const env = { PG_PORT: String(PG_PORT), PG_DB: database, SCHEMA, QUEUE: queue, VIS_MS: "400", HOLD_MS: "5" }
    const workers = [startWorker({ ...env, WORKER: "a" }), startWorker({ ...env, WORKER: "b" })]
    const codes = await Promise.all(workers.map((w) => w.exited))
    expect(codes, workers.map((w) => w.stderr()).join("\n")).toEqual([0, 0])
    const events = workers.flatMap((w) => w.events)
    const jobs = byJob(events)
    expect([...jobs.keys()].sort()).toEqual([...ids].sort())
    for (const [jobId, { took, ok }] of jobs) {
      // Exactly one holder acked successfully.
      expect(ok.length, jobId).toBe(1)
      // Each delivery starts after the previous lease ran out (a new token each time).
      for (let i = 1; i < took.length; i++) {
        const previous = took[i - 1] as WorkerEvent
        const next = took[i] as WorkerEvent
        expect(next.token).not.toBe(previous.token)
        expect(next.at).toBeGreaterThanOrEqual(previous.expiresAt - 5)
        expect(next.attempt).toBe(previous.attempt + 1)
      }
      // The successful ack came from the last holder.
      expect(ok[0]?.token).toBe(took[took.length - 1]?.token)
    }
    const slow = ids.filter((_, i) => i % 10 === 0)
    expect(slow.every((id) => (jobs.get(id)?.took.length ?? 0) >= 2)).toBe(true)
    expect(await stats(PG_PORT, database, queue)).toMatchObject({ ready: 0, inflight: 0, delayed: 0, dead: 0 })
  })

  it("a worker killed with SIGKILL mid-job loses nothing: its leases expire and complete elsewhere", async () => {
    const queue = `kill-${Date.now()}`
    const ids = (
      await enqueue(
        PG_PORT,
        database,
        queue,
        Array.from({ length: 40 }, (_, i) => ({ payload: { i } }))
      )
    ).map((r) => r.jobId)
    const env = { PG_PORT: String(PG_PORT), PG_DB: database, SCHEMA, QUEUE: queue }
    const victim = startWorker({ ...env, WORKER: "victim", MODE: "hang", TAKE_MAX: "15", VIS_MS: "1000" })
    await waitFor("the victim to hold 15 leases", () => victim.events.some((e) => e.event === "holding"))
    victim.proc.kill("SIGKILL")
    await victim.exited
    const held = new Set(victim.events.filter((e) => e.event === "took").map((e) => e.jobId))
    expect(held.size).toBe(15)
    const survivor = startWorker({ ...env, WORKER: "survivor", VIS_MS: "30000" })
    expect(await survivor.exited, survivor.stderr()).toBe(0)
    const jobs = byJob(survivor.events)
    expect(
      [...jobs.entries()]
        .filter(([, j]) => j.ok.length === 1)
        .map(([id]) => id)
        .sort()
    ).toEqual([...ids].sort())
    for (const id of held) expect(jobs.get(id)?.took[0]?.attempt).toBe(2)
    expect(await stats(PG_PORT, database, queue)).toMatchObject({ ready: 0, inflight: 0, delayed: 0, dead: 0 })
  })
})

const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      server.close(() => resolve(typeof address === "object" && address !== null ? address.port : 0))
    })
  })

const haveCluster = existsSync(join(PG_BIN, "initdb")) && existsSync(join(PG_BIN, "pg_ctl"))
if (!haveCluster) {
  if (inCI()) throw new Error(`${PG_BIN}/initdb is missing: in CI every suite must run`)
  console.warn(`\n*** SKIPPING the PostgreSQL restart test: ${PG_BIN}/initdb not found ***\n`)
}

describe.skipIf(!haveCluster)("PostgresQueue across a PostgreSQL restart", () => {
  let dir = ""
  let port = 0
  // initdb refuses to run as root: run the cluster as the postgres user then.
  const asOwner = (args: ReadonlyArray<string>) =>
    process.getuid?.() === 0
      ? (["runuser", ["-u", "postgres", "--", ...args]] as const)
      : ([args[0] as string, args.slice(1)] as const)
  const run = (args: ReadonlyArray<string>) => {
    const [cmd, rest] = asOwner(args)
    return execFileSync(cmd, [...rest], { stdio: "pipe", timeout: 60_000 }).toString()
  }
  const pgCtl = (action: string, ...extra: Array<string>) =>
    run([
      join(PG_BIN, "pg_ctl"),
      "-D",
      join(dir, "data"),
      "-l",
      join(dir, "log"),
      "-w",
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1`,
      action,
      ...extra
    ])

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "rl-qpg-cluster-"))
    if (process.getuid?.() === 0) execFileSync("chown", ["postgres", dir])
    port = await freePort()
    run([join(PG_BIN, "initdb"), "-D", join(dir, "data"), "-A", "trust", "-U", "postgres", "--no-sync"])
    pgCtl("start")
  }, 120_000)
  afterAll(() => {
    if (dir === "") return
    try {
      pgCtl("stop", "-m", "immediate")
    } catch {
      // already stopped
    }
    rmSync(dir, { recursive: true, force: true })
  })

  it("PostgreSQL restarted mid-run loses nothing once it is back", async () => {
    const queue = "restart"
    const ids = (
      await enqueue(
        port,
        "postgres",
        queue,
        Array.from({ length: 300 }, (_, i) => ({ payload: { i } }))
      )
    ).map((r) => r.jobId)
    const worker = startWorker({
      PG_PORT: String(port),
      PG_DB: "postgres",
      SCHEMA,
      QUEUE: queue,
      WORKER: "w",
      VIS_MS: "1500",
      HOLD_MS: "10"
    })
    await waitFor("a third of the jobs", () => worker.events.filter((e) => e.event === "acked" && e.ok).length >= 100)
    // A crash-like stop (no shutdown checkpoint), then back.
    pgCtl("restart", "-m", "immediate")
    expect(await worker.exited, worker.stderr()).toBe(0)
    const jobs = byJob(worker.events)
    const done = [...jobs.entries()].filter(([, j]) => j.ok.length >= 1).map(([id]) => id)
    expect(done.sort()).toEqual([...ids].sort())
    expect(await stats(port, "postgres", queue)).toMatchObject({ ready: 0, inflight: 0, delayed: 0, dead: 0 })
  }, 120_000)
})
