import { timestampMs } from "@bufbuild/protobuf/wkt"
import {
  type AirunnerClients,
  createAirunnerClients,
  type Job,
  JobState,
  JobStateSchema,
  type ListJobsResponse
} from "@runlane/rpc-connect"
import { Effect } from "effect"
import { Command, Flag } from "effect/cli"
import { CommandFailed, connectErrorText } from "../errors.ts"
import { serverFlag, tokenFlag } from "./common.ts"

const STATES: Record<string, JobState> = {
  scheduled: JobState.SCHEDULED,
  running: JobState.RUNNING,
  completed: JobState.COMPLETED,
  failed: JobState.FAILED,
  cancelled: JobState.CANCELLED
}

const pad2 = (n: number) => String(n).padStart(2, "0")
const byteCut = (text: string, max: number, keep: number): string =>
  Buffer.byteLength(text) > max ? `${Buffer.from(text).subarray(0, keep).toString()}...` : text
const col = (text: string, width: number) => text.padEnd(width)

const stateName = (state: JobState): string => {
  const name = JobStateSchema.values.find((v) => v.number === state)?.name
  return name === undefined || state === JobState.UNSPECIFIED ? "UNKNOWN" : name.replace(/^JOB_STATE_/, "")
}

const created = (job: Job): string => {
  if (job.createdAt === undefined) return ""
  const d = new Date(timestampMs(job.createdAt))
  return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`
}

const row = (cells: ReadonlyArray<string>) =>
  [
    col(cells[0]!, 36),
    col(cells[1]!, 12),
    col(cells[2]!, 15),
    col(cells[3]!, 25),
    col(cells[4]!, 20),
    col(cells[5]!, 20)
  ].join(" ")

/** The original's list table. */
export const renderList = (
  response: ListJobsResponse,
  options: { readonly queue: string; readonly state: string; readonly page: number }
): string => {
  const lines: Array<string> = []
  lines.push(
    `Jobs (queue: ${options.queue === "" ? "all" : options.queue}, state: ${options.state === "" ? "all" : options.state}, page: ${options.page}/${response.lastPage}):`
  )
  if (response.jobs.length === 0) {
    lines.push("No jobs found.")
    return `${lines.join("\n")}\n`
  }
  lines.push(row(["Job ID", "Queue", "State", "Repository", "Owner", "Created At"]))
  lines.push("─".repeat(130))
  for (const job of response.jobs) {
    const params = job.jobParams
    lines.push(
      row([
        job.jobId,
        params?.metadata.queue ?? "unknown",
        stateName(job.state),
        byteCut(params?.repository ?? "", 25, 22),
        byteCut(params?.owner ?? "", 20, 17),
        created(job)
      ])
    )
  }
  lines.push("")
  lines.push(`Total jobs on this page: ${response.jobs.length}`)
  if (response.lastPage > 1) {
    lines.push(`Pages: ${options.page}/${response.lastPage}`)
    if (options.page < response.lastPage) lines.push(`Use --page=${options.page + 1} to see next page`)
  }
  return `${lines.join("\n")}\n`
}

const fetchPage = async (
  clients: AirunnerClients,
  flags: { queue: string; state: string; page: number; pageSize: number }
) =>
  clients.jobs.listJobs(
    {
      queue: flags.queue,
      state: STATES[flags.state.toLowerCase()] ?? JobState.UNSPECIFIED,
      page: flags.page,
      pageSize: flags.pageSize
    },
    { timeoutMs: 30_000 }
  )

export const listCommand = Command.make(
  "list",
  {
    server: serverFlag,
    token: tokenFlag,
    queue: Flag.String("queue").pipe(Flag.withDescription("Queue name (empty for all)."), Flag.withDefault("")),
    state: Flag.String("state").pipe(
      Flag.withDescription("Job state (scheduled, running, completed, failed, cancelled)."),
      Flag.withDefault("")
    ),
    page: Flag.Int("page").pipe(Flag.withDescription("Page number."), Flag.withDefault(1)),
    pageSize: Flag.Int("page-size").pipe(Flag.withDescription("Page size."), Flag.withDefault(20)),
    watch: Flag.Boolean("watch").pipe(Flag.withDescription("Watch for changes."), Flag.withDefault(false))
  },
  (flags) =>
    Effect.gen(function* () {
      const clients = yield* Effect.acquireRelease(
        Effect.sync(() => createAirunnerClients({ baseUrl: flags.server, token: flags.token })),
        (c) => Effect.sync(() => c.close())
      )
      const once = Effect.tryPromise({
        try: () => fetchPage(clients, flags),
        catch: (error) => new CommandFailed({ message: `failed to list jobs: ${connectErrorText(error)}` })
      })
      if (!flags.watch) {
        const response = yield* once
        yield* Effect.sync(() => process.stdout.write(renderList(response, flags)))
        return
      }
      yield* Effect.sync(() => process.stdout.write("Watching jobs (press Ctrl+C to stop)...\n\n"))
      const first = yield* once
      yield* Effect.sync(() => process.stdout.write(renderList(first, flags)))
      for (;;) {
        yield* Effect.sleep(5000)
        const result = yield* Effect.result(once)
        yield* Effect.sync(() => {
          const now = new Date()
          process.stdout.write(
            `\x1b[2J\x1b[HJobs (updated at ${pad2(now.getHours())}:${pad2(now.getMinutes())}:${pad2(now.getSeconds())})\n\n`
          )
          if (result._tag === "Success") process.stdout.write(renderList(result.success, flags))
          else process.stdout.write(`Error updating job list: ${result.failure.message}\n`)
        })
      }
    })
).pipe(Command.withDescription("List jobs."))
