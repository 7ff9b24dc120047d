import { isLoopbackHost, parseRemote, redactUrlCredentials, stripUrlCredentials } from "@runlane/vcs-git"
import { Redacted } from "effect"
import { describe, expect, it } from "vitest"

describe("parseRemote", () => {
  it("splits Repobox's authenticated URL into a plain URL and credentials", () => {
    const r = parseRemote("https://oauth2:ghp_secret%2Fx@github.com/acme/app.git")
    expect(typeof r).toBe("object")
    if (typeof r === "string" || r._tag !== "http") throw new Error("expected http")
    expect(r.url).toBe("https://github.com/acme/app.git")
    expect(r.origin).toBe("https://github.com")
    expect(r.loopback).toBe(false)
    expect(r.embedded?.username).toBe("oauth2")
    expect(Redacted.value(r.embedded!.token)).toBe("ghp_secret/x")
  })

  it("treats a lone user name as a token (GitHub's https://TOKEN@host form)", () => {
    const r = parseRemote("https://ghp_tok@github.com/a/b.git")
    if (typeof r === "string" || r._tag !== "http") throw new Error("expected http")
    expect(r.url).toBe("https://github.com/a/b.git")
    expect(Redacted.value(r.embedded!.token)).toBe("ghp_tok")
  })

  it("classifies local paths, file URLs, ssh and scp-style remotes", () => {
    expect(parseRemote("/srv/repo.git")).toEqual({ _tag: "local", url: "/srv/repo.git" })
    expect(parseRemote("file:///srv/repo.git")).toEqual({ _tag: "local", url: "file:///srv/repo.git" })
    expect(parseRemote("git@github.com:acme/app.git")).toEqual({ _tag: "other", url: "git@github.com:acme/app.git" })
    expect(parseRemote("ssh://git@host/x.git")).toEqual({ _tag: "other", url: "ssh://host/x.git" })
    const loop = parseRemote("http://127.0.0.1:8080/x.git")
    expect(typeof loop !== "string" && loop._tag === "http" && loop.loopback && loop.origin).toBe(
      "http://127.0.0.1:8080"
    )
  })

  it("refuses empty values and option-like values without echoing credentials", () => {
    expect(parseRemote("  ")).toMatch(/empty/)
    expect(parseRemote("--upload-pack=evil")).toMatch(/must not start with '-'/)
    const bad = parseRemote("https://oauth2:sekrit@[bad")
    expect(typeof bad).toBe("string")
    expect(String(bad)).not.toContain("sekrit")
  })
})

describe("credential stripping", () => {
  it("redacts user info anywhere in a text and strips it from one URL", () => {
    expect(
      redactUrlCredentials("fatal: unable to access 'https://oauth2:tok123@github.com/a.git/': 403 and http://u:p@x/y")
    ).toBe("fatal: unable to access 'https://***@github.com/a.git/': 403 and http://***@x/y")
    expect(stripUrlCredentials("https://oauth2:tok@host:8443/a.git")).toBe("https://host:8443/a.git")
    expect(stripUrlCredentials("/local/path")).toBe("/local/path")
  })

  it("knows loopback hosts", () => {
    for (const h of ["localhost", "127.0.0.1", "127.1.2.3", "[::1]", "::1"]) expect(isLoopbackHost(h)).toBe(true)
    for (const h of ["example.com", "10.0.0.1", "127.0.0.1.nip.io", "128.0.0.1"]) expect(isLoopbackHost(h)).toBe(false)
  })
})
