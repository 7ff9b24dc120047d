/** The parts of an MCP URL that decide whether a destination is allowed: scheme, host, port. */
export interface McpOrigin {
  readonly url: URL
  readonly scheme: "http" | "https"
  readonly host: string
  readonly port: number
}

const defaultPort = (scheme: string): number => (scheme === "https" ? 443 : 80)

/** Parses an absolute http(s) URL, or returns undefined. */
export const parseMcpOrigin = (raw: string): McpOrigin | undefined => {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    return undefined
  }
  const scheme = url.protocol.slice(0, -1)
  if ((scheme !== "http" && scheme !== "https") || url.hostname === "") return undefined
  return {
    url,
    scheme,
    host: url.hostname.toLowerCase(),
    port: url.port === "" ? defaultPort(scheme) : Number(url.port)
  }
}

/** As the original's check: scheme, host and port equal (default ports count as equal). */
export const sameOrigin = (a: McpOrigin, b: McpOrigin): boolean =>
  a.scheme === b.scheme && a.host === b.host && a.port === b.port

/** `host:port` for an allow-list; IPv6 hosts are bracketed as URL.hostname already gives them. */
export const hostPort = (o: McpOrigin): string => `${o.host}:${o.port}`
