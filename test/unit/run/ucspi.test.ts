/** run --accept's pure parts: the UCSPI-TCP environment of a connection (IPv4, IPv6, v4-mapped, scoped) and the connection limits. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConnectionCount, endpointText, plainAddress, ucspiEnvironment } from '../../../src/run/ucspi.js';

describe('the UCSPI-TCP environment', () => {
  it('is tcpserver’s for IPv4: PROTO=TCP, dotted addresses, decimal ports, nothing else', () => {
    assert.deepEqual(ucspiEnvironment({ address: '10.0.0.1', port: 79 }, { address: '192.0.2.7', port: 40123 }), {
      PROTO: 'TCP',
      TCPLOCALIP: '10.0.0.1',
      TCPLOCALPORT: '79',
      TCPREMOTEIP: '192.0.2.7',
      TCPREMOTEPORT: '40123',
    });
  });

  it('gives an IPv4 client of a dual-stack socket as IPv4, never as ::ffff:', () => {
    const env = ucspiEnvironment({ address: '::ffff:127.0.0.1', port: 79 }, { address: '::FFFF:127.0.0.2', port: 5000 });
    assert.equal(env.PROTO, 'TCP');
    assert.equal(env.TCPLOCALIP, '127.0.0.1');
    assert.equal(env.TCPREMOTEIP, '127.0.0.2');
    assert.equal(env.TCP6REMOTEIP, undefined);
  });

  it('is the IPv6 tcpservers’ for IPv6: PROTO=TCP6, the TCP* and TCP6* variables both, compact lower-case text', () => {
    assert.deepEqual(ucspiEnvironment({ address: '2001:DB8::1', port: 79 }, { address: '2001:db8::2', port: 6000 }), {
      PROTO: 'TCP6',
      TCPLOCALIP: '2001:db8::1',
      TCPLOCALPORT: '79',
      TCPREMOTEIP: '2001:db8::2',
      TCPREMOTEPORT: '6000',
      TCP6LOCALIP: '2001:db8::1',
      TCP6LOCALPORT: '79',
      TCP6REMOTEIP: '2001:db8::2',
      TCP6REMOTEPORT: '6000',
    });
  });

  it('puts a link-local address’s interface in TCPINTERFACE and TCP6INTERFACE, not in the address', () => {
    const env = ucspiEnvironment({ address: 'fe80::1%eth0', port: 79 }, { address: 'fe80::2%eth0', port: 7000 });
    assert.equal(env.TCPREMOTEIP, 'fe80::2');
    assert.equal(env.TCPLOCALIP, 'fe80::1');
    assert.equal(env.TCPINTERFACE, 'eth0');
    assert.equal(env.TCP6INTERFACE, 'eth0');
  });

  it('never sets the names tcpserver looks up (TCPREMOTEHOST, TCPLOCALHOST, TCPREMOTEINFO)', () => {
    const env = ucspiEnvironment({ address: '::1', port: 79 }, { address: '::1', port: 1 });
    for (const k of ['TCPREMOTEHOST', 'TCPLOCALHOST', 'TCPREMOTEINFO', 'TCP6REMOTEHOST']) assert.equal(k in env, false, k);
  });

  it('writes endpoints as tcpserver users read them in a log: 1.2.3.4:79 and [::1]:79', () => {
    assert.equal(endpointText({ address: '::ffff:1.2.3.4', port: 79 }), '1.2.3.4:79');
    assert.equal(endpointText({ address: '::1', port: 79 }), '[::1]:79');
    assert.deepEqual(plainAddress('fe80::1%lo'), { ip: 'fe80::1', scope: 'lo' });
  });
});

describe('ConnectionCount', () => {
  it('admits up to --max-conns at once and names the limit of the next one', () => {
    const c = new ConnectionCount(2, 10);
    assert.equal(c.admit('10.0.0.1'), undefined);
    assert.equal(c.admit('10.0.0.2'), undefined);
    assert.equal(c.admit('10.0.0.3'), '2 connections at once (--max-conns 2)');
    c.release('10.0.0.1');
    assert.equal(c.active, 1);
    assert.equal(c.admit('10.0.0.3'), undefined);
  });

  it('admits up to --max-per-ip from one address, counting its v4-mapped form as the same address, while others still get in', () => {
    const c = new ConnectionCount(40, 2);
    assert.equal(c.admit('192.0.2.1'), undefined);
    assert.equal(c.admit('::ffff:192.0.2.1'), undefined);
    assert.equal(c.admit('192.0.2.1'), '2 connections from 192.0.2.1 at once (--max-per-ip 2)');
    assert.equal(c.admit('192.0.2.2'), undefined);
    assert.equal(c.from('192.0.2.1'), 2);
    c.release('::ffff:192.0.2.1');
    assert.equal(c.from('192.0.2.1'), 1);
    assert.equal(c.admit('192.0.2.1'), undefined);
  });

  it('counts a refused connection nowhere: releasing every admitted one leaves nothing', () => {
    const c = new ConnectionCount(1, 1);
    assert.equal(c.admit('::1'), undefined);
    assert.equal(c.admit('::1'), '1 connection at once (--max-conns 1)');
    c.release('::1');
    assert.equal(c.active, 0);
    assert.equal(c.from('::1'), 0);
  });
});
