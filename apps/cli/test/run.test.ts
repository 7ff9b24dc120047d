import { describe, expect, it } from "vitest"
import { runCli } from "./runCli.ts"

/** Runs the real CLI (Node 24 runs the TypeScript sources) and collects its output and exit code. */
const runlane = (args: ReadonlyArray<string>, env: Record<string, string> = {}) => runCli(args, { env })

describe("runlane run", () => {
  it("streams output and exits with the job's exit code", async () => {
    const r = await runlane(["run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"])
    expect(r.code).toBe(3)
    expect(r.stdout).toBe("out\n")
    expect(r.stderr).toContain("err\n")
    expect(r.stderr).toMatch(/runlane: job \S+ failed, exit code 3, [\d.]+s, attempt 1/)
  })

  it("exits 0 and prints a summary for a successful job", async () => {
    const r = await runlane(["run", "--env", "GREETING=hello", "--", "sh", "-c", 'echo "$GREETING world"'])
    expect(r.code).toBe(0)
    expect(r.stdout).toBe("hello world\n")
    expect(r.stderr).toMatch(/succeeded, exit code 0/)
  })

  it("passes --secret values to the job and masks them everywhere", async () => {
    const secret = "s3cr3t-value-for-the-cli-test"
    const r = await runlane(["run", "--json", "--secret", "MY_TOKEN", "--", "sh", "-c", 'echo "t=$MY_TOKEN"'], {
      MY_TOKEN: secret
    })
    expect(r.code).toBe(0)
    expect(r.stdout).not.toContain(secret)
    const events = r.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { _tag: string; data?: string; seq: number })
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1))
    expect(events.find((e) => e._tag === "output")?.data).toBe("t=***\n")
    expect(events.at(-1)?._tag).toBe("finished")
  })

  it("kills a job at its timeout and exits 124", async () => {
    const r = await runlane(["run", "--timeout", "500ms", "--", "sleep", "30"])
    expect(r.code).toBe(124)
    expect(r.stderr).toContain("timed_out")
  })

  it("runs the command in a TTY with --tty", async () => {
    const r = await runlane(["run", "--tty", "--", "sh", "-c", "test -t 1 && echo is-a-tty"])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain("is-a-tty")
  })

  it("retries a failing job with --retries", async () => {
    const r = await runlane(["run", "--retries", "1", "--json", "--", "sh", "-c", "exit 7"])
    expect(r.code).toBe(7)
    const starts = r.stdout.split("\n").filter((l) => l.includes('"_tag":"started"'))
    expect(starts.length).toBe(2)
  })

  it.each([
    [["run", "--bogus", "--", "true"], /Unrecognized flag: --bogus/],
    [["run"], /missing command/],
    [["run", "--timeout", "ten", "--", "true"], /malformed duration "ten"/],
    [["run", "--env", "NOEQUALS", "--", "true"], /--env expects KEY=VALUE/],
    [["run", "--secret", "RUNLANE_TEST_UNSET_VAR", "--", "true"], /RUNLANE_TEST_UNSET_VAR is not set/],
    [["run", "--executor", "nowhere", "--", "true"], /unknown executor "nowhere"/],
    [["run", "--image", "busybox", "--", "true"], /--image is not supported by --executor process/]
  ])("bad input %j prints a clear message and exits 2", async (args, message) => {
    const r = await runlane(args)
    expect(r.code).toBe(2)
    expect(r.stdout + r.stderr).toMatch(message)
  })

  it("a command that cannot be started exits 127", async () => {
    const r = await runlane(["run", "--", "/nonexistent/binary"])
    expect(r.code).toBe(127)
  })
})
