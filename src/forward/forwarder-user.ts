/**
 * The identity the userspace forwarder runs as when `--user` is not given:
 * `lowport`, a system user of its own, created on first use (the Debian
 * package will create it when installed).
 *
 * Not `nobody`: other daemons run as nobody too, and any process of the same
 * uid may ptrace the forwarder (or read its memory through /proc) and take
 * its listening sockets with pidfd_getfd(2) (unless Yama's ptrace_scope
 * forbids it), so a bug in any of them would
 * hand over port 80. A user of its own shares the uid with nothing else.
 * Not a DynamicUser-style free uid either: without systemd's NSS module and
 * its registry, nothing stops a package from being given that same uid
 * later, and files or processes with an unnamed uid are hard for an admin to
 * tell apart. A named system account is what sshd, chrony and every other
 * Debian daemon use, and is visible in `ps` and `getent`.
 */
import { LowportError } from '../errors.js';
import type { Identity } from '../os/launch.js';
import { lookupUsers } from '../os/nss.js';
import { createSystemUser, UseraddError } from '../os/useradd.js';
import { stateLock } from '../policy-file/state.js';

const FORWARDER_USER = 'lowport';

/**
 * The first uid of a person's account on Debian, Fedora and Arch
 * (login.defs UID_MIN): system accounts are below it. An existing `lowport`
 * above it is someone's login, whose own processes could ptrace the
 * forwarder: refused.
 */
const UID_MIN = 1000;
const NOBODY = 65534;

/** The forwarder's own user, created when there is none; refused when the name belongs to something else. */
export function forwarderIdentity(): Identity {
  let entry = lookupUsers([FORWARDER_USER]).get(FORWARDER_USER);
  if (entry === undefined) {
    // Several forwarders starting at once (a boot, a test) make it once: useradd itself fails on a busy /etc/passwd lock.
    const lock = stateLock('useradd.lock');
    try {
      entry = lookupUsers([FORWARDER_USER]).get(FORWARDER_USER);
      if (entry === undefined) {
        try {
          createSystemUser(FORWARDER_USER, 'lowport userspace forwarder');
        } catch (e) {
          if (!(e instanceof UseraddError)) throw e;
          const how = e.command === undefined ? "(no home, no login shell) with your system's tool" : `(${e.command})`;
          throw new LowportError('E_STATE', e.message, { hint: `Create a system user '${e.user}' ${how}, or give --user.`, cause: e });
        }
        entry = lookupUsers([FORWARDER_USER]).get(FORWARDER_USER);
      }
    } finally {
      lock.release();
    }
    if (entry === undefined) {
      throw new LowportError('E_STATE', `useradd created the user '${FORWARDER_USER}', but it cannot be looked up`, {
        hint: 'Check /etc/nsswitch.conf, or give --user.',
      });
    }
  }
  if (entry.uid === 0 || entry.gid === 0 || entry.uid >= UID_MIN || entry.uid === NOBODY) {
    throw new LowportError(
      'E_STATE',
      `the user '${FORWARDER_USER}' exists but is not a system account of its own (uid ${entry.uid}, gid ${entry.gid}): the forwarder will not share its uid`,
      {
        hint: `Give --user a dedicated system user, or rename that account so that lowport can create its own '${FORWARDER_USER}'.`,
      },
    );
  }
  return { uid: entry.uid, gid: entry.gid, name: entry.name };
}
