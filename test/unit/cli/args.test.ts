import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lowportOptions, nameFromArgument, parseAddrArgs, parsePortsArg, parsePrincipalArgs } from '../../../src/cli/args.js';
import { COMMAND_LINE, formatDiagnostics } from '../../../src/diagnostic.js';
import { LowportError, UsageError } from '../../../src/errors.js';
import { runMain } from '../../run-main.js';

/** The UsageError `fn` throws. */
function usageError(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof UsageError, `expected a UsageError, got ${String(error)}`);
    assert.equal(error.code, 'E_USAGE');
    return error;
  }
  assert.fail('expected a UsageError');
}

describe('parsePortsArg', () => {
  it('reads a port spec into items', () => {
    assert.deepEqual(parsePortsArg('80,443/tcp,8000-8002', 'grant'), [
      { from: 80, to: 80, protocols: ['tcp', 'udp'] },
      { from: 443, to: 443, protocols: ['tcp'] },
      { from: 8000, to: 8002, protocols: ['tcp', 'udp'] },
    ]);
  });

  it('asks for the ports, with an example and where to get help, when there are none', () => {
    for (const text of [undefined, '']) {
      const e = usageError(() => parsePortsArg(text, 'reserve'));
      assert.equal(e.message, 'reserve needs the ports, e.g. `lowport reserve 80,443 ...`');
      assert.equal(e.hint, 'See `lowport reserve --help`.');
    }
  });
});

describe('parsePrincipalArgs', () => {
  const noSudo: NodeJS.ProcessEnv = {};

  it('takes --user, --group or --everyone as given', () => {
    assert.deepEqual(parsePrincipalArgs({ user: 'alice' }, noSudo, 'root'), { kind: 'user', name: 'alice' });
    assert.deepEqual(parsePrincipalArgs({ group: 'dns' }, noSudo, 'root'), { kind: 'group', name: 'dns' });
    assert.deepEqual(parsePrincipalArgs({ everyone: true }, noSudo, 'root'), { kind: 'everyone' });
    assert.deepEqual(parsePrincipalArgs({ user: '1000' }, noSudo, 'root'), { kind: 'user', name: '1000' });
  });

  it('refuses two of --user, --group and --everyone at once', () => {
    for (const args of [
      { user: 'a', group: 'b' },
      { user: 'a', everyone: true },
      { group: 'b', everyone: true },
      { user: 'a', group: 'b', everyone: true },
    ]) {
      const e = usageError(() => parsePrincipalArgs(args, noSudo, 'root'));
      assert.equal(e.message, 'give only one of --user, --group and --everyone');
    }
  });

  it('does not count --everyone=false as a choice', () => {
    assert.deepEqual(parsePrincipalArgs({ user: 'alice', everyone: false }, noSudo, 'root'), { kind: 'user', name: 'alice' });
  });

  it('defaults to SUDO_USER under sudo', () => {
    assert.deepEqual(parsePrincipalArgs({}, { SUDO_USER: 'alice' }, 'root'), { kind: 'user', name: 'alice' });
  });

  it('defaults to the caller when SUDO_USER is unset, empty or root', () => {
    assert.deepEqual(parsePrincipalArgs({}, noSudo, 'bob'), { kind: 'user', name: 'bob' });
    assert.deepEqual(parsePrincipalArgs({}, { SUDO_USER: '' }, 'bob'), { kind: 'user', name: 'bob' });
    assert.deepEqual(parsePrincipalArgs({}, { SUDO_USER: 'root' }, 'bob'), { kind: 'user', name: 'bob' });
  });

  it('asks root who is meant instead of granting root, with or without sudo', () => {
    for (const env of [noSudo, { SUDO_USER: 'root' }, { SUDO_USER: '' }]) {
      const e = usageError(() => parsePrincipalArgs({}, env, 'root'));
      assert.match(e.message, /^say who: --user NAME, --group NAME or --everyone/);
    }
    usageError(() => parsePrincipalArgs({}, noSudo, ''));
  });

  it('lets a reservation name a user or a group but not everyone', () => {
    assert.deepEqual(parsePrincipalArgs({ user: 'postgres' }, noSudo, 'root', false), { kind: 'user', name: 'postgres' });
    assert.deepEqual(parsePrincipalArgs({ group: 'db' }, noSudo, 'root', false), { kind: 'group', name: 'db' });
    assert.deepEqual(parsePrincipalArgs({}, { SUDO_USER: 'alice' }, 'root', false), { kind: 'user', name: 'alice' });
    const e = usageError(() => parsePrincipalArgs({ everyone: true }, noSudo, 'root', false));
    assert.match(e.message, /reserving a port for everyone reserves nothing/);
  });

  it('asks root for a user or a group only, where everyone is refused', () => {
    const e = usageError(() => parsePrincipalArgs({}, noSudo, 'root', false));
    assert.equal(e.message, 'say who: --user NAME or --group NAME (root binds any port without a reservation)');
  });
});

describe('an unknown name given on the command line', () => {
  const unknown = (): never => {
    throw new LowportError('E_UNKNOWN_USER', "unknown user 'ghost': no such user in the passwd database (getent passwd ghost)", {
      hint: 'Nothing was changed.',
    });
  };

  it('is reported against the word given, not a line of the policy file, keeping its code and hint', () => {
    let caught: unknown;
    try {
      nameFromArgument('--user', 'ghost', unknown);
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof LowportError);
    assert.equal(caught.code, 'E_UNKNOWN_USER');
    assert.equal(caught.hint, 'Nothing was changed.');
    assert.equal(
      formatDiagnostics(caught.diagnostics),
      "command line:1:1-5: error: --user: unknown user 'ghost': no such user in the passwd database (getent passwd ghost)\nghost\n^~~~~\n",
    );
    assert.ok(caught.diagnostics.every((d) => d.file === COMMAND_LINE));
  });

  // As a normal user, doctor --user OTHER is refused as needing root before any lookup (cli-user.test.ts).
  it(
    'exits 2, as a usage error, through the CLI',
    { skip: process.getuid?.() !== 0 && 'doctor --user looks names up as root only' },
    async () => {
      const r = await runMain(['doctor', '--user', 'lowport-no-such-user-9x', '--port', '80']);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^command line:1:1-23: error: --user: unknown user 'lowport-no-such-user-9x'/);
      assert.doesNotMatch(r.stderr, /policy:\d+/);
    },
  );

  it('leaves alone an error about another name, another option, or none', () => {
    for (const [option, word] of [
      ['--user', 'other'],
      ['--group', 'ghost'],
      ['--user', undefined],
    ] as const) {
      assert.throws(
        () => nameFromArgument(option, word, unknown),
        (e: unknown) => e instanceof LowportError && e.diagnostics.length === 0,
      );
    }
  });
});

describe('parseAddrArgs', () => {
  it('gives no addresses, meaning any, when --addr is absent', () => {
    assert.deepEqual(parseAddrArgs(undefined), []);
    assert.deepEqual(parseAddrArgs([]), []);
  });

  it('normalizes each address', () => {
    assert.deepEqual(parseAddrArgs(['0:0:0:0:0:0:0:1', 'FE80:0:0::1', '::FFFF:7f00:1']), ['::1', 'fe80::1', '::ffff:127.0.0.1']);
  });

  it('accepts comma lists and repeated options, in order', () => {
    assert.deepEqual(parseAddrArgs(['127.0.0.1,::1', '10.0.0.1']), ['127.0.0.1', '::1', '10.0.0.1']);
  });

  it('keeps each address once across options, however it is spelled', () => {
    assert.deepEqual(parseAddrArgs(['127.0.0.1,::1', '0::1', '127.0.0.1']), ['127.0.0.1', '::1']);
  });
});

describe('a bad command-line word', () => {
  const noSudo: NodeJS.ProcessEnv = {};
  /** Each bad word, and how the CLI shows it: the word as the source line, the culprit marked. */
  const rows: [what: string, fn: () => unknown, rendering: string[]][] = [
    [
      'an empty item of a port list',
      () => parsePortsArg('80,,443', 'grant'),
      ["command line:1:4: error: bad ports: empty item in the port list: remove the extra ','", '80,,443', '   ^'],
    ],
    [
      'a port list cut short by two commas, once',
      () => parsePortsArg('80,,', 'grant'),
      ["command line:1:3-4: error: bad ports: the port list ends with ',': write the list without spaces, e.g. 80,443", '80,,', '  ^~'],
    ],
    [
      'a port out of range',
      () => parsePortsArg('22,99999/tcp', 'grant'),
      ['command line:1:4-8: error: bad ports: port 99999 is out of range: ports are 1-65535', '22,99999/tcp', '   ^~~~~'],
    ],
    [
      'a reversed range, from its start',
      () => parsePortsArg('90-80', 'grant'),
      ['command line:1:1-5: error: bad ports: range 90-80 is reversed: write 80-90', '90-80', '^~~~~'],
    ],
    [
      'a malformed user name',
      () => parsePrincipalArgs({ user: 'al ice' }, noSudo, 'root'),
      [
        "command line:1:1-6: error: bad user: 'al ice' is not a valid user name: a name starts with a letter or '_', then letters, digits, '_', '.' or '-', and may end in '$'; an id is a number 0-4294967294",
        'al ice',
        '^~~~~~',
      ],
    ],
    [
      'a group id with a leading zero',
      () => parsePrincipalArgs({ group: '007' }, noSudo, 'root'),
      ["command line:1:1-3: error: bad group: group id '007' has a leading zero: write 7", '007', '^~~'],
    ],
    [
      'a host name among addresses',
      () => parseAddrArgs(['127.0.0.1,localhost']),
      [
        "command line:1:11-19: error: bad address: 'localhost': not an IP address: expected an IPv4 address such as 127.0.0.1 or an IPv6 address such as ::1 (host names are not supported)",
        '127.0.0.1,localhost',
        '          ^~~~~~~~~',
      ],
    ],
    [
      'an address list cut short',
      () => parseAddrArgs(['::1,']),
      [
        "command line:1:4: error: bad address: the address list ends with ',': write the list without spaces, e.g. 127.0.0.1,::1",
        '::1,',
        '   ^',
      ],
    ],
    [
      'a control character in the word: escaped, the marker still under the culprit',
      () => parsePortsArg('\x1b,0', 'grant'),
      ["command line:1:1: error: bad ports: '\\x1b' is not a port number: expected a number 1-65535", '\\x1b,0', '^~~~'],
    ],
  ];
  for (const [what, fn, rendering] of rows) {
    it(`shows ${what}`, () => {
      const e = usageError(fn);
      assert.equal(formatDiagnostics(e.diagnostics), `${rendering.join('\n')}\n`);
      // The message alone says it all too, on one line (--json, the library).
      assert.equal(e.message, e.diagnostics[0]?.message);
    });
  }
});

describe('lowportOptions', () => {
  it('copies the global options that were given, and only those', () => {
    assert.deepEqual(lowportOptions({}), {});
    assert.deepEqual(lowportOptions({ policy: '/p', cgroup: '/sys/fs/cgroup/x', 'pin-dir': '/sys/fs/bpf/t' }), {
      policy: '/p',
      cgroup: '/sys/fs/cgroup/x',
      pinDir: '/sys/fs/bpf/t',
    });
    assert.deepEqual(lowportOptions({ policy: undefined, cgroup: '/c' }), { cgroup: '/c' });
  });
});
