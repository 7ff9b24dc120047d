import { existsSync, lstatSync, readlinkSync } from "node:fs"

/** Where the egress proxy's socket directory appears inside the sandbox. */
export const SANDBOX_PROXY_DIR = "/run/runlane"
/** The sandbox-side loopback port of the HTTP proxy (`http_proxy`). */
export const SANDBOX_PROXY_PORT = 3128

/** Host system directories made visible read-only (symlinks such as `/bin -> usr/bin` kept as symlinks). */
const SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
/** The few `/etc` entries programs need to start; not the rest (no shadow, no ssh keys, no credentials). */
const ETC_FILES = [
  "/etc/passwd",
  "/etc/group",
  "/etc/hosts",
  "/etc/nsswitch.conf",
  "/etc/ld.so.cache",
  "/etc/ld.so.conf",
  "/etc/ld.so.conf.d",
  "/etc/localtime",
  "/etc/alternatives",
  "/etc/ssl",
  "/etc/ca-certificates"
]

export interface BwrapPlan {
  readonly bwrap: string
  /** The command to run inside. */
  readonly argv: ReadonlyArray<string>
  /** Bound read-write at the same path; the sandbox starts there. */
  readonly workingDir: string
  readonly readOnlyPaths?: ReadonlyArray<string> | undefined
  /** Network through the egress proxy: the socket dir to bind and the loopback ports to bridge. */
  readonly proxy?: { readonly socketDir: string; readonly ports: ReadonlyArray<number> } | undefined
  /** Launcher on the host: join these cgroup.procs files and set RLIMIT_CPU before exec'ing bwrap. */
  readonly launcher?:
    | { readonly cgroupProcs: ReadonlyArray<string>; readonly cpuSeconds?: number | undefined }
    | undefined
  /** A seccomp BPF program file, handed to bwrap on fd 3 by the launcher. */
  readonly seccompFile?: string | undefined
}

let systemMounts: ReadonlyArray<string> | undefined
const systemDirArgs = (): ReadonlyArray<string> => {
  if (systemMounts !== undefined) return systemMounts
  const args: Array<string> = []
  for (const dir of SYSTEM_DIRS) {
    try {
      const st = lstatSync(dir)
      if (st.isSymbolicLink()) args.push("--symlink", readlinkSync(dir), dir)
      else if (st.isDirectory()) args.push("--ro-bind", dir, dir)
    } catch {}
  }
  for (const file of ETC_FILES) if (existsSync(file)) args.push("--ro-bind", file, file)
  systemMounts = args
  return args
}

const shellQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`

/** Starts socat bridges from the sandbox's loopback ports to the proxy socket, waits until they listen, then execs the command. */
const bridgeScript = (ports: ReadonlyArray<number>): string => {
  const sock = `${SANDBOX_PROXY_DIR}/proxy.sock`
  const lines = ports.map(
    (p) => `socat TCP-LISTEN:${p},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:${sock} </dev/null >/dev/null 2>&1 &`
  )
  const waits = ports.map((p) => {
    const hex = p.toString(16).toUpperCase().padStart(4, "0")
    return `i=0; until grep -q '0100007F:${hex} 00000000:0000 0A' /proc/net/tcp; do i=$((i+1)); [ $i -gt 1000 ] && break; sleep 0.005; done`
  })
  return [...lines, ...waits, 'exec "$@"'].join("\n")
}

/** The full argv (bwrap, or the launcher shell exec'ing bwrap) for one sandboxed command. */
export const bwrapArgv = (plan: BwrapPlan): Array<string> => {
  const args: Array<string> = [
    plan.bwrap,
    "--unshare-user",
    "--unshare-pid",
    "--unshare-net",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--hostname",
    "sandbox",
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL",
    ...(plan.seccompFile !== undefined ? ["--seccomp", "3"] : []),
    ...systemDirArgs(),
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    "--tmpfs",
    "/tmp"
  ]
  // Shallower paths first, so a read-only path inside the working directory stays read-only
  // and a working directory inside a read-only path stays writable.
  const binds = [
    ...(plan.readOnlyPaths ?? []).map((p) => ({ p, flag: "--ro-bind" })),
    { p: plan.workingDir, flag: "--bind" }
  ].sort((a, b) => a.p.length - b.p.length)
  for (const { p, flag } of binds) args.push(flag, p, p)
  if (plan.proxy !== undefined) args.push("--ro-bind", plan.proxy.socketDir, SANDBOX_PROXY_DIR)
  // The sandbox's own root (a tmpfs holding the mount points) becomes read-only too.
  args.push("--remount-ro", "/", "--chdir", plan.workingDir, "--")
  if (plan.proxy !== undefined) args.push("/bin/sh", "-c", bridgeScript(plan.proxy.ports), "sh")
  args.push(...plan.argv)
  if (plan.launcher === undefined && plan.seccompFile === undefined) return args
  const steps = (plan.launcher?.cgroupProcs ?? []).map((f) => `echo $$ > ${shellQuote(f)} || exit 125`)
  const cpu = plan.launcher?.cpuSeconds
  if (cpu !== undefined) steps.push(`ulimit -t ${Math.ceil(cpu)} || exit 125`)
  if (plan.seccompFile !== undefined) steps.push(`exec 3< ${shellQuote(plan.seccompFile)} || exit 125`)
  steps.push('exec "$@"')
  return ["/bin/sh", "-c", steps.join("\n"), "runlane-launcher", ...args]
}
