/**
 * Offsets come from include/uapi/linux/bpf.h (`union bpf_attr` and the
 * `bpf_*_info` structs), counted by hand; every encoder is checked field by
 * field with distinct values, and the rest of the buffer must stay zero, since
 * the kernel refuses non-zero bytes past the fields a command knows
 * (CHECK_ATTR).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BPF_F_REPLACE,
  decodeLinkInfo,
  decodeMapInfo,
  decodeProgInfo,
  decodeProgQuery,
  encodeId,
  encodeInfo,
  encodeLinkCreate,
  encodeLinkUpdate,
  encodeMapCreate,
  encodeMapElem,
  encodeObj,
  encodeProgLoad,
  encodeProgQuery,
  LINK_INFO_SIZE,
  MAP_INFO_SIZE,
  PROG_INFO_SIZE,
} from '../../../src/bpf/attr.js';

type Field = [offset: number, bytes: Buffer];

const u32 = (offset: number, v: number): Field => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return [offset, b];
};
const u64 = (offset: number, v: bigint): Field => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return [offset, b];
};
const text = (offset: number, s: string): Field => [offset, Buffer.from(s, 'latin1')];

/** A zeroed buffer of `size` bytes with the fields laid in: what the encoder should produce. */
function layout(size: number, ...fields: Field[]): Buffer {
  const b = Buffer.alloc(size);
  for (const [offset, bytes] of fields) bytes.copy(b, offset);
  return b;
}

/** A buffer of `size` bytes of 0xee (so that a read off by one shows), with the fields laid in. */
function filled(size: number, ...fields: Field[]): Buffer {
  const b = Buffer.alloc(size, 0xee);
  for (const [offset, bytes] of fields) bytes.copy(b, offset);
  return b;
}

describe('bpf_attr encoders', () => {
  it('use a 128-byte attribute for every command', () => {
    for (const b of [
      encodeMapCreate({ type: 1, keySize: 1, valueSize: 1, maxEntries: 1 }),
      encodeMapElem(1, 1n, 1n),
      encodeProgLoad({ type: 1, insns: 1n, insnCount: 1, license: 1n, expectedAttachType: 1 }),
      encodeObj(1n, 1),
      encodeId(1),
      encodeInfo(1, 1n, 1),
      encodeProgQuery(1, 1, 1, 1n, 1),
      encodeLinkCreate(1, 1, 1),
      encodeLinkUpdate(1, 1),
    ]) {
      assert.equal(b.length, 128);
    }
  });

  it('lay out BPF_MAP_CREATE as map_type 0, key_size 4, value_size 8, max_entries 12, map_flags 16, inner_map_fd 20, map_name 28', () => {
    const got = encodeMapCreate({
      type: 12,
      keySize: 4,
      valueSize: 0x104,
      maxEntries: 0x10203,
      flags: 0x20,
      innerMapFd: 77,
      name: 'lowport_outer',
    });
    assert.deepEqual(
      got,
      layout(128, u32(0, 12), u32(4, 4), u32(8, 0x104), u32(12, 0x10203), u32(16, 0x20), u32(20, 77), text(28, 'lowport_outer')),
    );
  });

  it('leave map_flags, inner_map_fd and map_name zero when not given', () => {
    const got = encodeMapCreate({ type: 1, keySize: 32, valueSize: 16, maxEntries: 4096 });
    assert.deepEqual(got, layout(128, u32(0, 1), u32(4, 32), u32(8, 16), u32(12, 4096)));
  });

  it('cut object names to 15 characters, so the 16-byte field keeps its NUL', () => {
    const got = encodeMapCreate({ type: 1, keySize: 1, valueSize: 1, maxEntries: 1, name: 'abcdefghijklmnopqrstuvwxyz' });
    assert.equal(got.subarray(28, 44).toString('latin1'), 'abcdefghijklmno\0');
    assert.ok(got.subarray(44).every((byte) => byte === 0));
  });

  it('replace characters the kernel refuses in object names (all but [A-Za-z0-9_.]) with underscores', () => {
    const got = encodeMapCreate({ type: 1, keySize: 1, valueSize: 1, maxEntries: 1, name: 'a-b c/d.e:é9' });
    assert.equal(got.subarray(28, 44).toString('latin1'), 'a_b_c_d.e__9\0\0\0\0');
  });

  it('lay out the element commands as map_fd 0, key 8, value 16, flags 24', () => {
    const got = encodeMapElem(9, 0x1122334455667788n, 0x99aabbccddeeff00n, 2);
    assert.deepEqual(got, layout(128, u32(0, 9), u64(8, 0x1122334455667788n), u64(16, 0x99aabbccddeeff00n), u64(24, 2n)));
  });

  it('default the element flags to BPF_ANY (0)', () => {
    assert.deepEqual(encodeMapElem(3, 0x1000n, 0x2000n), layout(128, u32(0, 3), u64(8, 0x1000n), u64(16, 0x2000n)));
  });

  it('lay out BPF_PROG_LOAD as prog_type 0, insn_cnt 4, insns 8, license 16, log_level 24, log_size 28, log_buf 32, prog_name 48, expected_attach_type 68', () => {
    const got = encodeProgLoad({
      type: 18,
      insnCount: 123,
      insns: 0x7f0000001000n,
      license: 0x7f0000002000n,
      logLevel: 1,
      logSize: 65536,
      logBuf: 0x7f0000003000n,
      name: 'lowport4_abcdef',
      expectedAttachType: 8,
    });
    assert.deepEqual(
      got,
      layout(
        128,
        u32(0, 18),
        u32(4, 123),
        u64(8, 0x7f0000001000n),
        u64(16, 0x7f0000002000n),
        u32(24, 1),
        u32(28, 65536),
        u64(32, 0x7f0000003000n),
        text(48, 'lowport4_abcdef'),
        u32(68, 8),
      ),
    );
  });

  it('leave the log fields and the name zero when not given', () => {
    const got = encodeProgLoad({ type: 18, insnCount: 2, insns: 0x10n, license: 0x20n, expectedAttachType: 9 });
    assert.deepEqual(got, layout(128, u32(0, 18), u32(4, 2), u64(8, 0x10n), u64(16, 0x20n), u32(68, 9)));
  });

  it('lay out BPF_OBJ_PIN and BPF_OBJ_GET as pathname 0, bpf_fd 8, file_flags 12', () => {
    assert.deepEqual(encodeObj(0x5555aaaa0000n, 14, 8), layout(128, u64(0, 0x5555aaaa0000n), u32(8, 14), u32(12, 8)));
    assert.deepEqual(encodeObj(0x10n, 0), layout(128, u64(0, 0x10n)));
  });

  it('lay out the by-id commands with the id at 0 and read next_id back from 4', () => {
    assert.deepEqual(encodeId(0xabcdef), layout(128, u32(0, 0xabcdef)));
  });

  it('lay out BPF_OBJ_GET_INFO_BY_FD as bpf_fd 0, info_len 4, info 8', () => {
    assert.deepEqual(encodeInfo(5, 0xdead0000n, 88), layout(128, u32(0, 5), u32(4, 88), u64(8, 0xdead0000n)));
  });

  it('lay out BPF_PROG_QUERY as target_fd 0, attach_type 4, query_flags 8, prog_ids 16, prog_cnt 24', () => {
    const got = encodeProgQuery(6, 9, 1, 0x600000n, 64);
    assert.deepEqual(got, layout(128, u32(0, 6), u32(4, 9), u32(8, 1), u64(16, 0x600000n), u32(24, 64)));
  });

  it('read attach_flags at 12 and prog_cnt at 24 from what BPF_PROG_QUERY wrote back', () => {
    const reply = filled(128, u32(8, 1), u32(12, 2), u64(16, 0x600000n), u32(24, 3));
    assert.deepEqual(decodeProgQuery(reply), { attachFlags: 2, progCount: 3 });
  });

  it('lay out BPF_LINK_CREATE as prog_fd 0, target_fd 4, attach_type 8', () => {
    assert.deepEqual(encodeLinkCreate(11, 12, 9), layout(128, u32(0, 11), u32(4, 12), u32(8, 9)));
  });

  it('lay out BPF_LINK_UPDATE as link_fd 0, new_prog_fd 4, and no flags without an old program', () => {
    assert.deepEqual(encodeLinkUpdate(20, 21), layout(128, u32(0, 20), u32(4, 21)));
  });

  it('set BPF_F_REPLACE (4) at 8 and old_prog_fd at 12 when an old program is given', () => {
    assert.equal(BPF_F_REPLACE, 4);
    assert.deepEqual(encodeLinkUpdate(20, 21, 22), layout(128, u32(0, 20), u32(4, 21), u32(8, 4), u32(12, 22)));
    // fd 0 is a valid fd, not "none".
    assert.deepEqual(encodeLinkUpdate(20, 21, 0), layout(128, u32(0, 20), u32(4, 21), u32(8, 4)));
  });
});

describe('bpf_*_info decoders', () => {
  it('read bpf_prog_info: type 0, id 4, tag 8..16, load_time 40, created_by_uid 48, nr_map_ids 52, name 64', () => {
    const b = filled(
      PROG_INFO_SIZE,
      u32(0, 18),
      u32(4, 301),
      [8, Buffer.from('0123456789abcdef', 'hex')],
      u64(40, 123456789012345n),
      u32(48, 0),
      u32(52, 2),
      text(64, 'lowport6_0a1b2c\0'),
    );
    assert.deepEqual(decodeProgInfo(b), {
      type: 18,
      id: 301,
      tag: '0123456789abcdef',
      loadTime: 123456789012345n,
      createdByUid: 0,
      mapIdCount: 2,
      name: 'lowport6_0a1b2c',
    });
  });

  it('is 88 bytes long for bpf_prog_info, enough to reach the name and the fields before it', () => {
    assert.equal(PROG_INFO_SIZE, 88);
  });

  it('stops a name at its NUL and takes all 16 bytes when there is none', () => {
    const short = filled(PROG_INFO_SIZE, text(64, 'ab\0cd'));
    assert.equal(decodeProgInfo(short).name, 'ab');
    const full = filled(PROG_INFO_SIZE, text(64, 'abcdefghijklmnop'));
    assert.equal(decodeProgInfo(full).name, 'abcdefghijklmnop');
    const empty = filled(PROG_INFO_SIZE, text(64, '\0'));
    assert.equal(decodeProgInfo(empty).name, '');
  });

  it('read bpf_map_info: type 0, id 4, key_size 8, value_size 12, max_entries 16, map_flags 20, name 24', () => {
    const b = filled(MAP_INFO_SIZE, u32(0, 12), u32(4, 55), u32(8, 4), u32(12, 4), u32(16, 1), u32(20, 0x400), text(24, 'lowport_outer\0'));
    assert.equal(MAP_INFO_SIZE, 40);
    assert.deepEqual(decodeMapInfo(b), { type: 12, id: 55, keySize: 4, valueSize: 4, maxEntries: 1, flags: 0x400, name: 'lowport_outer' });
  });

  it('read bpf_link_info: type 0, id 4, prog_id 8, cgroup_id 16, attach_type 24', () => {
    const b = filled(LINK_INFO_SIZE, u32(0, 3), u32(4, 17), u32(8, 301), u64(16, 0x100000001n), u32(24, 8));
    assert.equal(LINK_INFO_SIZE, 32);
    assert.deepEqual(decodeLinkInfo(b), { type: 3, id: 17, progId: 301, cgroupId: 0x100000001n, attachType: 8 });
  });
});
