import { readdirSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeOrigin, makeSandbox, type OriginRepo } from "../../../packages/vcs-git/test/support/fixtures.ts"
import { type GitHttpServer, startGitHttpServer } from "../../../packages/vcs-git/test/support/GitHttpServer.ts"
import { runCli } from "./runCli.ts"

const TOKEN = "rl-cli-token-9a8b7c6d5e4f3a2b"

const sb = makeSandbox("cli")
const tempDir = sb.path("jobs")
let origin: OriginRepo
let jobCode: string
let server: GitHttpServer

const runlane = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  runCli(args, { env: { TEMP_DIR: tempDir, ...env } })

beforeAll(async () => {
  origin = makeOrigin(sb, sb.path("srv"))
  const work = sb.path(".seed-ci")
  sb.git(sb.root, "init", "-q", "-b", "main", work)
  sb.write(join(work, "run.sh"), 'echo "job code sees: $(cat "$RUNLANE_SOURCE_DIR/README.md") key=$API_KEY"\n')
  sb.git(work, "add", "-A")
  sb.git(work, "commit", "-q", "-m", "ci")
  jobCode = sb.path("srv", "ci.git")
  sb.git(sb.root, "clone", "-q", "--bare", work, jobCode)
  server = await startGitHttpServer({ root: sb.path("srv"), username: "oauth2", token: TOKEN, home: sb.path(".home") })
})
afterAll(async () => {
  await server?.close()
  sb.cleanup()
})

describe("runlane run --repo", () => {
  it("runs the command inside a checkout of --repo at --ref and removes the workspace", async () => {
    const r = await runlane([
      "run",
      "--repo",
      origin.bare,
      "--ref",
      "feature",
      "--",
      "sh",
      "-c",
      "cat feature.txt; pwd"
    ])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain("feature\n")
    expect(r.stdout).toContain(`${tempDir}/`)
    expect(r.stderr).toContain(`runlane: Cloning ${origin.bare}...`)
    expect(readdirSync(tempDir)).toEqual([])
  })

  it("runs from the trusted --job-repo with the secrets, the source next to it", async () => {
    const secret = "cli-secret-value-123456"
    const r = await runlane(
      [
        "run",
        "--repo",
        origin.bare,
        "--job-repo",
        jobCode,
        "--job-ref",
        "main",
        "--secret",
        "API_KEY",
        "--",
        "sh",
        "run.sh"
      ],
      { API_KEY: secret }
    )
    expect(r.code).toBe(0)
    expect(r.stdout).toBe("job code sees: version 3 key=***\n")
    expect(r.stdout + r.stderr).not.toContain(secret)
  })

  it("--push-branch commits and pushes runlane/<job-id prefix> over authenticated HTTP", async () => {
    const r = await runlane(
      ["run", "--json", "--repo", server.url("origin.git"), "--push-branch", "--", "sh", "-c", "echo cli > cli.txt"],
      { RUNLANE_GIT_TOKEN: TOKEN }
    )
    expect(r.code).toBe(0)
    expect(r.stdout + r.stderr).not.toContain(TOKEN)
    const events = r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { _tag: string; kind?: string; message?: string })
    const pushed = events.find((e) => e._tag === "note" && e.message?.startsWith("pushed branch "))
    const branch = /pushed branch (\S+) at ([0-9a-f]+)/.exec(pushed?.message ?? "")
    expect(branch?.[1]).toMatch(/^runlane\/[a-z0-9]{8}$/)
    expect(sb.git(origin.bare, "rev-parse", `refs/heads/${branch?.[1]}`)).toBe(branch?.[2])
    expect(sb.git(origin.bare, "show", `${branch?.[2]}:cli.txt`)).toBe("cli")
  })

  it("a wrong token fails without showing it", async () => {
    const wrong = "rl-cli-wrong-token-000111222"
    const r = await runlane(["run", "--repo", server.url("origin.git"), "--", "true"], { RUNLANE_GIT_TOKEN: wrong })
    expect(r.code).not.toBe(0)
    expect(r.stderr).toContain("VcsAuthError")
    expect(r.stdout + r.stderr).not.toContain(wrong)
  })

  it.each([
    [["run", "--push-branch", "--", "true"], /--push-branch needs --repo/],
    [["run", "--ref", "main", "--", "true"], /--ref needs --repo/],
    [["run", "--repo", ".", "--job-ref", "main", "--", "true"], /--job-ref needs --job-repo/]
  ])("bad flags %j exit 2", async (args, message) => {
    const r = await runlane(args)
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(message)
  })
})
