/** The audit trail's event layout (grants/events.ts) and the program's logging variant, without a kernel. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decode, HELPER } from '../../../src/bpf/asm.js';
import { decodeEvent, encodeEvent, EVENT, eventSize, wallClock, type BindEvent } from '../../../src/grants/events.js';
import { bindProgramName, buildBindProgram } from '../../../src/grants/program.js';
import { requireRingbuf } from '../../../src/grants/target.js';
import { LowportError } from '../../../src/errors.js';
import type { TaskFields } from '../../../src/bpf/task-fields.js';

/** Offsets as Linux 6.18's BTF gives them on these machines (bpf/task-fields.ts). */
const TASK: TaskFields = { tgid: 1268, comm: 1752, cgroups: 2376, dflCgrp: 112, kn: 256, kernfsId: 96 };

const EVENT_SAMPLE: BindEvent = {
  monotonicNs: 123_456_789_000n,
  cgroupId: 0x1_0000_0002n,
  pid: 4242,
  uid: 65534,
  gid: 65533,
  line: 3,
  protocol: 'udp',
  family: 6,
  address: '::ffff:127.0.0.1',
  port: 443,
  verdict: 'refused',
  comm: 'py\x1b[31m\xff',
};

describe('the event layout', () => {
  it('decodes every field of what the program writes', () => {
    const b = encodeEvent(EVENT_SAMPLE);
    assert.equal(b.length, 68);
    assert.equal(b.readUInt16LE(EVENT.PORT), 443);
    assert.equal(b[EVENT.KIND], 0x06, 'refused (0) from bind6');
    assert.deepEqual(decodeEvent(b), EVENT_SAMPLE);
  });

  it('makes an IPv4 event 56 bytes, one cache line with its record header, and a grant verdict 3', () => {
    const sample = { ...EVENT_SAMPLE, family: 4, address: '0.0.0.0', verdict: 'granted', protocol: 'tcp' } as const;
    const b = encodeEvent(sample);
    assert.equal(b.length, 56);
    assert.equal(eventSize(4) + 8, 64);
    assert.equal(b[EVENT.KIND], 0x34);
    assert.deepEqual(decodeEvent(b), sample);
    b.writeUInt32BE(0x7f000001, EVENT.ADDR);
    assert.equal(decodeEvent(b)?.address, '127.0.0.1');
  });

  it('takes the name up to its NUL, and a full 16 bytes without one, byte for byte', () => {
    const b = encodeEvent(EVENT_SAMPLE);
    b.fill(0x41, EVENT.COMM, EVENT.COMM + 16);
    assert.equal(decodeEvent(b)?.comm, 'A'.repeat(16));
  });

  it('refuses what is not an event of this layout', () => {
    assert.equal(decodeEvent(Buffer.alloc(0)), undefined);
    // An IPv6 event cut to an IPv4 one's size, and the other way round.
    assert.equal(decodeEvent(encodeEvent(EVENT_SAMPLE).subarray(0, eventSize(4))), undefined);
    const v4 = encodeEvent({ ...EVENT_SAMPLE, family: 4, address: '127.0.0.1' });
    assert.equal(decodeEvent(Buffer.concat([v4, Buffer.alloc(12)])), undefined);
    const b = encodeEvent(EVENT_SAMPLE);
    b[EVENT.KIND] = 0x16;
    assert.equal(decodeEvent(b), undefined, 'verdict 1');
    b[EVENT.KIND] = 0x05;
    assert.equal(decodeEvent(b), undefined, 'family 5');
    const c = encodeEvent(EVENT_SAMPLE);
    c[EVENT.PROTOCOL] = 1;
    assert.equal(decodeEvent(c), undefined);
  });

  it('turns the kernel monotonic time into wall-clock time by the offset of now', () => {
    assert.equal(wallClock(9_000_000_000n, 1_000_000, 10_000_000_000n).getTime(), 999_000);
  });
});

describe('the logging variant of the bind program', () => {
  const calls = (log?: { grants: boolean; refusals: boolean }): number[] =>
    decode(buildBindProgram(4, 1, 2, log === undefined ? {} : { log: { ...log, ringFd: 3 } }).assemble())
      .filter((i) => i.op === 'call')
      .map((i) => i.imm);

  it('is not built at all without a log statement: the same code as the program without logging', () => {
    const off = buildBindProgram(4, 1, 2).assemble();
    assert.deepEqual(buildBindProgram(4, 1, 2, { log: { grants: false, refusals: false, ringFd: 3 } }).assemble(), off);
    assert.equal(bindProgramName(4, { log: { grants: false, refusals: false, ringFd: 0 } }), bindProgramName(4));
    assert.ok(!calls().includes(HELPER.ringbuf_reserve));
    assert.ok(!calls().includes(HELPER.get_current_comm));
  });

  it('reserves, fills and submits one record when it logs, under another program name', () => {
    for (const family of [4, 6] as const) {
      for (const log of [
        { grants: true, refusals: false },
        { grants: false, refusals: true },
        { grants: true, refusals: true },
      ]) {
        const c = calls(log);
        assert.equal(c.filter((h) => h === HELPER.ringbuf_reserve).length, 1);
        assert.equal(c.filter((h) => h === HELPER.ringbuf_submit).length, 1);
        assert.ok(c.includes(HELPER.get_current_comm) && c.includes(HELPER.get_current_pid_tgid));
        assert.notEqual(bindProgramName(family, { log: { ...log, ringFd: 0 } }), bindProgramName(family));
      }
    }
    assert.notEqual(
      bindProgramName(4, { log: { grants: true, refusals: false, ringFd: 0 } }),
      bindProgramName(4, { log: { grants: false, refusals: true, ringFd: 0 } }),
    );
  });

  it('submits without flags or a query of the ring, so that only an event written to an emptied ring wakes the reader', () => {
    for (const family of [4, 6] as const) {
      const insns = decode(buildBindProgram(family, 1, 2, { log: { grants: true, refusals: true, ringFd: 3 } }).assemble());
      const submit = insns.findIndex((i) => i.op === 'call' && i.imm === HELPER.ringbuf_submit);
      assert.deepEqual(
        insns.slice(submit - 2, submit).map((i) => i.text),
        ['r1 = r8', 'r2 = 0'],
      );
      assert.ok(!insns.some((i) => i.op === 'call' && i.imm === 134), 'no bpf_ringbuf_query');
    }
  });

  it('sets the errno before it logs a refusal, when reservations refuse with EADDRINUSE', () => {
    for (const family of [4, 6] as const) {
      const c = decode(buildBindProgram(family, 1, 2, { addrInUse: true, log: { grants: true, refusals: true, ringFd: 3 } }).assemble())
        .filter((i) => i.op === 'call')
        .map((i) => i.imm);
      assert.equal(c.filter((h) => h === HELPER.set_retval).length, 1);
      assert.ok(c.indexOf(HELPER.set_retval) < c.indexOf(HELPER.ringbuf_reserve), 'set_retval on the refusal path, before the event');
    }
  });

  it('writes every byte of the event (no kernel memory leaks to the reader), with the helpers or the task read in place', () => {
    for (const task of [undefined, TASK]) {
      for (const family of [4, 6] as const) {
        const insns = decode(
          buildBindProgram(family, 1, 2, { ...(task && { task }), log: { grants: true, refusals: true, ringFd: 3 } }).assemble(),
        );
        const start = insns.findIndex((i) => i.op === 'call' && i.imm === HELPER.ringbuf_reserve);
        const written = new Set<number>();
        for (const i of insns.slice(start)) {
          // Stores through r8, the record (the stack's are through r10).
          if ((i.op === 'stx' || i.op === 'st') && i.dst === 8) for (let b = 0; b < (i.size ?? 0); b++) written.add(i.off + b);
        }
        // bpf_get_current_comm fills the 16 bytes of the name; in place, four stores do.
        if (task === undefined) for (let b = EVENT.COMM; b < EVENT.COMM + 16; b++) written.add(b);
        assert.deepEqual(
          Array.from({ length: eventSize(family) }, (_, b) => b).filter((b) => !written.has(b)),
          [],
          `family ${family}, ${task === undefined ? 'helpers' : 'in place'}`,
        );
      }
    }
  });

  it("reads the task's pid, comm and cgroup id in place when given the offsets: one call instead of three helpers, another program name", () => {
    for (const family of [4, 6] as const) {
      const options = { task: TASK, log: { grants: true, refusals: true, ringFd: 3 } };
      const insns = decode(buildBindProgram(family, 1, 2, options).assemble());
      const event = insns.slice(insns.findIndex((i) => i.op === 'call' && i.imm === HELPER.ringbuf_reserve));
      const eventCalls = event.filter((i) => i.op === 'call').map((i) => i.imm);
      assert.deepEqual(eventCalls, [HELPER.ringbuf_reserve, HELPER.ktime_get_ns, HELPER.get_current_task_btf, HELPER.ringbuf_submit]);
      assert.ok(event.some((i) => i.text === `r1 = *(u32 *)(r0 + ${TASK.tgid})`));
      assert.ok(event.some((i) => i.text === `r1 = *(u64 *)(r1 + ${TASK.kernfsId})`));
      assert.notEqual(
        bindProgramName(family, { ...options, log: { ...options.log, ringFd: 0 } }),
        bindProgramName(family, { log: { ...options.log, ringFd: 0 } }),
      );
      // Without logging the offsets change nothing: the program has no event.
      assert.deepEqual(buildBindProgram(family, 1, 2, { task: TASK }).assemble(), buildBindProgram(family, 1, 2).assemble());
    }
  });
});

describe('a kernel without the ring buffer', () => {
  it("refuses a policy with 'log' before anything changes, naming Linux 5.8 and the lines to remove", () => {
    const probed = { name: 'ringbuf', tried: 'create a BPF_MAP_TYPE_RINGBUF', ok: false, errno: 'EINVAL' } as const;
    assert.throws(
      () => requireRingbuf(['line 4'], probed, '5.4.0-150-generic'),
      (e: unknown) =>
        e instanceof LowportError &&
        e.code === 'E_UNSUPPORTED' &&
        e.message ===
          "the policy asks for an audit trail ('log', line 4), but Linux 5.4.0-150-generic has no BPF ring buffer for the 'log' statement's events " +
            '(BPF_MAP_TYPE_RINGBUF and its helpers in a bind hook, Linux 5.8): create a BPF_MAP_TYPE_RINGBUF: EINVAL' &&
        /Remove the 'log' statement \(line 4\).*Nothing was changed\./.test(e.hint ?? ''),
    );
    assert.doesNotThrow(() => requireRingbuf(['line 4'], { ...probed, ok: true }, '6.1.0'));
    // A log statement in a drop-in is named with its file (the caller's lineRef).
    assert.throws(
      () => requireRingbuf(['line 2 of policy.d/audit.policy'], probed, '5.4.0'),
      (e: unknown) =>
        e instanceof LowportError && e.message.startsWith("the policy asks for an audit trail ('log', line 2 of policy.d/audit.policy)"),
    );
  });
});
