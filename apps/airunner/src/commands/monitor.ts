import { timestampMs } from "@bufbuild/protobuf/wkt"
import { Code, ConnectError } from "@connectrpc/connect"
import {
  type AirunnerClients,
  createAirunnerClients,
  EventType,
  EventTypeSchema,
  type JobEvent
} from "@runlane/rpc-connect"
import { Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import { CommandFailed, connectErrorText, UsageError } from "../errors.ts"
import { formatGoDuration, parseGoDuration } from "../goDuration.ts"
import { parseSlice, serverFlag, tokenFlag } from "./common.ts"

const pad = (n: number) => String(n).padStart(2, "0")
const clock = (event: JobEvent): string => {
  const d = new Date(event.timestamp === undefined ? 0 : timestampMs(event.timestamp))
  return `[${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}]`
}
const nanos = (d: { seconds: bigint; nanos: number } | undefined): bigint =>
  d === undefined ? 0n : d.seconds * 1_000_000_000n + BigInt(d.nanos)

/** Prints one event as the original's monitor; true when it was PROCESS_END (monitoring stops). */
export const printEvent = (event: JobEvent, write: (text: string | Uint8Array) => void): boolean => {
  const data = event.eventData
  switch (event.eventType) {
    case EventType.PROCESS_START:
      if (data.case === "processStart") write(`${clock(event)} 🚀 Process started (PID: ${data.value.pid})\n`)
      return false
    case EventType.OUTPUT:
      if (data.case === "output") write(data.value.output)
      return false
    case EventType.PROCESS_END:
      if (data.case !== "processEnd") return false
      write(
        `${clock(event)} ${data.value.exitCode === 0 ? "✅ SUCCESS" : "❌ FAILED"} Process ended (PID: ${data.value.pid}, Exit Code: ${data.value.exitCode}, Duration: ${formatGoDuration(nanos(data.value.runDuration))})\n`
      )
      return true
    case EventType.PROCESS_ERROR:
      if (data.case === "processError") write(`${clock(event)} ❌ ERROR: ${data.value.errorMessage}\n`)
      return false
    case EventType.HEARTBEAT:
      if (data.case === "heartbeat")
        write(
          `${clock(event)} ${data.value.processAlive ? "💓" : "💀"} Heartbeat (Elapsed: ${formatGoDuration(nanos(data.value.elapsedTime))})\n`
        )
      return false
    case EventType.TERMINAL_RESIZE:
      if (data.case === "terminalResize")
        write(
          `${clock(event)} 📺 Terminal resized to ${data.value.cols}x${data.value.rows} (${data.value.widthPixels}x${data.value.heightPixels} pixels)\n`
        )
      return false
    default:
      write(
        `${clock(event)} ❓ Unknown event type: ${EventTypeSchema.values.find((v) => v.number === event.eventType)?.name ?? event.eventType} (Sequence: ${event.sequence})\n`
      )
      return false
  }
}

const write = (text: string | Uint8Array) => process.stdout.write(text)

/** Follows a job's events until PROCESS_END (or an error, or SIGINT/SIGTERM). */
export const followJob = (
  clients: AirunnerClients,
  request: { jobId: string; fromSequence: bigint; fromTimestamp: bigint; eventFilter: Array<EventType> },
  timeoutMs: number,
  handleSignals = true
) =>
  Effect.tryPromise({
    try: async () => {
      // `monitor` (not `submit`) cancels its stream on SIGINT/SIGTERM; the cancelled stream then
      // fails as in the original (`stream error: canceled: context canceled`).
      const controller = new AbortController()
      const onSignal = () => {
        write("Received interrupt signal, shutting down...\n")
        controller.abort()
      }
      if (handleSignals) {
        process.once("SIGINT", onSignal)
        process.once("SIGTERM", onSignal)
      }
      write(`Streaming events for job ${request.jobId}:\n`)
      write(`${"=".repeat(50)}\n`)
      try {
        for await (const message of clients.events.streamJobEvents(request, { timeoutMs, signal: controller.signal })) {
          if (message.event !== undefined && printEvent(message.event, write)) break
        }
      } catch (error) {
        if (controller.signal.aborted) throw new ConnectError("context canceled", Code.Canceled)
        throw error
      } finally {
        process.off("SIGINT", onSignal)
        process.off("SIGTERM", onSignal)
      }
      write("Monitoring finished\n")
    },
    catch: (error) => new CommandFailed({ message: `failed to monitor job: stream error: ${connectErrorText(error)}` })
  })

export const monitorCommand = Command.make(
  "monitor",
  {
    server: serverFlag,
    token: tokenFlag,
    fromSequence: Flag.Int("from-sequence").pipe(
      Flag.withDescription("Start from sequence number."),
      Flag.withDefault(0)
    ),
    fromTimestamp: Flag.Int("from-timestamp").pipe(
      Flag.withDescription("Start from timestamp (Unix milliseconds)."),
      Flag.withDefault(0)
    ),
    eventFilter: Flag.String("event-filter").pipe(
      Flag.withDescription("Filter by event types (EventType numbers, comma separated)."),
      Flag.atLeast(0)
    ),
    timeout: Flag.String("timeout").pipe(Flag.withDescription("Timeout for the monitor."), Flag.withDefault("5m")),
    jobId: Argument.String("job-id").pipe(Argument.withDescription("Job ID to monitor."))
  },
  (flags) =>
    Effect.gen(function* () {
      const timeoutMs = parseGoDuration(flags.timeout)
      if (timeoutMs === undefined)
        return yield* new UsageError({ message: `--timeout: invalid duration "${flags.timeout}"` })
      const eventFilter: Array<EventType> = []
      for (const item of parseSlice(flags.eventFilter)) {
        const n = Number(item)
        if (!Number.isInteger(n)) return yield* new UsageError({ message: `--event-filter: invalid value "${item}"` })
        eventFilter.push(n as EventType)
      }
      const clients = yield* Effect.acquireRelease(
        Effect.sync(() => createAirunnerClients({ baseUrl: flags.server, token: flags.token })),
        (c) => Effect.sync(() => c.close())
      )
      yield* Effect.sync(() => write(`Monitoring job ${flags.jobId} on server ${flags.server}\n`))
      yield* followJob(
        clients,
        {
          jobId: flags.jobId,
          fromSequence: BigInt(flags.fromSequence),
          fromTimestamp: BigInt(flags.fromTimestamp),
          eventFilter
        },
        timeoutMs
      )
    })
).pipe(Command.withDescription("Monitor job events."))
