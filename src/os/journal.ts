/**
 * Writing to the journal without libsystemd: sd_journal_send(3)'s native
 * protocol is one datagram to /run/systemd/journal/socket holding the fields
 * as `KEY=value\n` lines; a value with a newline is sent as `KEY\n`, its
 * length as a little-endian u64, the bytes and `\n` (systemd's
 * docs/JOURNAL_NATIVE_PROTOCOL.md). Without journald, a syslog line goes to
 * /dev/log (RFC 3164 as glibc's syslog(3) writes it), the MESSAGE only.
 * Sockets through koffi: Node has no AF_UNIX datagrams.
 */
import { nativeLibc, O_CLOEXEC, SyscallError } from './libc.js';

export const JOURNAL_SOCKET = '/run/systemd/journal/socket';
export const SYSLOG_SOCKET = '/dev/log';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const MSG_NOSIGNAL = 0x4000;
/** syslog(3) LOG_AUTHPRIV: who used which privilege belongs with the other security messages. */
const LOG_AUTHPRIV = 10 << 3;

/**
 * The datagram for these fields. Keys are what journald accepts (upper case
 * letters, digits and underscores, not starting with an underscore); values
 * may hold any bytes.
 */
export function journalDatagram(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of fields) {
    if (!/^[A-Z0-9][A-Z0-9_]{0,63}$/.test(key)) throw new RangeError(`'${key}' is not a journal field name`);
    const bytes = Buffer.from(value, 'utf8');
    if (!bytes.includes(0x0a)) {
      parts.push(Buffer.from(`${key}=`), bytes, Buffer.from('\n'));
    } else {
      const length = Buffer.alloc(8);
      length.writeBigUInt64LE(BigInt(bytes.length));
      parts.push(Buffer.from(`${key}\n`), length, bytes, Buffer.from('\n'));
    }
  }
  return Buffer.concat(parts);
}

/** A syslog line: `<PRI>TAG[PID]: MESSAGE` (RFC 3164 without the time and host, which the local daemon adds). */
export function syslogDatagram(tag: string, priority: number, message: string, pid = process.pid): Buffer {
  return Buffer.from(`<${LOG_AUTHPRIV | priority}>${tag}[${pid}]: ${message.replace(/\n/g, ' ')}`, 'utf8');
}

function sockaddrUn(path: string): Buffer {
  const b = Buffer.alloc(110);
  b.writeUInt16LE(AF_UNIX, 0);
  b.write(path, 2, 'utf8');
  return b;
}

/** Where log lines go: the journal when journald listens, else syslog. */
export class LogSink {
  readonly kind: 'journal' | 'syslog';
  readonly #fd: number;
  readonly #send: (fd: number, buf: Buffer, len: number, flags: number) => number;
  readonly #close: (fd: number) => number;
  readonly #errno: () => number;

  /** Opens the sink; `journalPath` and `syslogPath` for tests. Throws when neither socket exists. */
  constructor({ journalPath = JOURNAL_SOCKET, syslogPath = SYSLOG_SOCKET }: { journalPath?: string; syslogPath?: string } = {}) {
    const { koffi, libc } = nativeLibc();
    const socket = libc.func('int socket(int domain, int type, int protocol)') as (d: number, t: number, p: number) => number;
    const connect = libc.func('int connect(int fd, const void *addr, uint32_t len)') as (fd: number, a: Buffer, l: number) => number;
    this.#send = libc.func('long send(int fd, const void *buf, size_t len, int flags)') as (
      fd: number,
      b: Buffer,
      l: number,
      f: number,
    ) => number;
    this.#close = libc.func('int close(int fd)') as (fd: number) => number;
    this.#errno = () => koffi.errno();
    const fd = socket(AF_UNIX, SOCK_DGRAM | O_CLOEXEC, 0);
    if (fd < 0) throw new SyscallError('socket(AF_UNIX, SOCK_DGRAM)', this.#errno());
    this.#fd = fd;
    // connect() tells whether someone listens there (ENOENT, ECONNREFUSED otherwise); a datagram socket may connect again.
    for (const [kind, path] of [
      ['journal', journalPath],
      ['syslog', syslogPath],
    ] as const) {
      const to = sockaddrUn(path);
      if (connect(fd, to, to.length) === 0) {
        this.kind = kind;
        return;
      }
    }
    const errno = this.#errno();
    this.#close(fd);
    throw new SyscallError(`connect(${journalPath} or ${syslogPath})`, errno);
  }

  /** Sends one entry: every field to the journal; to syslog, the message at `priority`. */
  send(fields: ReadonlyArray<readonly [string, string]>, tag: string, priority: number): void {
    const message = fields.find(([k]) => k === 'MESSAGE')?.[1] ?? '';
    const datagram = this.kind === 'journal' ? journalDatagram(fields) : syslogDatagram(tag, priority, message);
    if (this.#send(this.#fd, datagram, datagram.length, MSG_NOSIGNAL) < 0) {
      throw new SyscallError(`send(${this.kind})`, this.#errno());
    }
  }

  close(): void {
    this.#close(this.#fd);
  }
}
