/** The journal's native protocol and the syslog fallback (os/journal.ts), on a socket of the test's own. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { journalDatagram, LogSink, syslogDatagram } from '../../../src/os/journal.js';

describe('journal datagrams', () => {
  it('writes KEY=value lines, and a value with a newline with its length', () => {
    const d = journalDatagram([
      ['MESSAGE', 'granted tcp'],
      ['LOWPORT_COMM', 'a\nb'],
    ]);
    assert.deepEqual(
      d,
      Buffer.concat([Buffer.from('MESSAGE=granted tcp\nLOWPORT_COMM\n'), Buffer.from([3, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('a\nb\n')]),
    );
  });

  it('refuses a field name journald would drop', () => {
    assert.throws(() => journalDatagram([['_PID', '1']]), RangeError);
    assert.throws(() => journalDatagram([['lower', '1']]), RangeError);
  });

  it('writes a syslog line under authpriv with the newlines flattened', () => {
    assert.equal(syslogDatagram('lowport-log', 5, 'a\nb', 7).toString(), '<85>lowport-log[7]: a b');
  });
});

/** A datagram receiver bound at `path` (python3: Node has no AF_UNIX datagrams); resolves with the first datagram it gets. */
async function receiver(path: string): Promise<{ received: Promise<Buffer>; stop: () => void }> {
  const script = `import socket,sys
s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.bind(sys.argv[1]); print('ready',flush=True)
s.settimeout(10); print(s.recv(65536).hex(),flush=True)`;
  const child = spawn('python3', ['-c', script, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const lines = new Promise<string[]>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const got = out.split('\n').filter((l) => l !== '');
      if (got.length >= 1) resolve(got);
    });
  });
  await lines;
  const received = new Promise<Buffer>((resolve) => {
    child.on('exit', () => resolve(Buffer.from(out.split('\n')[1] ?? '', 'hex')));
  });
  return { received, stop: () => child.kill() };
}

const hasPython = spawnSync('sh', ['-c', 'command -v python3']).status === 0;

describe('the log sink', { skip: !hasPython && 'python3 is not installed' }, () => {
  it('sends every field to the journal socket when one listens', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lowport-journal-'));
    const r = await receiver(join(dir, 'journal'));
    try {
      const sink = new LogSink({ journalPath: join(dir, 'journal'), syslogPath: join(dir, 'log') });
      assert.equal(sink.kind, 'journal');
      sink.send(
        [
          ['MESSAGE', 'hi'],
          ['LOWPORT_PORT', '80'],
        ],
        'lowport-log',
        6,
      );
      sink.close();
      assert.equal((await r.received).toString(), 'MESSAGE=hi\nLOWPORT_PORT=80\n');
    } finally {
      r.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('falls back to syslog, and says when neither listens', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lowport-journal-'));
    const options = { journalPath: join(dir, 'journal'), syslogPath: join(dir, 'log') };
    try {
      assert.throws(() => new LogSink(options), /connect\(.*journal or .*log\)/);
      const r = await receiver(options.syslogPath);
      try {
        const sink = new LogSink(options);
        assert.equal(sink.kind, 'syslog');
        sink.send(
          [
            ['MESSAGE', 'refused udp'],
            ['LOWPORT_PORT', '90'],
          ],
          'lowport-log',
          5,
        );
        sink.close();
        assert.match((await r.received).toString(), /^<85>lowport-log\[\d+\]: refused udp$/);
      } finally {
        r.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
