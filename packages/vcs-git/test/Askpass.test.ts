import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { GitVcs } from "@runlane/vcs-git"
import { afterAll, describe, expect, it } from "vitest"

const dir = mkdtempSync(join(tmpdir(), "runlane-vcs-git-askpass-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const script = join(dir, "askpass.sh")
writeFileSync(script, GitVcs.ASKPASS_SCRIPT, { mode: 0o700 })

const env = {
  PATH: process.env.PATH ?? "/usr/bin:/bin",
  RUNLANE_GIT_USERNAME: "oauth2",
  RUNLANE_GIT_PASSWORD: "the-token-value",
  RUNLANE_GIT_USER_PROMPT: "Username for 'https://git.example.test'",
  RUNLANE_GIT_PASS_PROMPT: "Password for 'https://oauth2@git.example.test'"
}
/** What the helper prints for a prompt, or null when it refuses (non-zero exit). */
const ask = (prompt: string): string | null => {
  try {
    return execFileSync(script, [prompt], { env, encoding: "utf8" })
  } catch {
    return null
  }
}

describe("the askpass helper", () => {
  it("answers git's prompts for the expected origin", () => {
    expect(ask("Username for 'https://git.example.test': ")).toBe("oauth2\n")
    expect(ask("Password for 'https://oauth2@git.example.test': ")).toBe("the-token-value\n")
  })

  it("answers nothing for any other host, port, scheme or user", () => {
    for (const prompt of [
      "Username for 'https://evil.test': ",
      "Password for 'https://oauth2@evil.test': ",
      "Password for 'https://oauth2@git.example.test.evil.test': ",
      "Password for 'https://oauth2@git.example.test:8443': ",
      "Password for 'http://oauth2@git.example.test': ",
      "Password for 'https://admin@git.example.test': ",
      "Enter passphrase for key '/root/.ssh/id_rsa': "
    ]) {
      expect(ask(prompt), prompt).toBeNull()
    }
  })

  it("holds no secret itself", () => {
    expect(GitVcs.ASKPASS_SCRIPT).not.toContain("the-token-value")
  })
})
