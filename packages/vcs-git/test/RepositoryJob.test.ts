import { readFileSync, symlinkSync } from "node:fs"
import { join } from "node:path"
import { assert, describe, layer } from "@effect/vitest"
import { PushRejected, VcsError } from "@runlane/core"
import { ProcessExecutor } from "@runlane/exec-process"
import {
  branchFor,
  CommandFailed,
  GitVcs,
  RepositoryJobError,
  type RepositoryJobEvent,
  runRepoboxFlow,
  runRepositoryJob,
  Workspace
} from "@runlane/vcs-git"
import { Effect, Layer, Redacted } from "effect"
import { afterAll, beforeAll } from "vitest"
import { exists, filesContaining, makeOrigin, makeSandbox, type OriginRepo } from "./support/fixtures.ts"
import { type GitHttpServer, startGitHttpServer } from "./support/GitHttpServer.ts"

const TOKEN = "rl-job-token-51d0c3aa9e7f4b28"
const SECRET = "rl-secret-api-key-c0ffee1234"
const author = { name: "Runlane Bot", email: "bot@runlane.test" }

const sb = makeSandbox("jobs")
let origin: OriginRepo
let server: GitHttpServer
let jobCodeRepo: string
let evilSource: string

/** A bare repository made from a map of files (symlinks as `{ link: target }`). */
const makeRepo = (name: string, files: Record<string, string | { link: string }>): string => {
  const work = sb.path(`.seed-${name}`)
  sb.git(sb.root, "init", "-q", "-b", "main", work)
  for (const [file, content] of Object.entries(files)) {
    if (typeof content === "string") sb.write(join(work, file), content)
    else symlinkSync(content.link, join(work, file))
  }
  sb.git(work, "add", "-A")
  sb.git(work, "commit", "-q", "-m", `${name} init`)
  const bare = sb.path("srv", `${name}.git`)
  sb.git(sb.root, "clone", "-q", "--bare", work, bare)
  return bare
}

beforeAll(async () => {
  origin = makeOrigin(sb, sb.path("srv"))
  server = await startGitHttpServer({ root: sb.path("srv"), username: "oauth2", token: TOKEN, home: sb.path(".home") })
  jobCodeRepo = makeRepo("jobcode", {
    "run.sh": [
      "echo trusted job code",
      'echo "source says: $(cat "$RUNLANE_SOURCE_DIR/app.txt")"',
      'echo "key=$API_KEY"',
      'echo "cwd=$(pwd)"',
      ""
    ].join("\n")
  })
  // An attacker's source tries every way to reach or replace the job code.
  evilSource = makeRepo("evil", {
    "app.txt": "hello from the PR\n",
    "ci/run.sh": "echo pwned\n",
    "run.sh": "echo pwned\n",
    escape: { link: "../ci" },
    "link-run.sh": { link: "../ci/run.sh" }
  })
})
afterAll(async () => {
  await server?.close()
  sb.cleanup()
})

const decode = (events: ReadonlyArray<RepositoryJobEvent>): string =>
  events.map((e) => (e._tag === "output" ? new TextDecoder().decode(e.data) : "")).join("")
const steps = (events: ReadonlyArray<RepositoryJobEvent>): Array<string> =>
  events.flatMap((e) => (e._tag === "step" ? [e.message] : []))
const collect = () => {
  const events: Array<RepositoryJobEvent> = []
  return { events, onEvent: (e: RepositoryJobEvent) => Effect.sync(() => void events.push(e)) }
}

const root = sb.path("jobs")
const keptRoot = sb.path("kept")
const Base = Layer.mergeAll(GitVcs.layer({ timeoutMs: 60_000 }), ProcessExecutor.layer())
const Cleaning = Layer.merge(Base, Workspace.layer({ root, cleanup: true }))
const Keeping = Layer.merge(Base, Workspace.layer({ root: keptRoot, cleanup: false }))

layer(Cleaning, { excludeTestServices: true })("repository jobs", (it) => {
  describe("trusted job code and untrusted source", () => {
    it.effect("runs from ci/ with secrets; the source cannot replace the job code", () =>
      Effect.gen(function* () {
        const { events, onEvent } = collect()
        const result = yield* runRepositoryJob({
          jobId: "split-1",
          source: { url: evilSource },
          jobCode: { url: jobCodeRepo },
          command: ["sh", "run.sh"],
          secrets: { API_KEY: Redacted.make(SECRET) },
          onEvent
        }).pipe(Effect.provide(Keeping))
        const out = decode(events)
        assert.strictEqual(result.exitCode, 0)
        assert.include(out, "trusted job code")
        assert.notInclude(out, "pwned")
        assert.include(out, "source says: hello from the PR")
        assert.include(out, "key=***")
        assert.notInclude(out, SECRET)
        assert.include(out, `cwd=${join(keptRoot, "split-1", "ci")}`)
        assert.strictEqual(result.jobCode?.dir, join(keptRoot, "split-1", "ci"))
        assert.strictEqual(result.source?.dir, join(keptRoot, "split-1", "src"))
        // The job code on disk is the trusted one, and the source's links stayed links in src/.
        assert.strictEqual(
          readFileSync(join(result.workspace, "ci", "run.sh"), "utf8").split("\n")[0],
          "echo trusted job code"
        )
        assert.isFalse(exists(join(result.workspace, "ci", "ci")))
        assert.strictEqual(readFileSync(join(result.workspace, "src", "ci", "run.sh"), "utf8"), "echo pwned\n")
      })
    )

    it.effect("an untrusted source alone gets no secrets; a trusted one does", () =>
      Effect.gen(function* () {
        const refused = yield* runRepositoryJob({
          jobId: "split-2",
          source: { url: evilSource },
          command: ["sh", "run.sh"],
          secrets: { API_KEY: Redacted.make(SECRET) }
        }).pipe(Effect.flip)
        assert.instanceOf(refused, RepositoryJobError)
        assert.include(refused.message, "secrets")
        assert.isFalse(exists(join(root, "split-2")))
        const { events, onEvent } = collect()
        const trusted = yield* runRepositoryJob({
          jobId: "split-3",
          source: { url: jobCodeRepo },
          trustSource: true,
          command: ["sh", "-c", 'echo "key=$API_KEY"; exit 4'],
          secrets: { API_KEY: Redacted.make(SECRET) },
          onEvent
        })
        assert.strictEqual(trusted.exitCode, 4)
        assert.include(decode(events), "key=***")
        assert.isNull(trusted.jobCode)
      })
    )

    it.effect("an executor's refusal is a typed error with secrets masked", () =>
      Effect.gen(function* () {
        const e = yield* runRepositoryJob({
          jobId: "refused-1",
          jobCode: { url: jobCodeRepo },
          command: ["sh", "run.sh"],
          secrets: { API_KEY: Redacted.make(SECRET) },
          spec: { image: `registry.test/${SECRET}:1` }
        }).pipe(Effect.flip)
        assert.strictEqual(e._tag, "UnsupportedSpec")
        assert.include(e.message, "***")
        assert.notInclude(e.message, SECRET)
        assert.isFalse(exists(join(root, "refused-1")))
      })
    )

    it.effect("a cwd outside the job code is refused", () =>
      Effect.gen(function* () {
        const e = yield* runRepositoryJob({
          jobId: "split-4",
          source: { url: evilSource },
          jobCode: { url: jobCodeRepo },
          cwd: "../src",
          command: ["sh", "run.sh"]
        }).pipe(Effect.flip)
        assert.instanceOf(e, RepositoryJobError)
      })
    )
  })

  describe("workspace", () => {
    it.effect("is removed after the job, on success and on failure", () =>
      Effect.gen(function* () {
        let seen = ""
        const ok = yield* runRepositoryJob({
          jobId: "ws-1",
          source: { url: origin.bare, ref: "feature" },
          trustSource: true,
          command: ["sh", "-c", "test -f feature.txt"],
          onEvent: (e) =>
            Effect.sync(() => {
              if (e._tag === "started") seen = String(exists(join(root, "ws-1", "src", "feature.txt")))
            })
        })
        assert.strictEqual(ok.exitCode, 0)
        assert.strictEqual(seen, "true")
        assert.strictEqual(ok.source?.commit, origin.featureCommit)
        assert.isFalse(exists(join(root, "ws-1")))
        const failed = yield* runRepositoryJob({
          jobId: "ws-2",
          source: { url: origin.bare, ref: "no-such-branch" },
          command: ["true"]
        }).pipe(Effect.flip)
        assert.instanceOf(failed, VcsError)
        assert.isFalse(exists(join(root, "ws-2")))
      })
    )

    it.effect("stays when cleanup is off, and a job id cannot leave the root", () =>
      Effect.gen(function* () {
        const result = yield* runRepositoryJob({
          jobId: "../../escape",
          source: { url: origin.bare },
          trustSource: true,
          command: ["true"]
        }).pipe(Effect.provide(Keeping))
        assert.isTrue(result.workspace.startsWith(`${keptRoot}/`))
        assert.strictEqual(result.workspace, join(keptRoot, Workspace.safeName("../../escape")))
        assert.isTrue(exists(join(result.workspace, "src", "README.md")))
        assert.isFalse(exists(sb.path("escape")))
      })
    )
  })

  describe("Repobox flow", () => {
    it.effect("clone → branch → command → commit → push over authenticated HTTP", () =>
      Effect.gen(function* () {
        const { events, onEvent } = collect()
        const jobId = "3f2c9a1b-7d4e-4f00-9c1a-5b6e7f8a9b0c"
        const result = yield* runRepoboxFlow({
          jobId,
          repo: { url: server.url("origin.git"), credentials: { token: Redacted.make(TOKEN) } },
          command: ["sh", "-c", 'echo "# agent" > AGENT.md; echo "wrote AGENT.md with $ANTHROPIC_API_KEY"'],
          secrets: { ANTHROPIC_API_KEY: Redacted.make(SECRET) },
          author,
          message: "runlane: add agent notes",
          onEvent
        })
        assert.strictEqual(result._tag, "pushed")
        if (result._tag !== "pushed") return
        assert.strictEqual(result.branch, "runlane/3f2c9a1b")
        assert.strictEqual(result.baseCommit, origin.commits[2])
        assert.deepStrictEqual(result.changedFiles, ["AGENT.md"])
        assert.strictEqual(sb.git(origin.bare, "rev-parse", "refs/heads/runlane/3f2c9a1b"), result.commit)
        assert.strictEqual(sb.git(origin.bare, "show", `${result.commit}:AGENT.md`), "# agent")
        assert.deepStrictEqual(steps(events), [
          `Cloning ${server.url("origin.git")}...`,
          "Clone completed.",
          "Creating branch runlane/3f2c9a1b...",
          "Committing changes...",
          "Pushing to remote...",
          "Push completed successfully!"
        ])
        const all = JSON.stringify(events.map((e) => (e._tag === "output" ? new TextDecoder().decode(e.data) : e)))
        assert.include(all, "wrote AGENT.md with ***")
        assert.notInclude(all, SECRET)
        assert.notInclude(all, TOKEN)
        assert.isFalse(exists(join(root, jobId)))
      })
    )

    it.effect("leaves no token in the kept clone", () =>
      Effect.gen(function* () {
        const url = server.url("origin.git").replace("http://", `http://oauth2:${TOKEN}@`)
        const result = yield* runRepoboxFlow({
          jobId: "kept-token-job",
          repo: { url },
          command: ["sh", "-c", "date > stamp.txt"],
          author,
          message: "stamp"
        }).pipe(Effect.provide(Keeping))
        assert.strictEqual(result._tag, "pushed")
        assert.deepStrictEqual(filesContaining(join(keptRoot, "kept-token-job"), TOKEN), [])
        assert.strictEqual(
          sb.git(join(keptRoot, "kept-token-job", "repo"), "remote", "get-url", "origin"),
          server.url("origin.git")
        )
      })
    )

    it.effect("nothing to commit is its own outcome (pushed only when asked)", () =>
      Effect.gen(function* () {
        const quiet = yield* runRepoboxFlow({
          jobId: "nochange1",
          repo: { url: origin.bare },
          command: ["true"],
          author,
          message: "none"
        })
        assert.deepStrictEqual(quiet, {
          _tag: "nothing-to-commit",
          branch: "runlane/nochange",
          commit: origin.commits[2]!,
          pushed: false
        })
        assert.strictEqual(sb.git(origin.bare, "branch", "--list", "runlane/nochange"), "")
        const pushed = yield* runRepoboxFlow({
          jobId: "nochange2x",
          prefixLength: 10,
          repo: { url: origin.bare },
          command: ["true"],
          author,
          message: "none",
          pushUnchanged: true
        })
        assert.strictEqual(pushed._tag, "nothing-to-commit")
        assert.strictEqual(sb.git(origin.bare, "rev-parse", "refs/heads/runlane/nochange2x"), origin.commits[2])
      })
    )

    it.effect("a rejected push is PushRejected; a failing command pushes nothing", () =>
      Effect.gen(function* () {
        // Someone else already pushed a different history to the job's branch.
        sb.git(origin.bare, "branch", "runlane/rejectme", origin.featureCommit)
        const rejected = yield* runRepoboxFlow({
          jobId: "rejectme-1",
          repo: { url: origin.bare },
          command: ["sh", "-c", "echo x > x.txt"],
          author,
          message: "x"
        }).pipe(Effect.flip)
        assert.instanceOf(rejected, PushRejected)
        assert.strictEqual(sb.git(origin.bare, "rev-parse", "refs/heads/runlane/rejectme"), origin.featureCommit)

        const failed = yield* runRepoboxFlow({
          jobId: "failing-1",
          repo: { url: origin.bare },
          command: ["sh", "-c", "echo y > y.txt; exit 3"],
          author,
          message: "y"
        }).pipe(Effect.flip)
        assert.instanceOf(failed, CommandFailed)
        assert.strictEqual(failed._tag === "CommandFailed" ? failed.exitCode : -1, 3)
        assert.strictEqual(sb.git(origin.bare, "branch", "--list", "runlane/failing-"), "")
        assert.isFalse(exists(join(root, "failing-1")))
      })
    )

    it.effect("branch names come from a safe job-id prefix", () =>
      Effect.sync(() => {
        assert.strictEqual(branchFor("3f2c9a1b-7d4e"), "runlane/3f2c9a1b")
        assert.strictEqual(branchFor("abc"), "runlane/abc")
        assert.strictEqual(branchFor("../x y~z"), "runlane/x-y-z")
        assert.strictEqual(branchFor("job", "repobox/"), "repobox/job")
      })
    )
  })
})
