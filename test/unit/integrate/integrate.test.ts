/** install's unit text, the unit generator and the authbind importer, without root. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { convertAuthbind, formatImport, type AuthbindTree } from '../../../src/integrate/authbind.js';
import { bootUnit, systemdCommandLine, systemdPath, systemdQuote } from '../../../src/integrate/install.js';
import { checkServiceUser, checkUnitName, serviceUnits } from '../../../src/integrate/unit.js';
import { formatRule } from '../../../src/policy/print.js';

const names = {
  user: (uid: number): string | undefined => ({ 1000: 'alice', 1001: 'bob', 33: 'www-data', 666: 'evil\ngrant 1-1023 everyone' })[uid],
  group: (gid: number): string | undefined => ({ 50: 'web' })[gid],
  // alice is in web; bob is not.
  inGroup: (uid: number, gid: number) => gid === 50 && uid === 1000,
};
const file = (name: string, uid: number, gid: number, mode: number) => ({ name, uid, gid, mode, isFile: true });

describe('systemd quoting and the boot unit', () => {
  it('quotes ExecStart words as systemd.syntax(7) reads them', () => {
    assert.equal(systemdQuote('/usr/bin/node'), '/usr/bin/node');
    assert.equal(systemdQuote('/opt/my app/main.js'), '"/opt/my app/main.js"');
    assert.equal(systemdQuote('100%'), '"100%%"');
    assert.equal(systemdQuote('$HOME'), '"$$HOME"');
    assert.equal(systemdQuote('say "hi"'), '"say \\"hi\\""');
  });

  it('quotes hostile words so no line, specifier, variable or command separator gets through', () => {
    assert.equal(systemdQuote('a\nExecStartPre=+/bin/sh'), '"a\\x0aExecStartPre=+/bin/sh"');
    assert.equal(systemdQuote('%n'), '"%%n"');
    assert.equal(systemdQuote('${HOME}'), '"$${HOME}"');
    assert.equal(systemdQuote("it's"), '"it\'s"');
    assert.equal(systemdQuote('back\\slash\\'), '"back\\\\slash\\\\"');
    assert.equal(systemdQuote('\x1b[2J\x7f\x9b'), '"\\x1b[2J\\x7f\\u009b"');
    assert.equal(systemdQuote('rtl\u202e'), '"rtl\\u202e"');
    assert.equal(systemdQuote(';'), '\\;');
    assert.equal(systemdQuote('+'), '+');
    assert.throws(() => systemdQuote('nul\0'), /NUL/);
    const hostile = ['a\nb', '\r', '\x1b', '\u2028', 'x"\n[Service]\nUser=root'];
    // eslint-disable-next-line no-control-regex -- the test is about control characters
    for (const w of hostile) assert.doesNotMatch(systemdQuote(w), /[\n\r\x1b\u2028]/, JSON.stringify(w));
  });

  it('refuses a command line whose first word is not an absolute path, so no prefix such as + reaches systemd', () => {
    for (const first of ['+/bin/sh', '-/bin/sh', '@/bin/sh', ':/bin/sh', '!/bin/sh', '!!/bin/sh', 'sh', './sh', '']) {
      assert.throws(() => systemdCommandLine([first, 'x']), /not an absolute path/, first);
    }
    assert.equal(systemdCommandLine(['/usr/bin/env', '+x']), '/usr/bin/env +x');
  });

  it('escapes specifiers in ConditionPathExists= and refuses paths that would change the condition', () => {
    assert.match(bootUnit(['/n', '/m.js'], { policy: '/srv/pol%n' }), /^ConditionPathExists=\/srv\/pol%%n$/m);
    assert.equal(systemdPath('/a%%b'), '/a%%%%b');
    for (const bad of ['relative', '!/etc/x', '|/etc/x', '/etc/x\nExecStartPre=+/bin/sh', '/etc/x ']) {
      assert.throws(() => systemdPath(bad), /cannot go into a systemd unit/, JSON.stringify(bad));
    }
    assert.throws(() => bootUnit(['/n', '/m.js'], { policy: '/etc/x\nExecStartPre=+/bin/sh' }), /cannot go into a systemd unit/);
  });

  it('applies the policy once at boot, before the network, and turns lowport off when stopped', () => {
    const unit = bootUnit(['/usr/bin/node', '/opt/lowport/dist/src/cli/main.js'], {});
    assert.match(unit, /^Type=oneshot$/m);
    assert.match(unit, /^RemainAfterExit=yes$/m);
    assert.match(unit, /^ExecStart=\/usr\/bin\/node \/opt\/lowport\/dist\/src\/cli\/main.js apply$/m);
    assert.match(unit, /^ExecStop=\/usr\/bin\/node \/opt\/lowport\/dist\/src\/cli\/main.js off$/m);
    assert.match(unit, /^Before=network-pre.target/m);
    assert.match(unit, /^After=local-fs.target nss-user-lookup.target$/m);
    assert.match(unit, /^WantedBy=sysinit.target$/m);
    assert.match(unit, /^ConditionPathExists=\/etc\/lowport\/policy$/m);
  });

  it('passes a non-default policy, cgroup and pin directory to every command', () => {
    const unit = bootUnit(['/n', '/m.js'], { policy: '/srv/policy', pinDir: '/sys/fs/bpf/x' });
    assert.match(unit, /^ExecStart=\/n \/m.js apply --policy \/srv\/policy --pin-dir \/sys\/fs\/bpf\/x$/m);
    assert.match(unit, /^ConditionPathExists=\/srv\/policy$/m);
  });

  it('writes relative paths as absolute ones, as the condition does: at boot the unit runs from /', () => {
    const unit = bootUnit(['/n', '/m.js'], { policy: 'mypolicy', cgroup: 'cg', pinDir: 'pins' });
    const cwd = process.cwd();
    assert.ok(unit.includes(`ExecStart=/n /m.js apply --policy ${cwd}/mypolicy --cgroup ${cwd}/cg --pin-dir ${cwd}/pins\n`), unit);
    assert.ok(unit.includes(`ConditionPathExists=${cwd}/mypolicy\n`), unit);
  });
});

describe('lowport unit', () => {
  const ports = [
    { from: 80, to: 80, protocols: ['tcp' as const] },
    { from: 8000, to: 8002, protocols: ['tcp' as const, 'udp' as const] },
  ];

  it('gives a plain service one capability, ambient and bounding, no new privileges, and only its ports', () => {
    const [unit, ...more] = serviceUnits({ name: 'web', user: 'www-data', ports, command: ['/usr/bin/caddy', 'run'], socket: false });
    assert.equal(more.length, 0);
    assert.equal(unit?.file, 'web.service');
    const text = unit?.text ?? '';
    for (const line of [
      'User=www-data',
      'ExecStart=/usr/bin/caddy run',
      'AmbientCapabilities=CAP_NET_BIND_SERVICE',
      'CapabilityBoundingSet=CAP_NET_BIND_SERVICE',
      'NoNewPrivileges=yes',
      'SocketBindAllow=tcp:80',
      'SocketBindAllow=tcp:8000-8002',
      'SocketBindAllow=udp:8000-8002',
      'SocketBindDeny=any',
    ]) {
      assert.match(text, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), line);
    }
    // SocketBindDeny=any must come after the allows it narrows.
    assert.ok(text.indexOf('SocketBindDeny=any') > text.lastIndexOf('SocketBindAllow='));
  });

  it('with --socket, lets the socket unit bind every port and gives the service no capability', () => {
    const [socket, service] = serviceUnits({ name: 'web', user: 'www-data', ports, command: ['/usr/bin/node', 'server.js'], socket: true });
    assert.equal(socket?.file, 'web.socket');
    assert.deepEqual(socket?.text.match(/^Listen\w+=\d+$/gm), [
      'ListenStream=80',
      'ListenStream=8000',
      'ListenStream=8001',
      'ListenStream=8002',
      'ListenDatagram=8000',
      'ListenDatagram=8001',
      'ListenDatagram=8002',
    ]);
    assert.equal(service?.file, 'web.service');
    assert.match(service?.text ?? '', /^Requires=web.socket$/m);
    assert.match(service?.text ?? '', /^CapabilityBoundingSet=$/m);
    assert.doesNotMatch(service?.text ?? '', /CAP_NET_BIND_SERVICE/);
  });

  it('refuses root, a name that is not plain, and a newline that would add a directive, as --user', () => {
    for (const bad of ['root', '0', '00', 'nobody\nExecStartPre=+/bin/sh', 'a b', '', '4294967295', 'x\x1b']) {
      assert.notEqual(checkServiceUser(bad), undefined, JSON.stringify(bad));
      assert.throws(
        () => serviceUnits({ name: 'web', user: bad, ports, command: ['/bin/true'], socket: false }),
        /--user/,
        JSON.stringify(bad),
      );
    }
    for (const good of ['www-data', 'nobody', '1000', 'svc$']) assert.equal(checkServiceUser(good), undefined, good);
  });

  it('refuses a command with a systemd prefix, and writes hostile arguments so they stay single words', () => {
    assert.throws(() => serviceUnits({ name: 'web', user: 'nobody', ports, command: ['+/bin/sh'], socket: false }), /absolute path/);
    const [unit] = serviceUnits({
      name: 'web',
      user: 'nobody',
      ports,
      command: ['/bin/x', 'a\nExecStartPre=+/bin/sh -c id', '%n', '$HOME'],
      socket: false,
    });
    const text = unit?.text ?? '';
    assert.doesNotMatch(text, /^ExecStartPre/m);
    assert.match(text, /^ExecStart=\/bin\/x "a\\x0aExecStartPre=\+\/bin\/sh -c id" "%%n" "\$\$HOME"$/m);
  });

  it('refuses unit names systemd would not take, or that already end in .service', () => {
    assert.equal(checkUnitName('web-1@x'), undefined);
    assert.match(checkUnitName('web.service') ?? '', /not a good unit name/);
    assert.match(checkUnitName('../etc') ?? '', /not a good unit name/);
  });
});

describe('import-authbind', () => {
  const tree = (t: Partial<AuthbindTree>): AuthbindTree => ({ byport: [], byaddr: [], byuid: [], ...t });
  const rulesOf = (t: Partial<AuthbindTree>) => convertAuthbind(tree(t), names).rules.map(formatRule);

  it('turns byport files into grants for whoever may execute them', () => {
    const t = tree({
      byport: [file('80', 1000, 1000, 0o500), file('443', 0, 50, 0o510), file('25', 0, 0, 0o755), file('22', 0, 0, 0o500)],
    });
    const r = convertAuthbind(t, names);
    assert.deepEqual(r.rules.map(formatRule), ['grant 80 user alice', 'grant 443 group web', 'grant 25 everyone']);
    assert.match(r.notes.join('\n'), /byport\/22: executable by no one but root/);
  });

  it('follows access(2): the owner by the owner bit only, group members by the group bit only, and never grants more', () => {
    // 0705 root:web: everyone but web's members (root binds anyway). Not expressible: nothing.
    assert.deepEqual(rulesOf({ byport: [file('80', 0, 50, 0o705)] }), []);
    assert.match(
      convertAuthbind(tree({ byport: [file('80', 0, 50, 0o705)] }), names).notes.join(),
      /everyone but the other members of group web/,
    );
    // 0071 alice:web: everyone but alice.
    assert.deepEqual(rulesOf({ byport: [file('81', 1000, 50, 0o071)] }), []);
    // 0701 alice:web: everyone but web's other members.
    assert.deepEqual(rulesOf({ byport: [file('82', 1000, 50, 0o701)] }), []);
    // 0711: everyone.
    assert.deepEqual(rulesOf({ byport: [file('83', 1000, 50, 0o711)] }), ['grant 83 everyone']);
    // 0010 alice:web with alice in web: the group but not its owner-member.
    assert.deepEqual(rulesOf({ byport: [file('84', 1000, 50, 0o010)] }), []);
    // 0010 bob:web, bob not in web: the group is exactly who may.
    assert.deepEqual(rulesOf({ byport: [file('85', 1001, 50, 0o010)] }), ['grant 85 group web']);
    // 0110 alice:web: alice, and the group.
    assert.deepEqual(rulesOf({ byport: [file('86', 1000, 50, 0o110)] }), ['grant 86 user alice', 'grant 86 group web']);
    // 0100 root: root only.
    assert.deepEqual(rulesOf({ byport: [file('87', 0, 0, 0o100)] }), []);
    // An ACL decides too, and lowport does not read it: skipped.
    assert.deepEqual(rulesOf({ byport: [{ ...file('88', 1000, 50, 0o110), acl: true }] }), []);
  });

  it('reads ports 512-1023 only under names with a leading !, and nothing for ports authbind plays no part in', () => {
    const r = convertAuthbind(
      tree({
        byport: [
          file('600', 1000, 1000, 0o100),
          file('!601', 1000, 1000, 0o100),
          file('!80', 1000, 1000, 0o100),
          file('2000', 1000, 1000, 0o100),
          file('080', 1000, 1000, 0o100),
        ],
      }),
      names,
    );
    assert.deepEqual(r.rules.map(formatRule), ['grant 601 user alice']);
    const notes = r.notes.join('\n');
    assert.match(notes, /byport\/600: authbind reads the name with a leading '!'/);
    assert.match(notes, /byport\/!80: authbind reads names with a leading '!' only for ports 512-1023/);
    assert.match(notes, /byport\/2000: authbind plays no part/);
    assert.match(notes, /byport\/080: not a port number as authbind writes it/);
  });

  it('turns byaddr files into address grants, in both spellings, and skips what authbind never reads', () => {
    const t = tree({
      byaddr: [
        file('127.0.0.1,80', 1000, 1000, 0o100),
        file('10.0.0.1:81', 33, 33, 0o100),
        file('2001:db8:0:0:0:0:0:1,443', 1000, 1000, 0o100),
        file('::1,82', 1000, 1000, 0o100),
        file('::1:83', 1000, 1000, 0o100),
        file('2001:DB8::1,84', 1000, 1000, 0o100),
        file('::ffff:127.0.0.1,85', 1000, 1000, 0o100),
        file('junk', 0, 0, 0o755),
      ],
    });
    const r = convertAuthbind(t, names);
    assert.deepEqual(r.rules.map(formatRule), [
      'grant 80 user alice addr 127.0.0.1',
      'grant 81 user www-data addr 10.0.0.1',
      'grant 443 user alice addr 2001:db8::1',
      'grant 82 user alice addr ::1',
    ]);
    const notes = r.notes.join('\n');
    assert.match(notes, /byaddr\/::1:83: authbind reads ADDR:PORT names for IPv4 only/);
    assert.match(
      notes,
      /byaddr\/2001:DB8::1,84: authbind looks for this address as 2001:db8::1 or 2001:db8:0:0:0:0:0:1, so it never reads this name/,
    );
    assert.match(notes, /byaddr\/::ffff:127.0.0.1,85: .*never reads this name/);
    assert.match(notes, /byaddr\/junk: not an ADDR,PORT name/);
  });

  it('lets the first file that exists decide, as authbind does: byport, then byaddr (comma, then colon), then byuid', () => {
    const r = convertAuthbind(
      tree({
        byport: [file('80', 1000, 1000, 0o100)],
        byaddr: [file('127.0.0.1,80', 1001, 1001, 0o100), file('127.0.0.1,81', 1000, 1000, 0o100), file('127.0.0.1:81', 1001, 1001, 0o100)],
        byuid: [{ name: '1001', text: '127.0.0.1,79-82\n::/0,70-90\n0.0.0.0/0,70-90\n' }],
      }),
      names,
    );
    assert.deepEqual(r.rules.map(formatRule), [
      'grant 80 user alice',
      'grant 81 user alice addr 127.0.0.1',
      'grant 79,82 user bob addr 127.0.0.1',
      'grant 70-79,82-90 user bob',
    ]);
    const notes = r.notes.join('\n');
    assert.match(notes, /byaddr\/127\.0\.0\.1,80: byport\/80 exists and decides port 80 first/);
    assert.match(notes, /byaddr\/127\.0\.0\.1:81: byaddr\/127\.0\.0\.1,81 exists and is read first/);
    assert.match(notes, /line 1 \(127\.0\.0\.1,79-82\): ports 80-81: a byport or byaddr file decides first/);
  });

  it('turns byuid lines into grants, and names the ranges and networks it cannot express', () => {
    const text = [
      '# web',
      '0.0.0.0/0:80,81',
      '127.0.0.1,8000-8010',
      '127.0.0.1,500-600',
      '::1/128,443',
      '10.0.0.0/8,25',
      '10.0.0.1-10.0.0.9,53',
      'nonsense',
    ].join('\n');
    const r = convertAuthbind(
      tree({
        byuid: [
          { name: '1000', text },
          { name: '!1000', text: '::1,1-1023' },
        ],
      }),
      names,
    );
    assert.deepEqual(r.rules.map(formatRule), [
      'grant 500-511 user alice addr 127.0.0.1',
      'grant 443 user alice addr ::1',
      'grant 512-1023 user alice addr ::1',
    ]);
    const notes = r.notes.join('\n');
    assert.match(
      notes,
      /byuid\/1000: ports 80-81 on every IPv4 address but not every IPv6 one: lowport cannot grant every address of one family; skipped/,
    );
    assert.match(notes, /line 3 \(127\.0\.0\.1,8000-8010\): this file is read only for ports 1-511/);
    assert.match(notes, /line 6 .*a network \(\/8\) cannot be expressed/);
    assert.match(notes, /line 7 .*an address range \(ADDRMIN-ADDRMAX\) cannot be expressed/);
    assert.match(notes, /line 8 \(nonsense\): not a line authbind understands/);
  });

  it('writes names that are not plain as ids, so no name adds a line to the policy', () => {
    assert.deepEqual(rulesOf({ byport: [file('80', 666, 666, 0o100)] }), ['grant 80 user 666']);
  });

  it('cannot be made to print a live policy line by a file name or a file line', () => {
    const hostile = '80\ngrant 1-1023 everyone\n#';
    const r = convertAuthbind(
      tree({
        byport: [file(hostile, 1000, 1000, 0o100)],
        byaddr: [file(`127.0.0.1,80\ngrant 1-1023 everyone`, 0, 0, 0o755)],
        byuid: [{ name: `1000\ngrant 1-1023 everyone`, text: '' }],
      }),
      names,
    );
    const text = formatImport(r, '/etc/authbind\ngrant 1-1023 everyone');
    const live = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    assert.deepEqual(live, []);
    // eslint-disable-next-line no-control-regex -- the test is about control characters
    assert.doesNotMatch(text, /\x1b/);
  });

  it('prints the rules as policy text with the notes as comments', () => {
    const text = formatImport(
      {
        rules: [
          {
            action: 'grant',
            ports: [{ from: 80, to: 80, protocols: ['tcp', 'udp'] }],
            principal: { kind: 'user', name: 'alice' },
            addrs: [],
          },
        ],
        notes: ['x cannot be expressed'],
      },
      '/etc/authbind',
    );
    assert.equal(
      text,
      '# imported from /etc/authbind by lowport import-authbind\ngrant 80 user alice\n#\n# not imported as is:\n#   x cannot be expressed\n',
    );
  });
});
