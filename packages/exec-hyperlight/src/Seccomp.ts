import { createHash, randomUUID } from "node:crypto"
import { lstatSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

/**
 * A classic-BPF seccomp filter for the bubblewrap sandbox, assembled here (no compiler, no
 * libseccomp): x86_64 only. It makes these system calls fail with EPERM: kernel-attack-surface
 * and escape tools a sandboxed agent never needs (ptrace, mount family and new mount API,
 * namespace creation through unshare/setns/clone flags, module loading, kexec, bpf,
 * perf_event_open, userfaultfd, io_uring, keyrings, handle-based opens, clock/host settings,
 * swap, reboot, ioperm/iopl, syslog). clone3 gets ENOSYS so libc falls back to clone, whose
 * flags can be checked. Syscalls of any other ABI (x32, i386) are refused entirely.
 */

const BPF_LD_W_ABS = 0x20
const BPF_JEQ_K = 0x15
const BPF_JGE_K = 0x35
const BPF_JSET_K = 0x45
const BPF_RET_K = 0x06

const AUDIT_ARCH_X86_64 = 0xc000003e
const X32_SYSCALL_BIT = 0x40000000
const RET_ALLOW = 0x7fff0000
const RET_ERRNO = 0x00050000
const EPERM = 1
const ENOSYS = 38

const OFFSET_NR = 0
const OFFSET_ARCH = 4
const OFFSET_ARG0_LOW = 16

/** x86_64 numbers of the refused system calls. */
export const DENIED_SYSCALLS_X86_64: Readonly<Record<string, number>> = {
  ptrace: 101,
  syslog: 103,
  vhangup: 153,
  pivot_root: 155,
  adjtimex: 159,
  acct: 163,
  settimeofday: 164,
  mount: 165,
  umount2: 166,
  swapon: 167,
  swapoff: 168,
  reboot: 169,
  sethostname: 170,
  setdomainname: 171,
  iopl: 172,
  ioperm: 173,
  init_module: 175,
  delete_module: 176,
  quotactl: 179,
  lookup_dcookie: 212,
  clock_settime: 227,
  kexec_load: 246,
  add_key: 248,
  request_key: 249,
  keyctl: 250,
  unshare: 272,
  perf_event_open: 298,
  fanotify_init: 300,
  name_to_handle_at: 303,
  open_by_handle_at: 304,
  clock_adjtime: 305,
  setns: 308,
  finit_module: 313,
  kexec_file_load: 320,
  bpf: 321,
  userfaultfd: 323,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  open_tree: 428,
  move_mount: 429,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  mount_setattr: 442
}
const CLONE = 56
const CLONE3 = 435
/** CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET */
const CLONE_NEW_ANY = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

type Insn = readonly [code: number, jt: number, jf: number, k: number]

/** The filter program as bytes (struct sock_filter[], little-endian), as `bwrap --seccomp` reads it. */
export const seccompProgram = (): Buffer => {
  const denied = Object.values(DENIED_SYSCALLS_X86_64)
  // Layout: [0] ld arch, [1] jeq x86_64, [2] ret errno (foreign arch), [3] ld nr,
  // [4] jge x32 → deny, [5] jeq clone3 → enosys, [6] jeq clone → clone check,
  // [7..7+n) jeq denied → deny, allow, deny, enosys, clone check: ld arg0, jset, allow, deny.
  const n = denied.length
  const iAllow = 7 + n
  const iDeny = iAllow + 1
  const iEnosys = iDeny + 1
  const iClone = iEnosys + 1
  const prog: Array<Insn> = []
  const jump = (from: number, to: number) => to - from - 1
  prog.push([BPF_LD_W_ABS, 0, 0, OFFSET_ARCH])
  prog.push([BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64])
  prog.push([BPF_RET_K, 0, 0, RET_ERRNO | EPERM])
  prog.push([BPF_LD_W_ABS, 0, 0, OFFSET_NR])
  prog.push([BPF_JGE_K, jump(4, iDeny), 0, X32_SYSCALL_BIT])
  prog.push([BPF_JEQ_K, jump(5, iEnosys), 0, CLONE3])
  prog.push([BPF_JEQ_K, jump(6, iClone), 0, CLONE])
  denied.forEach((nr, i) => {
    prog.push([BPF_JEQ_K, jump(7 + i, iDeny), 0, nr])
  })
  prog.push([BPF_RET_K, 0, 0, RET_ALLOW])
  prog.push([BPF_RET_K, 0, 0, RET_ERRNO | EPERM])
  prog.push([BPF_RET_K, 0, 0, RET_ERRNO | ENOSYS])
  prog.push([BPF_LD_W_ABS, 0, 0, OFFSET_ARG0_LOW])
  prog.push([BPF_JSET_K, 1, 0, CLONE_NEW_ANY])
  prog.push([BPF_RET_K, 0, 0, RET_ALLOW])
  prog.push([BPF_RET_K, 0, 0, RET_ERRNO | EPERM])
  for (const [i, [, jt]] of prog.entries()) if (jt > 255) throw new Error(`seccomp: jump too far at ${i}`)
  const buf = Buffer.alloc(prog.length * 8)
  prog.forEach(([code, jt, jf, k], i) => {
    buf.writeUInt16LE(code, i * 8)
    buf.writeUInt8(jt, i * 8 + 2)
    buf.writeUInt8(jf, i * 8 + 3)
    buf.writeUInt32LE(k >>> 0, i * 8 + 4)
  })
  return buf
}

let filterFile: string | null | undefined
/**
 * Path of the filter file, or null where the filter does not apply (not x86_64). Written once into
 * a directory only this user can write (`<tmp>/runlane-seccomp-<uid>`, checked: a directory owned
 * by us, mode 0700), named by its content hash, so every process reuses it and none leaves one behind.
 */
export const seccompFilterFile = (): string | null => {
  if (filterFile !== undefined) return filterFile
  if (process.arch !== "x64") {
    filterFile = null
    return filterFile
  }
  const program = seccompProgram()
  const hash = createHash("sha256").update(program).digest("hex").slice(0, 16)
  const uid = process.getuid?.() ?? 0
  const dir = join(tmpdir(), `runlane-seccomp-${uid}`)
  try {
    mkdirSync(dir, { mode: 0o700 })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
  }
  const st = lstatSync(dir)
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o077) !== 0) {
    throw new Error(`seccomp: ${dir} is not a private directory of uid ${uid}`)
  }
  const file = join(dir, `${hash}.bpf`)
  let current: Buffer | undefined
  try {
    current = readFileSync(file)
  } catch {}
  if (current === undefined || !current.equals(program)) {
    const tmp = join(dir, `${hash}.${process.pid}.${randomUUID()}.tmp`)
    writeFileSync(tmp, program, { mode: 0o400 })
    renameSync(tmp, file)
  }
  filterFile = file
  return filterFile
}
