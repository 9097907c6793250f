/**
 * Starting a command as another user with every privilege dropped: through
 * sh (still root: joins the cgroup, learns its own pid for LISTEN_PID),
 * setsid(1) (a new session, so it cannot push keystrokes into the admin's
 * shell with TIOCSTI, the su/runuser class of attack; with --ctty it takes the
 * pty lowport made for it as its controlling terminal, os/pty.ts),
 * setpriv(1) (the uid and gid, real, effective and saved; the user's
 * supplementary groups by initgroups(3); every capability set emptied, or only
 * CAP_NET_BIND_SERVICE kept in the ambient set; no_new_privs), then a second
 * sh, already as the user, that checks in /proc/self/status that all four
 * uids and gids are the expected ones, and enters the caller's directory if
 * the user may (as sudo does: the part that runs as root starts in /, so the
 * command never inherits a directory it could not reach), before it execs
 * the command. The pid
 * stays the same from sh to the command, so the cgroup and LISTEN_PID are the
 * command's own.
 *
 * Before the fork, lowport drops what the child would otherwise inherit of
 * root's: it joins a fresh anonymous session keyring and marks every fd from 3
 * up close-on-exec (isolateChildren); the child gets only the fds of its
 * stdio array. The ids are checked here, in one place (checkIdentity).
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { LowportError, UsageError } from '../errors.js';
import { joinAnonymousSessionKeyring, markFdsCloseOnExec } from './libc.js';
import { isValidId, MAX_ID } from './nss.js';
import { MissingToolError, processStatus, systemTool } from './process.js';

export interface Identity {
  uid: number;
  gid: number;
  /** The user's name, for initgroups(3); undefined for a uid with no passwd entry (no supplementary groups then). */
  name?: string;
}

export interface LaunchOptions {
  identity: Identity;
  /** Keep CAP_NET_BIND_SERVICE, in the ambient set (and nothing else). */
  ambientNetBindService?: boolean;
  /** Join this cgroup before exec. */
  cgroup?: string;
  /** fds to hand over as 3, 4, ...; 'pipe': a pipe back to this process (child.stdio[3 + i]). */
  fds?: (number | 'pipe')[];
  /** Set LISTEN_PID to the command's pid (socket activation). */
  listenPid?: boolean;
  /** The whole environment of the command (see userEnvironment). */
  env: NodeJS.ProcessEnv;
  /**
   * The command's fds 0, 1 and 2 (default: this process's own). Never give it
   * root's terminal: os/pty.ts makes a terminal of its own.
   */
  stdio?: [StdioFd, StdioFd, StdioFd];
  /** fd 0 is a terminal the command should take as its controlling terminal (setsid --ctty). */
  controllingTerminal?: boolean;
  /**
   * The directory the command starts in, entered as the user, so only when
   * the user may enter it (as sudo does); otherwise it starts in / and a note
   * says so on stderr. Default: this process's working directory (`run`);
   * '/' to start there outright. The root part of the launch always runs in /.
   */
  cwd?: string;
}

export type StdioFd = number | 'ignore' | 'pipe' | 'inherit';

/** Variables that say nothing about the invoking user and may pass to the command. */
const PASSED = /^(TERM|COLORTERM|LANG|LANGUAGE|LC_[A-Z_]+|TZ|NO_COLOR)$/;

/**
 * The command's environment: HOME, USER, LOGNAME and SHELL of the user, a
 * standard PATH, and only the locale and terminal variables of the caller —
 * not root's tokens, credentials caches or socket-activation variables
 * (setpriv --reset-env and su do the same).
 */
export function userEnvironment(
  user: { name: string; home: string; shell: string },
  from: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(from)) if (PASSED.test(k) && v !== undefined) env[k] = v;
  return {
    ...env,
    HOME: user.home,
    USER: user.name,
    LOGNAME: user.name,
    SHELL: user.shell,
    PATH: '/usr/local/bin:/usr/bin:/bin',
  };
}

const WRAPPER = [
  'if [ -n "$LOWPORT_CGROUP" ]; then echo $$ > "$LOWPORT_CGROUP/cgroup.procs" || exit 125; fi',
  'if [ -n "$LOWPORT_LISTEN_PID" ]; then LISTEN_PID=$$; export LISTEN_PID; fi',
  'unset LOWPORT_CGROUP LOWPORT_LISTEN_PID',
  'exec "$@"',
].join('\n');

/**
 * Runs as the user, after setpriv: the ids must be exactly $1 and $2 (real,
 * effective, saved, filesystem), or the command does not start. Then it
 * changes to $3 (the caller's directory) if the user can enter it, else stays
 * in / and says so once (without the path, which may hold control
 * characters). Only shell builtins, so nothing else runs before the check.
 */
const CHECK = [
  'u=$1 g=$2 cwd=$3; shift 3',
  'while read -r k a b c d; do case $k in Uid:) uids="$a $b $c $d";; Gid:) gids="$a $b $c $d";; esac; done < /proc/self/status',
  'if [ "$uids" != "$u $u $u $u" ] || [ "$gids" != "$g $g $g $g" ]; then',
  '  echo "lowport: refusing to start $1: it would run with uids $uids and gids $gids, not $u and $g" >&2; exit 125',
  'fi',
  'if [ "$cwd" != / ] && ! cd -P -- "$cwd" 2>/dev/null; then echo "lowport: uid $u cannot enter the current directory; the command starts in /" >&2; fi',
  'exec "$@"',
].join('\n');

/** The exit status of a launch whose privilege drop or id check failed (before the command ran). */
export const LAUNCH_FAILED = 125;

function setprivArgs(o: Pick<LaunchOptions, 'identity' | 'ambientNetBindService'>): string[] {
  const keep = o.ambientNetBindService === true ? ',+net_bind_service' : '';
  return [
    `--reuid=${o.identity.uid}`,
    `--regid=${o.identity.gid}`,
    o.identity.name === undefined ? '--clear-groups' : '--init-groups',
    `--inh-caps=-all${keep}`,
    ...(keep === '' ? [] : ['--ambient-caps=+net_bind_service']),
    `--bounding-set=-all${keep}`,
    '--no-new-privs',
  ];
}

/**
 * Refuses ids that are not one real, non-root id: 0 (root), (uid_t)-1 (to
 * setresuid(2) "leave unchanged", so the child would stay root), anything
 * beyond 32 bits (setpriv would cut it), fractions and NaN. `hint`: what the
 * caller's user should do about it (launch itself, the last guard, has none).
 */
export function checkIdentity(identity: Identity, hint?: string): void {
  for (const [what, id] of [
    ['uid', identity.uid],
    ['gid', identity.gid],
  ] as const) {
    if (!isValidId(id) || id === 0) {
      throw new UsageError(
        `refusing to start a program with ${what} ${id}: lowport starts programs as a user other than root, with ids from 1 to ${MAX_ID}`,
        hint,
      );
    }
  }
}

/** The fds this process has open (for the fcntl fallback of close_range). */
function openFds(): number[] {
  try {
    return readdirSync('/proc/self/fd')
      .map(Number)
      .filter((n) => Number.isInteger(n));
  } catch {
    return [];
  }
}

/**
 * Keeps root's session keyring and root's inheritable fds from every child
 * started after this call: a fresh anonymous session keyring for this thread
 * (the one libuv forks from), and close-on-exec on every fd from 3 up
 * (an fd a cron job or a root script left open: the child gets only the fds
 * its stdio array names). Cheap, and idempotent enough to call before each
 * start.
 */
export function isolateChildren(): void {
  markFdsCloseOnExec(openFds);
  joinAnonymousSessionKeyring();
}

/** This process's working directory, or / when it has none any more (removed). */
function callerDirectory(): string {
  try {
    return process.cwd();
  } catch {
    return '/';
  }
}

function commandLine(argv: string[], o: LaunchOptions): { file: string; args: string[]; env: NodeJS.ProcessEnv } {
  checkIdentity(o.identity);
  // The programs that run as root and drop the privileges come from the system's directories only, never from
  // whatever PATH lowport's caller had (sudo's secure_path does the same).
  const setpriv = systemTool('setpriv');
  const setsid = systemTool('setsid');
  if (setpriv === undefined || setsid === undefined) {
    throw new MissingToolError(['setpriv', 'setsid'], 'util-linux', 'they drop the privileges of what lowport starts');
  }
  const env: NodeJS.ProcessEnv = { ...o.env, LOWPORT_CGROUP: o.cgroup ?? '', LOWPORT_LISTEN_PID: o.listenPid === true ? '1' : '' };
  const ids = [String(o.identity.uid), String(o.identity.gid), o.cwd ?? callerDirectory()];
  return {
    file: '/bin/sh',
    args: [
      '-c',
      WRAPPER,
      'lowport-run',
      setsid,
      ...(o.controllingTerminal === true ? ['--ctty'] : []),
      setpriv,
      ...setprivArgs(o),
      '--',
      '/bin/sh',
      '-c',
      CHECK,
      'lowport-check',
      ...ids,
      ...argv,
    ],
    env,
  };
}

/** Starts `argv` as described; stdio defaults to this process's own fds 0-2. */
export function launch(argv: string[], o: LaunchOptions): ChildProcess {
  const { file, args, env } = commandLine(argv, o);
  isolateChildren();
  return spawn(file, args, { stdio: [...(o.stdio ?? ['inherit', 'inherit', 'inherit']), ...(o.fds ?? [])], env, cwd: '/' });
}

/** Like launch, but waits for the end: stdin closed, stdout and stderr captured, started in /. For short probes (doctor's). */
export function launchSync(
  argv: string[],
  o: Omit<LaunchOptions, 'stdio' | 'fds' | 'controllingTerminal' | 'cwd'>,
  timeoutMs: number,
): SpawnSyncReturns<string> {
  const { file, args, env } = commandLine(argv, { ...o, cwd: '/' });
  isolateChildren();
  return spawnSync(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env, encoding: 'utf8', timeout: timeoutMs, cwd: '/' });
}

/**
 * The ids a running process has, from /proc/PID/status: [real, effective,
 * saved, filesystem] for Uid and Gid; undefined when it is gone.
 */
function processIds(status: string): { uid: number[]; gid: number[] } | undefined {
  const uid = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/).map(Number);
  const gid = /^Gid:\s+(.*)$/m.exec(status)?.[1]?.trim().split(/\s+/).map(Number);
  return uid === undefined || gid === undefined ? undefined : { uid, gid };
}

/** Whether /proc/PID/status text shows exactly the identity's uid and gid in all four fields. */
export function runsAs(status: string, identity: Identity): boolean {
  const ids = processIds(status);
  return (
    ids !== undefined &&
    ids.uid.length === 4 &&
    ids.gid.length === 4 &&
    ids.uid.every((u) => u === identity.uid) &&
    ids.gid.every((g) => g === identity.gid)
  );
}

/**
 * A started process (`what`: the forwarder, the accept loop) serves only once
 * its privilege drop is done: its ids in /proc/PID/status must be the
 * expected ones (all four), or it is killed and this throws.
 */
export function requireRunsAs(child: ChildProcess, identity: Identity, what: string): void {
  let status = '';
  try {
    status = child.pid === undefined ? '' : processStatus(child.pid);
  } catch {
    // gone: its exit is reported as such
  }
  if (status !== '' && !runsAs(status, identity)) {
    child.kill('SIGKILL');
    throw new LowportError('E_STATE', `${what} runs with other ids than uid ${identity.uid} and gid ${identity.gid}; it was killed`, {
      hint: 'The privilege drop failed: check setpriv(1) (util-linux) on this machine.',
    });
  }
}
