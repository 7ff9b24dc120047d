import { mkdtempSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { Workspace } from "@runlane/vcs-git"
import { Effect } from "effect"
import { afterAll } from "vitest"

const root = mkdtempSync(join(tmpdir(), "runlane-vcs-git-ws-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))
const exists = (p: string) => statSync(p, { throwIfNoEntry: false }) !== undefined

describe("Workspace", () => {
  it("safeName keeps plain ids and confines everything else to one directory name", () => {
    assert.strictEqual(Workspace.safeName("3f2c9a1b-7d4e-4f00"), "3f2c9a1b-7d4e-4f00")
    for (const bad of ["..", ".", "", "../../etc", "a/b", "/abs", "x\0y", ".hidden", "a".repeat(200)]) {
      const name = Workspace.safeName(bad)
      assert.notInclude(name, "/")
      assert.notInclude(name, "\0")
      assert.isFalse(name.startsWith("."), name)
      assert.isAtMost(name.length, 64)
    }
    // Names that clean to the same text still get different directories.
    assert.notStrictEqual(Workspace.safeName("a/b"), Workspace.safeName("a:b"))
  })

  it.effect("creates a fresh job directory and removes it with the scope", () =>
    Effect.gen(function* () {
      const ws = Workspace.make({ root, cleanup: true })
      const dir = yield* Effect.scoped(
        Effect.gen(function* () {
          const job = yield* ws.acquire("job-1")
          assert.strictEqual(job.dir, join(root, "job-1"))
          assert.isTrue(exists(job.dir))
          assert.strictEqual(yield* job.path("src", "a.txt"), join(root, "job-1", "src", "a.txt"))
          const outside = yield* job.path("..", "other").pipe(Effect.flip)
          assert.include(outside.message, "leaves the workspace")
          yield* job.path("/etc/passwd").pipe(Effect.flip)
          return job.dir
        })
      )
      assert.isFalse(exists(dir))
    })
  )

  it.effect("keeps the directory when cleanup is off and starts clean next time", () =>
    Effect.gen(function* () {
      const ws = Workspace.make({ root, cleanup: false })
      const dir = yield* Effect.scoped(
        Effect.gen(function* () {
          const job = yield* ws.acquire("job-2")
          yield* Effect.promise(async () => {
            const { writeFile } = await import("node:fs/promises")
            await writeFile(join(job.dir, "stale.txt"), "x")
          })
          return job.dir
        })
      )
      assert.isTrue(exists(join(dir, "stale.txt")))
      yield* Effect.scoped(ws.acquire("job-2"))
      assert.isTrue(exists(dir))
      assert.isFalse(exists(join(dir, "stale.txt")))
    })
  )

  it.effect("never deletes an existing directory that is not a runlane workspace", () =>
    Effect.gen(function* () {
      const ws = Workspace.make({ root, cleanup: true })
      const precious = join(root, "etc")
      yield* Effect.promise(async () => {
        const { mkdir, writeFile } = await import("node:fs/promises")
        await mkdir(precious)
        await writeFile(join(precious, "passwd"), "keep me")
      })
      const e = yield* Effect.scoped(ws.acquire("etc")).pipe(Effect.flip)
      assert.include(e.message, "not a runlane workspace")
      assert.isTrue(exists(join(precious, "passwd")))
    })
  )

  it.effect("a traversal job id stays inside the root", () =>
    Effect.gen(function* () {
      const ws = Workspace.make({ root: join(root, "inner"), cleanup: true })
      yield* Effect.scoped(
        Effect.gen(function* () {
          const job = yield* ws.acquire("../../outside")
          assert.isTrue(job.dir.startsWith(`${join(root, "inner")}/`))
        })
      )
      assert.isFalse(exists(join(root, "outside")))
    })
  )

  it("reads TEMP_DIR and CLEANUP_AFTER_JOB like the Repobox runner", () => {
    assert.deepStrictEqual(Workspace.configFromEnv({}), { cleanup: true })
    assert.deepStrictEqual(Workspace.configFromEnv({ TEMP_DIR: "/tmp/repobox", CLEANUP_AFTER_JOB: "false" }), {
      root: "/tmp/repobox",
      cleanup: false
    })
    assert.strictEqual(Workspace.configFromEnv({ CLEANUP_AFTER_JOB: "F" }).cleanup, false)
    assert.strictEqual(Workspace.configFromEnv({ CLEANUP_AFTER_JOB: "no" }).cleanup, true)
    assert.strictEqual(Workspace.configFromEnv({ TEMP_DIR: "" }).root, undefined)
    assert.strictEqual(Workspace.make({}).root, tmpdir())
  })
})
