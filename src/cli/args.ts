/** Turning command-line words into the engine's types, with usage errors that point at the culprit. */
import { COMMAND_LINE, diagnostic, span } from '../diagnostic.js';
import { LowportError, UsageError } from '../errors.js';
import { parseAddressList } from '../policy/address.js';
import { parsePortSpec } from '../policy/ports.js';
import { normalizePrincipal } from '../policy/principal.js';
import { PolicySpecError } from '../policy/spec-error.js';
import type { PortItem, Principal } from '../policy/types.js';
import type { LowportOptions } from '../grants/target.js';

/** Rethrows a PolicySpecError from command-line text as a UsageError whose diagnostic marks the culprit in the word. */
function fromSpec<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof PolicySpecError) {
      const message = `bad ${what}: ${e.message}`;
      throw new UsageError(message, undefined, [diagnostic('error', span(COMMAND_LINE, 1, e.spec, e.offset, e.length), message)]);
    }
    throw e;
  }
}

export function parsePortsArg(text: string | undefined, command: string): PortItem[] {
  if (text === undefined || text === '') {
    throw new UsageError(`${command} needs the ports, e.g. \`lowport ${command} 80,443 ...\``, `See \`lowport ${command} --help\`.`);
  }
  return fromSpec('ports', () => parsePortSpec(text));
}

export function parseAddrArgs(values: string[] | undefined): string[] {
  const out: string[] = [];
  for (const v of values ?? []) for (const a of fromSpec('address', () => parseAddressList(v))) if (!out.includes(a)) out.push(a);
  return out;
}

export interface WhoArgs {
  user?: string | undefined;
  group?: string | undefined;
  everyone?: boolean | undefined;
}

/**
 * --user, --group or --everyone (exactly one). Without any, the invoking
 * user: SUDO_USER under sudo, else the caller, unless that is root, who needs
 * no grant.
 */
export function parsePrincipalArgs(args: WhoArgs, env: NodeJS.ProcessEnv, callerName: string, allowEveryone = true): Principal {
  const given = [args.user !== undefined, args.group !== undefined, args.everyone === true].filter(Boolean).length;
  if (given > 1) throw new UsageError('give only one of --user, --group and --everyone');
  if (args.everyone === true) {
    if (!allowEveryone) throw new UsageError('a reservation is for a --user or a --group: reserving a port for everyone reserves nothing');
    return { kind: 'everyone' };
  }
  if (args.user !== undefined) return fromSpec('user', () => normalizePrincipal({ kind: 'user', name: args.user ?? '' }));
  if (args.group !== undefined) return fromSpec('group', () => normalizePrincipal({ kind: 'group', name: args.group ?? '' }));
  const invoker = invokingUser(env, callerName);
  if (invoker === undefined) {
    const choices = allowEveryone ? '--user NAME, --group NAME or --everyone' : '--user NAME or --group NAME';
    throw new UsageError(`say who: ${choices} (root binds any port without a ${allowEveryone ? 'grant' : 'reservation'})`);
  }
  return { kind: 'user', name: invoker };
}

/** Who ran lowport: SUDO_USER under sudo, else the caller; undefined for root, who needs no grant. */
export function invokingUser(env: NodeJS.ProcessEnv, callerName: string): string | undefined {
  const invoker = env.SUDO_USER !== undefined && env.SUDO_USER !== '' && env.SUDO_USER !== 'root' ? env.SUDO_USER : callerName;
  return invoker === 'root' || invoker === '' ? undefined : invoker;
}

/**
 * Runs `fn`; an unknown user or group it reports for the `word` given to
 * `option` on the command line becomes an error about that word, shown
 * against the command line (not a line of the policy file), which makes it a
 * usage error (exit status 2). The error keeps its code (E_UNKNOWN_USER).
 */
export function nameFromArgument<T>(option: '--user' | '--group', word: string | undefined, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw asArgumentError(e, option, word);
  }
}

/** As nameFromArgument, for a promise. */
export async function nameFromArgumentAsync<T>(option: '--user' | '--group', word: string | undefined, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw asArgumentError(e, option, word);
  }
}

function asArgumentError(e: unknown, option: '--user' | '--group', word: string | undefined): unknown {
  const code = option === '--user' ? 'E_UNKNOWN_USER' : 'E_UNKNOWN_GROUP';
  if (word === undefined || !(e instanceof LowportError) || e.code !== code || !e.message.includes(`'${word}'`)) return e;
  const message = `${option}: ${e.message}`;
  return new LowportError(code, message, {
    hint: e.hint,
    cause: e,
    diagnostics: [diagnostic('error', span(COMMAND_LINE, 1, word, 0, word.length), message)],
  });
}

export interface GlobalValues {
  policy?: string | undefined;
  cgroup?: string | undefined;
  'pin-dir'?: string | undefined;
}

export function lowportOptions(v: GlobalValues): LowportOptions {
  const o: LowportOptions = {};
  if (v.policy !== undefined) o.policy = v.policy;
  if (v.cgroup !== undefined) o.cgroup = v.cgroup;
  if (v['pin-dir'] !== undefined) o.pinDir = v['pin-dir'];
  return o;
}
