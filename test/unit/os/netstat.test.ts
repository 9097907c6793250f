/**
 * /proc/net/{tcp,tcp6,udp6} parsing (proc(5)), on lines taken from a real
 * machine: a listener on 127.0.0.1:4432, on [::]:4430 and on the IPv4-mapped
 * [::ffff:127.0.0.1]:4431, and a UDP socket on [::1]:5353. Addresses are hex
 * words in host order, ports hex in network order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { parseProcNet, socketOwners, socketsOnPort } from '../../../src/os/netstat.js';

const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode                                                     
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1045 1 00000000dc11bb0c 100 0 0 10 0                      
   1: 0100007F:1150 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 731890 1 0000000061275238 100 0 0 10 0                    
   2: 0100007F:0050 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000 4294967294        0 731999 1 0000000061275239 20 4 30 10 -1
`;

const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:114E 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 731888 1 00000000b14ae950 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:114F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 731889 1 00000000b7e8a54f 100 0 0 10 0
`;

const UDP6 = ` sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 6352: 00000000000000000000000001000000:14E9 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 731891 2 00000000b8cb187c 0
`;

const show = (e: ReturnType<typeof parseProcNet>[number]): string =>
  `${e.protocol}${e.family} ${e.port} st ${e.state} uid ${e.uid} inode ${e.inode}`;

describe('parseProcNet', () => {
  it('reads port (hex), state, uid and inode of each IPv4 socket, skipping the header', () => {
    assert.deepEqual(parseProcNet(TCP, 'tcp', 4).map(show), [
      'tcp4 2024 st 0A uid 0 inode 1045',
      'tcp4 4432 st 0A uid 0 inode 731890',
      // An established connection of a uid above 2^31 (nobody on some systems is 4294967294).
      'tcp4 80 st 01 uid 4294967294 inode 731999',
    ]);
  });

  it('reads IPv6 lines, the IPv4-mapped one included, by the port after the 32-digit address', () => {
    assert.deepEqual(parseProcNet(TCP6, 'tcp', 6).map(show), ['tcp6 4430 st 0A uid 0 inode 731888', 'tcp6 4431 st 0A uid 0 inode 731889']);
  });

  it('reads udp6, whose lines have three more fields and a wider slot number', () => {
    assert.deepEqual(parseProcNet(UDP6, 'udp', 6).map(show), ['udp6 5353 st 07 uid 0 inode 731891']);
  });

  it('reads the highest and lowest ports', () => {
    const line = (port: string): string =>
      `   0: 00000000:${port} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0`;
    assert.deepEqual(
      parseProcNet(`header\n${line('FFFF')}\n${line('0001')}\n${line('ffff')}\n`, 'tcp', 4).map((e) => e.port),
      [65535, 1, 65535],
    );
  });

  it('skips blank and cut-short lines, and gives nothing for a file with only its header', () => {
    const [header, ...rest] = TCP.split('\n');
    assert.deepEqual(parseProcNet(`${header}\n`, 'tcp', 4), []);
    assert.deepEqual(parseProcNet('', 'tcp', 4), []);
    const cut = `${header}\n   0: 0100007F:1150 00000000:0000 0A\n\n${rest[1]}\n`;
    assert.deepEqual(
      parseProcNet(cut, 'tcp', 4).map((e) => e.port),
      [4432],
    );
  });
});

describe('socketsOnPort and socketOwners, on this machine', () => {
  it('find a listener this process opens, with its uid, and this process as its owner', async () => {
    const server = createServer().listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      const found = socketsOnPort(port).filter((e) => e.state === '0A');
      assert.deepEqual(
        found.map((e) => [e.protocol, e.family, e.port, e.uid]),
        [['tcp', 4, port, process.getuid?.()]],
      );
      const owners = socketOwners(found.map((e) => e.inode));
      assert.equal(owners.get(found[0]?.inode ?? -1)?.pid, process.pid);
    } finally {
      server.close();
    }
  });
});
