/**
 * Small network tools for the forward tests, as one CommonJS script written
 * into the sandbox (the clients may not read the checkout): a TCP echo server,
 * a UDP server that answers with the address it saw, and clients that check
 * half-close, a large transfer through backpressure, idle and capped
 * connections.
 */
export const HELPER_SOURCE = String.raw`
const net = require('node:net');
const dgram = require('node:dgram');
const crypto = require('node:crypto');
const [cmd, ...args] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

if (cmd === 'echo-server') {
  // Echoes every byte and ends its side after the client's FIN. With DELAY ms, it starts reading
  // only after that long: a slow consumer, so that a forwarder without backpressure would buffer.
  const delay = Number(args[1] ?? 0);
  net.createServer({ allowHalfOpen: true, pauseOnConnect: delay > 0 }, (s) => {
    s.on('error', () => {});
    if (delay > 0) setTimeout(() => { s.pipe(s); s.resume(); }, delay);
    else s.pipe(s);
  }).listen(Number(args[0]), '127.0.0.1', () => out({ listening: Number(args[0]) }));
}

if (cmd === 'reset-server') {
  // Answers the first bytes of each connection with a reset: a backend that breaks midway.
  net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => s.resetAndDestroy());
  }).listen(Number(args[0]), '127.0.0.1', () => out({ listening: Number(args[0]) }));
}

if (cmd === 'greet-server') {
  // Speaks first, as SSH and SMTP servers do: a line as soon as a connection is accepted; with 'close', it ends the connection right after.
  net.createServer((s) => {
    s.on('error', () => {});
    if (args[1] === 'close') s.end('hello\n');
    else s.write('hello\n');
  }).listen(Number(args[0]), '127.0.0.1', () => out({ listening: Number(args[0]) }));
}

if (cmd === 'read-first') {
  // read-first PORT [wait-end] [N]: N connections at once that send nothing; reports how many got the
  // server's first line (and, with wait-end, then its FIN) within 30 s (a deadline for a slow machine:
  // it ends as soon as every connection is done).
  const [port, mode, n] = [Number(args[0]), args[1], Number(args[2] ?? 1)];
  let good = 0;
  let left = n;
  const finish = () => { if (--left === 0) { out({ good, of: n }); process.exit(0); } };
  for (let i = 0; i < n; i++) {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let got = '';
    let done = false;
    const end = (ok) => { if (done) return; done = true; if (ok) good++; s.destroy(); finish(); };
    s.on('data', (c) => { got += c.toString(); if (mode !== 'wait-end' && got === 'hello\n') end(true); });
    s.on('end', () => end(mode === 'wait-end' && got === 'hello\n'));
    s.on('error', () => end(false));
    setTimeout(() => end(false), 30000);
  }
}

if (cmd === 'udp-server') {
  // Answers each datagram with "seen <address> <payload>".
  for (const type of ['udp4', 'udp6']) {
    const s = dgram.createSocket({ type, ipv6Only: type === 'udp6' });
    s.on('message', (m, r) => s.send('seen ' + r.address + ' ' + m.toString(), r.port, r.address));
    s.bind(Number(args[0]), type === 'udp4' ? '127.0.0.1' : '::1');
  }
}

if (cmd === 'udp-client') {
  // udp-client HOST PORT [SOURCE]: one datagram, prints the answer or 'timeout'.
  const [host, port, source] = args;
  const s = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  const timer = setTimeout(() => { out({ answer: 'timeout' }); process.exit(0); }, 30000);
  s.on('message', (m) => { clearTimeout(timer); out({ answer: m.toString() }); s.close(); });
  s.bind({ address: source, port: 0 }, () => s.send('ping', Number(port), host));
}

if (cmd === 'half-close') {
  // Sends a message, shuts down its sending side, and expects the whole echo back after its FIN.
  const [port, size] = args.map(Number);
  const payload = crypto.randomBytes(size);
  const chunks = [];
  const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => s.end(payload));
  s.on('data', (c) => chunks.push(c));
  s.on('end', () => {
    const got = Buffer.concat(chunks);
    out({ sent: size, received: got.length, same: got.equals(payload) });
    s.destroy();
  });
  s.on('error', (e) => out({ error: e.code }));
}

if (cmd === 'hold') {
  // hold PORT N SECONDS: opens N connections, reports how many stay open after SECONDS.
  const [port, n, seconds] = args.map(Number);
  let open = 0;
  const sockets = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect({ host: '127.0.0.1', port });
    s.on('connect', () => open++);
    s.on('close', () => { s.closed = true; });
    s.on('error', () => {});
    sockets.push(s);
  }
  setTimeout(() => { out({ opened: open, stillOpen: sockets.filter((s) => !s.closed).length }); for (const s of sockets) s.destroy(); }, seconds * 1000);
}

if (cmd === 'connect-close') {
  // How the forwarder ends a connection it cannot serve: 'end' (a FIN) or an error code.
  const s = net.connect({ host: '127.0.0.1', port: Number(args[0]) });
  const done = (ended) => { out({ ended }); process.exit(0); };
  s.on('data', () => {});
  s.on('end', () => done('end'));
  s.on('error', (e) => done(e.code));
  setTimeout(() => done('still open'), Number(args[1] ?? 30) * 1000);
}

if (cmd === 'send-wait') {
  // Sends a line and reports how the connection ended: 'end' (a FIN), an error code, or 'still open'.
  const s = net.connect({ host: '127.0.0.1', port: Number(args[0]) }, () => s.write('hello\n'));
  const done = (ended) => { out({ ended }); process.exit(0); };
  s.on('data', () => {});
  s.on('end', () => done('end'));
  s.on('error', (e) => done(e.code));
  setTimeout(() => done('still open'), 30000);
}

if (cmd === 'slow-session') {
  // Opens a connection, sends a line every 200 ms for SECONDS from the connect on, then ends; reports
  // whether all came back. It says 'echoing' on stderr when the first echo is back: from then on the
  // forwarder serves the session, and a test may signal it. It exits as soon as the connection ends.
  const [port, seconds] = args.map(Number);
  let got = 0;
  let sent = 0;
  let t;
  let u;
  const stop = () => { clearInterval(t); clearTimeout(u); };
  const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () => {
    t = setInterval(() => { s.write('line\n'); sent += 5; }, 200);
    u = setTimeout(() => { clearInterval(t); s.end(); }, seconds * 1000);
  });
  s.on('data', (c) => { if (got === 0) process.stderr.write('echoing\n'); got += c.length; });
  s.on('end', () => { stop(); out({ allEchoed: got === sent && sent > 0 }); s.destroy(); });
  s.on('error', (e) => { stop(); out({ error: e.code, echoed: got, sent }); });
}
`;
