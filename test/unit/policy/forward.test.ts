/** The policy's `forward` statement: parse, diagnostics, print, and edits that keep the rest of the file. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolicyError } from '../../../src/errors.js';
import { addForward, grant, removeForward } from '../../../src/policy/edit.js';
import { parsePolicy } from '../../../src/policy/parse.js';
import { formatForward, serializePolicy } from '../../../src/policy/print.js';

function problems(text: string): string[] {
  try {
    parsePolicy(text, 'policy');
  } catch (e) {
    assert.ok(e instanceof PolicyError);
    return e.diagnostics.map((d) => `${d.line}:${d.column}+${d.length} ${d.message}`);
  }
  assert.fail('should have been rejected');
}

describe('forward statements', () => {
  it('parse beside grants, and leave the grants as they were', () => {
    const doc = parsePolicy('grant 80 user alice\nforward 80/tcp to 8080 addr 127.0.0.1,::1  # web\nforward 53 to 5353\n', 'policy');
    assert.equal(doc.rules.length, 1);
    assert.deepEqual(doc.forwards, [
      { port: 80, protocols: ['tcp'], toPort: 8080, addrs: ['127.0.0.1', '::1'], line: 2 },
      { port: 53, protocols: ['tcp', 'udp'], toPort: 5353, addrs: [], line: 3 },
    ]);
  });

  it('are absent from a document without any', () => {
    assert.equal('forwards' in parsePolicy('grant 80 user alice\n', 'policy'), false);
  });

  it('print canonically', () => {
    assert.equal(formatForward({ port: 80, protocols: ['tcp'], toPort: 8080, addrs: ['::1'] }), 'forward 80/tcp to 8080 addr ::1');
    assert.equal(formatForward({ port: 53, protocols: ['tcp', 'udp'], toPort: 5353, addrs: [] }), 'forward 53 to 5353');
  });

  it('report every mistake with its column', () => {
    assert.deepEqual(
      problems(
        'forward 80-90 to 8080\nforward 80 8080\nforward 80 to 70000\nforward 80 to 8080 addr ::ffff:1.2.3.4\nforward 81 to 8081 extra\n',
      ),
      [
        "1:9+5 'forward' takes one port, with /tcp or /udp or neither, e.g. 'forward 80/tcp to 8080'",
        "2:12+4 expected 'to' after the port, found '8080', e.g. 'forward 80/tcp to 8080'",
        "3:15+5 '70000' is not a port: the target is one port 1-65535 of this host, without /tcp or /udp",
        "4:25+14 '::ffff:1.2.3.4' is an IPv4-mapped address: write the IPv4 address 1.2.3.4",
        "5:20+5 unexpected 'extra' after the statement: expected 'addr' or the end of the line ('#' starts a comment)",
      ],
    );
  });

  it('refuse one port and protocol forwarded twice', () => {
    assert.deepEqual(problems('forward 80 to 8080\nforward 80/udp to 9090\n'), [
      '2:9+6 port 80 (udp) is already forwarded on line 1: keep one statement per port and protocol',
    ]);
  });
});

describe('forward edits', () => {
  const text = '# web\ngrant 80 user alice   # dev\nforward 80 to 8080  # both\n\n';

  it('add a statement after the last one, keeping comments and blank lines', () => {
    const r = addForward(parsePolicy(text, 'p'), { port: 443, protocols: ['tcp'], toPort: 8443, addrs: [] });
    assert.equal(r.changed, true);
    assert.equal(serializePolicy(r.doc), '# web\ngrant 80 user alice   # dev\nforward 80 to 8080  # both\nforward 443/tcp to 8443\n\n');
    assert.deepEqual(r.doc.forwards, parsePolicy(serializePolicy(r.doc), 'p').forwards);
  });

  it('replace the protocol of an existing forward that a new one takes over', () => {
    const r = addForward(parsePolicy(text, 'p'), { port: 80, protocols: ['tcp'], toPort: 9090, addrs: [] });
    assert.equal(serializePolicy(r.doc), '# web\ngrant 80 user alice   # dev\nforward 80/udp to 8080  # both\nforward 80/tcp to 9090\n\n');
  });

  it('change nothing when the statement is already there', () => {
    const r = addForward(parsePolicy(text, 'p'), { port: 80, protocols: ['udp', 'tcp'], toPort: 8080, addrs: [] });
    assert.equal(r.changed, false);
  });

  it('remove a statement, or one protocol of it', () => {
    assert.equal(
      serializePolicy(removeForward(parsePolicy(text, 'p'), { port: 80, protocols: ['tcp', 'udp'] }).doc),
      '# web\ngrant 80 user alice   # dev\n\n',
    );
    assert.equal(
      serializePolicy(removeForward(parsePolicy(text, 'p'), { port: 80, protocols: ['udp'] }).doc),
      '# web\ngrant 80 user alice   # dev\nforward 80/tcp to 8080  # both\n\n',
    );
    assert.equal(removeForward(parsePolicy(text, 'p'), { port: 81, protocols: ['tcp'] }).changed, false);
  });

  it('survive a grant edit with their line numbers moved', () => {
    const r = grant(parsePolicy('forward 80 to 8080\n', 'p'), {
      ports: [{ from: 443, to: 443, protocols: ['tcp'] }],
      principal: { kind: 'user', name: 'bob' },
      addrs: [],
    });
    const again = parsePolicy(serializePolicy(r.doc), 'p');
    assert.deepEqual(r.doc.forwards, again.forwards);
  });
});
