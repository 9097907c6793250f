/**
 * Starting a command as another user with every privilege dropped: through
 * sh (still root: joins the cgroup, learns its own pid for LISTEN_PID),
 * setsid(1) (a new session: the command has no controlling terminal, so it
 * cannot push keystrokes into the admin's shell with TIOCSTI, the su/runuser
 * class of attack; it still reads and writes the terminal through its fds), and
 * setpriv(1) (the uid and gid, real, effective and saved; the user's
 * supplementary groups by initgroups(3); every capability set emptied, or only
 * CAP_NET_BIND_SERVICE kept in the ambient set; no_new_privs), which then execs
 * the command. The pid stays the same from sh to the command, so the cgroup
 * and LISTEN_PID are the command's own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { LowportError } from '../errors.js';
import { which } from './process.js';

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
  /** Give the command no stdin (a daemon), instead of the caller's terminal. */
  noStdin?: boolean;
}

/** Variables that say nothing about the invoking user and may pass to the command. */
const PASSED = /^(TERM|COLORTERM|LANG|LANGUAGE|LC_[A-Z_]+|TZ|NO_COLOR)$/;

/**
 * The command's environment: HOME, USER, LOGNAME and SHELL of the user, a
 * standard PATH, and only the locale and terminal variables of the caller —
 * not root's tokens, credentials caches or socket-activation variables
 * (setpriv --reset-env and su do the same).
 */
export function userEnvironment(user: { name: string; home: string; shell: string }, from: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
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

export function setprivArgs(o: Pick<LaunchOptions, 'identity' | 'ambientNetBindService'>): string[] {
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

/** Starts `argv` as described; stdin, stdout and stderr (and the terminal) are shared with this process. */
export function launch(argv: string[], o: LaunchOptions): ChildProcess {
  if (o.identity.uid === 0) throw new LowportError('E_USAGE', 'lowport run starts commands as a user other than root; root binds any port without it', { hint: 'Give --user a normal user.' });
  const path = `${process.env.PATH ?? ''}:/usr/bin:/bin`;
  const setpriv = which('setpriv', path);
  const setsid = which('setsid', path);
  if (setpriv === undefined || setsid === undefined) {
    throw new LowportError('E_UNSUPPORTED', 'setpriv(1) and setsid(1) are needed to drop privileges', { hint: 'Install util-linux (apt-get install util-linux).' });
  }
  const env: NodeJS.ProcessEnv = { ...o.env, LOWPORT_CGROUP: o.cgroup ?? '', LOWPORT_LISTEN_PID: o.listenPid === true ? '1' : '' };
  return spawn('/bin/sh', ['-c', WRAPPER, 'lowport-run', setsid, setpriv, ...setprivArgs(o), '--', ...argv], {
    stdio: [o.noStdin === true ? 'ignore' : 'inherit', 'inherit', 'inherit', ...(o.fds ?? [])],
    env,
  });
}
