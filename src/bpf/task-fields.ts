/**
 * The audit trail's task fields read straight from the current task_struct
 * (grants/program.ts, the probe in probes.ts): the offsets, from the running
 * kernel's BTF, and the instructions that load them.
 */
import { Assembler, HELPER, R0, R1, type Reg } from './asm.js';
import { type Btf, type BtfShape } from './btf.js';

/**
 * Where the audit trail's event finds its task fields (grants/program.ts),
 * as byte offsets: task_struct's tgid (the pid as userspace sees it) and
 * comm, and the chain task->cgroups->dfl_cgrp->kn->id that is the task's
 * cgroup v2 id (cgroup_id(task_dfl_cgroup(task)), what
 * bpf_get_current_cgroup_id returns).
 */
export interface TaskFields {
  tgid: number;
  comm: number;
  cgroups: number;
  dflCgrp: number;
  kn: number;
  kernfsId: number;
}

/** The offsets in this BTF, each checked for the type the program loads; a string says which one is not as expected. */
export function taskFields(btf: Btf): TaskFields | string {
  const int = (size: number) => (s: BtfShape) => s.kind === 'int' && s.size === size;
  const pointerTo = (name: string) => (s: BtfShape) => {
    const to = s.kind === 'pointer' ? btf.shape(s.to) : undefined;
    return to?.kind === 'struct' && to.name === name;
  };
  const char16 = (s: BtfShape) => s.kind === 'array' && s.length === 16 && int(1)(btf.shape(s.element));
  // The first field that is missing or of another type, in this order, is the one named.
  const offset = (owner: string, name: string, check: (s: BtfShape) => boolean, what: string): number => {
    const struct = btf.structId(owner);
    if (struct === undefined) throw new FieldError(`no struct ${owner}`);
    const m = btf.member(struct, name);
    if (m === undefined) throw new FieldError(`no ${owner}.${name}`);
    if (!check(btf.shape(m.type))) throw new FieldError(`${owner}.${name} is not ${what}`);
    return m.offset;
  };
  try {
    return {
      tgid: offset('task_struct', 'tgid', int(4), 'a 4-byte integer'),
      comm: offset('task_struct', 'comm', char16, 'char[16]'),
      cgroups: offset('task_struct', 'cgroups', pointerTo('css_set'), 'a pointer to struct css_set'),
      dflCgrp: offset('css_set', 'dfl_cgrp', pointerTo('cgroup'), 'a pointer to struct cgroup'),
      kn: offset('cgroup', 'kn', pointerTo('kernfs_node'), 'a pointer to struct kernfs_node'),
      kernfsId: offset('kernfs_node', 'id', int(8), 'an 8-byte integer'),
    };
  } catch (e) {
    if (e instanceof FieldError) return e.message;
    throw e;
  }
}

class FieldError extends Error {}

/** Where emitTaskFields writes, as offsets from its destination register. */
export interface TaskFieldSlots {
  /** u32 */
  pid: number;
  /** u8[16], 4-byte aligned */
  comm: number;
  /** u64 */
  cgroup: number;
}

/**
 * r0 = bpf_get_current_task_btf(), then the task's tgid, comm and cgroup id
 * stored at `slots` from `dst` (a register the call keeps: r6-r9 or the frame
 * pointer). Clobbers r0-r5. The loads go through the verifier's BTF
 * pointers: it checks each offset against the kernel's types, and a NULL on
 * the cgroup chain reads as 0 rather than faulting. comm is copied as four
 * 4-byte words (the kernel keeps it NUL-padded) since the event's comm is
 * only 4-byte aligned.
 */
export function emitTaskFields(a: Assembler, fields: TaskFields, dst: Reg, slots: TaskFieldSlots): void {
  a.call(HELPER.get_current_task_btf);
  a.ldx(4, R1, R0, fields.tgid).stx(4, dst, slots.pid, R1);
  for (let i = 0; i < 16; i += 4) a.ldx(4, R1, R0, fields.comm + i).stx(4, dst, slots.comm + i, R1);
  a.ldx(8, R1, R0, fields.cgroups)
    .ldx(8, R1, R1, fields.dflCgrp)
    .ldx(8, R1, R1, fields.kn)
    .ldx(8, R1, R1, fields.kernfsId)
    .stx(8, dst, slots.cgroup, R1);
}
