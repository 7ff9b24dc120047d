/**
 * The runlane demo (`pnpm start`): five jobs through the Runner with the in-process queue and
 * the local process executor. One prints a registered secret (masked), one fails once and
 * succeeds on retry, one times out, one fails for good. Live output, then a table of outcomes.
 */

import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { NodeRuntime } from "@effect/platform-node"
import {
  EventLog,
  type ExecPayload,
  execHandler,
  JobQueue,
  JobStore,
  MemoryEventLog,
  MemoryJobStore,
  MemoryLimiter,
  Runner
} from "@runlane/core"
import { ProcessExecutor } from "@runlane/exec-process"
import { MemoryQueue } from "@runlane/queue-memory"
import { Effect, Fiber, Layer, Redacted, Stream } from "effect"

const DEMO_TOKEN = "demo-token-3f9a2c71d4e8"

interface DemoJob {
  readonly name: string
  readonly payload: ExecPayload
  readonly timeoutMs?: number
  readonly maxAttempts?: number
}

const scratch = mkdtempSync(join(tmpdir(), "runlane-demo-"))
const sh = (script: string): ExecPayload => ({
  argv: ["sh", "-c", script],
  env: { PATH: process.env.PATH ?? "/usr/bin:/bin" }
})

const jobs: ReadonlyArray<DemoJob> = [
  { name: "hello", payload: sh('echo "hello from $(uname -s), pid $$"; sleep 0.2; echo "done"') },
  {
    name: "secret",
    payload: {
      ...sh('echo "calling the API with token $API_TOKEN"; echo "Authorization: Bearer $API_TOKEN" >&2'),
      secretNames: ["API_TOKEN"]
    }
  },
  {
    name: "flaky",
    payload: sh(
      `if [ -f ${scratch}/flaky ]; then echo "second try works"; else touch ${scratch}/flaky; echo "first try fails" >&2; exit 1; fi`
    ),
    maxAttempts: 3
  },
  { name: "slow", payload: sh('echo "sleeping for 30s"; sleep 30'), timeoutMs: 1500, maxAttempts: 1 },
  { name: "broken", payload: sh('echo "no such thing" >&2; exit 2'), maxAttempts: 2 }
]

const pad = (text: string, width: number) => text.padEnd(width)

const program = Effect.gen(function* () {
  const queue = yield* JobQueue
  const store = yield* JobStore
  const eventLog = yield* EventLog
  const names = new Map<string, string>()
  for (const job of jobs) {
    const { jobId } = yield* queue.enqueue({
      queue: "demo",
      payload: job.payload,
      maxAttempts: job.maxAttempts ?? 3,
      ...(job.timeoutMs === undefined ? {} : { timeoutMs: job.timeoutMs })
    })
    names.set(jobId, job.name)
  }
  const followers = yield* Effect.forEach(
    [...names],
    ([jobId, name]) =>
      eventLog.follow(jobId).pipe(
        Stream.runForEach((event) =>
          Effect.sync(() => {
            const tag = `[${pad(name, 6)}]`
            if (event._tag === "output") {
              for (const line of event.data.split("\n").filter((l) => l.length > 0)) {
                process.stdout.write(`${tag} ${event.stream === "stderr" ? "! " : ""}${line}\n`)
              }
            } else if (event._tag === "started") {
              process.stdout.write(`${tag} -- attempt ${event.attempt} started\n`)
            } else if (event._tag === "status-changed" && event.from === "running") {
              process.stdout.write(`${tag} -- ${event.to}\n`)
            }
          })
        ),
        Effect.forkChild
      ),
    { discard: false }
  )
  yield* Runner.run(
    { queue: "demo", concurrency: 3, pollWaitMs: 100, stopWhenIdle: true, backoff: { baseMs: 300, jitter: false } },
    execHandler({ secrets: { API_TOKEN: Redacted.make(DEMO_TOKEN) } })
  )
  yield* Effect.forEach(followers, (f) => Fiber.await(f), { discard: true })

  const rows = yield* Effect.forEach([...names], ([jobId, name]) =>
    store.get(jobId).pipe(Effect.map((record) => ({ name, record })))
  )
  process.stdout.write(`\n${pad("job", 8)}${pad("status", 11)}${pad("attempts", 10)}${pad("exit", 6)}error\n`)
  for (const { name, record } of rows) {
    const exit = record.exitCode === undefined || record.exitCode === null ? "-" : String(record.exitCode)
    process.stdout.write(
      `${pad(name, 8)}${pad(record.status, 11)}${pad(String(record.attempts), 10)}${pad(exit, 6)}${record.status === "succeeded" ? "" : (record.error ?? "")}\n`
    )
  }
  process.stdout.write(`\nThe "secret" job printed its token; the log shows *** instead of it.\n`)
})

const layer = Layer.mergeAll(
  MemoryQueue.layer(),
  MemoryJobStore.layer(),
  MemoryEventLog.layer(),
  MemoryLimiter.layer(),
  ProcessExecutor.layer()
)

NodeRuntime.runMain(
  program.pipe(
    Effect.provide(layer),
    Effect.ensuring(Effect.sync(() => rmSync(scratch, { recursive: true, force: true })))
  )
)
