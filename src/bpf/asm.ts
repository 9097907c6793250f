/**
 * A small eBPF assembler: named instructions, labels for jumps, and a listing
 * in the notation of the kernel verifier and `bpftool prog dump xlated`, so a
 * program can be read next to what the kernel prints about it.
 *
 * Encoding: include/uapi/linux/bpf.h (`struct bpf_insn`: u8 code, u8 dst:4
 * src:4, s16 off, s32 imm; `BPF_LD | BPF_DW | BPF_IMM` takes two slots) and
 * Documentation/bpf/standardization/instruction-set.rst.
 */

export type Reg = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10;
export const R0 = 0,
  R1 = 1,
  R2 = 2,
  R3 = 3,
  R4 = 4,
  R5 = 5,
  R6 = 6,
  R7 = 7,
  R8 = 8,
  R9 = 9,
  R10 = 10;
/** The read-only frame pointer. */
export const FP: Reg = 10;

// Instruction classes, sizes, modes, sources and operations (linux/bpf_common.h, linux/bpf.h).
const LD = 0x00,
  LDX = 0x01,
  ST = 0x02,
  STX = 0x03,
  ALU = 0x04,
  JMP = 0x05,
  ALU64 = 0x07;
const W = 0x00,
  H = 0x08,
  B = 0x10,
  DW = 0x18;
const IMM = 0x00,
  MEM = 0x60,
  ATOMIC = 0xc0;
const K = 0x00,
  X = 0x08;
const ALU_OPS = { add: 0x00, sub: 0x10, mul: 0x20, or: 0x40, and: 0x50, lsh: 0x60, rsh: 0x70, xor: 0xa0, mov: 0xb0 } as const;
const JMP_OPS = { jeq: 0x10, jgt: 0x20, jge: 0x30, jset: 0x40, jne: 0x50, jlt: 0xa0, jle: 0xb0 } as const;
const JA = 0x00,
  CALL = 0x80,
  EXIT = 0x90,
  END = 0xd0;
const TO_BE = 0x08;
/** `src_reg` of a two-slot load whose imm is a map fd (BPF_PSEUDO_MAP_FD). */
const PSEUDO_MAP_FD = 1;
/**
 * `src_reg` of a two-slot load of the address of an ARRAY map's value
 * (BPF_PSEUDO_MAP_VALUE, Linux 5.2): imm is the map fd, the second slot's imm
 * the offset in the value; the map must have one element. No helper call.
 */
const PSEUDO_MAP_VALUE = 2;

export type AluOp = keyof typeof ALU_OPS;
export type JmpOp = keyof typeof JMP_OPS;
export type Size = 1 | 2 | 4 | 8;

const SIZE_CODE: Record<Size, number> = { 1: B, 2: H, 4: W, 8: DW };
const SIZE_NAME: Record<Size, string> = { 1: 'u8', 2: 'u16', 4: 'u32', 8: 'u64' };
const ALU_SYMBOL: Record<AluOp, string> = {
  add: '+=',
  sub: '-=',
  mul: '*=',
  or: '|=',
  and: '&=',
  lsh: '<<=',
  rsh: '>>=',
  xor: '^=',
  mov: '=',
};
const JMP_SYMBOL: Record<JmpOp, string> = { jeq: '==', jgt: '>', jge: '>=', jset: '&', jne: '!=', jlt: '<', jle: '<=' };

/** Helper function ids (enum bpf_func_id in linux/bpf.h). */
export const HELPER = {
  map_lookup_elem: 1,
  ktime_get_ns: 5,
  ktime_get_coarse_ns: 160,
  get_current_pid_tgid: 14,
  get_current_uid_gid: 15,
  get_current_comm: 16,
  get_current_cgroup_id: 80,
  get_current_task_btf: 158,
  set_retval: 187,
  ringbuf_reserve: 131,
  ringbuf_submit: 132,
} as const;
const HELPER_NAME = new Map<number, string>(Object.entries(HELPER).map(([k, v]) => [v, k]));

interface Insn {
  code: number;
  dst: Reg;
  src: number;
  off: number;
  imm: number;
  /** Set on the first slot of a two-slot load: the upper 32 bits. */
  imm64High?: number;
  /** Jump target to resolve. */
  label?: string;
  text: string;
}

/** A 32-bit immediate that is stored as is (st of 4 bytes or less, map fds): signed or unsigned. */
function checkImm32(imm: number): number {
  if (!Number.isInteger(imm) || imm < -0x80000000 || imm > 0xffffffff) throw new RangeError(`immediate ${imm} does not fit in 32 bits`);
  return imm | 0;
}

/**
 * An immediate of a 64-bit ALU or JMP instruction, which the kernel
 * sign-extends: 0xffffffff would mean -1, not 4294967295, so only the signed
 * range is accepted (load larger constants with ld64).
 */
function checkSignedImm32(imm: number): number {
  if (!Number.isInteger(imm) || imm < -0x80000000 || imm > 0x7fffffff) {
    throw new RangeError(
      `immediate ${imm} is outside -2^31..2^31-1, and 64-bit ALU and JMP instructions sign-extend it; load it with ld64`,
    );
  }
  return imm;
}

function checkOff(off: number): number {
  if (!Number.isInteger(off) || off < -0x8000 || off > 0x7fff) throw new RangeError(`offset ${off} does not fit in 16 bits`);
  return off;
}

function mem(reg: Reg, off: number): string {
  return `(r${reg} ${off < 0 ? '-' : '+'} ${Math.abs(off)})`;
}

export class Assembler {
  private readonly insns: Insn[] = [];
  private readonly labels = new Map<string, number>();

  /** Slot index of the next instruction (two-slot loads count twice). */
  private get slot(): number {
    return this.insns.reduce((n, i) => n + (i.imm64High === undefined ? 1 : 2), 0);
  }

  label(name: string): this {
    if (this.labels.has(name)) throw new Error(`label ${name} defined twice`);
    this.labels.set(name, this.slot);
    return this;
  }

  /** dst op= src (64-bit). */
  alu64(op: AluOp, dst: Reg, src: Reg | { imm: number }): this {
    if (typeof src === 'number') {
      return this.push({ code: ALU64 | ALU_OPS[op] | X, dst, src, off: 0, imm: 0, text: `r${dst} ${ALU_SYMBOL[op]} r${src}` });
    }
    const imm = checkSignedImm32(src.imm);
    return this.push({ code: ALU64 | ALU_OPS[op] | K, dst, src: 0, off: 0, imm, text: `r${dst} ${ALU_SYMBOL[op]} ${src.imm}` });
  }

  mov(dst: Reg, src: Reg | { imm: number }): this {
    return this.alu64('mov', dst, src);
  }

  /** dst = be16/be32/be64(dst): network to host order on a little-endian CPU (BPF_END | BPF_TO_BE). */
  be(dst: Reg, bits: 16 | 32 | 64): this {
    return this.push({ code: ALU | END | TO_BE, dst, src: 0, off: 0, imm: bits, text: `r${dst} = be${bits} r${dst}` });
  }

  /** dst = *(size *)(src + off) */
  ldx(size: Size, dst: Reg, src: Reg, off: number): this {
    return this.push({
      code: LDX | MEM | SIZE_CODE[size],
      dst,
      src,
      off: checkOff(off),
      imm: 0,
      text: `r${dst} = *(${SIZE_NAME[size]} *)${mem(src, off)}`,
    });
  }

  /** *(size *)(dst + off) = src */
  stx(size: Size, dst: Reg, off: number, src: Reg): this {
    return this.push({
      code: STX | MEM | SIZE_CODE[size],
      dst,
      src,
      off: checkOff(off),
      imm: 0,
      text: `*(${SIZE_NAME[size]} *)${mem(dst, off)} = r${src}`,
    });
  }

  /** *(size *)(dst + off) = imm */
  st(size: Size, dst: Reg, off: number, imm: number): this {
    return this.push({
      code: ST | MEM | SIZE_CODE[size],
      dst,
      src: 0,
      off: checkOff(off),
      imm: checkImm32(imm),
      text: `*(${SIZE_NAME[size]} *)${mem(dst, off)} = ${imm}`,
    });
  }

  /** lock *(u64 *)(dst + off) += src (BPF_ATOMIC | BPF_ADD, the old BPF_XADD). */
  atomicAdd64(dst: Reg, off: number, src: Reg): this {
    return this.push({ code: STX | ATOMIC | DW, dst, src, off: checkOff(off), imm: 0, text: `lock *(u64 *)${mem(dst, off)} += r${src}` });
  }

  /** dst = a 64-bit constant, in two slots. */
  ld64(dst: Reg, value: bigint): this {
    if (value < -(1n << 63n) || value >= 1n << 64n) throw new RangeError(`constant ${value} does not fit in 64 bits`);
    const v = BigInt.asUintN(64, value);
    const low = Number(v & 0xffffffffn) | 0;
    const high = Number(v >> 32n) | 0;
    return this.push({ code: LD | IMM | DW, dst, src: 0, off: 0, imm: low, imm64High: high, text: `r${dst} = 0x${v.toString(16)} ll` });
  }

  /** dst = the map behind `fd`; the kernel rewrites the fd into a map pointer at load time. */
  ldMapFd(dst: Reg, fd: number, name = `fd ${fd}`): this {
    return this.push({
      code: LD | IMM | DW,
      dst,
      src: PSEUDO_MAP_FD,
      off: 0,
      imm: checkImm32(fd),
      imm64High: 0,
      text: `r${dst} = map[${name}] ll`,
    });
  }

  /**
   * dst = the address of byte `offset` of element 0 of the ARRAY map behind `fd`
   * (a one-element map): a direct read of its value, without map_lookup_elem.
   */
  ldMapValue(dst: Reg, fd: number, offset = 0, name = `fd ${fd}`): this {
    return this.push({
      code: LD | IMM | DW,
      dst,
      src: PSEUDO_MAP_VALUE,
      off: 0,
      imm: checkImm32(fd),
      imm64High: checkImm32(offset),
      text: `r${dst} = map_value[${name}] + ${offset} ll`,
    });
  }

  /** if dst op src goto label (64-bit compare). */
  jmp(op: JmpOp, dst: Reg, src: Reg | { imm: number }, label: string): this {
    if (typeof src === 'number') {
      return this.push({
        code: JMP | JMP_OPS[op] | X,
        dst,
        src,
        off: 0,
        imm: 0,
        label,
        text: `if r${dst} ${JMP_SYMBOL[op]} r${src} goto ${label}`,
      });
    }
    const imm = checkSignedImm32(src.imm);
    return this.push({
      code: JMP | JMP_OPS[op] | K,
      dst,
      src: 0,
      off: 0,
      imm,
      label,
      text: `if r${dst} ${JMP_SYMBOL[op]} ${src.imm} goto ${label}`,
    });
  }

  ja(label: string): this {
    return this.push({ code: JMP | JA, dst: 0, src: 0, off: 0, imm: 0, label, text: `goto ${label}` });
  }

  call(helper: number): this {
    return this.push({ code: JMP | CALL, dst: 0, src: 0, off: 0, imm: helper, text: `call ${HELPER_NAME.get(helper) ?? `#${helper}`}` });
  }

  exit(): this {
    return this.push({ code: JMP | EXIT, dst: 0, src: 0, off: 0, imm: 0, text: 'exit' });
  }

  /** r0 = value; exit */
  ret(value: number): this {
    return this.mov(R0, { imm: value }).exit();
  }

  private push(insn: Insn): this {
    this.insns.push(insn);
    return this;
  }

  /** Resolves labels and returns the program as the kernel takes it (8 bytes a slot, host byte order). */
  assemble(): Buffer {
    const slots = this.slot;
    const buf = Buffer.alloc(slots * 8);
    let slot = 0;
    for (const insn of this.insns) {
      const width = insn.imm64High === undefined ? 1 : 2;
      let off = insn.off;
      if (insn.label !== undefined) {
        const target = this.labels.get(insn.label);
        if (target === undefined) throw new Error(`jump to undefined label ${insn.label}`);
        off = checkOff(target - (slot + 1));
      }
      writeSlot(buf, slot, insn.code, insn.dst, insn.src, off, insn.imm);
      if (insn.imm64High !== undefined) writeSlot(buf, slot + 1, 0, 0, 0, 0, insn.imm64High);
      slot += width;
    }
    return buf;
  }

  /** A listing: slot number, opcode, and the instruction in verifier notation, with labels. */
  listing(): string {
    const bySlot = new Map<number, string[]>();
    for (const [name, at] of this.labels) bySlot.set(at, [...(bySlot.get(at) ?? []), name]);
    const out: string[] = [];
    let slot = 0;
    for (const insn of this.insns) {
      for (const name of bySlot.get(slot) ?? []) out.push(`${name}:`);
      out.push(`${String(slot).padStart(4)}: (${insn.code.toString(16).padStart(2, '0')}) ${insn.text}`);
      slot += insn.imm64High === undefined ? 1 : 2;
    }
    for (const name of bySlot.get(slot) ?? []) out.push(`${name}:`);
    return out.join('\n');
  }
}

function writeSlot(buf: Buffer, slot: number, code: number, dst: number, src: number, off: number, imm: number): void {
  const at = slot * 8;
  buf.writeUInt8(code, at);
  // dst_reg and src_reg are C bit-fields: the low nibble holds dst on little-endian hosts.
  buf.writeUInt8(((src & 0xf) << 4) | (dst & 0xf), at + 1);
  buf.writeInt16LE(off, at + 2);
  buf.writeInt32LE(imm, at + 4);
}

// ---------------------------------------------------------------------------
// The decoder: bytes back into instructions, the inverse of assemble(), so
// that tests (and a reader of a loaded program) can assert on what an
// instruction is rather than on its opcode bits (as cilium/ebpf's asm does).

export type InsnClass = 'ld' | 'ldx' | 'st' | 'stx' | 'alu' | 'jmp' | 'alu64';

/** What an instruction does, as the assembler's method names say it. */
export type Operation =
  AluOp | JmpOp | 'be' | 'ldx' | 'stx' | 'st' | 'atomic_add' | 'ld64' | 'ld_map_fd' | 'ld_map_value' | 'ja' | 'call' | 'exit';

/** One decoded instruction; a two-slot load is one instruction of two slots. */
export interface Instruction {
  /** Slot index of its first (or only) slot. */
  slot: number;
  /** 1, or 2 for a 64-bit load. */
  width: 1 | 2;
  code: number;
  class: InsnClass;
  op: Operation;
  /** Operand source of ALU and conditional jumps: the immediate (BPF_K) or src (BPF_X). */
  source?: 'imm' | 'reg';
  /** Access size in bytes of loads and stores. */
  size?: Size;
  dst: Reg;
  src: number;
  off: number;
  imm: number;
  /** Two-slot loads: the upper 32 bits (the second slot's imm). */
  imm64High?: number;
  /** Jumps: the slot it goes to (slot + 1 + off). */
  target?: number;
  /** In the verifier's notation, jumps as `goto pc+N` (no labels here). */
  text: string;
}

const CLASS_NAME: Record<number, InsnClass> = {
  [LD]: 'ld',
  [LDX]: 'ldx',
  [ST]: 'st',
  [STX]: 'stx',
  [ALU]: 'alu',
  [JMP]: 'jmp',
  [ALU64]: 'alu64',
};
const SIZE_OF: Record<number, Size> = { [B]: 1, [H]: 2, [W]: 4, [DW]: 8 };
const ALU_BY_CODE = new Map<number, AluOp>(Object.entries(ALU_OPS).map(([k, v]) => [v, k as AluOp]));
const JMP_BY_CODE = new Map<number, JmpOp>(Object.entries(JMP_OPS).map(([k, v]) => [v, k as JmpOp]));

function reg(n: number, slot: number): Reg {
  if (n > 10) throw new RangeError(`slot ${slot}: register r${n} does not exist`);
  return n as Reg;
}

/**
 * Decodes a program (8 bytes a slot, host byte order) into instructions.
 * Only what this assembler emits is decoded; anything else throws a
 * RangeError naming the slot, as does a cut-short or malformed two-slot load.
 */
export function decode(code: Buffer): Instruction[] {
  if (code.length % 8 !== 0) throw new RangeError(`${code.length} bytes is not a whole number of 8-byte slots`);
  const out: Instruction[] = [];
  for (let slot = 0; slot < code.length / 8; slot++) {
    const insn = decodeAt(code, slot);
    out.push(insn);
    slot += insn.width - 1;
  }
  return out;
}

function decodeAt(code: Buffer, slot: number): Instruction {
  const at = slot * 8;
  const c = code.readUInt8(at);
  const regs = code.readUInt8(at + 1);
  const raw = {
    slot,
    width: 1 as 1 | 2,
    code: c,
    dst: reg(regs & 0xf, slot),
    src: regs >> 4,
    off: code.readInt16LE(at + 2),
    imm: code.readInt32LE(at + 4),
  };
  const { dst, src, off, imm } = raw;
  const cls = CLASS_NAME[c & 0x07];
  const bad = (): never => {
    throw new RangeError(`slot ${slot}: opcode 0x${c.toString(16).padStart(2, '0')} is not one this assembler emits`);
  };
  if (cls === undefined) return bad();
  const size = SIZE_OF[c & 0x18] ?? 8;
  const mode = c & 0xe0;
  // ALU and JMP only: there the 0x08 bit picks the operand (in loads and stores it is part of the size).
  const source = (c & X) !== 0 ? ('reg' as const) : ('imm' as const);
  const operand = (): string => (source === 'reg' ? `r${reg(src, slot)}` : String(imm));
  switch (cls) {
    case 'alu64': {
      const op = ALU_BY_CODE.get(c & 0xf0) ?? bad();
      return { ...raw, class: cls, op, source, text: `r${dst} ${ALU_SYMBOL[op]} ${operand()}` };
    }
    case 'alu': {
      if (c !== (ALU | END | TO_BE) || ![16, 32, 64].includes(imm)) return bad();
      return { ...raw, class: cls, op: 'be', text: `r${dst} = be${imm} r${dst}` };
    }
    case 'ldx':
      if (mode !== MEM) return bad();
      return { ...raw, class: cls, op: 'ldx', size, text: `r${dst} = *(${SIZE_NAME[size]} *)${mem(reg(src, slot), off)}` };
    case 'st':
      if (mode !== MEM) return bad();
      return { ...raw, class: cls, op: 'st', size, text: `*(${SIZE_NAME[size]} *)${mem(dst, off)} = ${imm}` };
    case 'stx':
      if (mode === MEM)
        return { ...raw, class: cls, op: 'stx', size, text: `*(${SIZE_NAME[size]} *)${mem(dst, off)} = r${reg(src, slot)}` };
      if (mode !== ATOMIC || size !== 8 || imm !== 0) return bad();
      return { ...raw, class: cls, op: 'atomic_add', size, text: `lock *(u64 *)${mem(dst, off)} += r${reg(src, slot)}` };
    case 'ld': {
      if (c !== (LD | IMM | DW) || (src !== 0 && src !== PSEUDO_MAP_FD && src !== PSEUDO_MAP_VALUE)) return bad();
      if (at + 16 > code.length) throw new RangeError(`slot ${slot}: the two-slot load is cut short`);
      if (code.readUInt32LE(at + 8) !== 0)
        throw new RangeError(`slot ${slot + 1}: the second slot of a two-slot load must have a zero opcode, registers and offset`);
      const imm64High = code.readInt32LE(at + 12);
      const insn = { ...raw, width: 2 as const, class: cls, imm64High };
      if (src === PSEUDO_MAP_FD) return { ...insn, op: 'ld_map_fd', text: `r${dst} = map[fd ${imm}] ll` };
      if (src === PSEUDO_MAP_VALUE) return { ...insn, op: 'ld_map_value', text: `r${dst} = map_value[fd ${imm}] + ${imm64High} ll` };
      const value = (BigInt(imm64High >>> 0) << 32n) | BigInt(imm >>> 0);
      return { ...insn, op: 'ld64', text: `r${dst} = 0x${value.toString(16)} ll` };
    }
    case 'jmp': {
      const target = slot + 1 + off;
      if (c === (JMP | EXIT)) return { ...raw, class: cls, op: 'exit', text: 'exit' };
      if (c === (JMP | CALL)) return { ...raw, class: cls, op: 'call', text: `call ${HELPER_NAME.get(imm) ?? `#${imm}`}` };
      const goto = `goto pc${off < 0 ? '-' : '+'}${Math.abs(off)}`;
      if (c === (JMP | JA)) return { ...raw, class: cls, op: 'ja', target, text: goto };
      const op = JMP_BY_CODE.get(c & 0xf0) ?? bad();
      return { ...raw, class: cls, op, source, target, text: `if r${dst} ${JMP_SYMBOL[op]} ${operand()} ${goto}` };
    }
  }
}

/** Encodes decoded instructions again: encode(decode(code)) gives back `code`. */
export function encode(insns: readonly Instruction[]): Buffer {
  const buf = Buffer.alloc(insns.reduce((n, i) => n + i.width, 0) * 8);
  let slot = 0;
  for (const i of insns) {
    writeSlot(buf, slot, i.code, i.dst, i.src, i.off, i.imm);
    if (i.width === 2) writeSlot(buf, slot + 1, 0, 0, 0, 0, i.imm64High ?? 0);
    slot += i.width;
  }
  return buf;
}
