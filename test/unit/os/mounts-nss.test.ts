import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { mountOf, parseMountInfo, type MountEntry } from '../../../src/os/mounts.js';
import { lookupGroups, lookupUsers, parseGroup, parsePasswd } from '../../../src/os/nss.js';

// Lines in the format of proc(5), /proc/[pid]/mountinfo:
// id parent major:minor root mount-point options [optional fields...] - fstype source super-options
const MOUNTINFO = [
  '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro',
  '23 22 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw',
  '24 23 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate',
  '25 23 0:23 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime - bpf bpf rw,mode=700',
  '26 22 0:24 / /mnt/my\\040disk rw,relatime shared:9 master:2 propagate_from:3 - ext4 /dev/disk\\040one rw',
  '27 22 0:25 / /srv\\011tab\\134x rw - tmpfs none rw',
  '',
].join('\n');

describe('parseMountInfo', () => {
  it('reads mount point, filesystem type and source of every line', () => {
    assert.deepEqual(parseMountInfo(MOUNTINFO), [
      { mountPoint: '/', fsType: 'ext4', source: '/dev/sda1' },
      { mountPoint: '/sys', fsType: 'sysfs', source: 'sysfs' },
      { mountPoint: '/sys/fs/cgroup', fsType: 'cgroup2', source: 'cgroup2' },
      { mountPoint: '/sys/fs/bpf', fsType: 'bpf', source: 'bpf' },
      { mountPoint: '/mnt/my disk', fsType: 'ext4', source: '/dev/disk one' },
      { mountPoint: '/srv\ttab\\x', fsType: 'tmpfs', source: 'none' },
    ]);
  });

  it('finds the type after the separator whether there are no, one or several optional fields', () => {
    const types = parseMountInfo(
      [
        '1 0 0:1 / /a rw - typeA srcA rw',
        '2 0 0:2 / /b rw shared:1 - typeB srcB rw',
        '3 0 0:3 / /c rw shared:1 master:4 unbindable - typeC srcC rw',
      ].join('\n'),
    ).map((m) => [m.mountPoint, m.fsType, m.source]);
    assert.deepEqual(types, [
      ['/a', 'typeA', 'srcA'],
      ['/b', 'typeB', 'srcB'],
      ['/c', 'typeC', 'srcC'],
    ]);
  });

  it('does not mistake a mount point named "-" for the separator', () => {
    assert.deepEqual(parseMountInfo('1 0 0:1 / - rw - ext4 /dev/x rw\n'), [{ mountPoint: '-', fsType: 'ext4', source: '/dev/x' }]);
  });

  it('turns octal escapes for space, tab, newline and backslash back into characters', () => {
    const [m] = parseMountInfo('1 0 0:1 / /a\\040b\\011c\\012d\\134e rw - fuse x\\040y rw\n');
    assert.equal(m?.mountPoint, '/a b\tc\nd\\e');
    assert.equal(m?.source, 'x y');
  });

  it('decodes escapes in one pass, so an escaped backslash before digits stays a backslash', () => {
    const [m] = parseMountInfo('1 0 0:1 / /odd\\134040name rw - tmpfs none rw\n');
    assert.equal(m?.mountPoint, '/odd\\040name');
  });

  it('skips blank lines and lines without a separator', () => {
    assert.deepEqual(parseMountInfo('\n   \n1 0 0:1 / /broken rw shared:1 ext4 /dev/x rw\n'), []);
    assert.deepEqual(parseMountInfo(''), []);
  });
});

describe('mountOf', () => {
  const mounts = parseMountInfo(MOUNTINFO);

  it('picks the longest mount point that holds the path', () => {
    assert.equal(mountOf('/sys/fs/bpf/lowport/outer', mounts)?.fsType, 'bpf');
    assert.equal(mountOf('/sys/fs/cgroup/system.slice', mounts)?.fsType, 'cgroup2');
    assert.equal(mountOf('/sys/kernel', mounts)?.fsType, 'sysfs');
    assert.equal(mountOf('/etc/lowport/policy', mounts)?.mountPoint, '/');
  });

  it('counts the mount point itself as inside, with or without a trailing slash', () => {
    assert.equal(mountOf('/sys/fs/bpf', mounts)?.fsType, 'bpf');
    assert.equal(mountOf('/sys/fs/bpf/', mounts)?.fsType, 'bpf');
    assert.equal(mountOf('/', mounts)?.mountPoint, '/');
  });

  it('does not take a sibling with a common prefix for a parent', () => {
    assert.equal(mountOf('/sys/fs/bpfx/y', mounts)?.mountPoint, '/sys');
    assert.equal(mountOf('/system', mounts)?.mountPoint, '/');
  });

  it('resolves . and .. before matching', () => {
    assert.equal(mountOf('/sys/fs/cgroup/../bpf/./x', mounts)?.fsType, 'bpf');
    assert.equal(mountOf('/sys/fs/bpf/..', mounts)?.mountPoint, '/sys');
  });

  it('matches unescaped mount points with spaces', () => {
    assert.equal(mountOf('/mnt/my disk/file', mounts)?.source, '/dev/disk one');
  });

  it('takes the last of mounts stacked on one point, the one that is visible', () => {
    const stacked: MountEntry[] = [
      { mountPoint: '/', fsType: 'ext4', source: '/dev/sda1' },
      { mountPoint: '/sys/fs/bpf', fsType: 'tmpfs', source: 'under' },
      { mountPoint: '/sys/fs/bpf', fsType: 'bpf', source: 'over' },
    ];
    assert.equal(mountOf('/sys/fs/bpf/lowport', stacked)?.source, 'over');
  });

  it('finds nothing when no mount holds the path', () => {
    assert.equal(mountOf('/home/x', [{ mountPoint: '/sys', fsType: 'sysfs', source: 'sysfs' }]), undefined);
    assert.equal(mountOf('/home/x', []), undefined);
  });
});

describe('parsePasswd', () => {
  it('reads name, uid, gid, home and shell from getent passwd lines', () => {
    const text =
      'root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1001:Alice Liddell,,,:/home/alice:/usr/bin/zsh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';
    assert.deepEqual(parsePasswd(text), [
      { name: 'root', uid: 0, gid: 0, home: '/root', shell: '/bin/bash' },
      { name: 'alice', uid: 1000, gid: 1001, home: '/home/alice', shell: '/usr/bin/zsh' },
      { name: 'nobody', uid: 65534, gid: 65534, home: '/nonexistent', shell: '/usr/sbin/nologin' },
    ]);
  });

  it('keeps an empty shell and home as empty strings', () => {
    assert.deepEqual(parsePasswd('svc:*:990:990:::'), [{ name: 'svc', uid: 990, gid: 990, home: '', shell: '' }]);
  });

  it('reads nothing from empty output', () => {
    assert.deepEqual(parsePasswd(''), []);
    assert.deepEqual(parsePasswd('\n'), []);
  });
});

describe('parseGroup', () => {
  it('reads name, gid and the comma-separated members from getent group lines', () => {
    const text = 'sudo:x:27:alice,bob\ndns:x:53:named\nnogroup:x:65534:\n';
    assert.deepEqual(parseGroup(text), [
      { name: 'sudo', gid: 27, members: ['alice', 'bob'] },
      { name: 'dns', gid: 53, members: ['named'] },
      { name: 'nogroup', gid: 65534, members: [] },
    ]);
  });

  it('gives a group with no member field no members', () => {
    assert.deepEqual(parseGroup('odd:x:7'), [{ name: 'odd', gid: 7, members: [] }]);
  });

  it('drops empty member names left by stray commas', () => {
    assert.deepEqual(parseGroup('g:x:10:,a,,b,'), [{ name: 'g', gid: 10, members: ['a', 'b'] }]);
  });
});

describe('lookupUsers and lookupGroups: glibc in this process for a few keys, getent for more', () => {
  // Up to 8 keys are answered by getpwnam_r/getpwuid_r (getgr*) through koffi;
  // 9 or more by one getent call. Both must give the same entries, for names
  // and for numbers, and both must leave out what does not exist.
  const passwd = parsePasswd(execFileSync('getent', ['passwd'], { encoding: 'utf8' }));
  const group = parseGroup(execFileSync('getent', ['group'], { encoding: 'utf8' }));
  const missing = ['lowport-no-such-name', '4000000123'];

  it('finds every user of the passwd database alike, by name and by uid', () => {
    const keys = [...passwd.slice(0, 12).flatMap((e) => [e.name, String(e.uid)]), ...missing];
    const many = lookupUsers(keys); // more than 8 keys: getent
    assert.ok(many.size >= 2);
    for (const key of keys) {
      const one = lookupUsers([key]).get(key); // one key: in this process
      assert.deepEqual(one, many.get(key), key);
    }
    for (const key of missing) assert.equal(lookupUsers([key]).get(key), undefined);
  });

  it('finds every group alike, members included', () => {
    const keys = [...group.slice(0, 12).flatMap((e) => [e.name, String(e.gid)]), ...missing];
    const many = lookupGroups(keys);
    assert.ok(many.size >= 2);
    for (const key of keys) assert.deepEqual(lookupGroups([key]).get(key), many.get(key), key);
    const withMembers = group.find((g) => g.members.length > 0);
    if (withMembers !== undefined) assert.deepEqual(lookupGroups([withMembers.name]).get(withMembers.name)?.members, withMembers.members);
  });
});
