import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lowportOptions, parseAddrArgs, parsePortsArg, parsePrincipalArgs } from '../../../src/cli/args.js';
import { UsageError } from '../../../src/errors.js';

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

  it('shows a bad spec with a caret under the culprit', () => {
    const e = usageError(() => parsePortsArg('80,,443', 'grant'));
    const [first, spec, caret] = e.message.split('\n');
    assert.match(first ?? '', /^bad ports: empty item in the port list/);
    assert.equal(spec, '  80,,443');
    // The second comma is character 5 of the indented line.
    assert.equal(caret, '     ^');
    assert.equal(spec?.[caret?.indexOf('^') ?? -1], ',');
  });

  it('underlines the whole culprit when it is longer than a character', () => {
    const e = usageError(() => parsePortsArg('22,99999/tcp', 'grant'));
    const [, spec, caret] = e.message.split('\n');
    assert.equal(spec, '  22,99999/tcp');
    assert.equal(caret, '     ^^^^^');
    assert.match(e.message, /port 99999 is out of range/);
  });

  it('underlines a reversed range from its start', () => {
    const e = usageError(() => parsePortsArg('90-80', 'grant'));
    assert.deepEqual(e.message.split('\n').slice(1), ['  90-80', '  ^^^^^']);
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
    for (const args of [{ user: 'a', group: 'b' }, { user: 'a', everyone: true }, { group: 'b', everyone: true }, { user: 'a', group: 'b', everyone: true }]) {
      const e = usageError(() => parsePrincipalArgs(args, noSudo, 'root'));
      assert.equal(e.message, 'give only one of --user, --group and --everyone');
    }
  });

  it('does not count --everyone=false as a choice', () => {
    assert.deepEqual(parsePrincipalArgs({ user: 'alice', everyone: false }, noSudo, 'root'), { kind: 'user', name: 'alice' });
  });

  it('refuses a malformed name with a caret under it', () => {
    const e = usageError(() => parsePrincipalArgs({ user: 'al ice' }, noSudo, 'root'));
    assert.deepEqual(e.message.split('\n').slice(1), ['  al ice', '  ^^^^^^']);
    assert.match(e.message, /^bad user: 'al ice' is not a valid user name/);
    const g = usageError(() => parsePrincipalArgs({ group: '007' }, noSudo, 'root'));
    assert.match(g.message, /^bad group: group id '007' has a leading zero/);
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

  it('shows a bad address with a caret under it', () => {
    const e = usageError(() => parseAddrArgs(['127.0.0.1,localhost']));
    const [first, spec, caret] = e.message.split('\n');
    assert.match(first ?? '', /^bad address: 'localhost': not an IP address/);
    assert.equal(spec, '  127.0.0.1,localhost');
    assert.equal(caret, '            ^^^^^^^^^');
  });

  it('points at the extra comma of a list cut short', () => {
    const e = usageError(() => parseAddrArgs(['::1,']));
    assert.deepEqual(e.message.split('\n').slice(1), ['  ::1,', '     ^']);
  });
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
