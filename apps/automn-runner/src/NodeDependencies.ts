import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { builtinModules, createRequire } from "node:module"
import { basename, dirname, join } from "node:path"

/**
 * Node scripts' npm dependencies (contract 4.2, 4.6): bare specifiers imported or required by the
 * code are installed into the script's folder with npm when they do not resolve there, and
 * remembered in `<WORKDIR>/../state/npm-package-cache.json` (the original's file).
 */
const builtins = new Set(builtinModules.flatMap((name) => [name, name.replace(/^node:/, "")]))

const PATTERNS = [
  /import\s+(?:[^'";]+?\s+from\s+)?["']([^"']+)["']/g,
  /export\s+[^'";]*?from\s+["']([^"']+)["']/g,
  /require\(\s*["']([^"']+)["']\s*\)/g,
  /import\(\s*["']([^"']+)["']\s*\)/g
]

export interface Dependency {
  /** The package to install (`name` or `@scope/name`). */
  readonly install: string
  /** The specifiers the code asks for (`name/sub/path`, ...). */
  readonly requests: ReadonlyArray<string>
}

const specifier = (raw: string): { request: string; install: string } | null => {
  const spec = raw.trim()
  if (spec === "" || spec.startsWith(".") || spec.startsWith("/")) return null
  if (spec.startsWith("node:")) return null
  const first = spec.split("/")[0] ?? ""
  if (builtins.has(first)) return null
  const install = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : first
  if (install === "" || builtins.has(install)) return null
  return { request: spec, install }
}

export const extractNodeDependencies = (source: string): Dependency[] => {
  const specs = new Map<string, Set<string>>()
  for (const pattern of PATTERNS) {
    for (const match of source.matchAll(pattern)) {
      const spec = specifier(match[1] ?? "")
      if (spec === null) continue
      const requests = specs.get(spec.install) ?? new Set<string>()
      requests.add(spec.request)
      specs.set(spec.install, requests)
    }
  }
  return [...specs].map(([install, requests]) => ({ install, requests: [...requests] }))
}

/** True when `request` resolves from `folder` (as the original: `require.resolve`). */
export const isSatisfied = (request: string, folder: string): boolean => {
  try {
    createRequire(join(folder, "package.json")).resolve(request)
    return true
  } catch {
    return false
  }
}

/** The packages of `source` that do not resolve from `folder`. */
export const missingDependencies = (source: string, folder: string): { all: string[]; missing: string[] } => {
  const deps = extractNodeDependencies(source)
  return {
    all: deps.map((d) => d.install),
    missing: deps.filter((d) => !d.requests.some((r) => isSatisfied(r, folder))).map((d) => d.install)
  }
}

/** `npm install` arguments for `packages`. */
export const npmInstallArgs = (packages: ReadonlyArray<string>): string[] => [
  "install",
  "--no-audit",
  "--no-fund",
  "--no-progress",
  "--save",
  ...packages
]

/** Records the folder's packages in `<workdirRoot>/../state/npm-package-cache.json` (atomically). */
export const rememberDependencies = (
  workdirRoot: string,
  folder: string,
  scriptId: string,
  packages: ReadonlyArray<string>
) => {
  const file = join(dirname(workdirRoot), "state", "npm-package-cache.json")
  let data: { scripts: Record<string, unknown> } = { scripts: {} }
  try {
    const parsed = JSON.parse(readFileSync(file, "utf8")) as { scripts?: unknown }
    if (parsed.scripts !== null && typeof parsed.scripts === "object") {
      data = { scripts: parsed.scripts as Record<string, unknown> }
    }
  } catch {
    // missing or unreadable: start empty
  }
  const directory = basename(folder)
  data.scripts[directory] = {
    scriptId,
    directory,
    packages: [...new Set(packages)].sort(),
    updatedAt: new Date().toISOString()
  }
  try {
    mkdirSync(dirname(file), { recursive: true })
    const tmp = `${file}.${process.pid}.tmp`
    writeFileSync(tmp, JSON.stringify(data, null, 2))
    renameSync(tmp, file)
  } catch (error) {
    console.error(`[runner] Failed to persist the npm package cache: ${(error as Error).message}`)
  }
}

/** `{scripts, packages}` counts of the package cache file (for the operator page). */
export const packageCacheSummary = (workdirRoot: string): { scripts: number; packages: number } => {
  try {
    const parsed = JSON.parse(readFileSync(join(dirname(workdirRoot), "state", "npm-package-cache.json"), "utf8")) as {
      scripts?: Record<string, { packages?: unknown }>
    }
    const entries = Object.values(parsed.scripts ?? {})
    const packages = entries.reduce((n, e) => n + (Array.isArray(e.packages) ? e.packages.length : 0), 0)
    return { scripts: entries.length, packages }
  } catch {
    return { scripts: 0, packages: 0 }
  }
}

export interface CacheEntry {
  readonly scriptId: string
  readonly directory: string
  readonly packages: ReadonlyArray<string>
}

/** The package cache file's entries (none when it is missing or unreadable). */
export const readPackageCache = (workdirRoot: string): CacheEntry[] => {
  try {
    const parsed = JSON.parse(readFileSync(join(dirname(workdirRoot), "state", "npm-package-cache.json"), "utf8")) as {
      scripts?: Record<string, { scriptId?: unknown; directory?: unknown; packages?: unknown }>
    }
    return Object.entries(parsed.scripts ?? {}).map(([key, e]) => ({
      scriptId: typeof e.scriptId === "string" ? e.scriptId : key,
      directory: typeof e.directory === "string" ? e.directory : key,
      packages: Array.isArray(e.packages)
        ? e.packages.filter((p): p is string => typeof p === "string" && p !== "")
        : []
    }))
  } catch {
    return []
  }
}

/**
 * The original's "clear package cache": the cache file is emptied and every script folder loses
 * its `node_modules` and `package-lock.json` (dependencies reinstall on the next run).
 */
export const clearPackageCache = (workdirRoot: string): void => {
  const file = join(dirname(workdirRoot), "state", "npm-package-cache.json")
  rmSync(file, { force: true })
  let entries: import("node:fs").Dirent[] = []
  try {
    entries = readdirSync(workdirRoot, { withFileTypes: true })
  } catch {
    entries = []
  }
  for (const entry of entries) {
    if (!entry.isDirectory()) continue
    rmSync(join(workdirRoot, entry.name, "node_modules"), { force: true, recursive: true })
    rmSync(join(workdirRoot, entry.name, "package-lock.json"), { force: true })
  }
  mkdirSync(dirname(file), { recursive: true })
  writeFileSync(file, JSON.stringify({ scripts: {} }, null, 2))
}
