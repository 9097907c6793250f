/**
 * The expected bytes here are assembled by hand from include/uapi/linux/bpf.h
 * and linux/bpf_common.h (struct bpf_insn: u8 code, u8 dst_reg:4 src_reg:4,
 * s16 off, s32 imm; little-endian, so dst is the low nibble), not copied from
 * the assembler. Opcode = class | size/op | mode/source:
 *   classes  LD 0x00 LDX 0x01 ST 0x02 STX 0x03 ALU 0x04 JMP 0x05 ALU64 0x07
 *   sizes    W 0x00 H 0x08 B 0x10 DW 0x18; modes IMM 0x00 MEM 0x60 ATOMIC 0xc0
 *   source   K 0x00 X 0x08
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Assembler, decode, encode, FP, HELPER, R0, R1, R2, R3, R6, R7, R8, R9, type Instruction } from '../../../src/bpf/asm.js';

/** Bytes from spaced hex, e.g. `b7 00 00 00 01 00 00 00`. */
function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ''), 'hex');
}

/** The program as one spaced-hex line per slot, so a failure shows which slot differs. */
function slots(code: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at < code.length; at += 8)
    out.push(
      code
        .subarray(at, at + 8)
        .toString('hex')
        .replace(/(..)(?!$)/g, '$1 '),
    );
  return out;
}

function assembled(build: (a: Assembler) => void): string[] {
  const a = new Assembler();
  build(a);
  return slots(a.assemble());
}

describe('Assembler: encodings', () => {
  it('encodes `r0 = 1; exit` as the two slots every BPF tutorial shows', () => {
    const code = new Assembler().mov(R0, { imm: 1 }).exit().assemble();
    assert.deepEqual(code, hex('b7 00 00 00 01 00 00 00  95 00 00 00 00 00 00 00'));
  });

  it('encodes ret(v) as a mov of v into r0 followed by exit', () => {
    assert.deepEqual(
      assembled((a) => a.ret(3)),
      ['b7 00 00 00 03 00 00 00', '95 00 00 00 00 00 00 00'],
    );
  });

  it('puts dst in the low nibble and src in the high nibble of the register byte', () => {
    // mov r6, r1: ALU64|MOV|X = 0x07|0xb0|0x08 = 0xbf; regs = 1<<4 | 6 = 0x16.
    assert.deepEqual(
      assembled((a) => a.mov(R6, R1)),
      ['bf 16 00 00 00 00 00 00'],
    );
    // mov r1, r6 swaps the nibbles.
    assert.deepEqual(
      assembled((a) => a.mov(R1, R6)),
      ['bf 61 00 00 00 00 00 00'],
    );
  });

  it('encodes every 64-bit ALU operation with an immediate and with a register', () => {
    const ops = [
      ['add', 0x00],
      ['sub', 0x10],
      ['mul', 0x20],
      ['or', 0x40],
      ['and', 0x50],
      ['lsh', 0x60],
      ['rsh', 0x70],
      ['xor', 0xa0],
      ['mov', 0xb0],
    ] as const;
    for (const [op, bits] of ops) {
      const k = (0x07 | bits).toString(16).padStart(2, '0');
      const x = (0x07 | bits | 0x08).toString(16).padStart(2, '0');
      assert.deepEqual(
        assembled((a) => a.alu64(op, R2, { imm: 7 })),
        [`${k} 02 00 00 07 00 00 00`],
        `${op} K`,
      );
      assert.deepEqual(
        assembled((a) => a.alu64(op, R2, R3)),
        [`${x} 32 00 00 00 00 00 00`],
        `${op} X`,
      );
    }
  });

  it('writes negative immediates in two’s complement, and refuses the unsigned spelling that the kernel would sign-extend', () => {
    assert.deepEqual(
      assembled((a) => a.alu64('add', R2, { imm: -72 })),
      ['07 02 00 00 b8 ff ff ff'],
    );
    assert.deepEqual(
      assembled((a) => a.mov(R0, { imm: -1 })),
      ['b7 00 00 00 ff ff ff ff'],
    );
    assert.throws(() => new Assembler().mov(R0, { imm: 0xffffffff }), { name: 'RangeError', message: /sign-extend/ });
    assert.throws(() => new Assembler().jmp('jeq', R0, { imm: 0x80000000 }, 'x'), { name: 'RangeError', message: /sign-extend/ });
    assert.deepEqual(
      assembled((a) => a.st(4, FP, -4, 0xffffffff)),
      ['62 0a fc ff ff ff ff ff'],
    );
    assert.deepEqual(
      assembled((a) => a.mov(R0, { imm: -0x80000000 })),
      ['b7 00 00 00 00 00 00 80'],
    );
  });

  it('encodes loads of each size with LDX|MEM and the size bits', () => {
    // r7 = *(u32 *)(r6 + 36): 0x01|0x60|0x00 = 0x61, regs 6<<4|7 = 0x67, off 36 = 0x0024.
    assert.deepEqual(
      assembled((a) => a.ldx(4, R7, R6, 36)),
      ['61 67 24 00 00 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.ldx(1, R1, R2, 1)),
      ['71 21 01 00 00 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.ldx(2, R1, R2, 2)),
      ['69 21 02 00 00 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.ldx(8, R1, R2, 8)),
      ['79 21 08 00 00 00 00 00'],
    );
  });

  it('encodes negative offsets from the frame pointer as signed 16-bit values', () => {
    // r1 = *(u64 *)(r10 - 88): off -88 = 0xffa8.
    assert.deepEqual(
      assembled((a) => a.ldx(8, R1, FP, -88)),
      ['79 a1 a8 ff 00 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.ldx(4, R1, FP, -0x8000)),
      ['61 a1 00 80 00 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.ldx(4, R1, FP, 0x7fff)),
      ['61 a1 ff 7f 00 00 00 00'],
    );
  });

  it('encodes register stores of each size with STX|MEM, the frame pointer as dst', () => {
    // *(u64 *)(r10 - 8) = r0: 0x03|0x60|0x18 = 0x7b, regs 0<<4|10 = 0x0a.
    assert.deepEqual(
      assembled((a) => a.stx(8, FP, -8, R0)),
      ['7b 0a f8 ff 00 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.stx(4, FP, -16, R2)),
      ['63 2a f0 ff 00 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.stx(2, FP, -30, R8)),
      ['6b 8a e2 ff 00 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.stx(1, FP, -31, R7)),
      ['73 7a e1 ff 00 00 00 00'],
    );
  });

  it('encodes immediate stores of each size with ST|MEM, the value in imm', () => {
    // *(u32 *)(r10 - 72) = 0: 0x02|0x60|0x00 = 0x62, off -72 = 0xffb8.
    assert.deepEqual(
      assembled((a) => a.st(4, FP, -72, 0)),
      ['62 0a b8 ff 00 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.st(1, FP, -28, 10)),
      ['72 0a e4 ff 0a 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.st(2, FP, -2, 0x1234)),
      ['6a 0a fe ff 34 12 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.st(8, FP, -8, -2)),
      ['7a 0a f8 ff fe ff ff ff'],
    );
  });

  it('encodes the atomic 64-bit add as STX|ATOMIC|DW (0xdb) with BPF_ADD (0) in imm', () => {
    // lock *(u64 *)(r8 + 8) += r1: regs 1<<4|8 = 0x18.
    assert.deepEqual(
      assembled((a) => a.atomicAdd64(R8, 8, R1)),
      ['db 18 08 00 00 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.atomicAdd64(R0, -16, R9)),
      ['db 90 f0 ff 00 00 00 00'],
    );
  });

  it('encodes byte swaps to big endian as ALU|END|TO_BE (0xdc) with the width in imm', () => {
    assert.deepEqual(
      assembled((a) => a.be(R8, 16)),
      ['dc 08 00 00 10 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.be(R2, 32)),
      ['dc 02 00 00 20 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.be(R2, 64)),
      ['dc 02 00 00 40 00 00 00'],
    );
  });

  it('encodes a 64-bit constant in two slots, the low half first, the second slot with a zero opcode', () => {
    assert.deepEqual(
      assembled((a) => a.ld64(R3, 0x1122334455667788n)),
      ['18 03 00 00 88 77 66 55', '00 00 00 00 44 33 22 11'],
    );
  });

  it('encodes a negative 64-bit constant as its two’s complement halves', () => {
    assert.deepEqual(
      assembled((a) => a.ld64(R1, -1n)),
      ['18 01 00 00 ff ff ff ff', '00 00 00 00 ff ff ff ff'],
    );
    assert.deepEqual(
      assembled((a) => a.ld64(R1, 1n << 63n)),
      ['18 01 00 00 00 00 00 00', '00 00 00 00 00 00 00 80'],
    );
  });

  it('encodes a map fd load as a two-slot load with src_reg BPF_PSEUDO_MAP_FD (1) and the fd in imm', () => {
    // regs: src 1 in the high nibble, dst r1: 0x11.
    assert.deepEqual(
      assembled((a) => a.ldMapFd(R1, 42)),
      ['18 11 00 00 2a 00 00 00', '00 00 00 00 00 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.ldMapFd(R2, 0x01020304)),
      ['18 12 00 00 04 03 02 01', '00 00 00 00 00 00 00 00'],
    );
  });

  it('encodes a direct value load as a two-slot load with src_reg BPF_PSEUDO_MAP_VALUE (2), the fd in imm and the offset in the second imm', () => {
    assert.deepEqual(
      assembled((a) => a.ldMapValue(R1, 42, 0x3fff)),
      ['18 21 00 00 2a 00 00 00', '00 00 00 00 ff 3f 00 00'],
    );
    const [insn] = decode(new Assembler().ldMapValue(R3, 7, 16).assemble());
    assert.deepEqual(insn && [insn.op, insn.width, insn.dst, insn.imm, insn.imm64High, insn.text], [
      'ld_map_value',
      2,
      3,
      7,
      16,
      'r3 = map_value[fd 7] + 16 ll',
    ]);
  });

  it('encodes conditional jumps against an immediate with JMP|op|K', () => {
    const ops = [
      ['jeq', 0x15],
      ['jgt', 0x25],
      ['jge', 0x35],
      ['jset', 0x45],
      ['jne', 0x55],
      ['jlt', 0xa5],
      ['jle', 0xb5],
    ] as const;
    for (const [op, code] of ops) {
      const got = assembled((a) => a.jmp(op, R7, { imm: 17 }, 'next').label('next').exit());
      assert.deepEqual(got, [`${code.toString(16)} 07 00 00 11 00 00 00`, '95 00 00 00 00 00 00 00'], op);
    }
  });

  it('encodes conditional jumps against a register with JMP|op|X and src in the high nibble', () => {
    assert.deepEqual(assembled((a) => a.jmp('jeq', R1, R2, 'next').label('next').exit())[0], '1d 21 00 00 00 00 00 00');
    assert.deepEqual(assembled((a) => a.jmp('jne', R9, R0, 'next').label('next').exit())[0], '5d 09 00 00 00 00 00 00');
    assert.deepEqual(assembled((a) => a.jmp('jgt', R1, R2, 'next').label('next').exit())[0], '2d 21 00 00 00 00 00 00');
  });

  it('encodes goto, call and exit with the JMP class', () => {
    assert.deepEqual(assembled((a) => a.ja('next').label('next').exit())[0], '05 00 00 00 00 00 00 00');
    // call bpf_get_current_uid_gid (15), bpf_get_current_cgroup_id (80), bpf_map_lookup_elem (1).
    assert.deepEqual(
      assembled((a) => a.call(HELPER.get_current_uid_gid)),
      ['85 00 00 00 0f 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.call(HELPER.get_current_cgroup_id)),
      ['85 00 00 00 50 00 00 00'],
    );
    assert.deepEqual(
      assembled((a) => a.call(HELPER.map_lookup_elem)),
      ['85 00 00 00 01 00 00 00'],
    );
  });

  it('returns an empty program for an empty assembler', () => {
    assert.equal(new Assembler().assemble().length, 0);
  });
});

describe('Assembler: labels', () => {
  it('resolves a forward jump to the number of slots skipped', () => {
    // slot 0 jumps to slot 3: off = 3 - (0 + 1) = 2.
    const got = assembled((a) => a.jmp('jeq', R0, { imm: 0 }, 'out').mov(R0, { imm: 1 }).mov(R0, { imm: 2 }).label('out').exit());
    assert.equal(got[0], '15 00 02 00 00 00 00 00');
  });

  it('resolves a jump to the very next instruction to offset 0', () => {
    assert.equal(assembled((a) => a.ja('next').label('next').exit())[0], '05 00 00 00 00 00 00 00');
  });

  it('resolves a backward jump to a negative offset', () => {
    // label at 0, goto at slot 2: off = 0 - (2 + 1) = -3 = 0xfffd.
    const got = assembled((a) => a.label('top').mov(R0, { imm: 0 }).mov(R1, { imm: 0 }).ja('top'));
    assert.equal(got[2], '05 00 fd ff 00 00 00 00');
  });

  it('resolves a jump to itself to offset -1', () => {
    assert.equal(assembled((a) => a.label('self').ja('self'))[0], '05 00 ff ff 00 00 00 00');
  });

  it('counts a two-slot load twice when jumping forward over it', () => {
    // jmp at 0, ld64 at 1-2, exit at 3: off 2.
    const got = assembled((a) => a.jmp('jne', R1, { imm: 0 }, 'out').ld64(R2, 5n).label('out').exit());
    assert.deepEqual(got, ['55 01 02 00 00 00 00 00', '18 02 00 00 05 00 00 00', '00 00 00 00 00 00 00 00', '95 00 00 00 00 00 00 00']);
  });

  it('counts a two-slot load twice when jumping backward over it', () => {
    // label at 0, ldMapFd at 0-1, goto at 2: off = 0 - 3 = -3.
    const got = assembled((a) => a.label('top').ldMapFd(R1, 3).ja('top'));
    assert.equal(got[2], '05 00 fd ff 00 00 00 00');
  });

  it('places a label defined after a two-slot load at the slot after both halves', () => {
    // ld64 at 0-1, mov at 2, label 'x' at 3; the jump at 4 goes back by 2: off = 3 - 5 = -2.
    const got = assembled((a) => a.ld64(R1, 1n).mov(R0, { imm: 0 }).label('x').mov(R0, { imm: 1 }).ja('x'));
    assert.equal(got.length, 5);
    assert.equal(got[4], '05 00 fe ff 00 00 00 00');
  });

  it('lets several jumps share one label', () => {
    const got = assembled((a) => a.jmp('jeq', R1, { imm: 1 }, 'end').jmp('jeq', R1, { imm: 2 }, 'end').label('end').exit());
    assert.equal(got[0], '15 01 01 00 01 00 00 00');
    assert.equal(got[1], '15 01 00 00 02 00 00 00');
  });

  it('refuses a jump to a label that is never defined, naming it, when assembling', () => {
    const a = new Assembler().ja('nowhere').exit();
    assert.throws(() => a.assemble(), { message: /undefined label nowhere/ });
  });

  it('refuses to define the same label twice, naming it', () => {
    const a = new Assembler().label('twice').exit();
    assert.throws(() => a.label('twice'), { message: /label twice defined twice/ });
  });

  it('refuses a jump farther than a signed 16-bit offset reaches', () => {
    const fits = new Assembler().ja('far');
    for (let i = 0; i < 0x7fff; i++) fits.mov(R0, { imm: 0 });
    fits.label('far').exit();
    // 32767 slots skipped: the largest offset there is.
    assert.equal(slots(fits.assemble())[0], '05 00 ff 7f 00 00 00 00');

    const tooFar = new Assembler().ja('far');
    for (let i = 0; i < 0x8000; i++) tooFar.mov(R0, { imm: 0 });
    tooFar.label('far').exit();
    assert.throws(() => tooFar.assemble(), RangeError);
  });
});

describe('Assembler: range checks', () => {
  it('refuses immediates that do not fit in 32 bits', () => {
    const a = new Assembler();
    assert.throws(() => a.mov(R0, { imm: 0x100000000 }), { name: 'RangeError', message: /4294967296 is outside -2\^31\.\.2\^31-1/ });
    assert.throws(() => a.mov(R0, { imm: -0x80000001 }), RangeError);
    assert.throws(() => a.alu64('add', R0, { imm: 1.5 }), RangeError);
    assert.throws(() => a.jmp('jeq', R0, { imm: 2 ** 40 }, 'x'), RangeError);
    assert.throws(() => a.st(4, FP, -4, Number.NaN), RangeError);
    assert.throws(() => a.ldMapFd(R1, 0x100000000), RangeError);
  });

  it('refuses memory offsets that do not fit in 16 bits', () => {
    const a = new Assembler();
    assert.throws(() => a.ldx(4, R1, FP, -0x8001), { name: 'RangeError', message: /-32769 does not fit in 16 bits/ });
    assert.throws(() => a.ldx(4, R1, FP, 0x8000), RangeError);
    assert.throws(() => a.stx(8, FP, 0x10000, R1), RangeError);
    assert.throws(() => a.st(1, FP, -70000, 0), RangeError);
    assert.throws(() => a.atomicAdd64(R0, 0.5, R1), RangeError);
  });

  it('adds nothing to the program when an instruction is refused', () => {
    const a = new Assembler().mov(R0, { imm: 1 });
    assert.throws(() => a.mov(R0, { imm: 2 ** 33 }));
    assert.deepEqual(slots(a.exit().assemble()), ['b7 00 00 00 01 00 00 00', '95 00 00 00 00 00 00 00']);
  });
});

describe('Assembler: listing', () => {
  it('prints slot numbers, opcodes in hex and labels on lines of their own', () => {
    const a = new Assembler()
      .label('start')
      .mov(R6, R1)
      .ldx(4, R7, R6, 36)
      .ld64(R2, 0x10n)
      .jmp('jeq', R7, { imm: 6 }, 'start')
      .label('out')
      .ret(1);
    assert.equal(
      a.listing(),
      [
        'start:',
        '   0: (bf) r6 = r1',
        '   1: (61) r7 = *(u32 *)(r6 + 36)',
        '   2: (18) r2 = 0x10 ll',
        '   4: (15) if r7 == 6 goto start',
        'out:',
        '   5: (b7) r0 = 1',
        '   6: (95) exit',
      ].join('\n'),
    );
  });

  it('writes memory operands, stores, atomics, swaps and calls in verifier notation', () => {
    const a = new Assembler()
      .stx(8, FP, -8, R0)
      .st(1, FP, -28, 2)
      .ldx(2, R1, R8, 4)
      .atomicAdd64(R8, 8, R1)
      .be(R8, 16)
      .alu64('and', R1, { imm: 3 })
      .alu64('add', R2, R3)
      .jmp('jne', R0, R1, 'x')
      .label('x')
      .call(HELPER.get_current_uid_gid)
      .call(99)
      .ja('x');
    assert.equal(
      a.listing(),
      [
        '   0: (7b) *(u64 *)(r10 - 8) = r0',
        '   1: (72) *(u8 *)(r10 - 28) = 2',
        '   2: (69) r1 = *(u16 *)(r8 + 4)',
        '   3: (db) lock *(u64 *)(r8 + 8) += r1',
        '   4: (dc) r8 = be16 r8',
        '   5: (57) r1 &= 3',
        '   6: (0f) r2 += r3',
        '   7: (5d) if r0 != r1 goto x',
        'x:',
        '   8: (85) call get_current_uid_gid',
        '   9: (85) call #99',
        '  10: (05) goto x',
      ].join('\n'),
    );
  });

  it('names a map load by the name given, else by its fd', () => {
    const a = new Assembler().ldMapFd(R1, 7, 'lowport_outer').ldMapFd(R2, 9);
    assert.equal(a.listing(), ['   0: (18) r1 = map[lowport_outer] ll', '   2: (18) r2 = map[fd 9] ll'].join('\n'));
  });

  it('prints a label at the end of the program, and several labels of one slot in order', () => {
    const a = new Assembler().label('a').label('b').exit().label('end');
    assert.equal(a.listing(), ['a:', 'b:', '   0: (95) exit', 'end:'].join('\n'));
  });
});

describe('decode', () => {
  /** The fields a test states about one decoded instruction. */
  const fields = (i: Instruction | undefined): Partial<Instruction> => {
    assert.ok(i !== undefined);
    const { slot, width, class: cls, op, source, size, dst, src, off, imm, imm64High, target, text } = i;
    const all: Partial<Instruction> = { slot, width, class: cls, op, source, size, dst, src, off, imm, imm64High, target, text };
    return Object.fromEntries(Object.entries(all).filter(([, v]) => v !== undefined));
  };
  const one = (build: (a: Assembler) => void): Partial<Instruction> => {
    const a = new Assembler();
    build(a);
    return fields(decode(a.assemble())[0]);
  };

  it('decodes each kind of instruction the assembler emits into its class, operation and operands', () => {
    const table: [string, (a: Assembler) => void, Partial<Instruction>][] = [
      ['mov reg', (a) => a.mov(R6, R1), { class: 'alu64', op: 'mov', source: 'reg', dst: 6, src: 1, off: 0, imm: 0, text: 'r6 = r1' }],
      [
        'and imm',
        (a) => a.alu64('and', R1, { imm: -3 }),
        { class: 'alu64', op: 'and', source: 'imm', dst: 1, src: 0, off: 0, imm: -3, text: 'r1 &= -3' },
      ],
      ['be16', (a) => a.be(R8, 16), { class: 'alu', op: 'be', dst: 8, src: 0, off: 0, imm: 16, text: 'r8 = be16 r8' }],
      [
        'ldx u16',
        (a) => a.ldx(2, R1, R8, 4),
        { class: 'ldx', op: 'ldx', size: 2, dst: 1, src: 8, off: 4, imm: 0, text: 'r1 = *(u16 *)(r8 + 4)' },
      ],
      [
        'stx u64',
        (a) => a.stx(8, FP, -8, R0),
        { class: 'stx', op: 'stx', size: 8, dst: 10, src: 0, off: -8, imm: 0, text: '*(u64 *)(r10 - 8) = r0' },
      ],
      [
        'st u8',
        (a) => a.st(1, FP, -28, 10),
        { class: 'st', op: 'st', size: 1, dst: 10, src: 0, off: -28, imm: 10, text: '*(u8 *)(r10 - 28) = 10' },
      ],
      [
        'atomic add',
        (a) => a.atomicAdd64(R8, 8, R1),
        { class: 'stx', op: 'atomic_add', size: 8, dst: 8, src: 1, off: 8, imm: 0, text: 'lock *(u64 *)(r8 + 8) += r1' },
      ],
      [
        'call',
        (a) => a.call(HELPER.get_current_uid_gid),
        { class: 'jmp', op: 'call', dst: 0, src: 0, off: 0, imm: 15, text: 'call get_current_uid_gid' },
      ],
      ['exit', (a) => a.exit(), { class: 'jmp', op: 'exit', dst: 0, src: 0, off: 0, imm: 0, text: 'exit' }],
    ];
    for (const [name, build, want] of table) assert.deepEqual(one(build), { slot: 0, width: 1, ...want }, name);
  });

  it('decodes a 64-bit constant and a map fd load as one two-slot instruction', () => {
    assert.deepEqual(
      one((a) => a.ld64(R3, 0x1122334455667788n)),
      {
        slot: 0,
        width: 2,
        class: 'ld',
        op: 'ld64',
        dst: 3,
        src: 0,
        off: 0,
        imm: 0x55667788,
        imm64High: 0x11223344,
        text: 'r3 = 0x1122334455667788 ll',
      },
    );
    assert.deepEqual(one((a) => a.ld64(R1, -1n)).text, 'r1 = 0xffffffffffffffff ll');
    assert.deepEqual(
      one((a) => a.ldMapFd(R1, 42, 'lowport_outer')),
      {
        slot: 0,
        width: 2,
        class: 'ld',
        op: 'ld_map_fd',
        dst: 1,
        src: 1,
        off: 0,
        imm: 42,
        imm64High: 0,
        text: 'r1 = map[fd 42] ll',
      },
    );
  });

  it('gives jumps their target slot, counting two-slot loads twice, forward and backward', () => {
    const a = new Assembler().label('top').jmp('jne', R1, { imm: 0 }, 'out').ld64(R2, 5n).jmp('jeq', R1, R2, 'top').label('out').exit();
    const insns = decode(a.assemble());
    assert.deepEqual(
      insns.map((i) => [i.slot, i.op, i.source, i.target]),
      [
        [0, 'jne', 'imm', 4],
        [1, 'ld64', undefined, undefined],
        [3, 'jeq', 'reg', 0],
        [4, 'exit', undefined, undefined],
      ],
    );
    assert.deepEqual(
      insns.map((i) => i.text),
      ['if r1 != 0 goto pc+3', 'r2 = 0x5 ll', 'if r1 == r2 goto pc-4', 'exit'],
    );
  });

  it('is the inverse of the assembler: every instruction decodes to what was written, and encodes back to the same bytes', () => {
    const a = new Assembler()
      .mov(R6, R1)
      .ldx(4, R7, R6, 36)
      .jmp('jeq', R7, { imm: 6 }, 'ok')
      .jmp('jset', R7, R8, 'ok')
      .label('ok')
      .mov(R0, { imm: 0 });
    for (const op of ['add', 'sub', 'mul', 'or', 'and', 'lsh', 'rsh', 'xor', 'mov'] as const) a.alu64(op, R1, { imm: 7 }).alu64(op, R2, R3);
    for (const op of ['jeq', 'jgt', 'jge', 'jset', 'jne', 'jlt', 'jle'] as const) a.jmp(op, R1, { imm: -1 }, 'end').jmp(op, R1, R9, 'end');
    for (const size of [1, 2, 4, 8] as const) a.ldx(size, R1, FP, -8).stx(size, FP, -16, R2).st(size, FP, -24, 3);
    a.be(R2, 32)
      .be(R2, 64)
      .atomicAdd64(R0, -16, R9)
      .ld64(R1, 1n << 63n)
      .ldMapFd(R2, 7)
      .call(HELPER.map_lookup_elem)
      .call(99)
      .ja('end')
      .label('end')
      .ret(1);
    const code = a.assemble();
    const insns = decode(code);
    assert.ok(encode(insns).equals(code));
    // The listing says the same as the decoded text, but for jump targets (labels there, pc offsets here) and map names.
    const listed = a
      .listing()
      .split('\n')
      .filter((l) => !l.endsWith(':'));
    assert.equal(listed.length, insns.length);
    insns.forEach((i, n) => {
      const line = listed[n] ?? '';
      assert.ok(line.startsWith(`${String(i.slot).padStart(4)}: (${i.code.toString(16).padStart(2, '0')})`), line);
      if (i.target === undefined) assert.ok(line.endsWith(` ${i.text}`), `${line} vs ${i.text}`);
    });
    assert.equal(decode(Buffer.alloc(0)).length, 0);
  });

  it('refuses what the assembler never emits, naming the slot', () => {
    assert.throws(() => decode(hex('b7 00 00 00 01 00 00')), { name: 'RangeError', message: /7 bytes is not a whole number/ });
    // BPF_JMP32 (class 0x06) and BPF_ALU | BPF_ADD: valid eBPF, not lowport's.
    assert.throws(() => decode(hex('95 00 00 00 00 00 00 00 16 01 00 00 00 00 00 00')), { message: /slot 1: opcode 0x16 is not one/ });
    assert.throws(() => decode(hex('04 01 00 00 01 00 00 00')), { message: /slot 0: opcode 0x04/ });
    // BPF_ATOMIC with BPF_FETCH, and a 32-bit atomic.
    assert.throws(() => decode(hex('db 18 08 00 01 00 00 00')), { message: /opcode 0xdb/ });
    assert.throws(() => decode(hex('c3 18 08 00 00 00 00 00')), { message: /opcode 0xc3/ });
    assert.throws(() => decode(hex('bf b1 00 00 00 00 00 00')), { message: /slot 0: register r11 does not exist/ });
    assert.throws(() => decode(hex('18 01 00 00 01 00 00 00')), { message: /slot 0: the two-slot load is cut short/ });
    assert.throws(() => decode(hex('18 01 00 00 01 00 00 00 18 00 00 00 00 00 00 00')), { message: /slot 1: the second slot/ });
    // src_reg 3 (BPF_PSEUDO_BTF_ID): a two-slot load lowport never emits.
    assert.throws(() => decode(hex('18 31 00 00 01 00 00 00 00 00 00 00 00 00 00 00')), { message: /opcode 0x18/ });
  });
});
