/**
 * The kernel's own type information (BTF, /sys/kernel/btf/vmlinux), read for
 * the few struct members the audit trail's event takes straight from the
 * current task (grants/program.ts): where a member is, as a byte offset, and
 * whether it has the type the program assumes. This is what libbpf's CO-RE
 * relocations do for a compiled program; lowport assembles its own, so it
 * asks the running kernel's BTF for the offsets and writes them in.
 *
 * Format: include/uapi/linux/btf.h and Documentation/bpf/btf.rst. A header,
 * then the type section (struct btf_type records, each followed by its
 * kind's own data) and the string section. Type ids count from 1 in the
 * order of the records; 0 is void. Only what the lookups need is decoded:
 * one pass records where each type starts, names are compared as bytes.
 */
import { readFileSync } from 'node:fs';

export const VMLINUX_BTF = '/sys/kernel/btf/vmlinux';

const MAGIC = 0xeb9f;
const TYPE_SIZE = 12;

/** BTF_KIND_* */
export const BTF_KIND = {
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;

/** Bytes of kind-specific data after a btf_type record, given its vlen. */
function extraBytes(kind: number, vlen: number): number {
  switch (kind) {
    case BTF_KIND.INT:
    case BTF_KIND.VAR:
    case BTF_KIND.DECL_TAG:
      return 4;
    case BTF_KIND.ARRAY:
      return 12;
    case BTF_KIND.STRUCT:
    case BTF_KIND.UNION:
    case BTF_KIND.DATASEC:
    case BTF_KIND.ENUM64:
      return vlen * 12;
    case BTF_KIND.ENUM:
    case BTF_KIND.FUNC_PROTO:
      return vlen * 8;
    case BTF_KIND.PTR:
    case BTF_KIND.FWD:
    case BTF_KIND.TYPEDEF:
    case BTF_KIND.VOLATILE:
    case BTF_KIND.CONST:
    case BTF_KIND.RESTRICT:
    case BTF_KIND.FUNC:
    case BTF_KIND.FLOAT:
    case BTF_KIND.TYPE_TAG:
      return 0;
    default:
      throw new BtfError(`unknown BTF kind ${kind}`);
  }
}

export class BtfError extends Error {}

/** What a type is once typedefs and qualifiers are looked through. */
export type BtfShape =
  | { kind: 'int'; size: number }
  | { kind: 'pointer'; to: number }
  | { kind: 'array'; element: number; length: number }
  | { kind: 'struct'; name: string; size: number }
  | { kind: 'other'; btfKind: number };

export interface BtfMember {
  /** Byte offset from the start of the struct (anonymous members looked into). */
  offset: number;
  type: number;
}

export class Btf {
  readonly #view: DataView;
  readonly #bytes: Uint8Array;
  readonly #strings: number;
  readonly #stringsEnd: number;
  /** Byte offset of each type's record in #bytes, by id (index 0 unused). */
  readonly #starts: Uint32Array;

  constructor(data: Uint8Array) {
    this.#bytes = data;
    this.#view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    if (data.byteLength < 24 || this.#view.getUint16(0, true) !== MAGIC)
      throw new BtfError('not BTF (no 0xeB9F magic, or not little-endian)');
    const hdrLen = this.#view.getUint32(4, true);
    const typeOff = hdrLen + this.#view.getUint32(8, true);
    const typeEnd = typeOff + this.#view.getUint32(12, true);
    this.#strings = hdrLen + this.#view.getUint32(16, true);
    this.#stringsEnd = this.#strings + this.#view.getUint32(20, true);
    if (typeEnd > data.byteLength || this.#stringsEnd > data.byteLength) throw new BtfError('BTF sections run past the end of the data');
    // One pass over the records: at most one per 12 bytes. Words read through a
    // Uint32Array where the data is 4-byte aligned (it is, from a file read).
    const words = data.byteOffset % 4 === 0 ? new Uint32Array(data.buffer, data.byteOffset, data.byteLength >>> 2) : undefined;
    const starts = new Uint32Array(Math.floor((typeEnd - typeOff) / TYPE_SIZE) + 1);
    let count = 0;
    for (let at = typeOff; at < typeEnd;) {
      if (at + TYPE_SIZE > typeEnd) throw new BtfError('a BTF type record runs past its section');
      starts[++count] = at;
      const info = words !== undefined && at % 4 === 0 ? words[(at + 4) >>> 2]! : this.#view.getUint32(at + 4, true);
      at += TYPE_SIZE + extraBytes((info >>> 24) & 0x1f, info & 0xffff);
      if (at > typeEnd) throw new BtfError('a BTF type record runs past its section');
    }
    this.#starts = starts.slice(0, count + 1);
  }

  /** The running kernel's BTF; undefined when it has none (CONFIG_DEBUG_INFO_BTF off, or no sysfs). */
  static vmlinux(path = VMLINUX_BTF): Btf | undefined {
    let data: Buffer;
    try {
      data = readFileSync(path);
    } catch {
      return undefined;
    }
    return new Btf(data);
  }

  get typeCount(): number {
    return this.#starts.length - 1;
  }

  #kind(id: number): number {
    return (this.#view.getUint32(this.#start(id) + 4, true) >>> 24) & 0x1f;
  }

  #start(id: number): number {
    if (!Number.isInteger(id) || id < 1 || id >= this.#starts.length) throw new BtfError(`no BTF type ${id}`);
    return this.#starts[id]!;
  }

  #nameIs(nameOff: number, name: Uint8Array): boolean {
    const at = this.#strings + nameOff;
    if (at + name.length >= this.#stringsEnd) return false;
    for (let i = 0; i < name.length; i++) if (this.#bytes[at + i] !== name[i]) return false;
    return this.#bytes[at + name.length] === 0;
  }

  #name(nameOff: number): string {
    const at = this.#strings + nameOff;
    const end = this.#bytes.indexOf(0, at);
    return Buffer.from(this.#bytes.subarray(at, end < 0 ? this.#stringsEnd : end)).toString('latin1');
  }

  /** The id of the struct named `name` (its full definition, not a forward declaration), or undefined. */
  structId(name: string): number | undefined {
    const wanted = Buffer.from(name, 'latin1');
    for (let id = 1; id < this.#starts.length; id++) {
      const at = this.#starts[id]!;
      if (((this.#view.getUint32(at + 4, true) >>> 24) & 0x1f) !== BTF_KIND.STRUCT) continue;
      if (this.#nameIs(this.#view.getUint32(at, true), wanted)) return id;
    }
    return undefined;
  }

  /** `type` with typedefs and qualifiers (const, volatile, restrict, type tags) looked through. */
  resolve(type: number): number {
    for (let id = type, hops = 0; hops < 64; hops++) {
      if (id === 0) return 0;
      const kind = this.#kind(id);
      if (
        kind !== BTF_KIND.TYPEDEF &&
        kind !== BTF_KIND.VOLATILE &&
        kind !== BTF_KIND.CONST &&
        kind !== BTF_KIND.RESTRICT &&
        kind !== BTF_KIND.TYPE_TAG
      )
        return id;
      id = this.#view.getUint32(this.#start(id) + 8, true);
    }
    throw new BtfError(`BTF type ${type}: a loop of typedefs`);
  }

  /** What `type` is, after resolve(). */
  shape(type: number): BtfShape {
    const id = this.resolve(type);
    if (id === 0) return { kind: 'other', btfKind: 0 };
    const at = this.#start(id);
    const kind = this.#kind(id);
    const sizeOrType = this.#view.getUint32(at + 8, true);
    switch (kind) {
      case BTF_KIND.INT:
        return { kind: 'int', size: sizeOrType };
      case BTF_KIND.PTR:
        return { kind: 'pointer', to: sizeOrType };
      case BTF_KIND.ARRAY:
        return {
          kind: 'array',
          element: this.#view.getUint32(at + TYPE_SIZE, true),
          length: this.#view.getUint32(at + TYPE_SIZE + 8, true),
        };
      case BTF_KIND.STRUCT:
        return { kind: 'struct', name: this.#name(this.#view.getUint32(at, true)), size: sizeOrType };
      default:
        return { kind: 'other', btfKind: kind };
    }
  }

  /**
   * The member `name` of struct or union `type`, looking into anonymous
   * struct and union members (as C does: task_struct wraps its fields in one
   * when the kernel randomizes its layout). Undefined when there is none; a
   * bitfield is refused, since a program can only load whole bytes.
   */
  member(type: number, name: string): BtfMember | undefined {
    return this.#member(this.resolve(type), Buffer.from(name, 'latin1'), name, 0);
  }

  #member(id: number, wanted: Uint8Array, name: string, depth: number): BtfMember | undefined {
    if (depth > 8) return undefined;
    const at = this.#start(id);
    const info = this.#view.getUint32(at + 4, true);
    const kind = (info >>> 24) & 0x1f;
    if (kind !== BTF_KIND.STRUCT && kind !== BTF_KIND.UNION) return undefined;
    const bitfields = info >>> 31 === 1;
    for (let i = 0, m = at + TYPE_SIZE; i < (info & 0xffff); i++, m += 12) {
      const nameOff = this.#view.getUint32(m, true);
      const memberType = this.#view.getUint32(m + 4, true);
      const raw = this.#view.getUint32(m + 8, true);
      const bitOffset = bitfields ? raw & 0xffffff : raw;
      const bitSize = bitfields ? raw >>> 24 : 0;
      if (nameOff === 0) {
        const inner = this.#member(this.resolve(memberType), wanted, name, depth + 1);
        if (inner !== undefined) return { offset: inner.offset + bitOffset / 8, type: inner.type };
        continue;
      }
      if (!this.#nameIs(nameOff, wanted)) continue;
      if (bitSize !== 0 || bitOffset % 8 !== 0) throw new BtfError(`member ${name} is a bitfield`);
      return { offset: bitOffset / 8, type: memberType };
    }
    return undefined;
  }
}
