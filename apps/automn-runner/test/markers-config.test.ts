import { describe, expect, it } from "vitest"
import { fromEnv, resolveEndpointUrl } from "../src/Config.ts"
import { extractLogs, extractNotifications, extractReturnPayload, resultFields } from "../src/Markers.ts"
import { usesEsmSyntax } from "../src/Preambles.ts"
import { scriptBaseEnv, secretsEqual } from "../src/Server.ts"

describe("markers (contract 4.5)", () => {
  it("the contract's example: hello, a notify line, done, a return line", () => {
    const out = resultFields(
      'hello\n__SCRIPTNOTIFY__{"audience":"ops","message":"m"}\ndone\n__SCRIPTRETURN__{"a":1}\n',
      ""
    )
    expect(out.stdout).toBe("hello\n\ndone")
    expect(out.returnData).toEqual({ a: 1 })
    expect(out.automnNotifications).toHaveLength(1)
  })

  it("return: first marker only, text before it joins the next line, \\r dropped, later markers stay", () => {
    const r = extractReturnPayload('a\nbefore__SCRIPTRETURN__{"x":1}\r\nafter\n__SCRIPTRETURN__{"y":2}\n')
    expect(r.returnData).toEqual({ x: 1 })
    expect(r.strippedStdout).toBe('a\nbeforeafter\n__SCRIPTRETURN__{"y":2}\n')
    const bad = resultFields("__SCRIPTRETURN__{nope\n", "err")
    expect(bad.returnData).toBeNull()
    expect(bad.stderr).toMatch(/^err\nBad return JSON: /)
    expect(resultFields("__SCRIPTRETURN__{nope", "").stderr).toMatch(/^Bad return JSON: /)
  })

  it("one blank line at the start is removed only when a return was seen; trailing whitespace trimmed", () => {
    expect(resultFields("\nx  \n\n__SCRIPTRETURN__1\n", "").stdout).toBe("x")
    expect(resultFields("\nx  \n", "").stdout).toBe("\nx")
  })

  it("notifications: fields, fallbacks, unparseable kept, at most 50", () => {
    const { cleaned, notifications } = extractNotifications(
      [
        'a __SCRIPTNOTIFY__{"target":"  t  ","text":"hi","type":"ERROR"}',
        '__SCRIPTNOTIFY__{"user":"","message":null,"level":"debug"}',
        "__SCRIPTNOTIFY__{broken",
        ""
      ].join("\n")
    )
    expect(cleaned).toBe("a \n\n__SCRIPTNOTIFY__{broken\n")
    expect(notifications[0]).toMatchObject({ order: 0, audience: "t", message: "hi", level: "error" })
    expect(notifications[1]).toMatchObject({ order: 1, audience: null, message: "", level: "info" })
    const many = Array.from({ length: 52 }, (_, i) => `__SCRIPTNOTIFY__{"message":"${i}"}`).join("\n")
    const capped = extractNotifications(many)
    expect(capped.notifications).toHaveLength(50)
    expect(capped.cleaned.split("\n").slice(-2)).toEqual(['{"message":"50"}', '{"message":"51"}'])
    expect(
      extractNotifications(`__SCRIPTNOTIFY__{"message":"${"x".repeat(3000)}"}`).notifications[0]?.message
    ).toHaveLength(2000)
  })

  it("logs: level, type and context normalization", () => {
    const { cleaned, logs } = extractLogs(
      [
        '__SCRIPTLOG__{"message":5,"level":"WARNING","category":" Net ","context":[1]}',
        '__SCRIPTLOG__{"message":null,"level":"success","type":"x","context":null}',
        "__SCRIPTLOG__null",
        ""
      ].join("\n")
    )
    expect(logs[0]).toMatchObject({ message: "5", level: "warn", type: "net", context: { value: [1] }, order: 0 })
    expect(logs[1]).toMatchObject({ message: "", level: "success", type: "x", context: {}, order: 1 })
    expect(cleaned).toBe("\n\n__SCRIPTLOG__null\n")
  })

  it("node ES-module detection", () => {
    expect(usesEsmSyntax('import fs from "node:fs"')).toBe(true)
    expect(usesEsmSyntax("await import('x')")).toBe(true)
    expect(usesEsmSyntax("export default 1")).toBe(true)
    expect(usesEsmSyntax('const fs = require("fs") // import x from "y"')).toBe(false)
  })
})

describe("configuration (contract 1)", () => {
  it("endpoint URL resolution", () => {
    expect(resolveEndpointUrl({ endpointUrl: "http://h:1", endpointPath: "/api/run" })).toBe("http://h:1/api/run")
    expect(resolveEndpointUrl({ endpointUrl: "http://h:1/custom", endpointPath: "/api/run" })).toBe("http://h:1/custom")
    expect(resolveEndpointUrl({ publicUrl: "http://h:3030/x", endpointPath: "/api/run" })).toBe("http://h:3030/api/run")
    expect(resolveEndpointUrl({ endpointUrl: "not a url", endpointPath: "/api/run" })).toBe("not a url")
    expect(fromEnv({ AUTOMN_RUNNER_PUBLIC_URL: "http://h", AUTOMN_RUNNER_ENDPOINT_PATH: "run" }).endpointUrl).toBe(
      "http://h/run"
    )
    expect(fromEnv({}).endpointUrl).toBe("")
  })

  it("ports, heartbeats, integers and strings", () => {
    expect(fromEnv({ AUTOMN_RUNNER_PORT: "0", PORT: "4000" }).port).toBe(4000)
    expect(fromEnv({ AUTOMN_RUNNER_PORT: "abc" }).port).toBe(3030)
    expect(fromEnv({ AUTOMN_RUNNER_PORT: "5000x", PORT: "4000" }).port).toBe(5000)
    expect(fromEnv({ AUTOMN_RUNNER_HEARTBEAT_MS: "0" }).heartbeatInterval).toBe(60_000)
    expect(fromEnv({ AUTOMN_RUNNER_HEARTBEAT_MS: "-5" }).heartbeatInterval).toBe(-5)
    expect(fromEnv({ AUTOMN_RUNNER_MAX_CONCURRENCY: "0" }).maxConcurrency).toBe(0)
    expect(fromEnv({ AUTOMN_HOST_URL: "  ", AUTOMN_RUNNER_HOST_URL: " http://h/ " }).hostUrl).toBe("http://h/")
    expect(fromEnv({ AUTOMN_RUNNER_SECRET: " s " }).envSecret).toBe(" s ")
    expect(fromEnv({ AUTOMN_RUNNER_NODE_PATH: '"/opt/node/bin/node"' }).envExecutables.node).toBe("/opt/node/bin/node")
    const dirs = fromEnv({ AUTOMN_RUNNER_DATA_DIR: "/d" })
    expect([dirs.stateFile, dirs.scriptsDir, dirs.workdirDir]).toEqual([
      "/d/state/runner-state.json",
      "/d/scripts",
      "/d/script_workdir"
    ])
  })

  it("script base environment drops the runner's secrets", () => {
    const { env, removed } = scriptBaseEnv({
      PATH: "/bin",
      AUTOMN_RUNNER_SECRET: "s1",
      AUTOMN_RUNNER_RESET_TOKEN: "t1",
      GITHUB_TOKEN: "g1",
      DB_PASSWORD: "p1",
      HOME: "/root"
    })
    expect(env).toEqual({ PATH: "/bin", HOME: "/root" })
    expect(removed.sort()).toEqual(["g1", "p1", "s1", "t1"])
    expect(secretsEqual("abc", "abc")).toBe(true)
    expect(secretsEqual("abc", "abcd")).toBe(false)
  })
})
