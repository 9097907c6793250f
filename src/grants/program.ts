/**
 * The bind program, attached at BPF_CGROUP_INET4_BIND and BPF_CGROUP_INET6_BIND.
 *
 * It first reads the port's bit in the port filter (map-format.ts): most
 * binds are of ports no rule names, and they end there, with no lookup. Past
 * it, it reads the live policy map through a one-slot ARRAY_OF_MAPS (the "outer"
 * map): `apply` builds a whole new policy map and swaps it into the slot with
 * one map update, so both hooks switch from the old policy to the new one at
 * the same instant. An empty slot means no policy: every bind gets the
 * kernel's own rules.
 *
 * Return values (include/linux/bpf-cgroup.h, kernel commit 772412176fb9):
 *   3  allow, and skip the CAP_NET_BIND_SERVICE check (a grant)
 *   1  allow under the kernel's normal rules (no rule here)
 *   0  refuse (a port reserved for someone else): EPERM, or EADDRINUSE in the
 *      variant that sets it first with bpf_set_retval (see BindProgramOptions)
 * Several programs may run on a hook: allow bits are ANDed, the bypass bit ORed.
 *
 * struct bpf_sock_addr offsets (include/uapi/linux/bpf.h): user_ip4 4, user_ip6 8..20, user_port 24 (network order), protocol 36.
 *
 * The audit trail (a `log` statement): a variant of the program that, after
 * counting a grant or a refusal, writes an event (events.ts) into a
 * BPF_MAP_TYPE_RINGBUF with bpf_ringbuf_reserve/submit (Linux 5.8) before it
 * returns. The task's pid, name and cgroup id are loads through
 * bpf_get_current_task_btf at offsets from the kernel's BTF where the kernel
 * allows it (bpf/task-fields.ts), else three helpers. The submit has no
 * flags: the kernel wakes the reader only for an event written to a ring it
 * had emptied, so a reader that takes its time between reads (ops/log.ts) is
 * woken once per read, not once per event.
 * Without `log` the variant is not built at all: the program has no
 * logging instructions, not even a skipped branch (the bench and the program
 * test check its length). A full ring drops the event, never the bind.
 */
import { createHash } from 'node:crypto';
import { Assembler, FP, HELPER, R0, R1, R2, R3, R6, R7, R8, R9, type Reg } from '../bpf/asm.js';
import { emitTaskFields, type TaskFields } from '../bpf/task-fields.js';
import { EADDRINUSE } from '../os/errno.js';
import { COMM_SIZE, EVENT, eventSize } from './events.js';
import { AF_INET, AF_INET6, IPPROTO, Kind, lookupFlag, PORT_FILTER_UDP, PRINCIPAL_KINDS, RESERVED } from './map-format.js';

// Stack frame (offsets from the frame pointer r10).
const EXACT_KEY = -32; // 32-byte key with the bound address
const ANY_KEY = -64; // 32-byte key with family 0 and a zero address; with kind 0 it is the port marker's key
const SLOT = -72; // u32 index 0 of the outer map
const UID_GID = -80; // bpf_get_current_uid_gid(): uid in the low half, gid in the high half
const CGROUP_ID = -88; // bpf_get_current_cgroup_id()

const CTX_USER_IP4 = 4;
const CTX_USER_IP6 = 8;
const CTX_USER_PORT = 24;
const CTX_PROTOCOL = 36;

export const GRANT = 3;
export const PASS = 1;
export const REFUSE = 0;

export type HookFamily = 4 | 6;

/** The audit trail: which verdicts write an event, and the ring buffer's fd (0 where only the code matters). */
export interface LogOptions {
  grants: boolean;
  refusals: boolean;
  ringFd: number;
}

/** Whether the options make the logging variant (at least one verdict logged). */
export function logsAnything(log: LogOptions | undefined): log is LogOptions {
  return log !== undefined && (log.grants || log.refusals);
}

export interface BindProgramOptions {
  /**
   * Refuse with EADDRINUSE instead of EPERM: the refusal calls
   * bpf_set_retval(-EADDRINUSE) and returns 0, and the kernel hands that errno
   * to bind() (bpf_prog_run_array_cg keeps an error already set rather than
   * making it EPERM). Programs that probe ports (dev servers,
   * bindresvport(3)) move on at EADDRINUSE and stop at EPERM. Bind hooks may
   * call the helper since Linux 6.1 (cgroup_common_func_proto); the probe
   * (bpf/probes.ts, set-retval) decides. Only the refusal runs it.
   */
  addrInUse?: boolean;
  /** The audit trail (a `log` statement): build the logging variant, writing to this ring buffer. */
  log?: LogOptions;
  /**
   * The events' time from bpf_ktime_get_coarse_ns (Linux 5.11; probe
   * coarse-time) instead of bpf_ktime_get_ns: the same clock to the last tick
   * (1-10 ms), without reading the clock source, which on a VM's kvm-clock was
   * half of what an event cost (bench/README.md). Only the logging variant
   * reads the time.
   */
  coarseTime?: boolean;
  /**
   * The events' pid, comm and cgroup id loaded from the current task_struct
   * at these offsets (bpf/task-fields.ts; probe task-btf) instead of asked
   * of three helpers, which on this machine were more than half of what an
   * event cost (bench/README.md). Only the logging variant reads them.
   */
  task?: TaskFields;
}

/**
 * Builds the program for one hook, the outer map fd and the port filter's fd
 * (map-format.ts). The code does not depend on the policy. `portFilterFd` may
 * be left 0 only where the code alone matters (bindProgramName, tests).
 */
export function buildBindProgram(family: HookFamily, outerMapFd: number, portFilterFd = 0, options: BindProgramOptions = {}): Assembler {
  const { log } = options;
  const a = new Assembler();
  a.mov(R6, R1);

  // Only TCP and UDP carry ports lowport manages. r9 = the byte offset of the protocol's half of the port filter.
  a.ldx(4, R7, R6, CTX_PROTOCOL)
    .mov(R9, { imm: 0 })
    .jmp('jeq', R7, { imm: IPPROTO.tcp }, 'protocol_ok')
    .jmp('jne', R7, { imm: IPPROTO.udp }, 'pass')
    .mov(R9, { imm: PORT_FILTER_UDP })
    .label('protocol_ok');

  // r8 = the port, host order; r9 = its flags in the port filter, read in
  // place (no lookup, no hashing). 0: no rule names the port, and the bind
  // goes on under the kernel's rules. The mask bounds the offset for the verifier.
  a.ldx(4, R8, R6, CTX_USER_PORT).be(R8, 16).alu64('and', R8, { imm: 0xffff });
  a.mov(R2, R8)
    .alu64('lsh', R2, { imm: 1 })
    .alu64('add', R2, R9)
    .ldMapValue(R1, portFilterFd, 0, 'lowport_ports')
    .alu64('add', R1, R2)
    .ldx(2, R9, R1, 0)
    .jmp('jeq', R9, { imm: 0 }, 'pass');

  // Zero both keys, then fill in protocol and port.
  a.mov(R0, { imm: 0 });
  for (let off = ANY_KEY; off < 0; off += 8) a.stx(8, FP, off, R0);
  a.stx(1, FP, EXACT_KEY + 1, R7).stx(1, FP, ANY_KEY + 1, R7);
  a.stx(2, FP, EXACT_KEY + 2, R8).stx(2, FP, ANY_KEY + 2, R8);

  // r7 = the live policy map, or pass when none is loaded.
  a.st(4, FP, SLOT, 0).ldMapFd(R1, outerMapFd, 'lowport_outer').mov(R2, FP).alu64('add', R2, { imm: SLOT });
  a.call(HELPER.map_lookup_elem).jmp('jeq', R0, { imm: 0 }, 'pass').mov(R7, R0);

  // A port reserved in the live map or the next (the filter's RESERVED bit):
  // its marker's own flags decide (r9), and it counts refusals (r8). Else the
  // filter's flags cover the live map's lookups (map-format.ts), and r8 = 0.
  a.mov(R8, { imm: 0 }).mov(R1, R9).alu64('and', R1, { imm: RESERVED }).jmp('jeq', R1, { imm: 0 }, 'flags_ready');
  lookup(a, ANY_KEY);
  a.jmp('jeq', R0, { imm: 0 }, 'pass').mov(R8, R0).ldx(4, R9, R8, 4);
  a.label('flags_ready');

  // No lookup with an exact address: no need for the address.
  const exactFlags = PRINCIPAL_KINDS.reduce((f, kind) => f | lookupFlag(kind, false), 0);
  a.mov(R1, R9).alu64('and', R1, { imm: exactFlags }).jmp('jeq', R1, { imm: 0 }, 'address_done');

  // The bound address into the exact key. The verifier lets a bind4 program
  // read only user_ip4 and a bind6 program only user_ip6, so each hook gets its
  // own variant. An IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a JVM binds
  // for an IPv4 literal) is keyed as IPv4.
  if (family === 4) {
    a.ldx(4, R2, R6, CTX_USER_IP4)
      .stx(4, FP, EXACT_KEY + 16, R2)
      .st(1, FP, EXACT_KEY + 4, AF_INET);
    a.label('address_done');
  } else {
    a.ldx(4, R2, R6, CTX_USER_IP6).jmp('jne', R2, { imm: 0 }, 'ipv6');
    a.ldx(4, R2, R6, CTX_USER_IP6 + 4).jmp('jne', R2, { imm: 0 }, 'ipv6');
    a.ldx(4, R2, R6, CTX_USER_IP6 + 8)
      .be(R2, 32)
      .jmp('jne', R2, { imm: 0xffff }, 'ipv6');
    a.ldx(4, R2, R6, CTX_USER_IP6 + 12)
      .stx(4, FP, EXACT_KEY + 16, R2)
      .st(1, FP, EXACT_KEY + 4, AF_INET)
      .ja('address_done');
    a.label('ipv6');
    for (let i = 0; i < 16; i += 4) a.ldx(4, R2, R6, CTX_USER_IP6 + i).stx(4, FP, EXACT_KEY + 16 + i, R2);
    a.st(1, FP, EXACT_KEY + 4, AF_INET6);
    a.label('address_done');
  }

  a.call(HELPER.get_current_uid_gid).stx(8, FP, UID_GID, R0);

  for (const kind of PRINCIPAL_KINDS) {
    const exact = lookupFlag(kind, false);
    const any = lookupFlag(kind, true);
    const next = `not_kind_${kind}`;
    a.mov(R1, R9)
      .alu64('and', R1, { imm: exact | any })
      .jmp('jeq', R1, { imm: 0 }, next);
    loadPrincipalId(a, kind, R1);
    a.st(1, FP, EXACT_KEY, kind)
      .st(1, FP, ANY_KEY, kind)
      .stx(8, FP, EXACT_KEY + 8, R1)
      .stx(8, FP, ANY_KEY + 8, R1);
    for (const [flag, key, name] of [
      [exact, EXACT_KEY, 'exact'],
      [any, ANY_KEY, 'any'],
    ] as const) {
      const skip = `skip_${kind}_${name}`;
      a.mov(R1, R9).alu64('and', R1, { imm: flag }).jmp('jeq', R1, { imm: 0 }, skip);
      lookup(a, key);
      a.jmp('jne', R0, { imm: 0 }, 'grant').label(skip);
    }
    a.label(next);
  }

  // Nothing granted. A reserved port refuses everyone but root (r8 is its
  // marker: only the reserved path sets it, and the check says so to the verifier).
  a.mov(R1, R9).alu64('and', R1, { imm: RESERVED }).jmp('jeq', R1, { imm: 0 }, 'pass');
  a.jmp('jeq', R8, { imm: 0 }, 'pass');
  a.ldx(4, R1, FP, UID_GID).jmp('jeq', R1, { imm: 0 }, 'pass');
  a.mov(R1, { imm: 1 }).atomicAdd64(R8, 8, R1);
  if (options.addrInUse === true) a.mov(R1, { imm: -EADDRINUSE }).call(HELPER.set_retval);
  if (logsAnything(log) && log.refusals) a.ldx(4, R9, R8, 0).mov(R7, { imm: REFUSE }).ja('log');
  else a.ret(REFUSE);

  a.label('grant').mov(R1, { imm: 1 }).atomicAdd64(R0, 8, R1);
  if (logsAnything(log) && log.grants) a.ldx(4, R9, R0, 0).mov(R7, { imm: GRANT }).ja('log');
  else a.ret(GRANT);
  a.label('pass').ret(PASS);
  if (logsAnything(log)) emitEvent(a, family, log.ringFd, options);
  return a;
}

/**
 * The event (events.ts), entered with r7 = the verdict to return and r9 = the
 * policy line of the entry that decided. r6 is still the context; the uid and
 * gid are on the stack (UID_GID). Every byte of the record is written.
 */
function emitEvent(a: Assembler, family: HookFamily, ringFd: number, options: BindProgramOptions): void {
  a.label('log');
  a.ldMapFd(R1, ringFd, 'lowport_events')
    .mov(R2, { imm: eventSize(family) })
    .mov(R3, { imm: 0 })
    .call(HELPER.ringbuf_reserve);
  a.jmp('jeq', R0, { imm: 0 }, 'log_done').mov(R8, R0);
  a.call(options.coarseTime === true ? HELPER.ktime_get_coarse_ns : HELPER.ktime_get_ns).stx(8, R8, EVENT.TIME, R0);
  if (options.task !== undefined) {
    emitTaskFields(a, options.task, R8, { pid: EVENT.PID, comm: EVENT.COMM, cgroup: EVENT.CGROUP });
  } else {
    a.call(HELPER.get_current_cgroup_id).stx(8, R8, EVENT.CGROUP, R0);
    a.call(HELPER.get_current_pid_tgid).alu64('rsh', R0, { imm: 32 }).stx(4, R8, EVENT.PID, R0);
    a.mov(R1, R8).alu64('add', R1, { imm: EVENT.COMM }).mov(R2, { imm: COMM_SIZE }).call(HELPER.get_current_comm);
  }
  a.ldx(4, R1, FP, UID_GID).stx(4, R8, EVENT.UID, R1);
  a.ldx(4, R1, FP, UID_GID + 4).stx(4, R8, EVENT.GID, R1);
  a.stx(4, R8, EVENT.LINE, R9);
  a.ldx(4, R1, R6, CTX_USER_PORT).be(R1, 16).stx(2, R8, EVENT.PORT, R1);
  a.ldx(4, R1, R6, CTX_PROTOCOL).stx(1, R8, EVENT.PROTOCOL, R1);
  a.mov(R1, R7).alu64('lsh', R1, { imm: 4 }).alu64('or', R1, { imm: family }).stx(1, R8, EVENT.KIND, R1);
  if (family === 4) a.ldx(4, R1, R6, CTX_USER_IP4).stx(4, R8, EVENT.ADDR, R1);
  else for (let i = 0; i < 16; i += 4) a.ldx(4, R1, R6, CTX_USER_IP6 + i).stx(4, R8, EVENT.ADDR + i, R1);
  a.mov(R1, R8).mov(R2, { imm: 0 }).call(HELPER.ringbuf_submit);
  a.label('log_done').mov(R0, R7).exit();
}

/** r0 = bpf_map_lookup_elem(r7, fp + key) */
function lookup(a: Assembler, key: number): void {
  a.mov(R1, R7).mov(R2, FP).alu64('add', R2, { imm: key }).call(HELPER.map_lookup_elem);
}

function loadPrincipalId(a: Assembler, kind: (typeof PRINCIPAL_KINDS)[number], dst: Reg): void {
  switch (kind) {
    case Kind.UID:
      a.ldx(4, dst, FP, UID_GID);
      break;
    case Kind.GID:
      a.ldx(4, dst, FP, UID_GID + 4);
      break;
    case Kind.CGROUP:
      // Only called when some rule is scoped to a cgroup, so the helper call is off the common path.
      a.call(HELPER.get_current_cgroup_id).stx(8, FP, CGROUP_ID, R0).ldx(8, dst, FP, CGROUP_ID);
      break;
    case Kind.EVERYONE:
      a.mov(dst, { imm: 0 });
      break;
  }
}

/**
 * The program's name in the kernel: `lowport4_` or `lowport6_` and 6 hex digits of a hash of
 * its code. `apply` compares it with the name of the program the links run to
 * tell whether this lowport brings a different program (an upgrade, or the
 * other refusal variant: the kernel's answer to the set-retval probe changed), without
 * depending on how the kernel computes its own tag.
 */
export function bindProgramName(family: HookFamily, options: BindProgramOptions = {}): string {
  const code = buildBindProgram(
    family,
    0,
    0,
    options.log === undefined ? options : { ...options, log: { ...options.log, ringFd: 0 } },
  ).assemble();
  return `lowport${family}_${createHash('sha256').update(code).digest('hex').slice(0, 6)}`;
}
