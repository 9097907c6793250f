/**
 * An interpreter of the instructions lowport's bind program uses, with the
 * kernel's side of it (struct bpf_sock_addr, the outer and policy maps, the
 * port filter read in place, the helpers, bpf_set_retval's errno) made in memory, so that compiled policies can be run
 * against the real program without a kernel. Instructions come from the
 * assembler's own decoder (src/bpf/asm.ts).
 *
 * struct bpf_sock_addr: user_family 0, user_ip4 4, user_ip6 8..23, user_port 24
 * (network order), family 28, type 32, protocol 36.
 */
import assert from 'node:assert/strict';
import { decode, type Instruction } from '../../../src/bpf/asm.js';
import type { EntryTable } from '../../../src/grants/map-format.js';
import { decodeValue, encodeKey, encodeValue, PORT_FILTER_SIZE, portFilterOffset } from '../../../src/grants/map-format.js';
import { buildBindProgram, type BindProgramOptions, type HookFamily } from '../../../src/grants/program.js';
import type { Directory } from '../../../src/grants/resolve.js';
import type { GroupEntry, PasswdEntry } from '../../../src/os/nss.js';

export const OUTER_FD = 1234;
export const PORT_FILTER_FD = 1235;

/** The program for a hook, decoded (the EPERM variant unless told). */
export const program = (family: HookFamily, options: BindProgramOptions = {}): Instruction[] =>
  decode(buildBindProgram(family, OUTER_FD, PORT_FILTER_FD, options).assemble());

export const isLoad = (i: Instruction): boolean => i.op === 'ldx';
export const isStore = (i: Instruction): boolean => i.class === 'st' || i.class === 'stx';
export const isExit = (i: Instruction): boolean => i.op === 'exit';
/** Conditional jumps and goto: whatever has a target. */
export const isJump = (i: Instruction): boolean => i.target !== undefined;

/** The instruction starting at each slot. */
export function bySlot(insns: Instruction[]): Map<number, Instruction> {
  return new Map(insns.map((i) => [i.slot, i]));
}

/** A pointer into a buffer. */
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
export interface OuterMap {
  kind: 'outer';
  slot: PolicyMap | undefined;
  /** The port filter's one value (map-format.ts); none: all bits clear. */
  ports?: Buffer;
}
export interface PolicyMap {
  kind: 'policy';
  /** Key bytes (hex) to value bytes, updated in place as the kernel does. */
  entries: Map<string, Buffer>;
}

type Value = bigint | Ptr | MapRef | undefined;

export interface Caller {
  uid: number;
  gid: number;
  cgroupId?: bigint;
}

export interface Run {
  /** 3 grant, 1 pass (the kernel's own rules), 0 refuse. */
  verdict: number;
  ctxReads: number[];
  lookups: number;
  /** What bpf_set_retval set (the errno bind() returns, negated), when it was called. */
  retval?: bigint;
  /** Instructions run, the exit included. */
  steps: number;
}

function access(p: Value, off: number, size: number, write: boolean): { region: Region; at: number } {
  assert.ok(p instanceof Ptr, 'memory access through a non-pointer');
  const at = p.off + off;
  assert.ok(at >= 0 && at + size <= p.region.buf.length, `${p.region.name} access at ${at} out of bounds`);
  const init = p.region.init;
  if (init !== undefined) {
    if (write) init.fill(1, at, at + size);
    else
      assert.ok(
        init.subarray(at, at + size).every((b) => b === 1),
        `read of uninitialized stack at ${at - 512}`,
      );
  }
  return { region: p.region, at };
}

/** Runs the program of a hook on one bind context, as `caller`. */
export function run(family: HookFamily, ctx: Buffer, outer: OuterMap, caller: Caller, options: BindProgramOptions = {}): Run {
  const starts = bySlot(program(family, options));
  const stack: Region = { name: 'stack', buf: Buffer.alloc(512), init: new Uint8Array(512) };
  const regs: Value[] = [];
  regs[1] = new Ptr({ name: 'ctx', buf: ctx }, 0);
  regs[10] = new Ptr(stack, 512);
  const ctxReads: number[] = [];
  let lookups = 0;
  let retval: bigint | undefined;
  const scalar = (v: Value): bigint => {
    assert.equal(typeof v, 'bigint', 'scalar expected');
    return v as bigint;
  };
  const u64 = (n: bigint): bigint => BigInt.asUintN(64, n);

  let slot = 0;
  for (let steps = 0; steps < 10_000; steps++) {
    const i = starts.get(slot);
    assert.ok(i !== undefined, `no instruction at slot ${slot}`);
    let next = slot + i.width;
    const operand = (): Value => (i.source === 'reg' ? regs[i.src] : u64(BigInt(i.imm)));
    switch (i.op) {
      case 'mov':
        regs[i.dst] = operand();
        break;
      case 'add': {
        const a = regs[i.dst];
        const b = operand();
        regs[i.dst] = a instanceof Ptr ? new Ptr(a.region, a.off + Number(BigInt.asIntN(64, scalar(b)))) : u64(scalar(a) + scalar(b));
        break;
      }
      case 'and':
        regs[i.dst] = scalar(regs[i.dst]) & scalar(operand());
        break;
      case 'lsh': {
        const by = scalar(operand());
        assert.ok(by < 64n, 'shift by 64 or more');
        regs[i.dst] = u64(scalar(regs[i.dst]) << by);
        break;
      }
      case 'rsh': {
        const by = scalar(operand());
        assert.ok(by < 64n, 'shift by 64 or more');
        regs[i.dst] = scalar(regs[i.dst]) >> by;
        break;
      }
      case 'be': {
        const tmp = Buffer.alloc(8);
        tmp.writeBigUInt64LE(scalar(regs[i.dst]));
        regs[i.dst] = BigInt('0x' + (Buffer.from(tmp.subarray(0, i.imm / 8)).toString('hex') || '0'));
        break;
      }
      case 'ldx': {
        const size = i.size ?? 0;
        const { region, at } = access(regs[i.src], i.off, size, false);
        if (region.name === 'ctx') ctxReads.push(at);
        regs[i.dst] = readLE(region.buf, at, size);
        break;
      }
      case 'st':
      case 'stx':
      case 'atomic_add': {
        const size = i.size ?? 0;
        const { region, at } = access(regs[i.dst], i.off, size, true);
        assert.notEqual(region.name, 'ctx', 'the program writes to the context');
        const value = i.op === 'st' ? BigInt(i.imm) : scalar(regs[i.src]);
        writeLE(region.buf, at, size, i.op === 'atomic_add' ? readLE(region.buf, at, size) + value : value);
        break;
      }
      case 'ld_map_fd':
        assert.equal(i.imm, OUTER_FD, 'a map fd other than the outer map');
        regs[i.dst] = new MapRef(outer);
        break;
      case 'ld_map_value':
        assert.equal(i.imm, PORT_FILTER_FD, 'a direct value load of a map other than the port filter');
        regs[i.dst] = new Ptr({ name: 'value', buf: outer.ports ?? Buffer.alloc(PORT_FILTER_SIZE) }, i.imm64High ?? 0);
        break;
      case 'ld64':
        regs[i.dst] = (BigInt(i.imm64High ?? 0) << 32n) | BigInt(i.imm >>> 0);
        break;
      case 'exit':
        return { verdict: Number(scalar(regs[0])), ctxReads, lookups, steps: steps + 1, ...(retval === undefined ? {} : { retval }) };
      case 'call':
        if (i.imm === 187) {
          // bpf_set_retval(int): the errno for the syscall; it returns 0.
          retval = BigInt.asIntN(32, scalar(regs[1]));
          regs[0] = 0n;
        } else regs[0] = call(i.imm, regs, caller, () => lookups++);
        for (const r of [1, 2, 3, 4, 5]) regs[r] = undefined;
        break;
      case 'ja':
        next = i.target ?? assert.fail('goto without a target');
        break;
      case 'jeq':
      case 'jne': {
        const a = regs[i.dst];
        const b = operand();
        // A pointer is only ever compared with 0, as a null check.
        const isPointer = a instanceof Ptr || a instanceof MapRef;
        if (isPointer) assert.equal(b, 0n, 'pointer compared with something other than 0');
        const av = isPointer ? 1n : scalar(a);
        const bv = scalar(b);
        if ((i.op === 'jeq') === (av === bv)) next = i.target ?? assert.fail('jump without a target');
        break;
      }
      default:
        assert.fail(`${i.op} (${i.text}) is not emulated`);
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
export type BindProtocol = keyof typeof PROTO;

/** struct bpf_sock_addr for a bind to `ip`:`port`. */
export function sockAddr(ip: string, port: number, protocol: BindProtocol): { family: HookFamily; ctx: Buffer } {
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

/** The 16 bytes of the IPv6 literals the tests use, spelled out rather than parsed by the code under test. */
function ipv6Bytes(ip: string): Buffer {
  const table: Record<string, string> = {
    '::': '00000000000000000000000000000000',
    '::1': '00000000000000000000000000000001',
    '::ffff:127.0.0.1': '00000000000000000000ffff7f000001',
    '::ffff:10.0.0.1': '00000000000000000000ffff0a000001',
    '::ffff:0.0.0.0': '00000000000000000000ffff00000000',
    '::127.0.0.1': '0000000000000000000000007f000001',
    '2001:db8::1': '20010db8000000000000000000000001',
    '2001:db8::2': '20010db8000000000000000000000002',
    '64:ff9b::7f00:1': '0064ff9b0000000000000000' + '7f000001',
  };
  const hex = table[ip];
  assert.ok(hex !== undefined, `no bytes for ${ip}: add them to the table`);
  return Buffer.from(hex, 'hex');
}

/** The live policy map for a compiled table, as `apply` fills it. */
export function policyMap(table: EntryTable): PolicyMap {
  return { kind: 'policy', entries: new Map(table.toEntries().map((e) => [encodeKey(e.key).toString('hex'), encodeValue(e.value)])) };
}

/** Hits of every entry with hits, as `line kind protocol/port: hits`. */
export function hits(map: PolicyMap): string[] {
  const out: string[] = [];
  for (const [key, value] of map.entries) {
    const v = decodeValue(value);
    if (v.hits === 0n) continue;
    const k = Buffer.from(key, 'hex');
    out.push(`line ${v.rule} kind ${k[0]} ${k[1]}/${k.readUInt16LE(2)}: ${v.hits}`);
  }
  return out.sort();
}

/** The port filter of a policy map, as `apply` writes it: each PORT marker's flags at its (protocol, port). */
export function portFilterOf(map: PolicyMap | undefined): Buffer {
  const filter = Buffer.alloc(PORT_FILTER_SIZE);
  for (const [key, value] of map?.entries ?? []) {
    const k = Buffer.from(key, 'hex');
    if (k[0] !== 0) continue;
    const offset = portFilterOffset(k[1] ?? 0, k.readUInt16LE(2));
    if (offset !== undefined) filter.writeUInt16LE(filter.readUInt16LE(offset) | decodeValue(value).flags, offset);
  }
  return filter;
}

/** A bind by `who` to ip:port through the hook of its family, against `map` in the outer slot (none: no policy). */
export function bind(
  map: PolicyMap | undefined,
  who: Caller,
  ip: string,
  port: number,
  protocol: BindProtocol = 'tcp',
  options: BindProgramOptions = {},
): Run {
  const { family, ctx } = sockAddr(ip, port, protocol);
  return run(family, ctx, { kind: 'outer', slot: map, ports: portFilterOf(map) }, who, options);
}

/** A small user database for the tests that compile policies: root, alice, bob, carol (in group web), postgres. */
export const USERS: PasswdEntry[] = [
  { name: 'root', uid: 0, gid: 0, home: '/root', shell: '/bin/sh' },
  { name: 'alice', uid: 1000, gid: 1000, home: '/home/alice', shell: '/bin/sh' },
  { name: 'bob', uid: 1001, gid: 1001, home: '/home/bob', shell: '/bin/sh' },
  { name: 'carol', uid: 1002, gid: 100, home: '/home/carol', shell: '/bin/sh' },
  { name: 'postgres', uid: 70, gid: 70, home: '/var/lib/postgres', shell: '/bin/sh' },
];
export const GROUPS: GroupEntry[] = [{ name: 'web', gid: 2000, members: ['carol'] }];

export const directory: Directory = {
  users: (keys) => new Map(keys.flatMap((k) => USERS.filter((u) => u.name === k || String(u.uid) === k).map((u) => [k, u] as const))),
  groups: (keys) => new Map(keys.flatMap((k) => GROUPS.filter((g) => g.name === k || String(g.gid) === k).map((g) => [k, g] as const))),
};
