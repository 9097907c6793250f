/** install's unit text, the unit generator and the authbind importer, without root. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { convertAuthbind, formatImport, type AuthbindTree } from '../../src/integrate/authbind.js';
import { bootUnit, systemdQuote } from '../../src/integrate/install.js';
import { checkUnitName, serviceUnits } from '../../src/integrate/unit.js';
import { formatRule } from '../../src/policy/print.js';

const names = { user: (uid: number) => ({ 1000: 'alice', 33: 'www-data' })[uid] ?? String(uid), group: (gid: number) => ({ 50: 'web' })[gid] ?? String(gid) };
const file = (name: string, uid: number, gid: number, mode: number) => ({ name, uid, gid, mode, isFile: true });

describe('systemd quoting and the boot unit', () => {
  it('quotes ExecStart words as systemd.syntax(7) reads them', () => {
    assert.equal(systemdQuote('/usr/bin/node'), '/usr/bin/node');
    assert.equal(systemdQuote('/opt/my app/main.js'), '"/opt/my app/main.js"');
    assert.equal(systemdQuote('100%'), '"100%%"');
    assert.equal(systemdQuote('$HOME'), '"$$HOME"');
    assert.equal(systemdQuote('say "hi"'), '"say \\"hi\\""');
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
    for (const line of ['User=www-data', 'ExecStart=/usr/bin/caddy run', 'AmbientCapabilities=CAP_NET_BIND_SERVICE', 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE', 'NoNewPrivileges=yes', 'SocketBindAllow=tcp:80', 'SocketBindAllow=tcp:8000-8002', 'SocketBindAllow=udp:8000-8002', 'SocketBindDeny=any']) {
      assert.match(text, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), line);
    }
    // SocketBindDeny=any must come after the allows it narrows.
    assert.ok(text.indexOf('SocketBindDeny=any') > text.lastIndexOf('SocketBindAllow='));
  });

  it('with --socket, lets the socket unit bind every port and gives the service no capability', () => {
    const [socket, service] = serviceUnits({ name: 'web', user: 'www-data', ports, command: ['/usr/bin/node', 'server.js'], socket: true });
    assert.equal(socket?.file, 'web.socket');
    assert.deepEqual(socket?.text.match(/^Listen\w+=\d+$/gm), ['ListenStream=80', 'ListenStream=8000', 'ListenStream=8001', 'ListenStream=8002', 'ListenDatagram=8000', 'ListenDatagram=8001', 'ListenDatagram=8002']);
    assert.equal(service?.file, 'web.service');
    assert.match(service?.text ?? '', /^Requires=web.socket$/m);
    assert.match(service?.text ?? '', /^CapabilityBoundingSet=$/m);
    assert.doesNotMatch(service?.text ?? '', /CAP_NET_BIND_SERVICE/);
  });

  it('refuses unit names systemd would not take, or that already end in .service', () => {
    assert.equal(checkUnitName('web-1@x'), undefined);
    assert.match(checkUnitName('web.service') ?? '', /not a good unit name/);
    assert.match(checkUnitName('../etc') ?? '', /not a good unit name/);
  });
});

describe('import-authbind', () => {
  it('turns byport files into grants for whoever may execute them', () => {
    const tree: AuthbindTree = {
      byport: [file('80', 1000, 1000, 0o500), file('443', 0, 50, 0o510), file('25', 0, 0, 0o755), file('22', 0, 0, 0o500)],
      byaddr: [],
      byuid: [],
    };
    const r = convertAuthbind(tree, names);
    assert.deepEqual(r.rules.map(formatRule), ['grant 80 user alice', 'grant 443 group web', 'grant 25 everyone']);
    assert.match(r.notes.join('\n'), /byport\/22: executable by no one but root/);
  });

  it('turns byaddr files into address grants, in both spellings, and skips what is not one', () => {
    const tree: AuthbindTree = { byport: [], byaddr: [file('127.0.0.1,80', 1000, 1000, 0o100), file('10.0.0.1:8080', 33, 33, 0o100), file('2001:db8:0:0:0:0:0:1,443', 1000, 1000, 0o100), file('junk', 0, 0, 0o755)], byuid: [] };
    const r = convertAuthbind(tree, names);
    assert.deepEqual(r.rules.map(formatRule), ['grant 80 user alice addr 127.0.0.1', 'grant 8080 user www-data addr 10.0.0.1', 'grant 443 user alice addr 2001:db8::1']);
    assert.match(r.notes.join('\n'), /byaddr\/junk: not an ADDR,PORT file/);
  });

  it('turns byuid lines into grants, and names the ranges and networks it cannot express', () => {
    const text = ['# web', '0.0.0.0/0:80,81', '127.0.0.1,8000-8010', '::1/128,443', '10.0.0.0/8,25', '10.0.0.1-10.0.0.9,53', 'nonsense'].join('\n');
    const r = convertAuthbind({ byport: [], byaddr: [], byuid: [{ name: '1000', text }] }, names);
    assert.deepEqual(r.rules.map(formatRule), ['grant 80-81 user alice', 'grant 8000-8010 user alice addr 127.0.0.1', 'grant 443 user alice addr ::1']);
    const notes = r.notes.join('\n');
    assert.match(notes, /line 2 \(0\.0\.0\.0\/0:80,81\): covers every IPv4 address; the lowport rule covers every address of both families/);
    assert.match(notes, /line 5 .*a network \(\/8\) cannot be expressed/);
    assert.match(notes, /line 6 .*an address range \(ADDRMIN-ADDRMAX\) cannot be expressed/);
    assert.match(notes, /line 7 \(nonsense\): not a line authbind understands/);
  });

  it('prints the rules as policy text with the notes as comments', () => {
    const text = formatImport({ rules: [{ action: 'grant', ports: [{ from: 80, to: 80, protocols: ['tcp', 'udp'] }], principal: { kind: 'user', name: 'alice' }, addrs: [] }], notes: ['x cannot be expressed'] }, '/etc/authbind');
    assert.equal(text, '# imported from /etc/authbind by lowport import-authbind\ngrant 80 user alice\n#\n# not imported as is:\n#   x cannot be expressed\n');
  });
});
