/**
 * What this kernel can do for lowport, found out by trying (as systemd's
 * bpf-socket-bind.c and cilium/ebpf's feature tests do), not by its version:
 * distributions backport (RHEL 8's 4.18 has what 5.x has), and a new kernel
 * may still refuse (lockdown, a container without CAP_BPF/CAP_SYS_ADMIN, a
 * seccomp filter). Each probe runs once per process; the results are cached.
 * Needs root (or CAP_BPF with CAP_NET_ADMIN): without it every probe reports
 * EPERM, and callers fall back to the version (grants/target.ts, doctor).
 */
import { Assembler, FP, HELPER, R0, R1, R2, R3, R6 } from './asm.js';
import { Btf, BtfError } from './btf.js';
import { emitTaskFields, taskFields, type TaskFields } from './task-fields.js';
import { BPF_CGROUP_INET4_BIND, BPF_MAP_TYPE, BPF_PROG_TYPE_CGROUP_SOCK_ADDR } from './attr.js';
import { closeFd, linkCreate, mapCreate, progLoad } from './syscall.js';
import { SyscallError } from '../os/libc.js';

export type FeatureName =
  'bind-return-3' | 'cgroup-link' | 'hash-map' | 'array-of-maps' | 'port-filter' | 'set-retval' | 'ringbuf' | 'coarse-time' | 'task-btf';

export interface FeatureResult {
  name: FeatureName;
  /** What was tried, in a few words (for doctor). */
  tried: string;
  ok: boolean;
  /** The errno name when the kernel refused (EINVAL: unknown to this kernel; EPERM: not allowed here). */
  errno?: string;
  /** Why the probe was not tried (an earlier one it needs failed). */
  skipped?: string;
  /** The verifier's last log line, when it refused a program. */
  verifier?: string;
}

/**
 * A bind hook may return 3: "allow, and skip the CAP_NET_BIND_SERVICE check"
 * (Linux 5.12, commit 772412176fb9). A verifier without it allows only 0 and
 * 1, and refuses `r0 = 3; exit` with EINVAL.
 */
function probeBindReturn3(): { result: FeatureResult; fd?: number } {
  return probeBindReturn(3);
}

/** Loads `r0 = VALUE; exit` for the IPv4 bind hook (exported for the tests: 4 is refused by every kernel). */
export function probeBindReturn(value: number): { result: FeatureResult; fd?: number } {
  const tried = `load \`r0 = ${value}; exit\` for BPF_CGROUP_INET4_BIND`;
  try {
    const fd = progLoad({
      type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
      expectedAttachType: BPF_CGROUP_INET4_BIND,
      insns: new Assembler().mov(R0, { imm: value }).exit().assemble(),
      name: 'lowport_probe',
    });
    return { result: { name: 'bind-return-3', tried, ok: true }, fd };
  } catch (e) {
    return { result: { name: 'bind-return-3', tried, ok: false, ...refusal(e) } };
  }
}

/**
 * bpf_link for cgroups (Linux 5.7): LINK_CREATE with the probe program and a
 * target fd that is no fd. A kernel with cgroup links looks the cgroup up and
 * answers EBADF; one without the command answers EINVAL. Nothing is attached.
 */
function probeCgroupLink(progFd: number | undefined): FeatureResult {
  const tried = 'BPF_LINK_CREATE of a bind hook on a bad cgroup fd (expects EBADF)';
  if (progFd === undefined) return { name: 'cgroup-link', tried, ok: false, skipped: 'no program could be loaded' };
  try {
    // target_fd is a u32; all ones is fd -1 to the kernel.
    closeFd(linkCreate(progFd, 0xffffffff, BPF_CGROUP_INET4_BIND));
    // Cannot happen (there is no cgroup -1); if it does, the link was made and is closed again.
    return { name: 'cgroup-link', tried, ok: true };
  } catch (e) {
    if (e instanceof SyscallError && e.errnoName === 'EBADF') return { name: 'cgroup-link', tried, ok: true };
    return { name: 'cgroup-link', tried, ok: false, ...refusal(e) };
  }
}

/** The map types the program looks up (grants/live.ts): the policy hash inside the one-slot outer array of maps. */
function probeMaps(): FeatureResult[] {
  const results: FeatureResult[] = [];
  let inner: number | undefined;
  const attempt = (name: FeatureName, tried: string, create: () => number, keep = false): void => {
    try {
      const fd = create();
      if (keep) inner = fd;
      else closeFd(fd);
      results.push({ name, tried, ok: true });
    } catch (e) {
      results.push({ name, tried, ok: false, ...refusal(e) });
    }
  };
  try {
    attempt(
      'hash-map',
      'create a BPF_MAP_TYPE_HASH',
      () => mapCreate({ type: BPF_MAP_TYPE.HASH, keySize: 8, valueSize: 8, maxEntries: 1, name: 'lowport_probe' }),
      true,
    );
    const template = inner;
    if (template === undefined) {
      results.push({
        name: 'array-of-maps',
        tried: 'create a BPF_MAP_TYPE_ARRAY_OF_MAPS',
        ok: false,
        skipped: 'no inner map could be created',
      });
    } else {
      attempt('array-of-maps', 'create a BPF_MAP_TYPE_ARRAY_OF_MAPS of hashes', () =>
        mapCreate({
          type: BPF_MAP_TYPE.ARRAY_OF_MAPS,
          keySize: 4,
          valueSize: 4,
          maxEntries: 1,
          innerMapFd: template,
          name: 'lowport_probe',
        }),
      );
    }
  } finally {
    if (inner !== undefined) closeFd(inner);
  }
  return results;
}

/** The port filter's value size (grants/map-format.ts PORT_FILTER_SIZE: a u16 per TCP and UDP port). */
const PORT_FILTER_BYTES = 2 * 65536 * 2;

/**
 * The port filter as the bind program reads it (grants/program.ts): a
 * one-element ARRAY map of 256 KiB, its last u16 read in place through
 * BPF_PSEUDO_MAP_VALUE (Linux 5.2) by a bind4 program. Nothing is attached.
 */
function probePortFilter(): FeatureResult {
  const name = 'port-filter';
  const tried = 'read a 256 KiB one-element BPF_MAP_TYPE_ARRAY in place (BPF_PSEUDO_MAP_VALUE) from a bind4 program';
  let map: number | undefined;
  try {
    map = mapCreate({ type: BPF_MAP_TYPE.ARRAY, keySize: 4, valueSize: PORT_FILTER_BYTES, maxEntries: 1, name: 'lowport_probe' });
    const insns = new Assembler()
      .ldMapValue(R1, map, PORT_FILTER_BYTES - 2)
      .ldx(2, R0, R1, 0)
      .mov(R0, { imm: 1 })
      .exit()
      .assemble();
    closeFd(progLoad({ type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR, expectedAttachType: BPF_CGROUP_INET4_BIND, insns, name: 'lowport_probe' }));
    return { name, tried, ok: true };
  } catch (e) {
    return { name, tried, ok: false, ...refusal(e) };
  } finally {
    if (map !== undefined) closeFd(map);
  }
}

const SET_RETVAL_TRIED = 'load a bind4 program that calls bpf_set_retval';
let setRetvalCached: FeatureResult | undefined;
let setRetvalOverride: boolean | undefined;

/**
 * bpf_set_retval from a bind hook (Linux 6.1: cgroup_common_func_proto; the
 * helper came in 5.18 for sockopt, sysctl and device hooks only): with it a
 * reservation refuses with EADDRINUSE, without it with EPERM. Optional:
 * lowport works without it, so it is not among probeFeatures() (whose every
 * failure stops `apply`). Loads `r1 = 0; call bpf_set_retval; r0 = 1; exit`
 * for bind4; nothing is attached. A kernel without it refuses the call
 * (EINVAL, "unknown func bpf_set_retval#187").
 */
export function probeSetRetval(): FeatureResult {
  if (setRetvalOverride !== undefined) {
    return setRetvalOverride
      ? { name: 'set-retval', tried: SET_RETVAL_TRIED, ok: true }
      : { name: 'set-retval', tried: SET_RETVAL_TRIED, ok: false, skipped: 'turned off by a test' };
  }
  if (setRetvalCached !== undefined) return setRetvalCached;
  try {
    const insns = new Assembler().mov(R1, { imm: 0 }).call(HELPER.set_retval).mov(R0, { imm: 1 }).exit().assemble();
    closeFd(progLoad({ type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR, expectedAttachType: BPF_CGROUP_INET4_BIND, insns, name: 'lowport_probe' }));
    setRetvalCached = { name: 'set-retval', tried: SET_RETVAL_TRIED, ok: true };
  } catch (e) {
    setRetvalCached = { name: 'set-retval', tried: SET_RETVAL_TRIED, ok: false, ...refusal(e) };
  }
  return setRetvalCached;
}

/**
 * For the tests only (not reachable from the command line or the library):
 * probeSetRetval answers `ok` as told, without asking the kernel (false: the
 * EPERM variant on a kernel that has the helper); undefined asks the kernel
 * again. Either variant refuses the same binds: only the errno differs.
 */
export function overrideSetRetvalForTests(ok: boolean | undefined): void {
  setRetvalOverride = ok;
}

/** The errno and the verifier's last line (not its statistics) of a refusal. */
export function refusal(e: unknown): { errno: string; verifier?: string } {
  if (!(e instanceof SyscallError)) throw e;
  const log = /verifier log:\n([\s\S]*)$/.exec(e.message)?.[1];
  const last = log
    ?.split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^(processed|verification time)/.test(l))
    .pop();
  return { errno: e.errnoName, ...(last === undefined ? {} : { verifier: last }) };
}

let cached: readonly FeatureResult[] | undefined;

/** Every probe, once per process. */
export function probeFeatures(): readonly FeatureResult[] {
  if (cached !== undefined) return cached;
  const bind = probeBindReturn3();
  try {
    cached = [bind.result, probeCgroupLink(bind.fd), ...probeMaps(), probePortFilter()];
  } finally {
    if (bind.fd !== undefined) closeFd(bind.fd);
  }
  return cached;
}

/** The first probe that failed, if any. */
export function missingFeature(): FeatureResult | undefined {
  return probeFeatures().find((r) => !r.ok);
}

const COARSE_TIME_TRIED = 'load a bind4 program that calls bpf_ktime_get_coarse_ns';
let coarseTimeCached: FeatureResult | undefined;

/**
 * bpf_ktime_get_coarse_ns (Linux 5.11): CLOCK_MONOTONIC to the last tick,
 * without reading the clock source. The audit trail's events take their
 * time from it where the kernel has it: on a VM's kvm-clock, bpf_ktime_get_ns
 * alone cost a logged bind about 5% (bench/README.md). Without it (5.8 to
 * 5.10) the events use bpf_ktime_get_ns. Optional, like set-retval; once
 * per process; nothing is attached.
 */
export function probeCoarseTime(): FeatureResult {
  if (coarseTimeCached !== undefined) return coarseTimeCached;
  try {
    const insns = new Assembler().call(HELPER.ktime_get_coarse_ns).mov(R0, { imm: 1 }).exit().assemble();
    closeFd(progLoad({ type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR, expectedAttachType: BPF_CGROUP_INET4_BIND, insns, name: 'lowport_probe' }));
    coarseTimeCached = { name: 'coarse-time', tried: COARSE_TIME_TRIED, ok: true };
  } catch (e) {
    coarseTimeCached = { name: 'coarse-time', tried: COARSE_TIME_TRIED, ok: false, ...refusal(e) };
  }
  return coarseTimeCached;
}

let ringbufCached: FeatureResult | undefined;

/**
 * The audit trail's needs (a policy with `log`, grants/program.ts): a
 * BPF_MAP_TYPE_RINGBUF (Linux 5.8) and a bind4 program that reserves a
 * record in it, fills it with the helpers the event uses (ktime, pid, comm,
 * cgroup id) and submits it. Not among probeFeatures: grants work without
 * it, and only `log` asks for it. Once per process; nothing is attached.
 */
export function probeRingbuf(): FeatureResult {
  if (ringbufCached !== undefined) return ringbufCached;
  const name = 'ringbuf';
  const tried = 'create a BPF_MAP_TYPE_RINGBUF and load a bind4 program that reserves, fills (pid, comm) and submits a record';
  let map: number | undefined;
  try {
    map = mapCreate({ type: BPF_MAP_TYPE.RINGBUF, keySize: 0, valueSize: 0, maxEntries: 4096, name: 'lowport_probe' });
    const insns = new Assembler()
      .ldMapFd(R1, map)
      .mov(R2, { imm: 16 })
      .mov(R3, { imm: 0 })
      .call(HELPER.ringbuf_reserve)
      .jmp('jeq', R0, { imm: 0 }, 'out')
      .mov(R6, R0)
      .call(HELPER.ktime_get_ns)
      .call(HELPER.get_current_cgroup_id)
      .call(HELPER.get_current_pid_tgid)
      .stx(8, R6, 0, R0)
      .mov(R1, R6)
      .alu64('add', R1, { imm: 8 })
      .mov(R2, { imm: 8 })
      .call(HELPER.get_current_comm)
      .mov(R1, R6)
      .mov(R2, { imm: 0 })
      .call(HELPER.ringbuf_submit)
      .label('out')
      .mov(R0, { imm: 1 })
      .exit()
      .assemble();
    closeFd(progLoad({ type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR, expectedAttachType: BPF_CGROUP_INET4_BIND, insns, name: 'lowport_probe' }));
    ringbufCached = { name, tried, ok: true };
  } catch (e) {
    ringbufCached = { name, tried, ok: false, ...refusal(e) };
  } finally {
    if (map !== undefined) closeFd(map);
  }
  return ringbufCached;
}

const TASK_BTF_TRIED = "read the task's pid, comm and cgroup id through bpf_get_current_task_btf, at offsets from /sys/kernel/btf/vmlinux";
let taskBtfCached: { result: FeatureResult; fields?: TaskFields } | undefined;
let taskBtfOff = false;

/**
 * The audit trail's task fields straight from the current task_struct:
 * bpf_get_current_task_btf (Linux 5.11; in a bind hook only where the
 * kernel offers it to every program type, and with CAP_PERFMON) and loads at
 * the offsets the running kernel's BTF gives (bpf/btf.ts taskFields). On
 * this machine the three helpers it replaces (get_current_pid_tgid,
 * get_current_comm, get_current_cgroup_id) were more than half of what an
 * event cost a bind (bench/README.md). The probe loads a bind4 program that
 * reads every field the event reads, so the verifier has checked each load
 * against the kernel's types. Without it the events use the helpers.
 * Optional, like coarse-time; once per process; nothing is attached.
 */
export function probeTaskBtf(): { result: FeatureResult; fields?: TaskFields } {
  const name = 'task-btf';
  if (taskBtfOff) return { result: { name, tried: TASK_BTF_TRIED, ok: false, skipped: 'turned off by a test' } };
  if (taskBtfCached !== undefined) return taskBtfCached;
  let fields: TaskFields | string;
  try {
    const btf = Btf.vmlinux();
    fields = btf === undefined ? 'the kernel has no BTF (/sys/kernel/btf/vmlinux)' : taskFields(btf);
  } catch (e) {
    if (!(e instanceof BtfError)) throw e;
    fields = `its BTF could not be read: ${e.message}`;
  }
  if (typeof fields === 'string') {
    taskBtfCached = { result: { name, tried: TASK_BTF_TRIED, ok: false, skipped: fields } };
    return taskBtfCached;
  }
  try {
    const a = new Assembler();
    emitTaskFields(a, fields, FP, { pid: -32, comm: -28, cgroup: -8 });
    const insns = a.mov(R0, { imm: 1 }).exit().assemble();
    closeFd(progLoad({ type: BPF_PROG_TYPE_CGROUP_SOCK_ADDR, expectedAttachType: BPF_CGROUP_INET4_BIND, insns, name: 'lowport_probe' }));
    taskBtfCached = { result: { name, tried: TASK_BTF_TRIED, ok: true }, fields };
  } catch (e) {
    taskBtfCached = { result: { name, tried: TASK_BTF_TRIED, ok: false, ...refusal(e) } };
  }
  return taskBtfCached;
}

/**
 * For the tests only (not reachable from the command line or the library):
 * true makes probeTaskBtf answer no without asking the kernel, so the events
 * take the helpers' way on a kernel that has the other; false asks again.
 */
export function turnOffTaskBtfForTests(off: boolean): void {
  taskBtfOff = off;
}
