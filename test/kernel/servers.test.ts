/**
 * Kernel tests (root): unmodified real servers — Python, Node, a static Go
 * binary, a JVM, nginx, busybox httpd — started as uid 65534 with no
 * capabilities bind exactly the ports and addresses granted, and serve; the
 * same servers on anything else are refused.
 *
 * Each server runs in the sandbox's cgroup and a private network namespace,
 * together with the curl that checks it, all as the unprivileged user.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { kernelSkipReason, missingTools, NOBODY, Sandbox } from './sandbox.js';

// curl asks every server.
const skip = kernelSkipReason({ curl: 'curl' });

/**
 * Starts `argv` as the client, waits until `url` answers (or 10 s pass), and
 * returns curl's HTTP status ('000' when nothing answered) and the server's
 * output.
 */
function serve(box: Sandbox, argv: string[], url: string): { status: string; output: string } {
  const script = [
    'out=$(mktemp)',
    '"$@" >"$out" 2>&1 & pid=$!',
    'status=000',
    'for i in $(seq 100); do',
    `  status=$(curl -s -g -o /dev/null -w '%{http_code}' --max-time 1 '${url}') && [ "$status" != 000 ] && break`,
    '  kill -0 $pid 2>/dev/null || break',
    '  sleep 0.1',
    'done',
    'echo "STATUS $status"',
    'kill $pid 2>/dev/null; wait $pid 2>/dev/null',
    'cat "$out"; rm -f "$out"',
  ].join('\n');
  const { command, args, env } = box.clientCommand({}, ['sh', '-c', script, 'sh', ...argv]);
  const r = spawnSync(command, args, { encoding: 'utf8', env: { ...env, HOME: box.dir, TMPDIR: box.work }, cwd: box.dir, timeout: 60_000 });
  const status = /STATUS (\d{3})/.exec(r.stdout)?.[1] ?? '000';
  return { status, output: `${r.stdout}${r.stderr}` };
}

describe('real servers as an unprivileged user', { skip }, () => {
  let box: Sandbox;
  before(async () => {
    box = new Sandbox('servers');
    mkdirSync(box.work, { recursive: true });
    chownSync(box.work, NOBODY, NOBODY);
    writeFileSync(join(box.dir, 'index.html'), 'hello from lowport\n', { mode: 0o644 });
    // Port 80 on the loopback addresses only; 8443 (above 1024: no grant needed) stays as the kernel has it.
    const r = await box.cli('grant', '80/tcp', '--user', 'nobody', '--addr', '127.0.0.1,::1');
    assert.equal(r.code, 0, r.stderr);
  });
  after(() => box?.dispose());

  it(
    'python3 -m http.server serves on a granted port and address, and is refused another port',
    { skip: missingTools({ python3: 'python3' }) },
    () => {
      const ok = serve(box, ['/usr/bin/python3', '-m', 'http.server', '80', '--bind', '127.0.0.1'], 'http://127.0.0.1:80/index.html');
      assert.equal(ok.status, '200', ok.output);
      const refused = serve(box, ['/usr/bin/python3', '-m', 'http.server', '81', '--bind', '127.0.0.1'], 'http://127.0.0.1:81/');
      assert.equal(refused.status, '000');
      assert.match(refused.output, /Permission denied/);
    },
  );

  it('node serves on IPv6 ::1, and is refused the wildcard address the grant does not name', () => {
    const server = "require('http').createServer((q, s) => s.end('ok')).listen(80, process.argv[1])";
    const ok = serve(box, [process.execPath, '-e', server, '::1'], 'http://[::1]:80/');
    assert.equal(ok.status, '200', ok.output);
    const refused = serve(box, [process.execPath, '-e', server, '::'], 'http://[::1]:80/');
    assert.equal(refused.status, '000');
    assert.match(refused.output, /EACCES/);
  });

  it(
    'a static Go binary (no libc, so no LD_PRELOAD trick could reach it) serves on the granted port',
    { skip: missingTools({ go: 'golang-go' }) },
    () => {
      const src = join(box.dir, 'server.go');
      writeFileSync(
        src,
        'package main\nimport ("net/http"; "os")\nfunc main() { http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("go")) }); if err := http.ListenAndServe(os.Args[1], nil); err != nil { println(err.Error()); os.Exit(1) } }\n',
      );
      const bin = join(box.dir, 'server');
      const build = spawnSync('go', ['build', '-o', bin, src], {
        encoding: 'utf8',
        env: { ...process.env, CGO_ENABLED: '0', GOCACHE: join(box.dir, 'gocache'), GOPATH: join(box.dir, 'gopath'), GOFLAGS: '-mod=mod' },
        timeout: 300_000,
      });
      assert.equal(build.status, 0, build.stderr);
      const file = spawnSync('file', [bin], { encoding: 'utf8' });
      if (file.status === 0) assert.match(file.stdout, /statically linked/);
      const ok = serve(box, [bin, '127.0.0.1:80'], 'http://127.0.0.1:80/');
      assert.equal(ok.status, '200', ok.output);
      const refused = serve(box, [bin, '127.0.0.1:82'], 'http://127.0.0.1:82/');
      assert.match(refused.output, /permission denied/);
    },
  );

  it(
    'a JVM binding 127.0.0.1 (an IPv4-mapped IPv6 socket) serves on the granted address',
    { skip: missingTools({ java: 'default-jre-headless' }) },
    () => {
      const src = join(box.dir, 'Server.java');
      writeFileSync(
        src,
        [
          'import com.sun.net.httpserver.HttpServer;',
          'import java.net.InetSocketAddress;',
          'public class Server {',
          '  public static void main(String[] a) throws Exception {',
          '    HttpServer s = HttpServer.create(new InetSocketAddress(a[0], Integer.parseInt(a[1])), 0);',
          '    s.createContext("/", x -> { byte[] b = "jvm".getBytes(); x.sendResponseHeaders(200, b.length); x.getResponseBody().write(b); x.close(); });',
          '    s.start();',
          '  }',
          '}',
        ].join('\n'),
        { mode: 0o644 },
      );
      const ok = serve(box, ['java', '-Xshare:off', '-XX:-UsePerfData', src, '127.0.0.1', '80'], 'http://127.0.0.1:80/');
      assert.equal(ok.status, '200', ok.output);
      const refused = serve(box, ['java', '-Xshare:off', '-XX:-UsePerfData', src, '127.0.0.2', '80'], 'http://127.0.0.2:80/');
      assert.equal(refused.status, '000');
      assert.match(refused.output, /Permission denied/);
    },
  );

  it('nginx (not started as root, no setcap) serves on both granted addresses', { skip: missingTools({ nginx: 'nginx-light' }) }, () => {
    const conf = join(box.dir, 'nginx.conf');
    const w = box.work;
    writeFileSync(
      conf,
      `daemon off;\nworker_processes 1;\npid ${w}/nginx.pid;\nerror_log stderr;\nevents {}\nhttp {\n  access_log off;\n  client_body_temp_path ${w}/body; proxy_temp_path ${w}/proxy; fastcgi_temp_path ${w}/fastcgi; uwsgi_temp_path ${w}/uwsgi; scgi_temp_path ${w}/scgi;\n  server { listen 127.0.0.1:80; listen [::1]:80; root ${box.dir}; }\n}\n`,
      { mode: 0o644 },
    );
    const v4 = serve(box, ['nginx', '-e', 'stderr', '-c', conf], 'http://127.0.0.1:80/index.html');
    assert.equal(v4.status, '200', v4.output);
    const v6 = serve(box, ['nginx', '-e', 'stderr', '-c', conf], 'http://[::1]:80/index.html');
    assert.equal(v6.status, '200', v6.output);
  });

  it('busybox httpd serves on the granted address, and is refused the wildcard', { skip: missingTools({ busybox: 'busybox' }) }, () => {
    const ok = serve(box, ['busybox', 'httpd', '-f', '-p', '127.0.0.1:80', '-h', box.dir], 'http://127.0.0.1:80/index.html');
    assert.equal(ok.status, '200', ok.output);
    const refused = serve(box, ['busybox', 'httpd', '-f', '-p', '80', '-h', box.dir], 'http://127.0.0.1:80/index.html');
    assert.equal(refused.status, '000');
    assert.match(refused.output, /Permission denied/);
  });
});
