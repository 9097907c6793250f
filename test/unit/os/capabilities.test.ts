/**
 * The capability parsers, on samples taken from a real machine: the Cap*
 * lines of /proc/self/status (proc(5)) and security.capability xattrs as
 * setcap(8) writes them (struct vfs_cap_data, linux/capability.h).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CAP_NET_BIND_SERVICE, decodeFileCaps, hasCap, parseStatusCaps } from '../../../src/os/capabilities.js';

const CAP_SYS_RESOURCE = 24;
const CAP_BPF = 39;
const CAP_CHECKPOINT_RESTORE = 40;

/** /proc/self/status of root in a container whose bounding set lacks CAP_SYS_RESOURCE (bit 24). */
const CONTAINER_ROOT = `Name:\tcat
Umask:\t0022
State:\tR (running)
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
CapInh:\t0000000000000000
CapPrm:\t000001fffeffffff
CapEff:\t000001fffeffffff
CapBnd:\t000001fffeffffff
CapAmb:\t0000000000000000
NoNewPrivs:\t0
Seccomp:\t2
`;

describe('parseStatusCaps', () => {
  it('reads the five sets of a real status file, bits above 31 included', () => {
    const caps = parseStatusCaps(CONTAINER_ROOT);
    assert.deepEqual(caps, {
      inheritable: 0n,
      permitted: 0x1fffeffffffn,
      effective: 0x1fffeffffffn,
      bounding: 0x1fffeffffffn,
      ambient: 0n,
    });
    assert.equal(hasCap(caps.effective, CAP_NET_BIND_SERVICE), true);
    assert.equal(hasCap(caps.effective, CAP_SYS_RESOURCE), false);
    assert.equal(hasCap(caps.effective, CAP_BPF), true);
    assert.equal(hasCap(caps.effective, CAP_CHECKPOINT_RESTORE), true);
    assert.equal(hasCap(caps.effective, CAP_CHECKPOINT_RESTORE + 1), false);
  });

  it('reads an unprivileged process that holds only CAP_NET_BIND_SERVICE, ambient (setpriv --ambient-caps)', () => {
    const caps = parseStatusCaps(
      CONTAINER_ROOT.replace(/^Cap(Inh|Prm|Eff|Amb):.*$/gm, 'Cap$1:\t0000000000000400').replace(
        /^CapBnd:.*$/m,
        'CapBnd:\t0000000000000400',
      ),
    );
    for (const set of Object.values(caps)) assert.equal(set, 1n << 10n);
  });

  it('reads a set with only a bit above 31 (CAP_BPF), which a 32-bit parse would lose', () => {
    const caps = parseStatusCaps(CONTAINER_ROOT.replace(/^CapEff:.*$/m, 'CapEff:\t0000008000000000'));
    assert.equal(caps.effective, 1n << 39n);
    assert.equal(hasCap(caps.effective, CAP_BPF), true);
    assert.equal(hasCap(caps.effective, CAP_BPF - 32), false);
  });

  it('takes a missing line (CapAmb before Linux 4.3) as the empty set, and matches field names only at a line start', () => {
    const old = CONTAINER_ROOT.replace(/^CapAmb:.*\n/m, '');
    assert.equal(parseStatusCaps(old).ambient, 0n);
    assert.equal(parseStatusCaps('Name:\tx CapEff: ffff\nXCapEff:\tffff\n').effective, 0n);
    assert.deepEqual(parseStatusCaps(''), { inheritable: 0n, permitted: 0n, effective: 0n, bounding: 0n, ambient: 0n });
  });
});

describe('hasCap', () => {
  it('tests one bit, at any position up to 63', () => {
    assert.equal(hasCap(1n << 63n, 63), true);
    assert.equal(hasCap(1n << 63n, 62), false);
    assert.equal(hasCap(0n, 0), false);
    assert.equal(hasCap(1n, 0), true);
  });
});

describe('decodeFileCaps', () => {
  it('decodes what `setcap cap_net_bind_service,cap_bpf+ep` wrote (revision 2, effective, a bit in the upper word)', () => {
    const caps = decodeFileCaps(Buffer.from('0100000200040000000000008000000000000000', 'hex'));
    assert.deepEqual(caps, { permitted: (1n << 10n) | (1n << 39n), inheritable: 0n, effective: true });
  });

  it('decodes what `setcap cap_net_bind_service+i` wrote: inheritable only, not effective', () => {
    assert.deepEqual(decodeFileCaps(Buffer.from('0000000200000000000400000000000000000000', 'hex')), {
      permitted: 0n,
      inheritable: 1n << 10n,
      effective: false,
    });
  });

  it('decodes revision 3 (set inside a user namespace) with the namespace’s root uid', () => {
    const b = Buffer.alloc(24);
    b.writeUInt32LE(0x03000001, 0);
    b.writeUInt32LE(0x400, 4);
    b.writeUInt32LE(0x80, 12);
    b.writeUInt32LE(100000, 20);
    assert.deepEqual(decodeFileCaps(b), { permitted: (1n << 10n) | (1n << 39n), inheritable: 0n, effective: true, rootUid: 100000 });
  });

  it('decodes revision 1 (32-bit sets, 12 bytes)', () => {
    const b = Buffer.alloc(12);
    b.writeUInt32LE(0x01000000, 0);
    b.writeUInt32LE(0x400, 4);
    assert.deepEqual(decodeFileCaps(b), { permitted: 1n << 10n, inheritable: 0n, effective: false });
  });

  it('gives undefined for what is too short for its revision, or an unknown revision', () => {
    assert.equal(decodeFileCaps(Buffer.alloc(0)), undefined);
    assert.equal(decodeFileCaps(Buffer.from('010000020004000000000000', 'hex')), undefined);
    const v3short = Buffer.alloc(20);
    v3short.writeUInt32LE(0x03000000, 0);
    assert.equal(decodeFileCaps(v3short), undefined);
    const v4 = Buffer.alloc(24);
    v4.writeUInt32LE(0x04000000, 0);
    assert.equal(decodeFileCaps(v4), undefined);
  });
});
