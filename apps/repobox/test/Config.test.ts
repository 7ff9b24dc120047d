import { describe, expect, it } from "vitest"
import { ConfigError, commitMessage, goAtoi, goParseBool, loadConfig } from "../src/index.ts"

const KEY = "a".repeat(64)

describe("config from the original's environment variables", () => {
  it("gives the original's defaults", () => {
    expect(loadConfig({ ENCRYPTION_KEY: KEY })).toEqual({
      redisUrl: "redis://localhost:6379",
      encryptionKey: KEY,
      runnerId: "runner-1",
      maxConcurrentJobs: 10,
      maxJobsPerUser: 3,
      jobTimeout: 3600,
      tempDir: "/tmp/repobox",
      cleanupAfterJob: true,
      aiEnabled: false,
      aiCliPath: "claude",
      anthropicApiKey: "",
      aiProvider: "claude",
      aiTimeout: 1800,
      aiMaxOutputLines: 10000,
      logLevel: "info",
      logFormat: "json",
      gitAuthorName: "Repobox Bot",
      gitAuthorEmail: "bot@repobox.cloud"
    })
  })

  it("reads every variable; empty counts as unset; unparsable values give the default", () => {
    const c = loadConfig({
      ENCRYPTION_KEY: KEY,
      REDIS_URL: "rediss://u:p@h:6380/2",
      RUNNER_ID: "r-9",
      MAX_CONCURRENT_JOBS: "+5",
      MAX_JOBS_PER_USER: " 5",
      JOB_TIMEOUT: "5s",
      TEMP_DIR: "",
      CLEANUP_AFTER_JOB: "F",
      AI_ENABLED: "yes",
      ANTHROPIC_API_KEY: "sk-x",
      AI_MAX_OUTPUT_LINES: "0"
    })
    expect(c.redisUrl).toBe("rediss://u:p@h:6380/2")
    expect(c.runnerId).toBe("r-9")
    expect(c.maxConcurrentJobs).toBe(5)
    expect(c.maxJobsPerUser).toBe(3)
    expect(c.jobTimeout).toBe(3600)
    expect(c.tempDir).toBe("/tmp/repobox")
    expect(c.cleanupAfterJob).toBe(false)
    expect(c.aiEnabled).toBe(true)
    expect(c.aiMaxOutputLines).toBe(10000)
    expect(loadConfig({ ENCRYPTION_KEY: KEY, ANTHROPIC_API_KEY: "k", AI_ENABLED: "0" }).aiEnabled).toBe(false)
  })

  it("refuses a missing or empty ENCRYPTION_KEY", () => {
    expect(() => loadConfig({})).toThrow(ConfigError)
    expect(() => loadConfig({ ENCRYPTION_KEY: "" })).toThrow("ENCRYPTION_KEY is required")
  })

  it("follows Go's Atoi and ParseBool", () => {
    expect(goAtoi("+5")).toBe(5)
    expect(goAtoi("-12")).toBe(-12)
    expect(goAtoi(" 5")).toBeUndefined()
    expect(goAtoi("5s")).toBeUndefined()
    expect(goAtoi("1.5")).toBeUndefined()
    expect(goAtoi("99999999999999999999")).toBeUndefined()
    for (const t of ["1", "t", "T", "TRUE", "true", "True"]) expect(goParseBool(t)).toBe(true)
    for (const f of ["0", "f", "F", "FALSE", "false", "False"]) expect(goParseBool(f)).toBe(false)
    for (const x of ["yes", "tRUE", " true", "2"]) expect(goParseBool(x)).toBeUndefined()
  })

  it("cuts commit messages like the original (by bytes)", () => {
    expect(commitMessage("fix it")).toBe("repobox: fix it")
    expect(commitMessage("x".repeat(50))).toBe(`repobox: ${"x".repeat(50)}`)
    expect(commitMessage("y".repeat(51))).toBe(`repobox: ${"y".repeat(47)}...`)
  })
})
