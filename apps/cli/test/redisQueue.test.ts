import { spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { requireService, tcpReachable } from "@runlane/testkit"
import { Redis } from "ioredis"
import { afterAll, describe, expect, it } from "vitest"

const bin = fileURLToPath(new URL("../src/bin.ts", import.meta.url))
const available = await requireService("Redis (127.0.0.1:6379)", () => tcpReachable(6379))
const prefix = `rltest:cli:${process.pid}:${Date.now().toString(36)}:`
const dir = mkdtempSync(join(tmpdir(), "rl-cli-redis-"))

const start = (args: ReadonlyArray<string>, env: Record<string, string> = {}, timeoutMs = 45_000) => {
  const child = spawn(process.execPath, ["--conditions=source", bin, ...args], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    let stdout = ""
    let stderr = ""
    const timer = setTimeout(() => child.kill("SIGINT"), timeoutMs)
    child.stdout.on("data", (d) => (stdout += d))
    child.stderr.on("data", (d) => (stderr += d))
    child.on("error", reject)
    child.on("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
  return { child, done }
}
const runlane = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => start(args, env).done

const lines = (text: string) =>
  text
    .trim()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>)

afterAll(async () => {
  rmSync(dir, { recursive: true, force: true })
  if (!available) return
  const raw = new Redis()
  let cursor = "0"
  do {
    const [next, keys] = await raw.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000)
    cursor = next
    if (keys.length > 0) await raw.unlink(...keys)
  } while (cursor !== "0")
  raw.disconnect()
})

describe.skipIf(!available)("runlane worker|enqueue|stats|peek|recover|logs|status on Redis", () => {
  for (const backend of ["redis-streams", "redis-list"] as const) {
    it(`${backend}: enqueue (idempotent), a worker runs it, status, logs and stats report it`, async () => {
      const queue = `cli-${backend}`
      const common = ["--queue", queue, "--backend", backend, "--prefix", prefix]
      const first = await runlane([
        "enqueue",
        ...common,
        "--request-id",
        "r1",
        "--",
        "sh",
        "-c",
        "echo hello from $0",
        "job"
      ])
      expect(first.code, first.stderr).toBe(0)
      const [created] = lines(first.stdout) as Array<{ jobId: string; duplicate: boolean }>
      expect(created!.duplicate).toBe(false)
      const again = await runlane(["enqueue", ...common, "--request-id", "r1", "--", "echo", "other"])
      expect(lines(again.stdout)).toEqual([{ jobId: created!.jobId, duplicate: true }])
      const peek = await runlane(["peek", ...common, "--state", "ready"])
      expect(peek.code, peek.stderr).toBe(0)
      expect(
        lines(peek.stdout).map((e) => (e.job as { id: string }).id),
        `${peek.stdout}\n${peek.stderr}`
      ).toEqual([created!.jobId])

      // The worker runs until interrupted (SIGINT: a graceful stop) once the job has finished.
      const worker = start(["worker", ...common, "--concurrency", "2"])
      const follow = await runlane(["logs", created!.jobId, "--follow", "--prefix", prefix])
      worker.child.kill("SIGINT")
      await worker.done
      expect(follow.code, follow.stderr).toBe(0)
      expect(follow.stdout).toBe("hello from job\n")
      expect(follow.stderr).toContain("finished")

      const status = await runlane(["status", created!.jobId, "--prefix", prefix])
      expect(JSON.parse(status.stdout)).toMatchObject({
        id: created!.jobId,
        status: "succeeded",
        attempts: 1,
        exitCode: 0
      })
      const logs = await runlane(["logs", created!.jobId, "--json", "--from-seq", "2", "--prefix", prefix])
      const events = lines(logs.stdout)
      expect(events[0]!.seq).toBe(2)
      expect(events.map((e) => e._tag)).toContain("output")
      expect(events.at(-1)).toMatchObject({ _tag: "finished", status: "succeeded" })
      const stats = await runlane(["stats", ...common, "--json"])
      expect(JSON.parse(stats.stdout)).toMatchObject({
        queue,
        queued: 0,
        running: 0,
        succeeded: 1,
        failed: 0,
        dead: 0,
        ready: 0,
        inflight: 0,
        deadLetters: 0
      })
      const recover = await runlane(["recover", ...common])
      expect(JSON.parse(recover.stdout)).toEqual({ recovered: 0 })
    }, 60_000)
  }

  it("--from-file: a bad line is reported with its number and nothing from the file is enqueued", async () => {
    const common = ["--queue", "cli-file", "--prefix", prefix]
    const bad = join(dir, "bad.ndjson")
    writeFileSync(
      bad,
      `${JSON.stringify({ argv: ["true"] })}\n${JSON.stringify({ argv: ["true"], key: "u1" })}\n{"argv": "true"}\n`
    )
    const refused = await runlane(["enqueue", ...common, "--from-file", bad])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain("bad.ndjson:3:")
    expect(refused.stderr).toContain("nothing was enqueued")
    expect(JSON.parse((await runlane(["stats", ...common, "--json"])).stdout)).toMatchObject({ ready: 0, queued: 0 })
    const notJson = join(dir, "notjson.ndjson")
    writeFileSync(notJson, `${JSON.stringify({ argv: ["true"] })}\nnope\n`)
    const refused2 = await runlane(["enqueue", ...common, "--from-file", notJson])
    expect(refused2.code).toBe(2)
    expect(refused2.stderr).toContain("notjson.ndjson:2: not JSON")

    const good = join(dir, "good.ndjson")
    writeFileSync(
      good,
      [
        { argv: ["echo", "1"] },
        { argv: ["echo", "2"], env: { A: "b" }, key: "user-7" },
        { argv: ["echo", "3"], requestId: "once" },
        { argv: ["echo", "3 again"], requestId: "once" }
      ]
        .map((j) => JSON.stringify(j))
        .join("\n")
    )
    const ok = await runlane(["enqueue", ...common, "--from-file", good])
    expect(ok.code, ok.stderr).toBe(0)
    const results = lines(ok.stdout) as Array<{ jobId: string; duplicate: boolean }>
    expect(results.map((r) => r.duplicate)).toEqual([false, false, false, true])
    expect(results[3]!.jobId).toBe(results[2]!.jobId)
    const ready = lines((await runlane(["peek", ...common, "--limit", "10"])).stdout)
    expect(ready.map((e) => (e.job as { payload: unknown }).payload)).toEqual([
      { argv: ["echo", "1"] },
      { argv: ["echo", "2"], env: { A: "b" } },
      { argv: ["echo", "3"] }
    ])
    expect((ready[1]!.job as { key?: string }).key).toBe("user-7")
  }, 60_000)

  it("never prints the Redis URL's password", async () => {
    const secret = "hunter2-not-for-logs"
    const r = await runlane(["stats", "--queue", "q", "--prefix", prefix], {
      REDIS_URL: `redis://user:${secret}@127.0.0.1:1`
    })
    expect(r.code).toBe(1)
    expect(r.stderr.length).toBeGreaterThan(0)
    expect(r.stdout + r.stderr).not.toContain(secret)
  }, 60_000)

  it("the memory backend is refused where a second process would need to share it", async () => {
    const r = await runlane(["stats", "--queue", "q", "--backend", "memory"])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("memory backend")
  })
})
