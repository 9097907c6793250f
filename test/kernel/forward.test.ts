/**
 * Kernel tests (root) for `lowport forward`, against nginx from Debian as the
 * backend, its access log recording $remote_addr and $proxy_protocol_addr.
 *
 * Every scenario runs in a fresh private network namespace (`unshare --net`,
 * lo up): lowport's nft table, the other table the tests add, the low ports
 * and the servers exist only there, and vanish with it. The machine's own
 * ruleset is never read or written. lowport runs from a copy of the package
 * that any user can read, since the userspace forwarder drops root. Each
 * scenario also has a private mount namespace with a tmpfs copy of /etc over
 * /etc, so the forwarder's own system user, created on first use, never
 * reaches the machine's /etc/passwd.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { copyFixture, kernelSkipReason, PackageCopy, Sandbox } from './sandbox.js';

const skip = kernelSkipReason({ nft: 'nftables', nginx: 'nginx-light', curl: 'curl', ss: 'iproute2', pgrep: 'procps', ps: 'procps' });

describe('lowport forward', { skip }, () => {
  let box: Sandbox;
  let pkg: PackageCopy;
  before(() => {
    box = new Sandbox('forward');
    pkg = new PackageCopy();
    copyFixture('forward-helper', box.dir);
    writeFileSync(join(box.dir, 'index.html'), 'hello from nginx\n', { mode: 0o644 });
  });
  after(async () => {
    await box?.dispose();
    pkg?.dispose();
  });

  /**
   * Runs a bash script as root in a fresh network namespace, with a private
   * copy of /etc (a tmpfs in a private mount namespace). $LOWPORT is the
   * CLI, $H the helper, $G the sandbox's options; `nginx_start` serves on 8080
   * (plain) and 8081 (PROXY protocol), logging to $D/access-$$.log.
   *
   * The scripts wait for conditions, never for a fixed time, since a slow or
   * emulated machine takes seconds to start node. `waitport N`: something
   * listens on N (for a --userspace forward that is root's socket, whose
   * backlog queues connections before the forwarder even runs); `waitready
   * N`: the userspace forwarder of port N said it serves (its stderr must go
   * to $D/fwd.log); `waitrule N`: the redirect of N is in nft; `waitudp N
   * COUNT`: COUNT UDP sockets on N; `waitclosed N`: nothing listens on N;
   * `waitlog COUNT REGEX`: $D/fwd.log has COUNT lines that match. Each gives
   * up after a generous deadline and says what never came.
   */
  function inNetns(script: string, timeout = 300_000): { status: number | null; out: string } {
    const file = join(box.dir, 'script.sh');
    const d = box.dir;
    writeFileSync(
      file,
      `set -u
ip link set lo up
D=${d}
mkdir $D/etc-$$ && mount -t tmpfs -o mode=755 tmpfs $D/etc-$$ && cp -a /etc/. $D/etc-$$/ && mount --bind $D/etc-$$ /etc || { echo "no private /etc"; exit 1; }
LOWPORT="${process.execPath} ${pkg.cli}"
H="${process.execPath} $D/forward-helper.mjs"
G="${box.args.join(' ')}"
LOG=$D/access-$$.log
rm -f $D/fwd.log $D/slow*.out $D/slow*.err
cleanup() { kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf $LOG $D/nginx-$$.conf $D/tmp-$$; }
trap cleanup EXIT
nginx_start() {
  cat > $D/nginx-$$.conf <<EOF
daemon off; worker_processes 1; pid $D/nginx-$$.pid; error_log stderr;
events {}
http {
  log_format fw '\\$server_port \\$remote_addr \\$proxy_protocol_addr \\$status';
  access_log $LOG fw;
  client_body_temp_path $D/tmp-$$; proxy_temp_path $D/tmp-$$; fastcgi_temp_path $D/tmp-$$; uwsgi_temp_path $D/tmp-$$; scgi_temp_path $D/tmp-$$;
  server { listen 8080; listen [::]:8080; listen 8081 proxy_protocol; listen [::]:8081 proxy_protocol; root $D; }
}
EOF
  nginx -c $D/nginx-$$.conf & waitport 8080
}
waitfor() {
  local limit=$1 what=$2; local end=$((SECONDS + limit)); shift 2
  until "$@"; do
    [ $SECONDS -lt $end ] || { echo "WAITFOR: $what within $limit s"; return 1; }
    sleep 0.05
  done
}
listening() { (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null; }
hasrule() { nft list table inet lowport 2>/dev/null | grep -q "dport $1 "; }
ready() { grep -q "^lowport: forwarding [a-z,]* port $1 " $D/fwd.log 2>/dev/null; }
udpsockets() { [ "$(ss -Hlun "sport = :$1" | wc -l)" -ge $2 ]; }
closed() { ! ss -Hltn "sport = :$1" | grep -q .; }
logged() { [ "$(grep -Ec "$2" $D/fwd.log 2>/dev/null)" -ge $1 ]; }
waitport() { waitfor 120 "port $1 never opened" listening $1; }
waitrule() { waitfor 120 "no rule for $1" hasrule $1; }
waitready() { waitfor 120 "the forwarder of port $1 never said it serves (no 'lowport: forwarding ... port $1' in $D/fwd.log)" ready $1 || cat $D/fwd.log; }
waitudp() { waitfor 120 "no $2 UDP sockets on $1" udpsockets $1 $2; }
waitclosed() { waitfor 120 "port $1 still listens" closed $1; }
waitlog() { waitfor 120 "no $1 lines '$2' in $D/fwd.log" logged "$@"; }
table() { nft list table inet lowport >/dev/null 2>&1 && echo present || echo gone; }
get() { curl -s -g -o /dev/null -w '%{http_code}' --max-time 30 "$@"; }
${script}
`,
    );
    const r = spawnSync('unshare', ['--net', '--mount', '--propagation', 'private', 'bash', file], {
      encoding: 'utf8',
      timeout,
      env: { ...process.env, PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  }

  function value(out: string, key: string): string | undefined {
    return new RegExp(`^${key}=(.*)$`, 'm').exec(out)?.[1];
  }

  it('redirects 80 to nginx on 8080 for local clients on 127.0.0.1, ::1 and 127.0.0.2, which nginx sees as themselves; SIGTERM removes every rule and leaves another table alone', () => {
    const { out } = inNetns(`
      nft add table inet other
      nft add chain inet other out '{ type filter hook output priority 0; }'
      nft add rule inet other out tcp dport 9999 counter comment '"not lowport"'
      before=$(nft list table inet other)
      nginx_start
      $LOWPORT forward add 80/tcp 8080 & LP=$!
      waitrule 80
      echo "V4=$(get http://127.0.0.1/index.html)"
      echo "V6=$(get 'http://[::1]/index.html')"
      echo "SECOND=$(get --interface 127.0.0.2 http://127.0.0.2/index.html)"
      echo "LIST=$($LOWPORT forward list | tail -1)"
      echo "CHAINS=$(nft list table inet lowport | grep -c 'type nat hook')"
      kill -TERM $LP; wait $LP; echo "EXIT=$?"
      echo "TABLE=$(table)"
      [ "$before" = "$(nft list table inet other)" ] && echo OTHER=untouched || echo OTHER=changed
      echo "AFTER=$(get --max-time 1 http://127.0.0.1/index.html)"
      echo LOG; cat $LOG
    `);
    assert.equal(value(out, 'V4'), '200', out);
    assert.equal(value(out, 'V6'), '200', out);
    assert.equal(value(out, 'SECOND'), '200', out);
    assert.match(value(out, 'LIST') ?? '', /^80 +tcp +8080 +every local address +pid \d+ \(lowport forward add 80\/tcp 8080\)$/, out);
    assert.equal(value(out, 'CHAINS'), '2', out);
    assert.equal(value(out, 'EXIT'), '0', out);
    assert.equal(value(out, 'TABLE'), 'gone', out);
    assert.equal(value(out, 'OTHER'), 'untouched', out);
    assert.equal(value(out, 'AFTER'), '000', 'nothing answers on 80 once the redirect is gone');
    const log = out.slice(out.indexOf('LOG\n'));
    // nginx's $remote_addr: the real client, not a proxy's address.
    for (const client of ['127.0.0.1', '::1', '127.0.0.2'])
      assert.match(log, new RegExp(`^8080 ${client.replace(/\./g, '\\.')} - 200$`, 'm'), out);
  });

  it('serves a client on another host (a second network namespace over veth): the redirect by prerouting and the userspace forwarder both keep its address', () => {
    const { out } = inNetns(`
      C=lowport-client-$$
      ip netns add $C
      trap 'cleanup; ip netns del $C 2>/dev/null' EXIT
      ip link add lp-s-$$ type veth peer name lp-c-$$
      ip link set lp-c-$$ netns $C
      ip addr add 10.213.7.1/24 dev lp-s-$$; ip link set lp-s-$$ up
      ip netns exec $C sh -c "ip link set lo up; ip addr add 10.213.7.2/24 dev lp-c-$$; ip link set lp-c-$$ up"
      nginx_start
      $LOWPORT forward add 80/tcp 8080 & F=$!
      $LOWPORT forward serve 81/tcp 8081 --proxy-protocol v2 --workers 1 2>>$D/fwd.log & U=$!
      waitrule 80; waitready 81
      echo "REMOTE=$(ip netns exec $C curl -s -o /dev/null -w '%{http_code}' --max-time 30 http://10.213.7.1/index.html)"
      echo "REMOTE_USERSPACE=$(ip netns exec $C curl -s -o /dev/null -w '%{http_code}' --max-time 30 http://10.213.7.1:81/index.html)"
      kill -TERM $F $U; wait $F $U
      echo "AFTER=$(ip netns exec $C curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://10.213.7.1/index.html)"
      cat $D/fwd.log; rm -f $D/fwd.log
      echo LOG; cat $LOG
    `);
    assert.equal(value(out, 'REMOTE'), '200', out);
    assert.equal(value(out, 'REMOTE_USERSPACE'), '200', out);
    assert.equal(value(out, 'AFTER'), '000', 'nothing answers on 80 once the redirect is gone');
    const log = out.slice(out.indexOf('LOG\n'));
    assert.ok(log.split('\n').includes('8080 10.213.7.2 - 200'), `the redirected request comes from the remote client itself\n${out}`);
    assert.ok(log.split('\n').includes('8081 127.0.0.1 10.213.7.2 200'), `the PROXY header names the remote client\n${out}`);
  });

  // The spellings of 0.1 (`forward PORT TO`, --list, --gc), kept as aliases for one release: this test keeps them.
  it('leaves rules behind when SIGKILLed; list marks them, gc removes them, and so does the next forward (old spellings)', () => {
    const { out } = inNetns(`
      $LOWPORT forward 81/tcp 8080 & A=$!
      waitrule 81
      kill -KILL $A; wait $A 2>/dev/null
      echo "AFTER_KILL=$(nft list table inet lowport | grep -c 'dport 81 ')"
      echo "LIST=$($LOWPORT forward --list 2>$D/note.txt | tail -1)"
      echo "NOTE=$(cat $D/note.txt)"
      echo "GC=$($LOWPORT forward --gc)"
      echo "TABLE_AFTER_GC=$(table)"
      $LOWPORT forward 82 8080 & B=$!
      waitrule 82
      kill -KILL $B; wait $B 2>/dev/null
      $LOWPORT forward 83/udp 8080 & C=$!
      waitrule 83
      echo "DEAD_82=$(nft list table inet lowport | grep -c 'dport 82 ')"
      kill -HUP $C; wait $C; echo "EXIT_HUP=$?"
      echo "TABLE_END=$(table)"
    `);
    assert.equal(value(out, 'AFTER_KILL'), '2', out);
    assert.match(value(out, 'LIST') ?? '', /pid \d+, gone: `lowport forward gc` removes it/, out);
    assert.equal(
      value(out, 'NOTE'),
      'lowport: note: `lowport forward --list` is now `lowport forward list`; the old spelling goes away in the next release',
      out,
    );
    assert.match(value(out, 'GC') ?? '', /^removed 81\/tcp -> 8080/, out);
    assert.equal(value(out, 'TABLE_AFTER_GC'), 'gone', out);
    assert.equal(value(out, 'DEAD_82'), '0', `a new forward collects the killed one's rules\n${out}`);
    assert.equal(value(out, 'EXIT_HUP'), '0', out);
    assert.equal(value(out, 'TABLE_END'), 'gone', out);
  });

  it('gc counts a SIGKILLed forward that its parent never reaps (a zombie) as dead', () => {
    const { out } = inNetns(`
      # The forward's parent execs sleep, which never waits: once killed, the forward stays a zombie.
      sh -c "$LOWPORT forward add 84/tcp 8080 & echo \\$! > $D/zpid; exec sleep 120" & P=$!
      waitrule 84
      Z=$(cat $D/zpid)
      kill -KILL $Z
      for i in $(seq 100); do [ "$(sed 's/.*) //' /proc/$Z/stat | cut -d' ' -f1)" = Z ] && break; sleep 0.1; done
      echo "STATE=$(sed 's/.*) //' /proc/$Z/stat | cut -d' ' -f1)"
      echo "LIST=$($LOWPORT forward list | grep '^84 ')"
      echo "GC=$($LOWPORT forward gc)"
      echo "TABLE_AFTER_GC=$(table)"
      kill $P
    `);
    assert.equal(value(out, 'STATE'), 'Z', out);
    assert.match(value(out, 'LIST') ?? '', /gone: `lowport forward gc` removes it/, out);
    assert.match(value(out, 'GC') ?? '', /^removed 84\/tcp -> 8080/, out);
    assert.equal(value(out, 'TABLE_AFTER_GC'), 'gone', out);
  });

  it('gc collects the persisted forwards of a deleted policy file, and the redirects of a lowport in a pid namespace only once it is gone', () => {
    const { out } = inNetns(`
      mkdir -m 700 $D/scratch
      $LOWPORT forward add 86/tcp 8080 --persist --policy $D/scratch/policy >/dev/null; echo "PERSIST=$?"
      echo "RECORDED=$(grep -l "$D/scratch/policy" /run/lowport/forward-owners/*.json 2>/dev/null | wc -l)"
      echo "LIST_BEFORE=$($LOWPORT forward list | grep '^86 ')"
      rm -rf $D/scratch
      echo "LIST=$($LOWPORT forward list | grep '^86 ')"
      echo "GC=$($LOWPORT forward gc)"
      echo "RECORD_AFTER=$(grep -l "$D/scratch/policy" /run/lowport/forward-owners/*.json 2>/dev/null | wc -l)"
      echo "TABLE_AFTER_GC=$(table)"
      # A lowport in a pid namespace of its own (as in a container with the host's network): pid 1 there.
      unshare --pid --fork --mount-proc $LOWPORT forward add 87/tcp 8080 & U=$!
      waitrule 87
      echo "NS_OWNER=$(nft list table inet lowport | grep -o 'lowport pid=[0-9]*' | head -1)"
      echo "NS_LIST=$($LOWPORT forward list | grep '^87 ')"
      echo "NS_GC=$($LOWPORT forward gc)"
      echo "NS_KEPT=$(nft list table inet lowport | grep -c 'dport 87 ')"
      kill -KILL $(pgrep -P $U); wait $U 2>/dev/null
      echo "NS_GC_AFTER=$($LOWPORT forward gc)"
      echo "TABLE_END=$(table)"
      echo "EMPTY_GC=$($LOWPORT forward gc)"
    `);
    assert.equal(value(out, 'PERSIST'), '0', out);
    assert.equal(value(out, 'RECORDED'), '1', out);
    assert.match(value(out, 'LIST_BEFORE') ?? '', /another policy file \(.*\/scratch\/policy\) \(--persist\)/, out);
    assert.match(value(out, 'LIST') ?? '', /deleted: `lowport forward gc` removes it/, out);
    assert.match(value(out, 'GC') ?? '', /^removed 86\/tcp -> 8080 on every local address \(its policy file is gone\)/, out);
    assert.equal(value(out, 'RECORD_AFTER'), '0', out);
    assert.equal(value(out, 'TABLE_AFTER_GC'), 'gone', out);
    assert.equal(value(out, 'NS_OWNER'), 'lowport pid=1', out);
    assert.match(value(out, 'NS_LIST') ?? '', /pid \d+ \(pid 1 in its container\) \(lowport forward add 87\/tcp 8080\)/, out);
    assert.equal(value(out, 'NS_GC'), 'nothing to remove: the one redirect has a live owner', out);
    assert.equal(value(out, 'NS_KEPT'), '2', 'both chains keep the rule of the live lowport in its pid namespace');
    assert.match(value(out, 'NS_GC_AFTER') ?? '', /^removed 87\/tcp -> 8080/, out);
    assert.equal(value(out, 'TABLE_END'), 'gone', out);
    // Nothing to look at is not "every redirect has a live owner".
    assert.equal(value(out, 'EMPTY_GC'), 'nothing to remove: lowport has no redirects here', out);
  });

  it('redirects UDP too, keeping the client address', () => {
    const { out } = inNetns(`
      $H udp-server 5353 &
      $LOWPORT forward add 53/udp 5353 & LP=$!
      waitrule 53
      waitudp 5353 2
      echo "V4=$($H udp-client 127.0.0.1 53 127.0.0.2)"
      echo "V6=$($H udp-client ::1 53)"
      kill -INT $LP; wait $LP; echo "TABLE=$(table)"
    `);
    assert.equal(value(out, 'V4'), '{"answer":"seen 127.0.0.2 ping"}', out);
    assert.equal(value(out, 'V6'), '{"answer":"seen ::1 ping"}', out);
    assert.equal(value(out, 'TABLE'), 'gone', out);
  });

  it('refuses a second redirect of the same port while the first runs, with the error alone (no warning about the high port first)', () => {
    const { out } = inNetns(`
      $LOWPORT forward add 80 8080 2>$D/first.err & A=$!
      waitrule 80
      $LOWPORT forward add 80/tcp 9090 2>$D/second.err; echo "EXIT=$?"
      echo "FIRST=$(tr '\\n' '|' < $D/first.err)"
      echo "SECOND=$(tr '\\n' '|' < $D/second.err)"
      kill $A; wait $A
    `);
    assert.equal(value(out, 'EXIT'), '1', out);
    // The warning comes once the redirect is in place, after its "forwarding" line.
    assert.match(value(out, 'FIRST') ?? '', /^lowport: forwarding 80\/tcp,udp -> 8080 [^|]*\|lowport: any local user may bind 8080 /, out);
    assert.match(value(out, 'SECOND') ?? '', /^lowport: error: port 80\/tcp is already redirected to 8080 by lowport pid \d+/, out);
    assert.doesNotMatch(value(out, 'SECOND') ?? '', /any local user may bind/, out);
  });

  it('add --persist writes the policy, apply restores the redirect (as after a reboot), off and remove (old spelling: --remove) take it away', () => {
    box.writePolicy('# mine\ngrant 8000 user nobody\n');
    const { out } = inNetns(`
      $LOWPORT forward add 80/tcp 8080 --addr 127.0.0.1 --persist $G; echo "EXIT=$?"
      echo "OWNER=$(nft list table inet lowport | grep -c 'lowport policy=')"
      nft delete table inet lowport
      $LOWPORT apply $G
      echo "RESTORED=$(nft list table inet lowport | grep -c 'ip daddr 127.0.0.1 tcp dport 80 redirect to :8080')"
      $LOWPORT off $G
      echo "AFTER_OFF=$(table)"
      $LOWPORT apply $G >/dev/null
      echo "AGAIN=$(table)"
      $LOWPORT forward --remove 80/tcp $G
      echo "AFTER_REMOVE=$(table)"
    `);
    assert.equal(value(out, 'EXIT'), '0', out);
    assert.match(out, /added 'forward 80\/tcp to 8080 addr 127\.0\.0\.1'/);
    assert.equal(value(out, 'OWNER'), '2', out);
    assert.match(out, /1 forward redirected \(nftables\)/);
    assert.equal(value(out, 'RESTORED'), '2', out);
    assert.match(out, /removed 1 persisted forward/);
    assert.equal(value(out, 'AFTER_OFF'), 'gone', out);
    assert.equal(value(out, 'AGAIN'), 'present', out);
    assert.equal(value(out, 'AFTER_REMOVE'), 'gone', out);
    assert.equal(box.readPolicy(), '# mine\ngrant 8000 user nobody\n', 'the file is as it was, comment included');
  });

  it('userspace: binds 80 as root, serves as its own system user (made on first use) with nothing left, and nginx gets the client address by PROXY protocol v2 and v1', () => {
    const machine = spawnSync('getent', ['passwd', 'lowport'], { encoding: 'utf8' }).stdout;
    const { out } = inNetns(`
      nginx_start
      export LOWPORT_TEST_SECRET=root-only
      $LOWPORT forward serve 80/tcp 8081 --proxy-protocol v2 --workers 2 2>>$D/fwd.log & V2=$!
      $LOWPORT forward serve 81/tcp 8081 --proxy-protocol v1 --workers 1 --user daemon 2>>$D/fwd.log & V1=$!
      waitready 80; waitready 81
      for p in 80 81; do
        echo "A$p=$(get http://127.0.0.1:$p/index.html)"
        echo "B$p=$(get "http://[::1]:$p/index.html")"
        echo "C$p=$(get --interface 127.0.0.2 http://127.0.0.2:$p/index.html)"
      done
      w=$(pgrep -P $V2 | head -1)
      echo "USER=$(ps -o user= -p $w)"
      echo "ACCOUNT=$(getent passwd lowport)"
      echo "GROUP=$(getent group lowport | cut -d: -f1,3)"
      grep -E '^(Uid|Gid|Groups|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/$w/status | sed 's/:\\s*/=/; s/\\s\\+/ /g'
      echo "SECRET=$(tr '\\0' '\\n' < /proc/$w/environ | grep -c LOWPORT_TEST_SECRET)"
      echo "STDIN=$(readlink /proc/$w/fd/0)"
      echo "USER81=$(ps -o user= -p $(pgrep -P $V1 | head -1))"
      echo "ROOT_HOLDS=$(ss -Hltnp 'sport = :80' | grep -c "pid=$V2,")"
      kill -TERM $V2 $V1; wait $V2; echo "EXIT=$?"; wait $V1
      echo "LISTENING=$(ss -Hltn 'sport = :80 or sport = :81' | wc -l)"
      # A person's account of that name is not taken over.
      userdel lowport && useradd --uid 1500 --user-group lowport
      $LOWPORT forward serve 82/tcp 8081 2>$D/err.txt; echo "HUMAN_EXIT=$?"
      echo "HUMAN=$(head -1 $D/err.txt)"
      cat $D/fwd.log; rm -f $D/fwd.log $D/err.txt
      echo LOG; cat $LOG
    `);
    // The machine's own /etc is as it was.
    assert.equal(spawnSync('getent', ['passwd', 'lowport'], { encoding: 'utf8' }).stdout, machine);
    for (const key of ['A80', 'B80', 'C80', 'A81', 'B81', 'C81']) assert.equal(value(out, key), '200', `${key}\n${out}`);
    // Not nobody, whom other daemons share: a system account of its own, no home, no shell, its own group.
    assert.equal(value(out, 'USER'), 'lowport', out);
    const account = /^lowport:x:(\d+):(\d+):[^:]*:\/nonexistent:\/usr\/sbin\/nologin$/.exec(value(out, 'ACCOUNT') ?? '');
    assert.ok(account !== null, out);
    const [uid, gid] = [Number(account[1]), Number(account[2])];
    assert.ok(uid > 0 && uid < 1000, `a system uid, not ${uid}`);
    assert.equal(value(out, 'GROUP'), `lowport:${gid}`, out);
    assert.equal(value(out, 'Uid'), `${uid} ${uid} ${uid} ${uid}`, out);
    assert.equal(value(out, 'Gid'), `${gid} ${gid} ${gid} ${gid}`, out);
    assert.equal(value(out, 'CapPrm'), '0000000000000000', out);
    assert.equal(value(out, 'CapEff'), '0000000000000000', out);
    assert.equal(value(out, 'CapBnd'), '0000000000000000', out);
    assert.equal(value(out, 'CapAmb'), '0000000000000000', out);
    assert.equal(value(out, 'NoNewPrivs'), '1', out);
    assert.equal(value(out, 'SECRET'), '0', "root's environment reached the forwarder");
    assert.equal(value(out, 'STDIN'), '/dev/null', "the forwarder should not hold the caller's stdin");
    assert.equal(value(out, 'USER81'), 'daemon', out);
    assert.equal(value(out, 'ROOT_HOLDS'), '0', 'the root process keeps no listening socket');
    assert.equal(value(out, 'EXIT'), '0', out);
    assert.equal(value(out, 'LISTENING'), '0', out);
    assert.notEqual(value(out, 'HUMAN_EXIT'), '0', out);
    assert.match(value(out, 'HUMAN') ?? '', /the user 'lowport' exists but is not a system account of its own \(uid 1500/, out);
    const log = out.slice(out.indexOf('LOG\n'));
    // The backend's connection comes from the forwarder (127.0.0.1); the PROXY header names the client.
    for (const client of ['127.0.0.1', '::1', '127.0.0.2']) {
      assert.equal(log.split('\n').filter((l) => l === `8081 127.0.0.1 ${client} 200`).length, 2, `v1 and v2 for ${client}\n${out}`);
    }
  });

  it('userspace: UDP sessions per client, ended by the UDP timeout and logged', () => {
    const { out } = inNetns(`
      $H udp-server 5353 &
      $LOWPORT forward serve 53/udp 5353 --udp-timeout 0.5 --log 2>$D/fwd.log & LP=$!
      waitready 53
      echo "V4=$($H udp-client 127.0.0.1 53 127.0.0.2)"
      echo "V6=$($H udp-client ::1 53)"
      # Both sessions end by the 0.5 s UDP timeout, however long after it the forwarder gets to it.
      waitlog 2 'datagrams up=1 down=1 [0-9]+ms timeout$'
      kill -TERM $LP; wait $LP; echo "EXIT=$?"
      cat $D/fwd.log; rm -f $D/fwd.log
    `);
    assert.equal(value(out, 'V4'), '{"answer":"seen 127.0.0.1 ping"}', out);
    assert.equal(value(out, 'V6'), '{"answer":"seen 127.0.0.1 ping"}', out);
    assert.equal(value(out, 'EXIT'), '0', out);
    assert.match(out, /udp 127\.0\.0\.2:\d+ => 127\.0\.0\.1:5353 datagrams up=1 down=1 \d+ms timeout/);
    assert.match(out, /udp \[::1\]:\d+ => 127\.0\.0\.1:5353 datagrams up=1 down=1 \d+ms timeout/);
  });

  it('userspace: half-close and backpressure through a slow backend, idle timeout, connection cap, backend refused or silent, drain on SIGTERM', () => {
    const { out } = inNetns(
      `
      $H echo-server 7000 1000 >/dev/null &
      waitport 7000
      nft add table inet blackhole
      nft add chain inet blackhole out '{ type filter hook output priority 0; }'
      nft add rule inet blackhole out tcp dport 7002 drop
      $LOWPORT forward serve 90/tcp 7000 --workers 1 --log --idle-timeout 2 --max-conns 3 2>>$D/fwd.log & F=$!
      $LOWPORT forward serve 91/tcp 7001 --workers 1 --log 2>>$D/fwd.log & R=$!
      $LOWPORT forward serve 92/tcp 7002 --workers 1 --log --connect-timeout 0.5 2>>$D/fwd.log & T=$!
      waitready 90; waitready 91; waitready 92
      echo "BIG=$($H half-close 90 100000000)"
      echo "PEAK_KB=$(awk '/VmHWM/ {print $2}' /proc/$(pgrep -P $F | head -1)/status)"
      # Under the 2 s idle timeout, which starts at the accept: 1.5 s lets a slow forwarder refuse the 2 over the cap.
      echo "CAP=$($H hold 90 5 1.5)"
      # Past it with room for a slow accept and the loop's tick.
      echo "IDLE=$($H hold 90 1 5)"
      echo "REFUSED=$($H connect-close 91)"
      echo "SILENT=$($H connect-close 92)"
      # A session the forwarder serves (its first echo is back) when the drain starts; it ends on its own 4 s after its connect.
      $H slow-session 90 4 > $D/slow.out 2>$D/slow.err & S=$!
      waitfor 120 'no echo through 90' grep -q echoing $D/slow.err
      kill -TERM $F
      waitclosed 90
      echo "DURING_DRAIN=$($H connect-close 90 1)"
      wait $S; echo "SLOW=$(cat $D/slow.out)"
      wait $F; echo "EXIT=$?"
      kill -TERM $R $T; wait $R $T
      cat $D/fwd.log; rm -f $D/fwd.log $D/slow.out $D/slow.err
    `,
      480_000,
    );
    assert.equal(value(out, 'BIG'), '{"sent":100000000,"received":100000000,"same":true}', out);
    // 100 MB crossed while the backend did not read for a second: a forwarder without backpressure would have held it.
    assert.ok(Number(value(out, 'PEAK_KB')) < 150_000, `peak RSS ${value(out, 'PEAK_KB')} kB\n${out}`);
    assert.equal(value(out, 'CAP'), '{"opened":5,"stillOpen":3}', out);
    assert.equal(value(out, 'IDLE'), '{"opened":1,"stillOpen":0}', out);
    assert.equal(value(out, 'REFUSED'), '{"ended":"end"}', 'a clean close, not a reset');
    assert.equal(value(out, 'SILENT'), '{"ended":"end"}', out);
    assert.equal(value(out, 'DURING_DRAIN'), '{"ended":"ECONNREFUSED"}', out);
    assert.equal(value(out, 'SLOW'), '{"allEchoed":true}', 'the open connection finished during the drain');
    assert.equal(value(out, 'EXIT'), '0', out);
    assert.match(out, /refused: connection cap \(3\) reached/);
    assert.match(out, /idle timeout \(2000 ms\)/);
    assert.match(out, /=> 127\.0\.0\.1:7001 up=0 down=0 \d+ms backend error ECONNREFUSED/);
    assert.match(out, /=> 127\.0\.0\.1:7002 up=0 down=0 \d+ms backend connect timeout \(500 ms\)/);
    assert.match(out, /draining \(SIGTERM\): 1 connection\(s\) open/);
  });

  it('userspace: a 100 MiB download with a PROXY v2 header goes through a pipe (splice): every byte arrives (sha256), to a fast client and to one that stops reading a while, and the forwarder holds none of it', () => {
    const { out } = inNetns(
      `
      nginx_start
      head -c 104857600 /dev/urandom > $D/big.bin
      $LOWPORT forward serve 93/tcp 8081 --workers 1 --proxy-protocol v2 2>>$D/fwd.log & F=$!
      waitready 93
      W=$(pgrep -P $F | head -1)
      pipes() { ls -l /proc/$W/fd | grep -c 'pipe:'; }
      morepipes() { [ "$(pipes)" -ge $(($1 + 2)) ]; }
      echo "SOURCE=$(sha256sum < $D/big.bin | cut -d' ' -f1)"
      echo "FAST=$(curl -s --max-time 120 http://127.0.0.1:93/big.bin | sha256sum | cut -d' ' -f1)"
      P0=$(pipes)
      # A slow client: curl's output is not read until $D/go exists, so curl stops reading the socket.
      rm -f $D/go
      curl -s --max-time 120 http://127.0.0.1:93/big.bin | (until [ -e $D/go ]; do sleep 0.05; done; sha256sum | cut -d' ' -f1 > $D/slow.out) & S=$!
      # Well within nginx's send_timeout (60 s): a stall longer than that, nginx ends the download, as it should.
      waitfor 20 'no pipe in the forwarder during the slow download' morepipes $P0 && echo "PIPED=yes"
      sleep 1
      echo "PEAK_KB=$(awk '/VmHWM/ {print $2}' /proc/$W/status)"
      touch $D/go
      wait $S; echo "SLOW=$(cat $D/slow.out)"
      echo "ACCESS=$(grep -c '^8081 127.0.0.1 127.0.0.1 200$' $LOG)"
      kill -TERM $F; wait $F; echo "EXIT=$?"
      rm -f $D/big.bin $D/go $D/slow.out $D/fwd.log
    `,
      480_000,
    );
    const source = value(out, 'SOURCE');
    assert.match(source ?? '', /^[0-9a-f]{64}$/, out);
    assert.equal(value(out, 'FAST'), source, `the fast download arrived whole\n${out}`);
    assert.equal(value(out, 'SLOW'), source, `the slow download arrived whole\n${out}`);
    assert.equal(value(out, 'PIPED'), 'yes', `the forwarder spliced through a pipe\n${out}`);
    // The client stalled with most of the 100 MiB still to come: nothing of it piled up in the forwarder.
    assert.ok(Number(value(out, 'PEAK_KB')) < 150_000, `peak RSS ${value(out, 'PEAK_KB')} kB\n${out}`);
    assert.equal(value(out, 'ACCESS'), '2', `nginx read both PROXY headers\n${out}`);
    assert.equal(value(out, 'EXIT'), '0', out);
  });

  it('userspace: tries each address of a backend name in turn (refused, or silent past the connect timeout), serves a server that speaks first, passes a reset on, refuses an unknown name at once, and explains a forwarder that cannot read lowport', () => {
    const { out } = inNetns(`
      $H echo-server 7000 >/dev/null &
      $H reset-server 7003 >/dev/null &
      $H greet-server 7004 >/dev/null &
      $H greet-server 7005 close >/dev/null &
      waitport 7000; waitport 7003; waitport 7004; waitport 7005
      # Names in a hosts file of this mount namespace alone: the first address of one refuses (::1),
      # the first of the other never answers (its SYNs are dropped); the second of both answers.
      printf '::1 lowport-backend.test\\n127.0.0.1 lowport-backend.test\\n127.0.0.9 silent-backend.test\\n127.0.0.1 silent-backend.test\\n' > $D/hosts
      nft add table inet blackhole
      nft add chain inet blackhole out '{ type filter hook output priority 0; }'
      nft add rule inet blackhole out ip daddr 127.0.0.9 tcp dport 7000 drop
      unshare --mount --propagation private sh -c "mount --bind $D/hosts /etc/hosts && exec $LOWPORT forward serve 93/tcp lowport-backend.test:7000 --workers 1 --log" 2>>$D/fwd.log & N=$!
      unshare --mount --propagation private sh -c "mount --bind $D/hosts /etc/hosts && exec $LOWPORT forward serve 98/tcp silent-backend.test:7000 --workers 1 --log --connect-timeout 0.5" 2>>$D/fwd.log & S=$!
      $LOWPORT forward serve 94/tcp 7003 --workers 1 --log 2>>$D/fwd.log & X=$!
      $LOWPORT forward serve 99/tcp 7004 --workers 1 2>>$D/fwd.log & G=$!
      $LOWPORT forward serve 100/tcp 7005 --workers 1 2>>$D/fwd.log & GC=$!
      waitready 93; waitready 98; waitready 94; waitready 99; waitready 100
      echo "NAMED=$($H half-close 93 1000)"
      echo "SILENT_FIRST=$($H half-close 98 1000)"
      echo "RESET=$($H send-wait 94)"
      # 200 connections at once each: whether the greeting comes with the connect's edge or after it is a race, which a busy forwarder loses.
      echo "GREETING=$($H read-first 99 - 200)"
      echo "GREETING_CLOSE=$($H read-first 100 wait-end 200)"
      kill -TERM $N $S $X $G $GC; wait $N $S $X $G $GC
      $LOWPORT forward serve 95/tcp no-such-host.invalid:80 2>$D/err.txt; echo "UNKNOWN_EXIT=$?"
      echo "UNKNOWN=$(head -1 $D/err.txt)"
      $LOWPORT forward serve 95/tcp 7000 --user root 2>$D/err.txt; echo "ROOT_EXIT=$?"
      echo "ROOT=$(head -1 $D/err.txt)"
      # lowport in a directory only root may enter: nobody cannot start it.
      mkdir -m 700 $D/private && cp -r $(dirname $(dirname $(dirname $(dirname ${pkg.cli})))) $D/private/pkg
      ${process.execPath} $D/private/pkg/dist/src/cli/main.js forward serve 96/tcp 7000 2>$D/err.txt; echo "PRIVATE_EXIT=$?"
      echo "PRIVATE_LISTENING=$(ss -Hltn 'sport = :96' | wc -l)"
      cat $D/err.txt
      cat $D/fwd.log; rm -rf $D/fwd.log $D/err.txt $D/hosts $D/private
    `);
    assert.equal(value(out, 'NAMED'), '{"sent":1000,"received":1000,"same":true}', out);
    assert.equal(
      value(out, 'SILENT_FIRST'),
      '{"sent":1000,"received":1000,"same":true}',
      'after the connect timeout on the first address, the second',
    );
    assert.match(out, /=> silent-backend\.test:7000 up=1000 down=1000 \d+ms closed/);
    // A server that speaks first: its bytes come with the edge that ends the connect, and must not wait for the client.
    assert.equal(value(out, 'GREETING'), '{"good":200,"of":200}', out);
    assert.equal(value(out, 'GREETING_CLOSE'), '{"good":200,"of":200}', out);
    assert.match(out, /=> lowport-backend\.test:7000 up=1000 down=1000 \d+ms closed/);
    assert.equal(value(out, 'RESET'), '{"ended":"ECONNRESET"}', 'a backend reset reaches the client as a reset, not a clean end');
    assert.match(out, /=> 127\.0\.0\.1:7003 up=6 down=0 \d+ms backend error ECONNRESET/);
    assert.equal(value(out, 'UNKNOWN_EXIT'), '2', out);
    assert.match(value(out, 'UNKNOWN') ?? '', /cannot resolve the backend host 'no-such-host\.invalid'/);
    assert.equal(value(out, 'ROOT_EXIT'), '2', out);
    assert.match(value(out, 'ROOT') ?? '', /the forwarder does not run as root \(--user root\)/);
    assert.equal(value(out, 'PRIVATE_EXIT'), '1', out);
    assert.equal(value(out, 'PRIVATE_LISTENING'), '0', out);
    assert.match(out, /the forwarder as lowport exited with status \d+ before it started/);
    assert.match(out, /must be readable by that user/);
  });

  it('userspace: a SIGTERM to every process of it at once (systemd stopping a service) is one drain; a second signal later closes at once', () => {
    const { out } = inNetns(`
      $H echo-server 7000 >/dev/null &
      waitport 7000
      $LOWPORT forward serve 90/tcp 7000 --workers 1 --log 2>>$D/fwd.log & F=$!
      waitready 90
      # The session ends on its own 4 s after its connect; the signals come once the forwarder serves it.
      $H slow-session 90 4 > $D/slow.out 2>$D/slow.err & S=$!
      waitfor 120 'no echo through 90' grep -q echoing $D/slow.err
      kill -TERM $F $(pgrep -P $F)
      wait $S; echo "SLOW=$(cat $D/slow.out)"
      wait $F; echo "EXIT=$?"
      $LOWPORT forward serve 91/tcp 7000 --workers 1 --log 2>>$D/fwd.log & G=$!
      waitready 91
      # A session far longer than the 1.5 s between the signals: only the second one ends it.
      # Its own files: the first session's "echoing" must not count (the redirect's truncation can come after the first grep).
      $H slow-session 91 60 > $D/slow91.out 2>$D/slow91.err & S=$!
      waitfor 120 'no echo through 91' grep -q echoing $D/slow91.err
      # The second signal 1.5 s into the drain: counted from the drain's start (its log line), not from the kill.
      kill -TERM $G; waitlog 2 'draining \\(SIGTERM\\)'; sleep 1.5; kill -TERM $G
      wait $G; echo "EXIT2=$?"
      wait $S
      cat $D/fwd.log; rm -f $D/fwd.log $D/slow.out $D/slow.err $D/slow91.out $D/slow91.err
    `);
    assert.equal(value(out, 'SLOW'), '{"allEchoed":true}', `the open connection finished during the one drain\n${out}`);
    assert.equal(value(out, 'EXIT'), '0', out);
    assert.equal(value(out, 'EXIT2'), '0', out);
    assert.match(out, /-> 127\.0\.0\.1:90 => 127\.0\.0\.1:7000 up=(\d+) down=\1 \d+ms closed/, 'the session through 90 ended on its own');
    // The 4-second session through 91 was cut by the second signal, 1.5 s into the drain.
    assert.match(out, /-> 127\.0\.0\.1:91 => 127\.0\.0\.1:7000 up=\d+ down=\d+ \d+ms forwarder stopped/);
  });

  it('userspace: out of file descriptors, stops accepting for a while instead of spinning, and serves again once connections close', () => {
    const { out } = inNetns(`
      $H echo-server 7000 >/dev/null &
      waitport 7000
      # 64 open files: an idle forwarder has about 25 open, so 40 connections (two fds each) exhaust it.
      # (Root here lacks CAP_SYS_RESOURCE, so the limit is set before lowport starts, not on the forwarder.)
      prlimit --nofile=64 $LOWPORT forward serve 97/tcp 7000 --workers 1 --log 2>>$D/fwd.log & F=$!
      waitready 97
      W=$(pgrep -P $F | head -1)
      echo "IDLE_FDS=$(ls /proc/$W/fd | wc -l)"
      $H hold 97 40 3 >/dev/null & HOLD=$!
      wait $HOLD
      echo "PAUSES=$(grep -c 'accept: EMFILE' $D/fwd.log)"
      echo "AFTER=$($H half-close 97 1000)"
      kill -TERM $F; wait $F; echo "EXIT=$?"
      cat $D/fwd.log; rm -f $D/fwd.log
    `);
    assert.ok(Number(value(out, 'IDLE_FDS')) < 40, out);
    assert.match(out, /tcp accept: EMFILE; not accepting for 100 ms/);
    // One attempt per pause: at most about 30 in the 3 s the connections are held (a spinning loop logs thousands).
    assert.ok(Number(value(out, 'PAUSES')) <= 40, `EMFILE lines: ${value(out, 'PAUSES')}`);
    assert.equal(value(out, 'AFTER'), '{"sent":1000,"received":1000,"same":true}', out);
    assert.equal(value(out, 'EXIT'), '0', out);
  });
});
