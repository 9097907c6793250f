/** The CLI in-process, on paths that need no root: help, version, usage errors and their exit codes. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { commandName, leaves, rootReason } from '../../../src/cli/command.js';
import { COMMANDS, formatError } from '../../../src/cli/main.js';
import { NoCgroup2Error } from '../../../src/os/cgroup.js';
import { MissingToolError } from '../../../src/os/process.js';
import { offerSudo } from '../../../src/cli/sudo.js';
import { UsageError } from '../../../src/errors.js';
import { runMain } from '../../run-main.js';

const run = (...args: string[]) => runMain(args);

const pkg = JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version: string };

describe('lowport CLI without root', () => {
  it('explains usage and exits 2 when run with no arguments', async () => {
    const r = await run();
    assert.equal(r.code, 2);
    for (const c of COMMANDS)
      assert.ok(new RegExp(`\\n  ${commandName(c)} +`).test(r.stdout) && r.stdout.includes(c.summary), commandName(c));
  });

  it('prints help and exits 0 for --help, also after global options', async () => {
    assert.equal((await run('--help')).code, 0);
    const r = await run('--policy', '/tmp/x', '--help');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: lowport COMMAND/);
  });

  it('prints the package version for --version', async () => {
    const r = await run('--version');
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `${pkg.version}\n`);
  });

  it('gives every command its own help, with the global options', async () => {
    for (const c of leaves(COMMANDS)) {
      const r = await run(...c.path, '--help');
      assert.equal(r.code, 0, commandName(c));
      assert.match(r.stdout, new RegExp(`Usage: lowport ${commandName(c)}`));
      assert.match(r.stdout, /--pin-dir DIR/);
    }
  });

  it('exits 2 on an unknown command, naming it', async () => {
    const r = await run('frobnicate');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
  });

  it('exits 2 on an unknown option, pointing at the command help', async () => {
    const r = await run('grant', '80', '--usr', 'alice');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /lowport grant has no option '--usr'/);
    assert.match(r.stderr, /lowport grant --help/);
  });

  it('exits 2 on a bad port spec, with a caret under the culprit, before asking for root', async () => {
    const r = await run('grant', '80,70000', '--user', 'alice');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /port 70000 is out of range/);
    assert.equal(r.stderr, 'command line:1:4-8: error: bad ports: port 70000 is out of range: ports are 1-65535\n80,70000\n   ^~~~~\n');
  });

  it('exits 2 when more than one of --user, --group and --everyone is given', async () => {
    const r = await run('grant', '80', '--user', 'alice', '--group', 'dev');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /only one of --user, --group and --everyone/);
  });

  it('exits 2 when reserve is not told who for', async () => {
    const r = await run('reserve', '80');
    assert.equal(r.code, 2);
    assert.match(r.stderr, /reserve needs --user U or --group G/);
  });

  it('words the facts os/ reports bare: a missing tool gets its install command, here and nowhere below', () => {
    const text = formatError(new MissingToolError(['setpriv', 'setsid'], 'util-linux', 'they drop the privileges of what lowport starts'));
    assert.equal(
      text,
      'lowport: error: setpriv(1) and setsid(1) are not installed: they drop the privileges of what lowport starts\nInstall util-linux (apt-get install util-linux).\n',
    );
    // os/ itself carries no advice.
    assert.equal(new MissingToolError(['getent'], 'libc-bin', 'x').hint, undefined);
    assert.equal(new NoCgroup2Error().hint, undefined);
  });
});

describe('why a command needs root', () => {
  const byName = (name: string) => {
    const c = leaves(COMMANDS).find((l) => commandName(l) === name);
    assert.ok(c !== undefined, name);
    return c;
  };

  it('says what a read-only command reads, not that it changes what the kernel lets programs bind', () => {
    assert.match(rootReason(byName('list')), /^lowport list needs root: it reads lowport's BPF map, pinned in \/sys\/fs\/bpf/);
    assert.match(rootReason(byName('forward list')), /^lowport forward list needs root: it reads lowport's nftables table/);
    for (const name of ['list', 'forward list']) assert.doesNotMatch(rootReason(byName(name)), /changes/);
    assert.equal(rootReason(byName('grant')), 'lowport grant needs root: it changes what the kernel lets programs bind.');
  });

  it('gives the reason in the offer to run through sudo', async () => {
    let stderr = '';
    const io = {
      stdout: () => undefined,
      stderr: (t: string) => (stderr += t),
      interactive: false,
      env: {},
      confirm: () => Promise.resolve(false),
    };
    assert.equal(await offerSudo(io, rootReason(byName('forward list')), ['forward', 'list']), 1);
    assert.match(stderr, /^lowport: error: lowport forward list needs root: it reads lowport's nftables table/);
  });
});

describe('lowport run without --user', () => {
  it('asks root for --user alone, never for --group or --everyone, which run refuses', async () => {
    const run = leaves(COMMANDS).find((c) => commandName(c) === 'run');
    assert.ok(run !== undefined);
    const implementation = await run.load();
    const base = {
      io: { stdout: () => undefined, stderr: () => undefined, interactive: false, env: {}, confirm: () => Promise.resolve(false) },
      callerName: 'root',
      note: () => undefined,
    };
    assert.throws(
      () => implementation.start(['--port', '80', '--', 'true'], base),
      (e: unknown) =>
        e instanceof UsageError &&
        e.message === 'lowport run needs --user U: the user COMMAND runs as' &&
        !/--group|--everyone/.test(`${e.message} ${e.hint ?? ''}`),
    );
  });

  it('says what to give instead of --group, in its own words', async () => {
    const r = await runMain(['run', '--group', 'dns', '--port', '53', '--', 'true']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^lowport: error: lowport run has no option '--group': it runs COMMAND as one user, given with --user U/);
    assert.doesNotMatch(r.stderr, /To specify|"--group\n/);
  });
});
