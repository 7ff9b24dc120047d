import { execFile } from "node:child_process"
import { randomBytes } from "node:crypto"
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"

/** Where the secrets FIFO appears inside the container (bind-mounted read-only). */
export const SECRET_FIFO_TARGET = "/run/runlane/secrets"

/** Largest secret payload: it must fit in the kernel pipe buffer so writing never blocks. */
export const MAX_SECRET_PAYLOAD = 60 * 1024

const quote = (value: string): string => `'${value.replaceAll("'", `'\\''`)}'`

/**
 * Secrets reach the container through a named pipe (FIFO) created in a private host
 * directory (mode 0700, on tmpfs by default) and bind-mounted at `SECRET_FIFO_TARGET`.
 * A FIFO stores nothing on any filesystem: the payload lives in the kernel pipe buffer until
 * the container's wrapper reads it, and the FIFO node is deleted when the job ends. The
 * wrapper (`/bin/sh -c`, text fixed and free of secrets) reads `export K='v'` lines up to a
 * random end marker, evals them and `exec`s the job's argv, so the values exist only in the
 * job's process environment: never in the container config (`docker inspect`), labels, argv
 * or a file that outlives the job.
 */
export interface SecretChannel {
  /** Host path of the FIFO (bind-mount source). */
  readonly hostPath: string
  /** Command that replaces the job's argv: the wrapper followed by the argv. */
  readonly wrap: (argv: ReadonlyArray<string>) => Array<string>
  /** Writes the payload into the pipe (never blocks: the host keeps a read-write descriptor). */
  readonly send: () => void
  /** Closes the pipe and deletes the FIFO and its directory. Idempotent. */
  readonly close: () => void
}

export const isEnvName = (name: string): boolean => /^[A-Za-z_][A-Za-z0-9_]*$/.test(name)

export const secretPayloadSize = (secrets: ReadonlyArray<readonly [string, string]>): number =>
  secrets.reduce((n, [k, v]) => n + Buffer.byteLength(`export ${k}=${quote(v)}\n`), 64)

export const openSecretChannel = async (
  baseDir: string,
  secrets: ReadonlyArray<readonly [string, string]>,
  shell: string
): Promise<SecretChannel> => {
  const dir = mkdtempSync(join(baseDir, "runlane-secrets-"))
  let fd: number | undefined
  const close = () => {
    if (fd !== undefined) {
      try {
        closeSync(fd)
      } catch {}
      fd = undefined
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const hostPath = join(dir, "fifo")
    // Node has no mkfifo(3); the container user must be able to open it (the 0700 directory keeps other host users out)
    await promisify(execFile)("mkfifo", ["-m", "0666", hostPath])
    fd = openSync(hostPath, constants.O_RDWR | constants.O_NONBLOCK)
    const marker = `#runlane-end-${randomBytes(12).toString("hex")}`
    const payload = `${secrets.map(([k, v]) => `export ${k}=${quote(v)}\n`).join("")}${marker}\n`
    const script = `s=; while IFS= read -r l; do [ "$l" = '${marker}' ] && break; s="$s$l\n"; done <${SECRET_FIFO_TARGET}; eval "$s"; unset s l; exec "$@"`
    return {
      hostPath,
      wrap: (argv) => [shell, "-c", script, "runlane-secrets", ...argv],
      send: () => {
        if (fd === undefined) return
        const bytes = Buffer.from(payload)
        let off = 0
        while (off < bytes.length) off += writeSync(fd, bytes, off)
      },
      close
    }
  } catch (error) {
    close()
    throw error
  }
}
