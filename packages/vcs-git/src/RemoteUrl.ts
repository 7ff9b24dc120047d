/**
 * Parsing of repository locations and removal of credentials from URLs and free text.
 */

import type { Credentials } from "@runlane/core"
import { Redacted } from "effect"

/** Where a repository lives, with any credentials taken out of the URL. */
export type Remote =
  | {
      /** A local path or a `file://` URL. */
      readonly _tag: "local"
      readonly url: string
    }
  | {
      readonly _tag: "http"
      /** The URL without user info. */
      readonly url: string
      /** `scheme://host[:port]`, what git shows in its credential prompts. */
      readonly origin: string
      readonly loopback: boolean
      /** Credentials found in the URL itself (`https://oauth2:TOKEN@host/...`). */
      readonly embedded: Credentials | undefined
    }
  | {
      /** ssh://, git://, scp-style `user@host:path`: passed to git as they are. */
      readonly _tag: "other"
      readonly url: string
    }

const schemeRe = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//
const scpLikeRe = /^[^/\s:]+@[^/\s:]+:/

/** True for `localhost`, `127.0.0.0/8` and `[::1]`. */
export const isLoopbackHost = (hostname: string): boolean => {
  const h = hostname.toLowerCase().replace(/^\[|\]$/g, "")
  return h === "localhost" || h === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
}

/**
 * Classifies a repository location. Returns a string (the reason) when it cannot be used: an
 * empty value, a value starting with `-` (it would be read as an option) or an unparsable URL.
 * The reason never contains the URL's credentials.
 */
export const parseRemote = (raw: string): Remote | string => {
  const url = raw.trim()
  if (url.length === 0) return "the repository URL is empty"
  if (url.startsWith("-")) return "a repository URL must not start with '-'"
  const scheme = schemeRe.exec(url)?.[1]?.toLowerCase()
  if (scheme === undefined) {
    if (scpLikeRe.test(url) || /^[a-zA-Z][a-zA-Z0-9+.-]*::/.test(url)) return { _tag: "other", url }
    return { _tag: "local", url }
  }
  if (scheme === "file") return { _tag: "local", url }
  if (scheme !== "http" && scheme !== "https") return { _tag: "other", url: stripUrlCredentials(url) }
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return `the repository URL does not parse: ${redactUrlCredentials(url)}`
  }
  let embedded: Credentials | undefined
  if (parsed.password !== "") {
    embedded = {
      username: parsed.username === "" ? "oauth2" : decodeURIComponent(parsed.username),
      token: Redacted.make(decodeURIComponent(parsed.password))
    }
  } else if (parsed.username !== "") {
    // `https://TOKEN@host/...`: GitHub accepts a token given as the user name. The value is
    // treated as a secret (masked, never stored) and sent as the password of user `oauth2`.
    embedded = { username: "oauth2", token: Redacted.make(decodeURIComponent(parsed.username)) }
  }
  parsed.username = ""
  parsed.password = ""
  return {
    _tag: "http",
    url: parsed.toString(),
    origin: `${parsed.protocol}//${parsed.host}`,
    loopback: isLoopbackHost(parsed.hostname),
    embedded
  }
}

/** Removes the user info of one URL (`https://user:pass@host/x` → `https://host/x`). */
export const stripUrlCredentials = (url: string): string =>
  url.replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/@\s]*@/, "$1")

/** Replaces the user info of every URL in a text with `***@`. */
export const redactUrlCredentials = (text: string): string =>
  text.replace(/\b([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/@\s'"]+@/g, "$1***@")
