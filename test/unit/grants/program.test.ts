/**
 * The bind program, checked two ways without a kernel:
 *  - statically, by decoding its bytes (struct bpf_insn, include/uapi/linux/bpf.h)
 *    for what the verifier insists on: which ctx fields each hook may read,
 *    aligned stack accesses, no loops, every path ending in a set r0;
 *  - dynamically, by running it in a small interpreter of the instructions it
 *    uses, against a policy map built by compile() and encodeKey(), so the
 *    program and the map layout are shown to agree.
 * struct bpf_sock_addr: user_family 0, user_ip4 4, user_ip6 8..23, user_port 24
 * (network order), family 28, type 32, protocol 36.
 */
import assert from 'node:assert/strict';
import { endianness } from 'node:os';
import { describe, it } from 'node:test';
import { compile } from '../../../src/grants/compile.js';
import { decodeValue, encodeKey, encodeValue } from '../../../src/grants/map-format.js';
import { bindProgramName, buildBindProgram, type HookFamily } from '../../../src/grants/program.js';
import { resolvePolicy, type Directory } from '../../../src/grants/resolve.js';
import type { GroupEntry, PasswdEntry } from '../../../src/os/nss.js';
import { parsePolicy } from '../../../src/policy/parse.js';

const OUTER_FD = 1234;

interface Insn {
  slot: number;
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
  /** Upper 32 bits of a two-slot load. */
  imm2?: number;
}

/** Decodes the program into instructions, a two-slot load as one. */
function decode(code: Buffer): Insn[] {
  assert.equal(code.length % 8, 0);
  const out: Insn[] = [];
  for (let slot = 0; slot < code.length / 8; slot++) {
    const at = slot * 8;
    const insn: Insn = {
      slot,
      code: code.readUInt8(at),
      dst: code.readUInt8(at + 1) & 0xf,
      src: code.readUInt8(at + 1) >> 4,
      off: code.readInt16LE(at + 2),
      imm: code.readInt32LE(at + 4),
    };
    if (insn.code === 0x18) {
      assert.ok(at + 16 <= code.length, `two-slot load at ${slot} is cut short`);
      assert.deepEqual([...code.subarray(at + 8, at + 12)], [0, 0, 0, 0], `second slot of the load at ${slot}`);
      insn.imm2 = code.readInt32LE(at + 12);
      slot++;
    }
    out.push(insn);
  }
  return out;
}

const program = (family: HookFamily): Insn[] => decode(buildBindProgram(family, OUTER_FD).assemble());

const CLASS = (i: Insn): number => i.code & 0x07;
const SIZE: Record<number, number> = { 0x00: 4, 0x08: 2, 0x10: 1, 0x18: 8 };
const isLdx = (i: Insn): boolean => CLASS(i) === 0x01 && (i.code & 0xe0) === 0x60;
const isStore = (i: Insn): boolean => CLASS(i) === 0x02 || CLASS(i) === 0x03;
const isExit = (i: Insn): boolean => i.code === 0x95;
const isJump = (i: Insn): boolean => CLASS(i) === 0x05 && i.code !== 0x85 && i.code !== 0x95;

/** The instruction starting at each slot. */
function bySlot(insns: Insn[]): Map<number, Insn> {
  return new Map(insns.map((i) => [i.slot, i]));
}

describe('bind program: shape', () => {
  for (const family of [4, 6] as const) {
    it(`assembles for bind${family} into whole 8-byte slots, well under the verifier’s size limit`, () => {
      const code = buildBindProgram(family, OUTER_FD).assemble();
      assert.ok(code.length > 0);
      assert.equal(code.length % 8, 0);
      assert.ok(code.length / 8 < 4096);
    });

    it(`keeps the bind${family} context pointer in r6 from the first instruction on`, () => {
      const [first] = program(family);
      // mov r6, r1: 0xbf, dst 6, src 1.
      assert.deepEqual(first && [first.code, first.dst, first.src], [0xbf, 6, 1]);
    });

    it(`never writes to the bind${family} context and never overwrites r6`, () => {
      for (const i of program(family)) {
        if (isStore(i)) assert.notEqual(i.dst, 6, `store through r6 at ${i.slot}`);
        if (i.slot > 0 && (CLASS(i) === 0x07 || CLASS(i) === 0x04 || isLdx(i) || i.code === 0x18)) assert.notEqual(i.dst, 6, `r6 overwritten at ${i.slot}`);
      }
    });

    it(`reads the bind${family} context only as aligned u32 fields`, () => {
      for (const i of program(family).filter((x) => isLdx(x) && x.src === 6)) {
        assert.equal(i.code, 0x61, `ctx load at ${i.slot} is not a u32 load`);
        assert.equal(i.off % 4, 0);
        assert.ok(i.off >= 0 && i.off < 40);
      }
    });

    it(`references the outer map fd exactly once in bind${family}, as a BPF_PSEUDO_MAP_FD load`, () => {
      const loads = program(family).filter((i) => i.code === 0x18);
      assert.equal(loads.length, 1);
      assert.deepEqual(loads.map((i) => [i.src, i.imm, i.imm2]), [[1, OUTER_FD, 0]]);
    });

    it(`calls only map_lookup_elem (1), get_current_uid_gid (15) and get_current_cgroup_id (80) in bind${family}`, () => {
      const helpers = new Set(program(family).filter((i) => i.code === 0x85).map((i) => i.imm));
      assert.deepEqual([...helpers].sort((a, b) => a - b), [1, 15, 80]);
    });

    it(`accesses the bind${family} stack inside the 512-byte frame, aligned to the access size`, () => {
      for (const i of program(family)) {
        const base = isLdx(i) ? i.src : isStore(i) ? i.dst : undefined;
        if (base !== 10) continue;
        const size = SIZE[i.code & 0x18] ?? 0;
        assert.ok(i.off >= -512 && i.off + size <= 0, `stack access out of the frame at ${i.slot}`);
        // The verifier demands aligned stack accesses (check_ptr_alignment: strict for PTR_TO_STACK).
        assert.equal(((i.off % size) + size) % size, 0, `unaligned stack access at ${i.slot}`);
      }
    });

    it(`has no loops in bind${family}: every jump goes forward to the start of an instruction`, () => {
      const insns = program(family);
      const starts = bySlot(insns);
      for (const i of insns.filter(isJump)) {
        assert.ok(i.off >= 0, `backward jump at ${i.slot}`);
        assert.ok(starts.has(i.slot + 1 + i.off), `jump at ${i.slot} lands inside an instruction`);
      }
    });

    it(`ends every path of bind${family} in exit, never falling off the end`, () => {
      const insns = program(family);
      const starts = bySlot(insns);
      const seen = new Set<number>();
      const todo = [0];
      while (todo.length > 0) {
        const slot = todo.pop() ?? 0;
        if (seen.has(slot)) continue;
        seen.add(slot);
        const i = starts.get(slot);
        assert.ok(i !== undefined, `control reaches slot ${slot}, which starts no instruction`);
        if (isExit(i)) continue;
        const next = slot + (i.code === 0x18 ? 2 : 1);
        if (i.code === 0x05) todo.push(next + i.off);
        else if (isJump(i)) todo.push(next, next + i.off);
        else todo.push(next);
      }
      // Every instruction is reachable: no dead code hides a mistake.
      assert.deepEqual([...seen].sort((a, b) => a - b), insns.map((i) => i.slot));
    });

    it(`sets r0 to 0, 1 or 3 immediately before every exit of bind${family}, and uses all three`, () => {
      const insns = program(family);
      const targets = new Set(insns.filter(isJump).map((i) => i.slot + 1 + i.off));
      const returns = new Set<number>();
      insns.forEach((i, n) => {
        if (!isExit(i)) return;
        const before = insns[n - 1];
        // mov r0, imm: ALU64|MOV|K = 0xb7, dst 0.
        assert.deepEqual(before && [before.code, before.dst], [0xb7, 0], `exit at ${i.slot} does not follow a mov r0, imm`);
        assert.ok(!targets.has(i.slot), `a jump skips the mov before the exit at ${i.slot}`);
        returns.add(before?.imm ?? -1);
      });
      assert.deepEqual([...returns].sort(), [0, 1, 3]);
    });
  }

  it('never reads user_ip6 (ctx 8..23) in the bind4 variant', () => {
    const reads = program(4).filter((i) => isLdx(i) && i.src === 6);
    for (const i of reads) assert.ok(i.off + 4 <= 8 || i.off >= 24, `bind4 reads ctx offset ${i.off}`);
    assert.deepEqual(reads.map((i) => i.off).sort((a, b) => a - b), [4, 24, 36]);
  });

  it('never reads user_ip4 (ctx 4) in the bind6 variant', () => {
    const reads = program(6).filter((i) => isLdx(i) && i.src === 6);
    for (const i of reads) assert.ok(i.off + 4 <= 4 || i.off >= 8, `bind6 reads ctx offset ${i.off}`);
    assert.deepEqual([...new Set(reads.map((i) => i.off))].sort((a, b) => a - b), [8, 12, 16, 20, 24, 36]);
  });

  it('puts the outer map fd given into the load, so a different fd changes only that instruction', () => {
    const a = buildBindProgram(4, 3).assemble();
    const b = buildBindProgram(4, 0x7fff).assemble();
    const differing = [...a.keys()].filter((n) => a[n] !== b[n]).map((n) => Math.floor(n / 8));
    const load = decode(a).find((i) => i.code === 0x18);
    assert.ok(differing.length > 0);
    assert.ok(differing.every((slot) => slot === load?.slot));
  });
});

describe('bindProgramName', () => {
  it('is stable from call to call', () => {
    assert.equal(bindProgramName(4), bindProgramName(4));
    assert.equal(bindProgramName(6), bindProgramName(6));
  });

  it('fits the kernel’s 15 characters of [A-Za-z0-9_.] and names the family', () => {
    assert.match(bindProgramName(4), /^lowport4_[0-9a-f]{6}$/);
    assert.match(bindProgramName(6), /^lowport6_[0-9a-f]{6}$/);
    assert.ok(bindProgramName(4).length <= 15);
    assert.ok(bindProgramName(6).length <= 15);
  });

  it('differs between the bind4 and bind6 programs, in the hash too', () => {
    assert.notEqual(bindProgramName(4), bindProgramName(6));
    assert.notEqual(bindProgramName(4).slice(-6), bindProgramName(6).slice(-6));
  });
});

// ---------------------------------------------------------------------------
// An interpreter for the instructions the program uses.

/** A pointer into a buffer, with a record of which bytes were written (for the stack). */
class Ptr {
  constructor(
    readonly region: Region,
    readonly off: number,
  ) {}
}

interface Region {
  name: 'ctx' | 'stack' | 'value';
  buf: Buffer;
  /** Stack only: bytes written so far; reading others is what the verifier rejects. */
  init?: Uint8Array;
}

class MapRef {
  constructor(readonly map: OuterMap | PolicyMap) {}
}
interface OuterMap {
  kind: 'outer';
  slot: PolicyMap | undefined;
}
interface PolicyMap {
  kind: 'policy';
  /** Key bytes (hex) to value bytes, updated in place as the kernel does. */
  entries: Map<string, Buffer>;
}

type Value = bigint | Ptr | MapRef | undefined;

interface Caller {
  uid: number;
  gid: number;
  cgroupId?: bigint;
}

interface Run {
  verdict: number;
  ctxReads: number[];
  lookups: number;
}

function access(p: Value, off: number, size: number, write: boolean): { region: Region; at: number } {
  assert.ok(p instanceof Ptr, 'memory access through a non-pointer');
  const at = p.off + off;
  assert.ok(at >= 0 && at + size <= p.region.buf.length, `${p.region.name} access at ${at} out of bounds`);
  const init = p.region.init;
  if (init !== undefined) {
    if (write) init.fill(1, at, at + size);
    else assert.ok(init.subarray(at, at + size).every((b) => b === 1), `read of uninitialized stack at ${at - 512}`);
  }
  return { region: p.region, at };
}

function run(family: HookFamily, ctx: Buffer, outer: OuterMap, caller: Caller): Run {
  const code = decode(buildBindProgram(family, OUTER_FD).assemble());
  const starts = bySlot(code);
  const stack: Region = { name: 'stack', buf: Buffer.alloc(512), init: new Uint8Array(512) };
  const regs: Value[] = [];
  regs[1] = new Ptr({ name: 'ctx', buf: ctx }, 0);
  regs[10] = new Ptr(stack, 512);
  const ctxReads: number[] = [];
  let lookups = 0;
  const scalar = (v: Value): bigint => {
    assert.equal(typeof v, 'bigint', 'scalar expected');
    return v as bigint;
  };
  const u64 = (n: bigint): bigint => BigInt.asUintN(64, n);

  let slot = 0;
  for (let steps = 0; steps < 10_000; steps++) {
    const i = starts.get(slot);
    assert.ok(i !== undefined, `no instruction at slot ${slot}`);
    let next = slot + 1;
    const operand = (): Value => ((i.code & 0x08) !== 0 ? regs[i.src] : u64(BigInt(i.imm)));
    switch (CLASS(i)) {
      case 0x07: {
        const op = i.code & 0xf0;
        const b = operand();
        const a = regs[i.dst];
        if (op === 0xb0) regs[i.dst] = b;
        else if (op === 0x00 && a instanceof Ptr) regs[i.dst] = new Ptr(a.region, a.off + Number(BigInt.asIntN(64, scalar(b))));
        else if (op === 0x00) regs[i.dst] = u64(scalar(a) + scalar(b));
        else if (op === 0x50) regs[i.dst] = scalar(a) & scalar(b);
        else assert.fail(`ALU64 op ${op.toString(16)} not emulated`);
        break;
      }
      case 0x04: {
        assert.equal(i.code, 0xdc, 'only BPF_END|BPF_TO_BE is emulated in the ALU class');
        const v = scalar(regs[i.dst]);
        const bytes = i.imm / 8;
        const tmp = Buffer.alloc(8);
        tmp.writeBigUInt64LE(v);
        regs[i.dst] = BigInt('0x' + (Buffer.from(tmp.subarray(0, bytes)).toString('hex') || '0'));
        break;
      }
      case 0x01: {
        const size = SIZE[i.code & 0x18] ?? 0;
        const { region, at } = access(regs[i.src], i.off, size, false);
        if (region.name === 'ctx') ctxReads.push(at);
        regs[i.dst] = readLE(region.buf, at, size);
        break;
      }
      case 0x02:
      case 0x03: {
        const size = SIZE[i.code & 0x18] ?? 0;
        const { region, at } = access(regs[i.dst], i.off, size, true);
        assert.notEqual(region.name, 'ctx', 'the program writes to the context');
        if ((i.code & 0xe0) === 0xc0) {
          assert.equal(i.imm, 0, 'only BPF_ADD atomics are emulated');
          writeLE(region.buf, at, size, readLE(region.buf, at, size) + scalar(regs[i.src]));
        } else {
          writeLE(region.buf, at, size, CLASS(i) === 0x02 ? BigInt(i.imm) : scalar(regs[i.src]));
        }
        break;
      }
      case 0x00: {
        assert.equal(i.code, 0x18);
        if (i.src === 1) {
          assert.equal(i.imm, OUTER_FD, 'a map fd other than the outer map');
          regs[i.dst] = new MapRef(outer);
        } else {
          regs[i.dst] = (BigInt(i.imm2 ?? 0) << 32n) | BigInt(i.imm >>> 0);
        }
        next = slot + 2;
        break;
      }
      case 0x05: {
        if (i.code === 0x95) {
          return { verdict: Number(scalar(regs[0])), ctxReads, lookups };
        }
        if (i.code === 0x85) {
          regs[0] = call(i.imm, regs, caller, () => lookups++);
          for (const r of [1, 2, 3, 4, 5]) regs[r] = undefined;
          break;
        }
        if (i.code === 0x05) {
          next = slot + 1 + i.off;
          break;
        }
        const a = regs[i.dst];
        const b = operand();
        // A pointer is only ever compared with 0, as a null check.
        const av = a instanceof Ptr || a instanceof MapRef ? 1n : scalar(a);
        if (a instanceof Ptr || a instanceof MapRef) assert.equal(b, 0n, 'pointer compared with something other than 0');
        const bv = scalar(b);
        const op = i.code & 0xf0;
        const taken = op === 0x10 ? av === bv : op === 0x50 ? av !== bv : assert.fail(`jump op ${op.toString(16)} not emulated`);
        if (taken) next = slot + 1 + i.off;
        break;
      }
      default:
        assert.fail(`instruction class ${CLASS(i)} not emulated`);
    }
    slot = next;
  }
  assert.fail('the program did not exit');
}

function readLE(buf: Buffer, at: number, size: number): bigint {
  let v = 0n;
  for (let k = size - 1; k >= 0; k--) v = (v << 8n) | BigInt(buf.readUInt8(at + k));
  return v;
}

function writeLE(buf: Buffer, at: number, size: number, value: bigint): void {
  let v = BigInt.asUintN(size * 8, value);
  for (let k = 0; k < size; k++) {
    buf.writeUInt8(Number(v & 0xffn), at + k);
    v >>= 8n;
  }
}

function call(helper: number, regs: Value[], caller: Caller, counted: () => void): Value {
  switch (helper) {
    case 1: {
      counted();
      const map = regs[1];
      assert.ok(map instanceof MapRef, 'map_lookup_elem without a map');
      if (map.map.kind === 'outer') {
        const { region, at } = access(regs[2], 0, 4, false);
        const index = region.buf.readUInt32LE(at);
        return index === 0 && map.map.slot !== undefined ? new MapRef(map.map.slot) : 0n;
      }
      const { region, at } = access(regs[2], 0, 32, false);
      const value = map.map.entries.get(region.buf.subarray(at, at + 32).toString('hex'));
      return value === undefined ? 0n : new Ptr({ name: 'value', buf: value }, 0);
    }
    case 15:
      return (BigInt(caller.gid) << 32n) | BigInt(caller.uid);
    case 80:
      return caller.cgroupId ?? 1n;
    default:
      return assert.fail(`helper ${helper} not emulated`);
  }
}

// ---------------------------------------------------------------------------

const PROTO = { tcp: 6, udp: 17, sctp: 132 } as const;

/** struct bpf_sock_addr for a bind to `ip`:`port`. */
function sockAddr(ip: string, port: number, protocol: keyof typeof PROTO): { family: HookFamily; ctx: Buffer } {
  const ctx = Buffer.alloc(72);
  const v6 = ip.includes(':');
  ctx.writeUInt32LE(v6 ? 10 : 2, 0);
  // user_port: the port in network order in the low bytes of a u32.
  ctx.writeUInt16BE(port, 24);
  ctx.writeUInt32LE(v6 ? 10 : 2, 28);
  ctx.writeUInt32LE(protocol === 'udp' ? 2 : 1, 32);
  ctx.writeUInt32LE(PROTO[protocol], 36);
  if (v6) ipv6Bytes(ip).copy(ctx, 8);
  else Buffer.from(ip.split('.').map(Number)).copy(ctx, 4);
  return { family: v6 ? 6 : 4, ctx };
}

/** The 16 bytes of the few IPv6 literals used here, spelled out. */
function ipv6Bytes(ip: string): Buffer {
  const table: Record<string, string> = {
    '::': '00000000000000000000000000000000',
    '::1': '00000000000000000000000000000001',
    '::ffff:127.0.0.1': '00000000000000000000ffff7f000001',
    '::ffff:10.0.0.1': '00000000000000000000ffff0a000001',
    '2001:db8::1': '20010db8000000000000000000000001',
  };
  const hex = table[ip];
  assert.ok(hex !== undefined, `no bytes for ${ip}`);
  return Buffer.from(hex, 'hex');
}

const USERS: PasswdEntry[] = [
  { name: 'root', uid: 0, gid: 0, home: '/root', shell: '/bin/sh' },
  { name: 'alice', uid: 1000, gid: 1000, home: '/home/alice', shell: '/bin/sh' },
  { name: 'bob', uid: 1001, gid: 1001, home: '/home/bob', shell: '/bin/sh' },
  { name: 'carol', uid: 1002, gid: 100, home: '/home/carol', shell: '/bin/sh' },
  { name: 'postgres', uid: 70, gid: 70, home: '/var/lib/postgres', shell: '/bin/sh' },
];
const GROUPS: GroupEntry[] = [{ name: 'web', gid: 2000, members: ['carol'] }];

const directory: Directory = {
  users: (keys) => new Map(keys.flatMap((k) => USERS.filter((u) => u.name === k || String(u.uid) === k).map((u) => [k, u] as const))),
  groups: (keys) => new Map(keys.flatMap((k) => GROUPS.filter((g) => g.name === k || String(g.gid) === k).map((g) => [k, g] as const))),
};

/** The live policy map for a policy text, as `apply` fills it. */
function policyMap(text: string): PolicyMap {
  const entries = compile(resolvePolicy(parsePolicy(text, 'policy'), directory).rules);
  return { kind: 'policy', entries: new Map(entries.map((e) => [encodeKey(e.key).toString('hex'), encodeValue(e.value)])) };
}

/** Hits of every entry with hits, as `line kind protocol/port: hits`. */
function hits(map: PolicyMap): string[] {
  const out: string[] = [];
  for (const [key, value] of map.entries) {
    const v = decodeValue(value);
    if (v.hits === 0n) continue;
    const k = Buffer.from(key, 'hex');
    out.push(`line ${v.rule} kind ${k[0]} ${k[1]}/${k.readUInt16LE(2)}: ${v.hits}`);
  }
  return out.sort();
}

const littleEndian = { skip: endianness() === 'LE' ? false : 'the program reads uid and gid as the low and high halves of a u64, as on little-endian CPUs' };

function bind(map: PolicyMap | undefined, who: Caller, ip: string, port: number, protocol: keyof typeof PROTO = 'tcp'): Run {
  const { family, ctx } = sockAddr(ip, port, protocol);
  return run(family, ctx, { kind: 'outer', slot: map }, who);
}

const alice: Caller = { uid: 1000, gid: 1000 };
const bob: Caller = { uid: 1001, gid: 1001 };
const carol: Caller = { uid: 1002, gid: 100 };
const postgres: Caller = { uid: 70, gid: 70 };
const root: Caller = { uid: 0, gid: 0 };

describe('bind program: behaviour against a compiled policy', littleEndian, () => {
  it('passes every bind (1) when no policy map is in the outer slot', () => {
    assert.equal(bind(undefined, alice, '127.0.0.1', 80).verdict, 1);
    assert.equal(bind(undefined, alice, '::1', 80).verdict, 1);
  });

  it('passes a port with no rule after one lookup in the outer map and one for the marker', () => {
    const map = policyMap('grant 80 user alice\n');
    const r = bind(map, alice, '0.0.0.0', 81);
    assert.equal(r.verdict, 1);
    assert.equal(r.lookups, 2);
  });

  it('passes protocols other than TCP and UDP without a lookup', () => {
    const map = policyMap('grant 80 everyone\n');
    const r = bind(map, alice, '0.0.0.0', 80, 'sctp');
    assert.deepEqual([r.verdict, r.lookups], [1, 0]);
  });

  it('grants (3) a user on a port granted to them, on IPv4 and IPv6, and counts the hits on the rule’s entry', () => {
    const map = policyMap('# web\ngrant 80,443 user alice\n');
    assert.equal(bind(map, alice, '0.0.0.0', 80).verdict, 3);
    assert.equal(bind(map, alice, '::', 443).verdict, 3);
    assert.equal(bind(map, alice, '2001:db8::1', 443, 'udp').verdict, 3);
    assert.deepEqual(hits(map), ['line 2 kind 1 17/443: 1', 'line 2 kind 1 6/443: 1', 'line 2 kind 1 6/80: 1']);
  });

  it('passes (1) another user on a granted port, leaving the decision to the kernel', () => {
    const map = policyMap('grant 80 user alice\n');
    assert.equal(bind(map, bob, '0.0.0.0', 80).verdict, 1);
    assert.equal(bind(map, root, '0.0.0.0', 80).verdict, 1);
    assert.deepEqual(hits(map), []);
  });

  it('grants a protocol-specific rule only for that protocol', () => {
    const map = policyMap('grant 53/udp user alice\n');
    assert.equal(bind(map, alice, '0.0.0.0', 53, 'udp').verdict, 3);
    assert.equal(bind(map, alice, '0.0.0.0', 53, 'tcp').verdict, 1);
  });

  it('grants an address rule only on the addresses listed', () => {
    const map = policyMap('grant 53 user alice addr 127.0.0.1,::1\n');
    assert.equal(bind(map, alice, '127.0.0.1', 53).verdict, 3);
    assert.equal(bind(map, alice, '::1', 53).verdict, 3);
    assert.equal(bind(map, alice, '0.0.0.0', 53).verdict, 1);
    assert.equal(bind(map, alice, '::', 53).verdict, 1);
    assert.equal(bind(map, alice, '2001:db8::1', 53).verdict, 1);
  });

  it('treats a bind6 to an IPv4-mapped address as a bind to the IPv4 address', () => {
    const map = policyMap('grant 80 user alice addr 127.0.0.1\n');
    assert.equal(bind(map, alice, '::ffff:127.0.0.1', 80).verdict, 3);
    assert.equal(bind(map, alice, '::ffff:10.0.0.1', 80).verdict, 1);
  });

  it('reads the bound address from user_ip4 in bind4 and user_ip6 in bind6, never the other', () => {
    const map = policyMap('grant 80 user alice addr 127.0.0.1\n');
    const v4 = bind(map, alice, '127.0.0.1', 80).ctxReads;
    const v6 = bind(map, alice, '2001:db8::1', 80).ctxReads;
    assert.ok(v4.includes(4) && v4.every((off) => off < 8 || off >= 24));
    assert.ok(v6.includes(8) && v6.every((off) => off !== 4));
  });

  it('grants a group by primary gid and by membership, and nobody else', () => {
    const map = policyMap('grant 80 group web\n');
    assert.equal(bind(map, { uid: 1005, gid: 2000 }, '0.0.0.0', 80).verdict, 3);
    assert.equal(bind(map, carol, '0.0.0.0', 80).verdict, 3);
    assert.equal(bind(map, { uid: 1006, gid: 100 }, '0.0.0.0', 80).verdict, 1);
  });

  it('grants everyone on a port granted to everyone, root included', () => {
    const map = policyMap('grant 8080/tcp everyone\n');
    for (const who of [alice, bob, root]) assert.equal(bind(map, who, '::', 8080).verdict, 3);
  });

  it('refuses (0) a reserved port to everyone but its owner and root, counting refusals on the marker', () => {
    const map = policyMap('\n\nreserve 5432 user postgres\n');
    assert.equal(bind(map, postgres, '0.0.0.0', 5432).verdict, 3);
    assert.equal(bind(map, bob, '0.0.0.0', 5432).verdict, 0);
    assert.equal(bind(map, bob, '::1', 5432, 'udp').verdict, 0);
    assert.equal(bind(map, root, '0.0.0.0', 5432).verdict, 1);
    assert.deepEqual(hits(map), ['line 3 kind 0 17/5432: 1', 'line 3 kind 0 6/5432: 1', 'line 3 kind 1 6/5432: 1']);
  });

  it('keeps a port reserved for root alone when its owner does not resolve (fail closed), with the rest of the policy live', () => {
    const map = policyMap('reserve 5432 user ghost\ngrant 80 user alice\ngrant 5432 everyone\n');
    for (const who of [alice, bob, postgres, { uid: 4000, gid: 4000 }]) {
      assert.equal(bind(map, who, '0.0.0.0', 5432).verdict, 0);
      assert.equal(bind(map, who, '::', 5432, 'udp').verdict, 0);
    }
    assert.equal(bind(map, root, '0.0.0.0', 5432).verdict, 1);
    assert.equal(bind(map, alice, '0.0.0.0', 80).verdict, 3);
    assert.equal(bind(map, bob, '0.0.0.0', 80).verdict, 1);
  });

  it('leaves out a grant whose user does not resolve, and nothing else', () => {
    const map = policyMap('grant 80 user ghost\ngrant 81 user alice\n');
    assert.equal(bind(map, alice, '0.0.0.0', 81).verdict, 3);
    for (const who of [alice, bob]) assert.equal(bind(map, who, '0.0.0.0', 80).verdict, 1);
  });

  it('lets another rule grant a reserved port to someone else', () => {
    const map = policyMap('reserve 5432 user postgres\ngrant 5432 user alice\n');
    assert.equal(bind(map, alice, '0.0.0.0', 5432).verdict, 3);
    assert.equal(bind(map, bob, '0.0.0.0', 5432).verdict, 0);
  });
});
