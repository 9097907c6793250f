/**
 * The BTF reader (bpf/btf.ts) and the audit trail's task fields
 * (bpf/task-fields.ts) on BTF written here as the kernel lays it out
 * (include/uapi/linux/btf.h): typedefs, qualifiers and type tags looked
 * through, anonymous members looked into (task_struct with a randomized
 * layout), records of every size skipped, forward declarations not taken for
 * the struct, and every way a field can be other than the program assumes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Btf, BTF_KIND, BtfError } from '../../../src/bpf/btf.js';
import { Assembler, FP } from '../../../src/bpf/asm.js';
import { emitTaskFields, taskFields } from '../../../src/bpf/task-fields.js';

type Member = [name: string, type: number, bitOffset: number, bitSize?: number];
type TypeSpec =
  | { kind: 'int'; name: string; size: number }
  | { kind: 'ptr' | 'typedef' | 'const' | 'type_tag'; name?: string; to: number }
  | { kind: 'array'; element: number; length: number }
  | { kind: 'struct' | 'union'; name: string; size: number; members: Member[] }
  | { kind: 'fwd'; name: string }
  | { kind: 'enum'; name: string; values: [string, number][] }
  | { kind: 'func_proto'; returns: number; params: number[] };

/** BTF bytes for these types, ids from 1 in order. */
function encode(types: TypeSpec[]): Buffer {
  const strings: Buffer[] = [Buffer.from([0])];
  let stringsLen = 1;
  const str = (s: string | undefined): number => {
    if (s === undefined || s === '') return 0;
    const off = stringsLen;
    strings.push(Buffer.from(`${s}\0`, 'latin1'));
    stringsLen += s.length + 1;
    return off;
  };
  const words: number[] = [];
  const head = (name: string | undefined, kind: number, vlen: number, sizeOrType: number, kindFlag = false): void => {
    words.push(str(name), ((kindFlag ? 1 : 0) << 31) | (kind << 24) | vlen, sizeOrType);
  };
  for (const t of types) {
    switch (t.kind) {
      case 'int':
        head(t.name, BTF_KIND.INT, 0, t.size);
        words.push(t.size * 8);
        break;
      case 'ptr':
        head(undefined, BTF_KIND.PTR, 0, t.to);
        break;
      case 'typedef':
        head(t.name, BTF_KIND.TYPEDEF, 0, t.to);
        break;
      case 'const':
        head(undefined, BTF_KIND.CONST, 0, t.to);
        break;
      case 'type_tag':
        head(t.name, BTF_KIND.TYPE_TAG, 0, t.to);
        break;
      case 'array':
        head(undefined, BTF_KIND.ARRAY, 0, 0);
        words.push(t.element, 1, t.length);
        break;
      case 'struct':
      case 'union': {
        const bitfields = t.members.some((m) => m[3] !== undefined);
        head(t.name, t.kind === 'struct' ? BTF_KIND.STRUCT : BTF_KIND.UNION, t.members.length, t.size, bitfields);
        for (const [name, type, bitOffset, bitSize] of t.members)
          words.push(str(name), type, bitfields ? ((bitSize ?? 0) << 24) | bitOffset : bitOffset);
        break;
      }
      case 'fwd':
        head(t.name, BTF_KIND.FWD, 0, 0);
        break;
      case 'enum':
        head(t.name, BTF_KIND.ENUM, t.values.length, 4);
        for (const [name, value] of t.values) words.push(str(name), value);
        break;
      case 'func_proto':
        head(undefined, BTF_KIND.FUNC_PROTO, t.params.length, t.returns);
        for (const p of t.params) words.push(0, p);
        break;
    }
  }
  const typeSection = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => typeSection.writeUInt32LE(w >>> 0, i * 4));
  const stringSection = Buffer.concat(strings);
  const header = Buffer.alloc(24);
  header.writeUInt16LE(0xeb9f, 0);
  header.writeUInt8(1, 2);
  header.writeUInt32LE(24, 4);
  header.writeUInt32LE(0, 8);
  header.writeUInt32LE(typeSection.length, 12);
  header.writeUInt32LE(typeSection.length, 16);
  header.writeUInt32LE(stringSection.length, 20);
  return Buffer.concat([header, typeSection, stringSection]);
}

/** A kernel's types for the task fields, with `change` applied to the list (ids stay as numbered here). */
function kernelTypes(change: (types: TypeSpec[]) => void = () => {}): TypeSpec[] {
  const types: TypeSpec[] = [
    /* 1 */ { kind: 'fwd', name: 'task_struct' },
    /* 2 */ { kind: 'int', name: 'int', size: 4 },
    /* 3 */ { kind: 'int', name: 'char', size: 1 },
    /* 4 */ { kind: 'typedef', name: 'pid_t', to: 2 },
    /* 5 */ { kind: 'array', element: 3, length: 16 },
    /* 6 */ { kind: 'int', name: 'long long unsigned int', size: 8 },
    /* 7 */ { kind: 'typedef', name: 'u64', to: 6 },
    /* 8 */ {
      kind: 'struct',
      name: 'kernfs_node',
      size: 136,
      members: [
        ['flags', 2, 0],
        ['id', 7, 96 * 8],
      ],
    },
    /* 9 */ { kind: 'ptr', to: 8 },
    /* 10 */ {
      kind: 'struct',
      name: 'cgroup',
      size: 2240,
      members: [
        ['self', 2, 0],
        ['kn', 9, 256 * 8],
      ],
    },
    /* 11 */ { kind: 'ptr', to: 10 },
    /* 12 */ { kind: 'struct', name: 'css_set', size: 544, members: [['dfl_cgrp', 11, 112 * 8]] },
    /* 13 */ { kind: 'type_tag', name: 'rcu', to: 12 },
    /* 14 */ { kind: 'ptr', to: 13 },
    /* 15 */ {
      kind: 'enum',
      name: 'pid_type',
      values: [
        ['PIDTYPE_PID', 0],
        ['PIDTYPE_TGID', 1],
      ],
    },
    /* 16 */ { kind: 'func_proto', returns: 2, params: [2, 14] },
    /* 17 */ { kind: 'const', to: 5 },
    // The randomized layout's anonymous struct, at byte 64 of task_struct.
    /* 18 */ {
      kind: 'struct',
      name: '',
      size: 3000,
      members: [
        ['pid', 4, 1200 * 8],
        ['tgid', 4, 1204 * 8],
        ['comm', 17, 1688 * 8],
        ['cgroups', 14, 2312 * 8],
      ],
    },
    /* 19 */ {
      kind: 'struct',
      name: 'task_struct',
      size: 3264,
      members: [
        ['thread_info', 2, 0],
        ['', 18, 64 * 8],
      ],
    },
  ];
  change(types);
  return types;
}

describe('BTF', () => {
  it("finds the task fields' offsets through typedefs, qualifiers, type tags and an anonymous struct", () => {
    const btf = new Btf(encode(kernelTypes()));
    assert.equal(btf.typeCount, 19);
    assert.equal(btf.structId('task_struct'), 19, 'the definition, not the forward declaration');
    assert.equal(btf.structId('task'), undefined);
    assert.deepEqual(taskFields(btf), { tgid: 1268, comm: 1752, cgroups: 2376, dflCgrp: 112, kn: 256, kernfsId: 96 });
  });

  it('reads data that does not start on a 4-byte boundary', () => {
    const bytes = encode(kernelTypes());
    const shifted = Buffer.alloc(bytes.length + 1).subarray(1);
    bytes.copy(shifted);
    assert.deepEqual(taskFields(new Btf(shifted)), taskFields(new Btf(bytes)));
  });

  it('says which field is not what the program loads, and gives no offsets', () => {
    const cases: [(t: TypeSpec[]) => void, string][] = [
      // Before Linux 5.5 kernfs_node.id was a union of ino and generation.
      [
        (t) => (t[7] = { kind: 'struct', name: 'kernfs_node', size: 136, members: [['id', 15, 96 * 8]] }),
        'kernfs_node.id is not an 8-byte integer',
      ],
      [
        (t) => (t[11] = { kind: 'struct', name: 'css_set_x', size: 544, members: [] }),
        'task_struct.cgroups is not a pointer to struct css_set',
      ],
      [(t) => (t[18] = { kind: 'struct', name: 'task', size: 3264, members: [] }), 'no struct task_struct'],
      [(t) => (t[16] = { kind: 'array', element: 3, length: 64 }), 'task_struct.comm is not char[16]'],
      [(t) => (t[13] = { kind: 'ptr', to: 11 }), 'task_struct.cgroups is not a pointer to struct css_set'],
      [(t) => (t[3] = { kind: 'typedef', name: 'pid_t', to: 6 }), 'task_struct.tgid is not a 4-byte integer'],
      [(t) => (t[9] = { kind: 'struct', name: 'cgroup', size: 2240, members: [['kernfs', 9, 256 * 8]] }), 'no cgroup.kn'],
    ];
    for (const [change, message] of cases) assert.equal(taskFields(new Btf(encode(kernelTypes(change)))), message);
  });

  it('refuses a bitfield member, data that is not BTF, and sections that run past the end', () => {
    const btf = new Btf(
      encode([
        { kind: 'int', name: 'int', size: 4 },
        {
          kind: 'struct',
          name: 's',
          size: 4,
          members: [
            ['a', 1, 0, 3],
            ['b', 1, 3, 5],
          ],
        },
      ]),
    );
    assert.throws(() => btf.member(2, 'b'), new BtfError('member b is a bitfield'));
    assert.equal(btf.member(2, 'c'), undefined);
    assert.throws(() => new Btf(Buffer.alloc(64)), /not BTF/);
    const bytes = encode(kernelTypes());
    assert.throws(() => new Btf(bytes.subarray(0, bytes.length - 10)), /past the end/);
    const cut = Buffer.from(bytes);
    cut.writeUInt32LE(cut.readUInt32LE(12) - 4, 12);
    assert.throws(() => new Btf(cut), /runs past its section/);
  });

  it('loads each field through the task pointer into its slot, comm as four words', () => {
    const fields = taskFields(new Btf(encode(kernelTypes())));
    assert.ok(typeof fields !== 'string');
    const a = new Assembler();
    emitTaskFields(a, fields, FP, { pid: -32, comm: -28, cgroup: -8 });
    assert.deepEqual(
      a
        .listing()
        .split('\n')
        .map((l) => l.replace(/^\s*\d+: \([0-9a-f]{2}\) /, '')),
      [
        'call get_current_task_btf',
        'r1 = *(u32 *)(r0 + 1268)',
        '*(u32 *)(r10 - 32) = r1',
        'r1 = *(u32 *)(r0 + 1752)',
        '*(u32 *)(r10 - 28) = r1',
        'r1 = *(u32 *)(r0 + 1756)',
        '*(u32 *)(r10 - 24) = r1',
        'r1 = *(u32 *)(r0 + 1760)',
        '*(u32 *)(r10 - 20) = r1',
        'r1 = *(u32 *)(r0 + 1764)',
        '*(u32 *)(r10 - 16) = r1',
        'r1 = *(u64 *)(r0 + 2376)',
        'r1 = *(u64 *)(r1 + 112)',
        'r1 = *(u64 *)(r1 + 256)',
        'r1 = *(u64 *)(r1 + 96)',
        '*(u64 *)(r10 - 8) = r1',
      ],
    );
  });
});
