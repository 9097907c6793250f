/**
 * The bind program, checked two ways without a kernel:
 *  - statically, by decoding its bytes with the assembler's decoder (src/bpf/asm.ts)
 *    for what the verifier insists on: which ctx fields each hook may read,
 *    aligned stack accesses, no loops, every path ending in a set r0;
 *  - dynamically, by running it in the interpreter of bind-interpreter.ts,
 *    against a policy map built by compile() and encodeKey(), so the program
 *    and the map layout are shown to agree.
 * struct bpf_sock_addr: user_family 0, user_ip4 4, user_ip6 8..23, user_port 24
 * (network order), family 28, type 32, protocol 36.
 */
import assert from 'node:assert/strict';
import { endianness } from 'node:os';
import { describe, it } from 'node:test';
import { decode } from '../../../src/bpf/asm.js';
import { compileTable } from '../../../src/grants/compile.js';
import { bindProgramName, buildBindProgram, REFUSE } from '../../../src/grants/program.js';
import { EADDRINUSE } from '../../../src/os/errno.js';
import { resolvePolicy } from '../../../src/grants/resolve.js';
import { parsePolicy } from '../../../src/policy/parse.js';
import {
  bind as bindIn,
  bySlot,
  hits,
  isExit,
  isJump,
  isLoad,
  isStore,
  OUTER_FD,
  PORT_FILTER_FD,
  policyMap as mapOf,
  program,
  type Caller,
  type PolicyMap,
  type Run,
  directory,
} from './bind-interpreter.js';

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
      assert.equal(first?.text, 'r6 = r1');
    });

    it(`never writes to the bind${family} context and never overwrites r6`, () => {
      for (const i of program(family)) {
        if (isStore(i)) assert.notEqual(i.dst, 6, `store through r6 at ${i.slot}`);
        if (i.slot > 0 && (i.class === 'alu64' || i.class === 'alu' || i.class === 'ld' || isLoad(i)))
          assert.notEqual(i.dst, 6, `r6 overwritten at ${i.slot}`);
      }
    });

    it(`reads the bind${family} context only as aligned u32 fields`, () => {
      for (const i of program(family).filter((x) => isLoad(x) && x.src === 6)) {
        assert.equal(i.size, 4, `ctx load at ${i.slot} is not a u32 load`);
        assert.equal(i.off % 4, 0);
        assert.ok(i.off >= 0 && i.off < 40);
      }
    });

    it(`references the outer map fd exactly once in bind${family}, as a BPF_PSEUDO_MAP_FD load, and the port filter once, in place`, () => {
      const loads = program(family).filter((i) => i.class === 'ld');
      assert.equal(loads.length, 2);
      assert.deepEqual(
        loads.map((i) => [i.op, i.imm, i.imm64High]),
        [
          ['ld_map_value', PORT_FILTER_FD, 0],
          ['ld_map_fd', OUTER_FD, 0],
        ],
      );
    });

    it(`calls only map_lookup_elem (1), get_current_uid_gid (15) and get_current_cgroup_id (80) in bind${family}`, () => {
      const helpers = new Set(
        program(family)
          .filter((i) => i.op === 'call')
          .map((i) => i.imm),
      );
      assert.deepEqual(
        [...helpers].sort((a, b) => a - b),
        [1, 15, 80],
      );
    });

    it(`accesses the bind${family} stack inside the 512-byte frame, aligned to the access size`, () => {
      for (const i of program(family)) {
        const base = isLoad(i) ? i.src : isStore(i) ? i.dst : undefined;
        if (base !== 10) continue;
        const size = i.size ?? 0;
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
        const next = slot + i.width;
        if (i.op === 'ja') todo.push(next + i.off);
        else if (isJump(i)) todo.push(next, next + i.off);
        else todo.push(next);
      }
      // Every instruction is reachable: no dead code hides a mistake.
      assert.deepEqual(
        [...seen].sort((a, b) => a - b),
        insns.map((i) => i.slot),
      );
    });

    it(`sets r0 to 0, 1 or 3 immediately before every exit of bind${family}, and uses all three`, () => {
      const insns = program(family);
      const targets = new Set(insns.filter(isJump).map((i) => i.slot + 1 + i.off));
      const returns = new Set<number>();
      insns.forEach((i, n) => {
        if (!isExit(i)) return;
        const before = insns[n - 1];
        assert.deepEqual(
          before && [before.op, before.source, before.dst],
          ['mov', 'imm', 0],
          `exit at ${i.slot} does not follow a mov r0, imm`,
        );
        assert.ok(!targets.has(i.slot), `a jump skips the mov before the exit at ${i.slot}`);
        returns.add(before?.imm ?? -1);
      });
      assert.deepEqual([...returns].sort(), [0, 1, 3]);
    });
  }

  it('never reads user_ip6 (ctx 8..23) in the bind4 variant', () => {
    const reads = program(4).filter((i) => isLoad(i) && i.src === 6);
    for (const i of reads) assert.ok(i.off + 4 <= 8 || i.off >= 24, `bind4 reads ctx offset ${i.off}`);
    assert.deepEqual(
      reads.map((i) => i.off).sort((a, b) => a - b),
      [4, 24, 36],
    );
  });

  it('never reads user_ip4 (ctx 4) in the bind6 variant', () => {
    const reads = program(6).filter((i) => isLoad(i) && i.src === 6);
    for (const i of reads) assert.ok(i.off + 4 <= 4 || i.off >= 8, `bind6 reads ctx offset ${i.off}`);
    assert.deepEqual(
      [...new Set(reads.map((i) => i.off))].sort((a, b) => a - b),
      [8, 12, 16, 20, 24, 36],
    );
  });

  it('puts the outer map fd given into the load, so a different fd changes only that instruction', () => {
    const a = buildBindProgram(4, 3).assemble();
    const b = buildBindProgram(4, 0x7fff).assemble();
    const differing = [...a.keys()].filter((n) => a[n] !== b[n]).map((n) => Math.floor(n / 8));
    const load = decode(a).find((i) => i.op === 'ld_map_fd');
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

/** The live policy map for a policy text, as `apply` fills it. */
function policyMap(text: string): PolicyMap {
  return mapOf(compileTable(resolvePolicy(parsePolicy(text, 'policy'), directory).rules));
}

const littleEndian = {
  skip: endianness() === 'LE' ? false : 'the program reads uid and gid as the low and high halves of a u64, as on little-endian CPUs',
};

const bind: (map: PolicyMap | undefined, who: Caller, ip: string, port: number, protocol?: 'tcp' | 'udp' | 'sctp') => Run = bindIn;

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

  it('passes a port with no rule at the port filter, without a lookup', () => {
    const map = policyMap('grant 80 user alice\n');
    const r = bind(map, alice, '0.0.0.0', 81);
    assert.equal(r.verdict, 1);
    assert.equal(r.lookups, 0);
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

describe('bind program: the EADDRINUSE variant (bpf_set_retval)', littleEndian, () => {
  const IN_USE = { addrInUse: true };
  /** The listing without slot numbers: jumps by label, so an insertion shifts nothing. */
  const lines = (family: 4 | 6, options = {}): string[] =>
    buildBindProgram(family, OUTER_FD, PORT_FILTER_FD, options)
      .listing()
      .split('\n')
      .map((l) => l.replace(/^ *\d+: /, ''));

  for (const family of [4, 6] as const) {
    it(`adds to the bind${family} program only \`r1 = -EADDRINUSE; call set_retval\`, just before the refusal's \`r0 = 0\``, () => {
      const plain = lines(family);
      const inUse = lines(family, IN_USE);
      const at = inUse.findIndex((l) => l.endsWith('call set_retval'));
      assert.ok(at > 0, inUse.join('\n'));
      assert.deepEqual(inUse.slice(at - 1, at + 3), [
        `(b7) r1 = -${EADDRINUSE}`,
        '(85) call set_retval',
        `(b7) r0 = ${REFUSE}`,
        '(95) exit',
      ]);
      assert.deepEqual([...inUse.slice(0, at - 1), ...inUse.slice(at + 1)], plain);
      assert.equal(inUse.filter((l) => l.includes('set_retval')).length, 1);
    });
  }

  it('is named apart from the EPERM variant, so apply replaces one with the other on the links', () => {
    for (const family of [4, 6] as const) {
      assert.notEqual(bindProgramName(family, IN_USE), bindProgramName(family));
      assert.match(bindProgramName(family, IN_USE), new RegExp(`^lowport${family}_[0-9a-f]{6}$`));
    }
  });

  it('gives every bind the same verdict as the EPERM variant, in the same steps, and sets EADDRINUSE only when it refuses', () => {
    const map = policyMap(
      'reserve 5432 user postgres\ngrant 5432 user alice\ngrant 80 user alice\ngrant 443 group web\nreserve 53/udp user bob\ngrant 8080 everyone\n',
    );
    let refusals = 0;
    for (const who of [alice, bob, carol, postgres, root, { uid: 4000, gid: 4000 }]) {
      for (const ip of ['0.0.0.0', '127.0.0.1', '::', '::1', '::ffff:127.0.0.1']) {
        for (const port of [53, 80, 443, 5432, 8080, 9999]) {
          for (const protocol of ['tcp', 'udp', 'sctp'] as const) {
            const plain = bindIn(map, who, ip, port, protocol);
            const inUse = bindIn(map, who, ip, port, protocol, IN_USE);
            const what = `uid ${who.uid} ${ip} ${port}/${protocol}`;
            assert.equal(inUse.verdict, plain.verdict, what);
            assert.equal(plain.retval, undefined, what);
            if (plain.verdict === REFUSE) {
              refusals++;
              assert.equal(inUse.retval, BigInt(-EADDRINUSE), what);
              assert.equal(inUse.steps, plain.steps + 2, what);
            } else {
              // The paths that do not refuse run exactly the instructions they ran before.
              assert.equal(inUse.retval, undefined, what);
              assert.equal(inUse.steps, plain.steps, what);
            }
          }
        }
      }
    }
    assert.ok(refusals > 20, `only ${refusals} refusals: the table does not exercise the refusal`);
  });
});
