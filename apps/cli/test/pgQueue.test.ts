import { requireService, tcpReachable } from "@runlane/testkit"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runCli } from "./runCli.ts"

const available = await requireService("PostgreSQL", () => tcpReachable(5432))

const runlane = (args: ReadonlyArray<string>, env: Record<string, string>) => runCli(args, { env })

const admin = async (text: string) => {
  const client = new pg.Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "postgres" })
  await client.connect()
  try {
    await client.query(text)
  } finally {
    await client.end()
  }
}

describe.skipIf(!available)("runlane pg-queue", () => {
  const database = `rl_cli_pgq_${process.pid}_${Date.now().toString(36)}`
  const env = { RUNLANE_PG_URL: `postgres://postgres@127.0.0.1:5432/${database}` }
  beforeAll(() => admin(`CREATE DATABASE ${database}`))
  afterAll(() => admin(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`))

  it("enqueues (idempotently), reports stats, peeks and recovers", async () => {
    const first = await runlane(
      ["pg-queue", "enqueue", "--queue", "q", "--payload", '{"n":1}', "--request-id", "r1", "--priority", "3"],
      env
    )
    expect(first.code, first.stderr).toBe(0)
    const created = JSON.parse(first.stdout) as { jobId: string; duplicate: boolean }
    expect(created.duplicate).toBe(false)
    const again = await runlane(["pg-queue", "enqueue", "--queue", "q", "--request-id", "r1"], env)
    expect(JSON.parse(again.stdout)).toEqual({ jobId: created.jobId, duplicate: true })
    await runlane(["pg-queue", "enqueue", "--queue", "q", "--delay-ms", "60000"], env)
    const stats = await runlane(["pg-queue", "stats", "--queue", "q"], env)
    expect(JSON.parse(stats.stdout)).toEqual({ queue: "q", ready: 1, delayed: 1, inflight: 0, dead: 0 })
    const peek = await runlane(["pg-queue", "peek", "--queue", "q", "--state", "ready"], env)
    const entries = peek.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { job: { id: string; payload: unknown; priority: number } })
    expect(entries.map((e) => [e.job.id, e.job.payload, e.job.priority])).toEqual([[created.jobId, { n: 1 }, 3]])
    const recover = await runlane(["pg-queue", "recover", "--queue", "q"], env)
    expect(JSON.parse(recover.stdout)).toEqual({ recovered: 0 })
  })

  it("refuses a payload that is not JSON with exit code 2", async () => {
    const r = await runlane(["pg-queue", "enqueue", "--queue", "q", "--payload", "{nope"], env)
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("--payload must be JSON")
  })

  it("never prints the connection URL's password", async () => {
    const secret = "hunter2-not-for-logs"
    const r = await runlane(["pg-queue", "stats", "--queue", "q"], {
      RUNLANE_PG_URL: `postgres://postgres:${secret}@127.0.0.1:5432/rl_cli_pgq_missing_db`
    })
    expect(r.code).toBe(1)
    expect(r.stderr.length).toBeGreaterThan(0)
    expect(r.stdout + r.stderr).not.toContain(secret)
  })
})
