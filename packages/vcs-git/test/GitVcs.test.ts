import { chmodSync, readFileSync, rmSync } from "node:fs"
import { join } from "node:path"
import { assert, describe, layer } from "@effect/vitest"
import { PushRejected, Vcs, VcsAuthError, VcsError } from "@runlane/core"
import { GitVcs } from "@runlane/vcs-git"
import { Effect, Fiber, Layer, Logger, Redacted, References } from "effect"
import { afterAll, beforeAll } from "vitest"
import {
  exists,
  filesContaining,
  makeOrigin,
  makeSandbox,
  type OriginRepo,
  processesWithArg
} from "./support/fixtures.ts"
import { type GitHttpServer, startGitHttpServer } from "./support/GitHttpServer.ts"

const TOKEN = "rl-test-token-7f3a9c2e51b84d06"
const WRONG = "rl-wrong-token-0b1c2d3e4f5a6b7c"
const author = { name: "Runlane Test", email: "runlane@example.test" }

const sb = makeSandbox("vcs")
let origin: OriginRepo
let server: GitHttpServer
let evil: GitHttpServer
/** Every argv git was started with, as the adapter handed it to simple-git. */
const argvs: Array<ReadonlyArray<string>> = []
/** Every log line written while the tests ran (minimum level: all). */
const logLines: Array<string> = []

beforeAll(async () => {
  origin = makeOrigin(sb, sb.path("srv"))
  server = await startGitHttpServer({ root: sb.path("srv"), username: "oauth2", token: TOKEN, home: sb.path(".home") })
  evil = await startGitHttpServer({ root: sb.path("srv"), username: "oauth2", token: "x", home: sb.path(".home") })
})
afterAll(async () => {
  await server?.close()
  await evil?.close()
  sb.cleanup()
  // Nothing the adapter logged or ran carried the token.
  // (One test puts the token into a URL path on purpose, to see it masked in the error.)
  assert.isAbove(logLines.length, 0)
  for (const line of logLines) assert.notInclude(line.replaceAll(`${TOKEN}.git`, ""), TOKEN)
  for (const argv of argvs) assert.notInclude(argv.join(" ").replaceAll(`${TOKEN}.git`, ""), TOKEN)
})

const captureLogs = Logger.layer([Logger.map(Logger.formatJson, (line) => void logLines.push(line))])
const TestLayer = Layer.mergeAll(
  GitVcs.layer({ timeoutMs: 60_000, onCommand: (argv) => argvs.push(argv) }),
  captureLogs,
  Layer.succeed(References.MinimumLogLevel, "All")
)

const creds = (token: string) => ({ token: Redacted.make(token) })
let n = 0
const fresh = (name: string) => sb.path("work", `${name}-${++n}`)

layer(TestLayer, { excludeTestServices: true })("GitVcs", (it) => {
  describe("checkout", () => {
    it.effect("clones the default branch", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const co = yield* vcs.checkout({ url: origin.bare, into: fresh("default") })
        assert.strictEqual(co.commit, origin.commits[2])
        assert.strictEqual(co.branch, "main")
        assert.strictEqual(readFileSync(join(co.dir, "README.md"), "utf8"), "version 3\n")
      })
    )

    it.effect("checks out a branch", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const co = yield* vcs.checkout({ url: origin.bare, ref: "feature", into: fresh("branch") })
        assert.strictEqual(co.commit, origin.featureCommit)
        assert.strictEqual(co.branch, "feature")
        assert.isTrue(exists(join(co.dir, "feature.txt")))
      })
    )

    it.effect("checks out a tag (detached)", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const co = yield* vcs.checkout({ url: `file://${origin.bare}`, ref: "v1", into: fresh("tag") })
        assert.strictEqual(co.commit, origin.tagCommit)
        assert.isNull(co.branch)
        assert.isFalse(exists(join(co.dir, "file2.txt")))
      })
    )

    it.effect("checks out a full and an abbreviated commit SHA", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const full = yield* vcs.checkout({ url: origin.bare, ref: origin.commits[1]!, into: fresh("sha") })
        assert.strictEqual(full.commit, origin.commits[1])
        assert.isNull(full.branch)
        const short = yield* vcs.checkout({
          url: origin.bare,
          ref: origin.commits[0]!.slice(0, 10),
          into: fresh("sha")
        })
        assert.strictEqual(short.commit, origin.commits[0])
      })
    )

    it.effect("makes a shallow clone with depth (branch and SHA)", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const co = yield* vcs.checkout({ url: origin.bare, depth: 1, into: fresh("shallow") })
        assert.strictEqual(co.commit, origin.commits[2])
        assert.strictEqual(sb.git(co.dir, "rev-list", "--count", "HEAD"), "1")
        assert.strictEqual(sb.git(co.dir, "rev-parse", "--is-shallow-repository"), "true")
        const bySha = yield* vcs.checkout({
          url: origin.bare,
          ref: origin.commits[1]!,
          depth: 1,
          into: fresh("shallow")
        })
        assert.strictEqual(bySha.commit, origin.commits[1])
        assert.strictEqual(sb.git(bySha.dir, "rev-list", "--count", "HEAD"), "1")
      })
    )

    it.effect("fails with VcsError for a missing ref, a missing repo, a used target and bad input", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const missingRef = yield* vcs.checkout({ url: origin.bare, ref: "nope", into: fresh("x") }).pipe(Effect.flip)
        assert.instanceOf(missingRef, VcsError)
        assert.include(missingRef.message, "nope")
        const missingRepo = yield* vcs.checkout({ url: sb.path("nothing.git"), into: fresh("x") }).pipe(Effect.flip)
        assert.instanceOf(missingRepo, VcsError)
        const used = fresh("used")
        sb.write(join(used, "keep.txt"), "mine\n")
        const notEmpty = yield* vcs.checkout({ url: origin.bare, into: used }).pipe(Effect.flip)
        assert.include(notEmpty.message, "not empty")
        assert.strictEqual(readFileSync(join(used, "keep.txt"), "utf8"), "mine\n")
        const option = yield* vcs.checkout({ url: "--upload-pack=touch /tmp/x", into: fresh("x") }).pipe(Effect.flip)
        assert.instanceOf(option, VcsError)
        const badRef = yield* vcs.checkout({ url: origin.bare, ref: "--orphan", into: fresh("x") }).pipe(Effect.flip)
        assert.instanceOf(badRef, VcsError)
        const badDepth = yield* vcs.checkout({ url: origin.bare, depth: 0, into: fresh("x") }).pipe(Effect.flip)
        assert.include(badDepth.message, "depth")
        // Transports beyond file/git/http(s)/ssh are refused by git (GIT_ALLOW_PROTOCOL).
        const marker = sb.path("ext-ran")
        const ext = yield* vcs.checkout({ url: `ext::sh -c touch% ${marker}`, into: fresh("x") }).pipe(Effect.flip)
        assert.instanceOf(ext, VcsError)
        assert.isFalse(exists(marker))
        const sshToken = yield* vcs
          .checkout({ url: "ssh://git@127.0.0.1:1/repo.git", into: fresh("x"), credentials: creds(TOKEN) })
          .pipe(Effect.flip)
        assert.include(sshToken.message, "http(s)")
      })
    )
  })

  describe("branch, commit, push", () => {
    it.effect("pushes a new branch that is then visible in the bare repository", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const co = yield* vcs.checkout({ url: origin.bare, into: fresh("push") })
        yield* vcs.createBranch(co.dir, "runlane/push-1")
        sb.write(join(co.dir, "new.txt"), "new\n")
        sb.write(join(co.dir, "README.md"), "changed\n")
        const outcome = yield* vcs.commitAll(co.dir, { message: "runlane: change", author })
        assert.strictEqual(outcome._tag, "committed")
        if (outcome._tag !== "committed") return
        yield* vcs.push(co.dir, "runlane/push-1", { setUpstream: true })
        assert.strictEqual(sb.git(origin.bare, "rev-parse", "refs/heads/runlane/push-1"), outcome.commit)
        assert.strictEqual(
          sb.git(origin.bare, "log", "-1", "--format=%an <%ae> %s", outcome.commit),
          "Runlane Test <runlane@example.test> runlane: change"
        )
        const files = yield* vcs.changedFiles(co.dir, co.commit, outcome.commit)
        assert.deepStrictEqual([...files].sort(), ["README.md", "new.txt"])
        const info = yield* vcs.repoInfo(co.dir)
        assert.deepStrictEqual(info, { commit: outcome.commit, branch: "runlane/push-1", remote: origin.bare })
        assert.strictEqual(sb.git(co.dir, "config", "branch.runlane/push-1.remote"), "origin")
      })
    )

    it.effect("commitAll with nothing changed says so and makes no commit", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const co = yield* vcs.checkout({ url: origin.bare, into: fresh("nothing") })
        const outcome = yield* vcs.commitAll(co.dir, { message: "nothing", author })
        assert.deepStrictEqual(outcome, { _tag: "nothing-to-commit" })
        assert.strictEqual(sb.git(co.dir, "rev-parse", "HEAD"), co.commit)
      })
    )

    it.effect("a non-fast-forward push is PushRejected and leaves the remote branch alone", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const a = yield* vcs.checkout({ url: origin.bare, into: fresh("race-a") })
        const b = yield* vcs.checkout({ url: origin.bare, into: fresh("race-b") })
        yield* vcs.createBranch(a.dir, "race")
        yield* vcs.createBranch(b.dir, "race")
        sb.write(join(a.dir, "a.txt"), "a\n")
        sb.write(join(b.dir, "b.txt"), "b\n")
        const ca = yield* vcs.commitAll(a.dir, { message: "a", author })
        yield* vcs.commitAll(b.dir, { message: "b", author })
        yield* vcs.push(a.dir, "race", {})
        const rejected = yield* vcs.push(b.dir, "race", {}).pipe(Effect.flip)
        assert.instanceOf(rejected, PushRejected)
        assert.strictEqual(rejected.branch, "race")
        assert.strictEqual(
          sb.git(origin.bare, "rev-parse", "refs/heads/race"),
          ca._tag === "committed" ? ca.commit : ""
        )
      })
    )

    it.effect("rejects invalid branch names and author", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const co = yield* vcs.checkout({ url: origin.bare, into: fresh("names") })
        const e1 = yield* vcs.createBranch(co.dir, "bad..name").pipe(Effect.flip)
        assert.include(e1.message, "invalid branch name")
        const e2 = yield* vcs.createBranch(co.dir, "-D").pipe(Effect.flip)
        assert.instanceOf(e2, VcsError)
        sb.write(join(co.dir, "x.txt"), "x\n")
        const e3 = yield* vcs.commitAll(co.dir, { message: "m", author: { name: "", email: "" } }).pipe(Effect.flip)
        assert.include(e3.message, "author")
      })
    )

    it.effect("does not run hooks a job could have planted", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const co = yield* vcs.checkout({ url: origin.bare, into: fresh("hooks") })
        const marker = join(co.dir, "..", `hook-ran-${n}`)
        for (const hook of ["pre-commit", "commit-msg", "post-commit", "pre-push"]) {
          sb.write(join(co.dir, ".git", "hooks", hook), `#!/bin/sh\necho ${hook} >> ${marker}\nexit 1\n`)
          chmodSync(join(co.dir, ".git", "hooks", hook), 0o755)
        }
        sb.git(co.dir, "config", "core.hooksPath", ".git/hooks")
        // The planted hook does run under plain git.
        assert.throws(() => sb.git(co.dir, "hook", "run", "pre-commit"))
        assert.isTrue(exists(marker))
        rmSync(marker)
        sb.write(join(co.dir, "h.txt"), "h\n")
        yield* vcs.createBranch(co.dir, "hooks")
        const outcome = yield* vcs.commitAll(co.dir, { message: "with hooks", author })
        assert.strictEqual(outcome._tag, "committed")
        yield* vcs.push(co.dir, "hooks", {})
        assert.isFalse(exists(marker))
      })
    )
  })

  describe("credentials over authenticated HTTP", () => {
    it.effect("clones and pushes with a token that stays out of .git, argv and logs", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const co = yield* vcs.checkout({
          url: server.url("origin.git"),
          into: fresh("http"),
          credentials: creds(TOKEN)
        })
        assert.strictEqual(co.commit, origin.commits[2])
        const basic = `Basic ${Buffer.from(`oauth2:${TOKEN}`).toString("base64")}`
        assert.include(server.authorizations, basic)
        yield* vcs.createBranch(co.dir, "runlane/http")
        sb.write(join(co.dir, "http.txt"), "over http\n")
        const outcome = yield* vcs.commitAll(co.dir, { message: "http", author })
        yield* vcs.push(co.dir, "runlane/http", { setUpstream: true, credentials: creds(TOKEN) })
        assert.strictEqual(
          sb.git(origin.bare, "rev-parse", "refs/heads/runlane/http"),
          outcome._tag === "committed" ? outcome.commit : ""
        )
        assert.deepStrictEqual(filesContaining(co.dir, TOKEN), [])
        assert.notInclude(readFileSync(join(co.dir, ".git", "config"), "utf8"), TOKEN)
        const info = yield* vcs.repoInfo(co.dir)
        assert.strictEqual(info.remote, server.url("origin.git"))
        assert.isAbove(argvs.length, 0)
        for (const argv of argvs) assert.notInclude(argv.join(" "), TOKEN)
      })
    )

    it.effect("takes a token embedded in the URL out of it (Repobox style)", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const url = server.url("origin.git").replace("http://", `http://oauth2:${TOKEN}@`)
        const co = yield* vcs.checkout({ url, into: fresh("embedded") })
        assert.strictEqual(co.commit, origin.commits[2])
        assert.deepStrictEqual(filesContaining(co.dir, TOKEN), [])
        assert.strictEqual(sb.git(co.dir, "remote", "get-url", "origin"), server.url("origin.git"))
      })
    )

    it.effect("a wrong or missing token is a VcsAuthError with the token masked", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const wrong = yield* vcs
          .checkout({ url: server.url("origin.git"), into: fresh("wrong"), credentials: creds(WRONG) })
          .pipe(Effect.flip)
        assert.instanceOf(wrong, VcsAuthError)
        assert.notInclude(wrong.message, WRONG)
        assert.notInclude(JSON.stringify(wrong), WRONG)
        const none = yield* vcs.checkout({ url: server.url("origin.git"), into: fresh("none") }).pipe(Effect.flip)
        assert.instanceOf(none, VcsAuthError)
        // The token in a place git repeats it (the URL path) is masked in the message.
        const inPath = yield* vcs
          .checkout({ url: server.url(`${TOKEN}.git`), into: fresh("inpath"), credentials: creds(TOKEN) })
          .pipe(Effect.flip)
        assert.instanceOf(inPath, VcsError)
        assert.include(inPath.message, "***")
        assert.notInclude(inPath.message, TOKEN)
        // Push with a wrong token.
        const co = yield* vcs.checkout({ url: server.url("origin.git"), into: fresh("pw"), credentials: creds(TOKEN) })
        yield* vcs.createBranch(co.dir, "wrong-push")
        const pushed = yield* vcs.push(co.dir, "wrong-push", { credentials: creds(WRONG) }).pipe(Effect.flip)
        assert.instanceOf(pushed, VcsAuthError)
        assert.notInclude(pushed.message, WRONG)
        assert.isFalse(sb.git(origin.bare, "branch", "--list", "wrong-push").includes("wrong-push"))
      })
    )

    it.effect("refuses to send a token over plain http to a non-loopback host", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const e = yield* vcs
          .checkout({ url: "http://git.example.test/repo.git", into: fresh("plain"), credentials: creds(TOKEN) })
          .pipe(Effect.flip)
        assert.instanceOf(e, VcsError)
        assert.include(e.message, "https")
        assert.notInclude(e.message, TOKEN)
      })
    )

    it.effect("a push with credentials goes only to the origin the checkout came from", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const co = yield* vcs.checkout({
          url: server.url("origin.git"),
          into: fresh("moved"),
          credentials: creds(TOKEN)
        })
        yield* vcs.createBranch(co.dir, "moved")
        // A job's command points origin at another server.
        sb.git(co.dir, "remote", "set-url", "origin", evil.url("origin.git"))
        const before = evil.requests.length
        const e = yield* vcs.push(co.dir, "moved", { credentials: creds(TOKEN) }).pipe(Effect.flip)
        assert.instanceOf(e, VcsError)
        assert.include(e.message, "origin is now")
        assert.strictEqual(evil.requests.length, before)
      })
    )

    it.effect("a push with credentials refuses config that could divert the token", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const risky = [
          [`http.http://127.0.0.1:${server.port}/.proxy`, `http://127.0.0.1:${evil.port}`],
          [`url.http://127.0.0.1:${evil.port}/.insteadOf`, `http://127.0.0.1:${server.port}/`],
          ["http.extraHeader", "X-Leak: 1"],
          ["include.path", "/tmp/elsewhere.config"]
        ] as const
        for (const [key, value] of risky) {
          const co = yield* vcs.checkout({
            url: server.url("origin.git"),
            into: fresh("risky"),
            credentials: creds(TOKEN)
          })
          yield* vcs.createBranch(co.dir, "risky")
          sb.git(co.dir, "config", key, value)
          const e = yield* vcs.push(co.dir, "risky", { credentials: creds(TOKEN) }).pipe(Effect.flip)
          assert.instanceOf(e, VcsError)
          assert.include(e.message, "refusing to push with credentials: the repository config sets")
          assert.include(e.message.toLowerCase(), key.toLowerCase())
        }
        assert.strictEqual(sb.git(origin.bare, "branch", "--list", "risky"), "")
        for (const a of evil.authorizations) assert.notInclude(Buffer.from(a.slice(6), "base64").toString(), TOKEN)
      })
    )

    it.effect("the token is not in any process's argv while git runs", () =>
      Effect.gen(function* () {
        const vcs = yield* Vcs
        const gate = server.hold(/git-upload-pack$/)
        const into = fresh("slow")
        const fiber = yield* vcs
          .checkout({ url: server.url("origin.git"), into, credentials: creds(TOKEN) })
          .pipe(Effect.forkChild)
        yield* Effect.promise(() => gate.reached)
        // git is blocked in the middle of the fetch: look at every process's command line.
        const running = processesWithArg(server.url("origin.git"))
        const withToken = processesWithArg(TOKEN)
        gate.release()
        const co = yield* Fiber.join(fiber)
        assert.isAbove(running.length, 0, "git was running during the scan")
        assert.deepStrictEqual(withToken, [])
        assert.strictEqual(co.commit, origin.commits[2])
      })
    )
  })

  it.effect("a git command past the timeout is killed and reported", () =>
    Effect.gen(function* () {
      const gate = server.hold(/git-upload-pack$/)
      const into = fresh("timeout")
      const fiber = yield* Effect.gen(function* () {
        const vcs = yield* Vcs
        return yield* vcs.checkout({ url: server.url("origin.git"), into, credentials: creds(TOKEN) })
      }).pipe(Effect.provide(GitVcs.layer({ timeoutMs: 1_000 })), Effect.flip, Effect.forkChild)
      yield* Effect.promise(() => gate.reached)
      assert.isAbove(processesWithArg(into).length, 0, "git clone runs while the server holds the fetch")
      const e = yield* Fiber.join(fiber)
      // The `git clone ... <into>` process is gone (killed, not left behind), while the server still holds the request.
      let left = processesWithArg(into)
      for (let i = 0; i < 50 && left.length > 0; i++) {
        yield* Effect.sleep("20 millis")
        left = processesWithArg(into)
      }
      gate.release()
      assert.deepStrictEqual(left, [])
      assert.instanceOf(e, VcsError)
      assert.include(e.message, "timed out")
    })
  )
})
