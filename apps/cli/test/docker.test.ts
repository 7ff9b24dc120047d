import { execFileSync } from "node:child_process"
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { requireService } from "@runlane/testkit"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runCli } from "./runCli.ts"

const IMAGE = "runlane-test/busybox:1"

const engine = await requireService(
  "Docker Engine with runlane-test images (scripts/setup.d/10-docker.sh)",
  async () => {
    try {
      execFileSync("docker", ["image", "inspect", IMAGE], { stdio: "ignore", timeout: 10_000 })
      return true
    } catch {
      return false
    }
  }
)

const runlane = (args: ReadonlyArray<string>, cwd: string, env: Record<string, string> = {}) =>
  runCli(args, { cwd, env })

let work: string
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "runlane-cli-docker-"))
  chmodSync(work, 0o777)
  writeFileSync(join(work, "input.txt"), "from the host\n")
})
afterAll(() => rmSync(work, { recursive: true, force: true }))

describe.skipIf(!engine)("runlane run --executor docker", () => {
  it("runs the command in a container with the current directory at /job, network none", async () => {
    const r = await runlane(
      [
        "run",
        "--executor",
        "docker",
        "--image",
        IMAGE,
        "--",
        "sh",
        "-c",
        "pwd; cat input.txt; ls /sys/class/net; echo made > out.txt; exit 3"
      ],
      work
    )
    expect(r.stdout).toBe("/job\nfrom the host\nlo\n")
    expect(r.code).toBe(3)
    expect(readFileSync(join(work, "out.txt"), "utf8")).toBe("made\n")
  })

  it("--memory, --cpus and --network host reach the container", async () => {
    const script = [
      "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
      "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us",
      "ls /sys/class/net | wc -l"
    ].join("; ")
    const r = await runlane(
      ["run", "--executor", "docker", "--image", IMAGE, "--memory", "64m", "--cpus", "0.5", "--network", "host"].concat(
        ["--", "sh", "-c", script]
      ),
      work
    )
    expect(r.code).toBe(0)
    const [memory, cpu, interfaces] = r.stdout.trim().split("\n")
    expect(Number(memory)).toBe(64 * 1024 * 1024)
    expect(cpu?.split(" ")[0]).toBe("50000")
    expect(Number(interfaces)).toBeGreaterThan(1)
  })

  it("--secret values reach the container and are masked", async () => {
    const secret = "cli-docker-secret-value-123"
    const r = await runlane(
      ["run", "--executor", "docker", "--image", IMAGE, "--secret", "TOKEN", "--", "sh", "-c", 'echo "t=$TOKEN"'],
      work,
      { TOKEN: secret }
    )
    expect(r.code).toBe(0)
    expect(r.stdout).toBe("t=***\n")
    expect(r.stdout + r.stderr).not.toContain(secret)
  })

  it("bad flags are usage errors (exit 2)", async () => {
    for (const args of [
      ["--", "true"],
      ["--image", IMAGE, "--network", "bridge", "--", "true"],
      ["--image", IMAGE, "--sandbox-backend", "guest", "--", "true"]
    ]) {
      const r = await runlane(["run", "--executor", "docker", ...args], work)
      expect(r.code).toBe(2)
    }
  })
})
