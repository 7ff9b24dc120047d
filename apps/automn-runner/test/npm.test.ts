import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { logText, postRun, RunnerProcess, resultOf, waitFor } from "./harness.ts"

const SECRET = "npm-runner-secret-123456"
const PKG = "automn-fixture-pkg"

/**
 * Node scripts' dependencies through real npm against a registry written in the test (loopback
 * only): it serves one package, `automn-fixture-pkg`, and 404 for everything else.
 */
describe("node script dependencies (real npm, loopback registry)", () => {
  const tmp = mkdtempSync(join(tmpdir(), "runlane-automn-npm-"))
  let registry: Server
  let runner: RunnerProcess
  const requests: string[] = []

  beforeAll(async () => {
    const src = join(tmp, "src", "package")
    mkdirSync(src, { recursive: true })
    writeFileSync(join(src, "package.json"), JSON.stringify({ name: PKG, version: "1.0.0", main: "index.js" }))
    writeFileSync(join(src, "index.js"), 'module.exports = (x) => "fixture:" + x\n')
    const tgz = join(tmp, "fixture.tgz")
    execFileSync("tar", ["-czf", tgz, "-C", join(tmp, "src"), "package"])
    const tarball = readFileSync(tgz)
    registry = createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`)
      const base = `http://127.0.0.1:${(registry.address() as AddressInfo).port}`
      if (req.url === `/${PKG}`) {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(
          JSON.stringify({
            name: PKG,
            "dist-tags": { latest: "1.0.0" },
            versions: {
              "1.0.0": {
                name: PKG,
                version: "1.0.0",
                main: "index.js",
                dist: {
                  tarball: `${base}/${PKG}/-/${PKG}-1.0.0.tgz`,
                  shasum: createHash("sha1").update(tarball).digest("hex"),
                  integrity: `sha512-${createHash("sha512").update(tarball).digest("base64")}`
                }
              }
            }
          })
        )
        return
      }
      if (req.url === `/${PKG}/-/${PKG}-1.0.0.tgz`) {
        res.writeHead(200, { "content-type": "application/octet-stream" })
        res.end(tarball)
        return
      }
      res.writeHead(404, { "content-type": "application/json" })
      res.end(JSON.stringify({ error: "Not found" }))
    })
    await new Promise<void>((resolve) => registry.listen(0, "127.0.0.1", resolve))
    const port = (registry.address() as AddressInfo).port
    runner = await new RunnerProcess({
      AUTOMN_RUNNER_SECRET: SECRET,
      AUTOMN_RUNNER_HEARTBEAT_MS: "-1",
      npm_config_registry: `http://127.0.0.1:${port}/`,
      npm_config_cache: join(tmp, "npm-cache"),
      npm_config_update_notifier: "false",
      npm_config_audit: "false",
      npm_config_fund: "false"
    }).start()
  })
  afterAll(async () => {
    await runner?.dispose()
    registry?.closeAllConnections()
    await new Promise<void>((resolve) => registry?.close(() => resolve()))
    rmSync(tmp, { recursive: true, force: true })
  })

  it("installs a missing package before the run, streaming npm's output; reuses it afterwards", async () => {
    const script = { language: "node", id: "with-deps", code: `const f = require("${PKG}")\nconsole.log(f("ok"))` }
    const first = await postRun(runner.url, SECRET, { script })
    const frames = first.frames.filter((f) => f.type === "log").map((f) => f.line ?? "")
    expect(frames[0]).toBe(`Installing npm dependencies: ${PKG}\n`)
    expect(frames.slice(1, -1).every((line) => line.startsWith("[npm] "))).toBe(true)
    expect(frames.at(-1)).toBe("fixture:ok\n")
    expect(resultOf(first.frames)).toMatchObject({ code: 0, stdout: "fixture:ok" })
    expect(requests).toContain(`GET /${PKG}`)
    const folder = join(runner.dataDir, "script_workdir", "with-deps")
    expect(JSON.parse(readFileSync(join(folder, "package.json"), "utf8")).dependencies).toHaveProperty(PKG)
    const cache = JSON.parse(readFileSync(join(runner.dataDir, "state", "npm-package-cache.json"), "utf8"))
    expect(cache.scripts["with-deps"]).toMatchObject({ scriptId: "with-deps", directory: "with-deps", packages: [PKG] })

    const second = await postRun(runner.url, SECRET, { script })
    expect(logText(second.frames)).toBe("fixture:ok\n")
  })

  it("POST /api/packages/status reports and installs packages", async () => {
    const post = (body: unknown, secret: string | null = SECRET) =>
      fetch(`${runner.url}/api/packages/status`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(secret === null ? {} : { "x-automn-runner-secret": secret })
        },
        body: JSON.stringify(body)
      })
    expect((await post({ packages: [PKG] }, null)).status).toBe(401)
    const check = await post({ scriptId: "pkg-status", packages: [PKG, ` ${PKG} `, 3], installMissing: false })
    expect(await check.json()).toEqual({
      scriptId: "pkg-status",
      packages: [{ name: PKG, status: "not_installed", message: "Package not present" }],
      installMissing: false,
      error: null
    })
    const install = await post({ scriptId: "pkg-status", packages: [PKG] })
    expect(await install.json()).toEqual({
      scriptId: "pkg-status",
      packages: [{ name: PKG, status: "installed", message: "Installed" }],
      installMissing: true,
      error: null
    })
    const ran = await postRun(runner.url, SECRET, {
      script: { language: "node", id: "pkg-status", code: `console.log(require("${PKG}")("pre"))` }
    })
    expect(logText(ran.frames)).toBe("fixture:pre\n")
    const empty = await post({ packages: [] })
    expect(await empty.json()).toEqual({ scriptId: null, packages: [], installMissing: true, error: null })
  })

  it("rehydrates the package cache at start; the clear route empties it", async () => {
    const modules = join(runner.dataDir, "script_workdir", "with-deps", "node_modules", PKG)
    expect(existsSync(modules)).toBe(true)
    await runner.stop()
    rmSync(join(runner.dataDir, "script_workdir", "with-deps", "node_modules"), { recursive: true, force: true })
    await runner.start()
    await waitFor(
      "the package to be reinstalled",
      () => (existsSync(join(modules, "package.json")) ? true : undefined),
      30_000
    )
    expect(runner.output).toContain(`Reinstalling npm dependencies for with-deps: ${PKG}`)
    const page = await (await fetch(runner.url)).text()
    expect(page).toMatch(/\d+ packages? across \d+ scripts?/)

    const cleared = await fetch(`${runner.url}/ui/package-cache/clear`, { method: "POST" })
    expect(cleared.status).toBe(200)
    expect(await cleared.text()).toContain("Package cache cleared.")
    expect(existsSync(modules)).toBe(false)
    expect(JSON.parse(readFileSync(join(runner.dataDir, "state", "npm-package-cache.json"), "utf8"))).toEqual({
      scripts: {}
    })
  })

  it("an install failure answers code 90 with the original's fields", async () => {
    const res = await postRun(runner.url, SECRET, {
      runId: "dep-fail",
      script: { language: "node", id: "broken-deps", code: 'require("automn-not-in-registry")\nconsole.log("never")' },
      reqBody: { a: 1 }
    })
    const data = resultOf(res.frames)
    expect(data).toMatchObject({
      runId: "dep-fail",
      stdout: "",
      code: 90,
      duration: 0,
      returnData: null,
      automnNotifications: [],
      input: { a: 1 },
      clientMessage: "Try again later",
      errorCode: "NODE_DEPENDENCY_INSTALL_FAILED"
    })
    const stderr = String(data.stderr)
    expect(stderr).toMatch(
      /^Failed to install npm dependencies: automn-not-in-registry\nnpm install exited with code \d+/
    )
    expect(data.automnLogs).toEqual([{ level: "error", message: stderr, type: "system" }])
    const log = logText(res.frames)
    expect(log.startsWith("Installing npm dependencies: automn-not-in-registry\n")).toBe(true)
    expect(log.endsWith(`${stderr}\n`)).toBe(true)
    expect(log).not.toContain("never")
    expect(
      existsSync(join(runner.dataDir, "script_workdir", "broken-deps", "node_modules", "automn-not-in-registry"))
    ).toBe(false)
  })
})
