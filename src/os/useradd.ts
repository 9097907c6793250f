/** Creating a system account with useradd(8) (shadow-utils; Debian's `adduser --system` runs it underneath). */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { LowportError } from '../errors.js';
import { systemToolEnv } from './process.js';

/** useradd's exit status when the name is taken (useradd(8), EXIT VALUES): another process made it first. */
const NAME_IN_USE = 9;

/**
 * useradd(8) failed, or is not installed: the name, and the command that would make the user
 * (`command`: what the caller may tell the admin to run).
 */
export class UseraddError extends LowportError {
  constructor(
    readonly user: string,
    message: string,
    readonly command: string | undefined,
  ) {
    super('E_STATE', message);
  }
}

/**
 * Creates a system user with a group of its own, no home directory, no
 * login shell and no password: an identity for a daemon and nothing else.
 * A user of that name made meanwhile by another process is not an error.
 */
export function createSystemUser(name: string, comment: string): void {
  const useradd = ['/usr/sbin/useradd', '/sbin/useradd'].find((p) => existsSync(p));
  const shell = ['/usr/sbin/nologin', '/sbin/nologin'].find((p) => existsSync(p)) ?? '/bin/false';
  if (useradd === undefined) {
    throw new UseraddError(name, `cannot create the system user '${name}': useradd(8) is not installed`, undefined);
  }
  const args = ['--system', '--user-group', '--no-create-home', '--home-dir', '/nonexistent', '--shell', shell, '--comment', comment, name];
  const r = spawnSync(useradd, args, { encoding: 'utf8', timeout: 30_000, env: systemToolEnv() });
  if (r.status === 0 || r.status === NAME_IN_USE) return;
  throw new UseraddError(
    name,
    `cannot create the system user '${name}': useradd exited with ${r.status ?? r.signal ?? r.error?.message}: ${(r.stderr ?? '').trim()}`,
    `useradd --system --user-group --no-create-home --home-dir /nonexistent --shell ${shell} ${name}`,
  );
}
