/**
 * A terminal of its own for a command lowport starts as another user, as
 * `sudo` with use_pty and `su --pty` do: the command never holds the admin's
 * terminal, so nothing it leaves behind can read what the admin types next
 * (a password), or keep writing to the admin's screen.
 *
 * lowport opens a pseudo-terminal, gives the slave to the command in place of
 * each of fds 0-2 that is a terminal (and, when stdin is one, as its
 * controlling terminal: setsid --ctty, os/launch.ts), and relays: the
 * admin's keys to the master (its terminal in raw mode, so ^C, ^\ and ^Z are
 * turned into signals by the pty's line discipline, for the command's
 * foreground group), the master's output to the admin's terminal, and window
 * size changes (SIGWINCH). When the command's main process ends, lowport
 * stops reading the admin's keys, copies what is left of the output, closes
 * the master (the kernel hangs the pty up: processes still on it get SIGHUP,
 * and reads end) and restores its own terminal. The terminal is restored on
 * every way out short of SIGKILL.
 */
import { closeSync, openSync } from 'node:fs';
import { isatty, ReadStream } from 'node:tty';
import {
  closeRawFd,
  copyTermios,
  copyWindowSize,
  inForeground,
  makeRaw,
  openPtyMaster,
  PTY_SLAVE_FLAGS,
  restoreTermios,
  signalCharacters,
} from './libc.js';

/** How long output still in flight in the pty (flush_to_ldisc runs in a work queue) may take to arrive after the command ended. */
const DRAIN_MS = 100;

export interface PtyRelay {
  /** The command's fds 0-2: the pty's slave for each of this process's that is a terminal, the same fd otherwise. */
  stdio: [number, number, number];
  /** Whether the command's stdin is the slave (it should take it as its controlling terminal). */
  controllingTerminal: boolean;
  /** Call once the command is started: closes this process's copy of the slave and starts relaying. */
  started(): void;
  /** Call when the command's main process ended: relays the last output, hangs the pty up, restores the terminal. */
  finish(): Promise<void>;
  /** Whether the admin typed the terminal's interrupt or quit key (^C, ^\) for the command: it reaches the command, not lowport. */
  readonly interrupted: boolean;
}

/** A pty for a command, when any of this process's fds 0-2 is a terminal; undefined when none is. */
export function openPtyRelay(): PtyRelay | undefined {
  const tty = [0, 1, 2].map((fd) => isatty(fd));
  if (!tty.some(Boolean)) return undefined;
  const reference = tty.indexOf(true);
  const { master, slavePath } = openPtyMaster();
  let slave: number;
  try {
    slave = openSync(slavePath, PTY_SLAVE_FLAGS);
  } catch (e) {
    closeRawFd(master);
    throw e;
  }
  try {
    // The command's terminal starts as the admin's is (erase, kill and interrupt characters, modes) and as large.
    copyTermios(reference, slave);
    copyWindowSize(reference, master);
  } catch (e) {
    closeSync(slave);
    closeRawFd(master);
    throw e;
  }
  return new Relay(master, slave, tty as [boolean, boolean, boolean], reference);
}

class Relay implements PtyRelay {
  readonly stdio: [number, number, number];
  readonly controllingTerminal: boolean;
  private slave: number | undefined;
  private stream: ReadStream | undefined;
  private readonly out: NodeJS.WriteStream;
  private readonly cleanups: (() => void)[] = [];
  private done = false;
  private hungUp!: Promise<void>;
  interrupted = false;

  constructor(
    private readonly master: number,
    slave: number,
    private readonly tty: [boolean, boolean, boolean],
    private readonly reference: number,
  ) {
    this.slave = slave;
    this.stdio = [tty[0] ? slave : 0, tty[1] ? slave : 1, tty[2] ? slave : 2];
    this.controllingTerminal = tty[0];
    this.out = tty[1] ? process.stdout : process.stderr;
  }

  started(): void {
    if (this.slave !== undefined) closeSync(this.slave);
    this.slave = undefined;
    const stream = new ReadStream(this.master);
    this.stream = stream;
    this.hungUp = new Promise((resolve) => {
      stream.on('data', (chunk: Buffer) => this.out.write(chunk));
      // EIO: every process closed the slave; the pty is done.
      stream.on('error', () => resolve());
      stream.on('end', () => resolve());
      stream.on('close', () => resolve());
    });
    // A background job (`lowport run ... &`) leaves the keyboard to the shell: the command gets no input.
    if (this.tty[0] && inForeground(0)) {
      const stdin = process.stdin;
      // cfmakeraw rather than setRawMode: libuv's raw mode keeps output processing, and the pty already turned \n into \r\n.
      const saved = makeRaw(0);
      const keys = saved === undefined ? [] : signalCharacters(saved);
      const relay = (chunk: Buffer): void => {
        if (keys.some((k) => chunk.includes(k))) this.interrupted = true;
        stream.write(chunk);
      };
      stdin.on('data', relay);
      stdin.resume();
      this.cleanups.push(() => {
        stdin.off('data', relay);
        if (saved !== undefined) restoreTermios(0, saved);
        stdin.pause();
      });
    }
    const resize = (): void => copyWindowSize(this.reference, this.master);
    process.on('SIGWINCH', resize);
    this.cleanups.push(() => process.off('SIGWINCH', resize));
    // Never leave the admin's terminal raw, whatever way this process ends.
    const atExit = (): void => this.restore();
    process.on('exit', atExit);
    this.cleanups.push(() => process.off('exit', atExit));
  }

  /** Stops reading the admin's keys and gives the terminal its mode back. */
  private restore(): void {
    if (this.done) return;
    this.done = true;
    for (const c of this.cleanups.splice(0).reverse()) c();
  }

  async finish(): Promise<void> {
    // What the admin types from now on is no longer the command's.
    this.restore();
    if (this.slave !== undefined) closeSync(this.slave);
    this.slave = undefined;
    const stream = this.stream;
    if (stream === undefined) {
      closeRawFd(this.master);
      return;
    }
    // The command's last output: until every holder of the slave closed it
    // (EIO), or a moment for output still in flight when others still hold it.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.hungUp, new Promise<void>((resolve) => (timer = setTimeout(resolve, DRAIN_MS)))]);
    clearTimeout(timer);
    // Closing the master hangs the pty up for whatever still holds the slave.
    stream.removeAllListeners('data');
    stream.on('error', () => undefined);
    await new Promise<void>((resolve) => {
      if (stream.destroyed) resolve();
      else stream.destroy().once('close', () => resolve());
    });
  }
}
