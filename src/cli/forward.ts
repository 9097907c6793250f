/** `lowport forward add|remove|list|gc|serve`: kernel redirects that clean up after themselves, and the userspace forwarder. */
import { availableParallelism } from 'node:os';
import { isIP } from 'node:net';
import { UsageError } from '../errors.js';
import { policyPath } from '../grants/target.js';
import { describeSpec, gcRedirects, holdRedirect, listRedirects, policyOwner, type ForwardEntry } from '../forward/redirect.js';
import { persistForward, unpersistForward } from '../ops/forward.js';
import { runUserspace } from '../forward/serve.js';
import { DEFAULTS, type Backend } from '../forward/userspace.js';
import type { ProxyProtocolVersion } from '../forward/proxy-protocol.js';
import type { RedirectSpec } from '../forward/nft.js';
import type { Protocol } from '../policy/types.js';
import { nameFromArgumentAsync, parseAddrArgs, parsePortsArg } from './args.js';
import { implement, noArguments, printJson, type CommandContext, type Implementation, type Values } from './command.js';
import * as commands from './commands.js';
import { escapeControl } from '../text.js';

export type ForwardRequest =
  | { mode: 'kernel'; spec: RedirectSpec; persist: boolean }
  | { mode: 'remove'; port: number; protocols: Protocol[] }
  | { mode: 'list' }
  | { mode: 'gc' }
  | {
      mode: 'userspace';
      port: number;
      protocols: Protocol[];
      addrs: string[];
      backend: Backend;
      user?: string;
      proxyProtocol?: ProxyProtocolVersion;
      workers: number;
      maxConnections: number;
      connectTimeoutMs: number;
      idleTimeoutMs: number;
      drainTimeoutMs: number;
      udpTimeoutMs: number;
      log: boolean;
    };

type ServeValues = Values<typeof commands.forwardServe.options>;

/** One port with an optional /tcp or /udp: `80`, `53/udp`. */
function parseOnePort(text: string | undefined, what: string): { port: number; protocols: Protocol[] } {
  const items = parsePortsArg(text, 'forward');
  const [item] = items;
  if (items.length !== 1 || item === undefined || item.from !== item.to)
    throw new UsageError(`${what} is one port (with /tcp or /udp, or neither for both), not '${text ?? ''}'`);
  return { port: item.from, protocols: [...item.protocols] };
}

function plainPort(text: string, what: string): number {
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new UsageError(`${what}: '${text}' is not a port (1-65535)`);
  return n;
}

/** `8080` (127.0.0.1), `host:8080`, `10.0.0.5:8080`, `[::1]:8080`. */
export function parseBackend(text: string): Backend {
  const v6 = /^\[([^\]]+)\]:([^:]+)$/.exec(text);
  if (v6 !== null) {
    if ((v6[1] ?? '').includes('%')) {
      throw new UsageError(
        `the backend '${text}' has a zone (%): lowport does not forward to link-local addresses`,
        'Give the backend a global or unique-local address, or a name.',
      );
    }
    if (isIP(v6[1] ?? '') !== 6) throw new UsageError(`'${v6[1] ?? ''}' in '${text}' is not an IPv6 address`);
    return { host: v6[1] ?? '', port: plainPort(v6[2] ?? '', 'the backend') };
  }
  const colon = text.lastIndexOf(':');
  if (colon < 0) return { host: '127.0.0.1', port: plainPort(text, 'the backend') };
  const host = text.slice(0, colon);
  if (host === '' || host.includes(':'))
    throw new UsageError(`the backend '${text}' is not HOST:PORT (write an IPv6 address in brackets: [::1]:8080)`);
  return { host, port: plainPort(text.slice(colon + 1), 'the backend') };
}

const MAX_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** Seconds as ms; `zero` says what 0 means where it is allowed ('never', 'close at once'). */
function seconds(
  v: ServeValues,
  key: 'connect-timeout' | 'idle-timeout' | 'drain-timeout' | 'udp-timeout',
  fallbackMs: number,
  zero?: string,
): number {
  const text = v[key];
  if (text === undefined) return fallbackMs;
  const n = /^[0-9]+(\.[0-9]+)?$/.test(text) ? Number(text) : NaN;
  // Node's timers take at most 2^31-1 ms (a larger delay fires at once).
  if (!((n > 0 || (zero !== undefined && n === 0)) && n <= MAX_SECONDS))
    throw new UsageError(`--${key} takes seconds, up to ${MAX_SECONDS}${zero === undefined ? '' : ` (0: ${zero})`}, not '${text}'`);
  return Math.round(n * 1000);
}

function count(v: ServeValues, key: 'workers' | 'max-conns', fallback: number): number {
  const text = v[key];
  if (text === undefined) return fallback;
  const n = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1)) throw new UsageError(`--${key} takes a whole number of at least 1, not '${text}'`);
  return n;
}

/** PORT and TO, and nothing after them. */
function portAndTarget(positionals: string[], command: 'add' | 'serve'): { portText: string; toText: string } {
  const [portText, toText, ...extra] = positionals;
  if (portText === undefined || toText === undefined) {
    const example = command === 'add' ? '`lowport forward add 80 8080`' : '`lowport forward serve 80 10.0.0.5:8080`';
    throw new UsageError(
      `lowport forward ${command} needs a port and where it goes, e.g. ${example}`,
      `See \`lowport forward ${command} --help\`.`,
    );
  }
  if (extra.length > 0) throw new UsageError(`unexpected '${extra.join(' ')}' after '${portText} ${toText}'`);
  return { portText, toText };
}

/** `lowport forward add PORT TO`: every mistake is a UsageError before anything runs. */
export function parseAddArgs(
  v: Values<typeof commands.forwardAdd.options>,
  positionals: string[],
): Extract<ForwardRequest, { mode: 'kernel' }> {
  const { portText, toText } = portAndTarget(positionals, 'add');
  const { port, protocols } = parseOnePort(portText, 'the port to forward');
  const addrs = parseAddrArgs(v.addr);
  if (!/^[0-9]+$/.test(toText)) {
    throw new UsageError(
      `a kernel redirect goes to a port of this host, not '${toText}'`,
      'Forward to another host in userspace: lowport forward serve 80 HOST:PORT.',
    );
  }
  const mapped = addrs.find((a) => /^::ffff:/i.test(a));
  if (mapped !== undefined)
    throw new UsageError(`--addr ${mapped}: write the IPv4 address (${mapped.slice(7)}); nftables sees IPv4 packets as IPv4`);
  const toPort = plainPort(toText, 'the target port');
  if (toPort === port) throw new UsageError(`forwarding ${port} to itself does nothing`);
  return { mode: 'kernel', spec: { port, protocols, toPort, addrs }, persist: v.persist === true };
}

/** `lowport forward remove PORT`. */
export function parseRemoveArgs(positionals: string[]): Extract<ForwardRequest, { mode: 'remove' }> {
  const [text, ...extra] = positionals;
  if (text === undefined)
    throw new UsageError(
      'lowport forward remove needs the port, e.g. `lowport forward remove 443/tcp`',
      'See `lowport forward remove --help`.',
    );
  if (extra.length > 0) throw new UsageError(`lowport forward remove PORT takes nothing else, but got '${extra.join(' ')}'`);
  return { mode: 'remove', ...parseOnePort(text, 'the port to remove') };
}

/** `lowport forward serve PORT [HOST:]TO`: the userspace forwarder's request. */
export function parseServeArgs(v: ServeValues, positionals: string[]): Extract<ForwardRequest, { mode: 'userspace' }> {
  const { portText, toText } = portAndTarget(positionals, 'serve');
  const { port, protocols } = parseOnePort(portText, 'the port to forward');
  const addrs = parseAddrArgs(v.addr);
  const pp = v['proxy-protocol'];
  if (pp !== undefined && pp !== 'v1' && pp !== 'v2' && pp !== '1' && pp !== '2')
    throw new UsageError(`--proxy-protocol is v1 or v2, not '${pp}'`);
  if (pp !== undefined && protocols.includes('udp')) {
    throw new UsageError('--proxy-protocol is for TCP: give the port as PORT/tcp (the UDP forwarder sends no PROXY header)');
  }
  const req: Extract<ForwardRequest, { mode: 'userspace' }> = {
    mode: 'userspace',
    port,
    protocols,
    addrs,
    backend: parseBackend(toText),
    // Half the CPUs: the backend usually runs on this machine too, and on 2
    // CPUs shared with it one thread forwarded as much as two (bench/README.md).
    workers: count(v, 'workers', Math.max(1, Math.min(4, Math.floor(availableParallelism() / 2)))),
    maxConnections: count(v, 'max-conns', DEFAULTS.maxConnections),
    connectTimeoutMs: seconds(v, 'connect-timeout', DEFAULTS.connectTimeoutMs),
    idleTimeoutMs: seconds(v, 'idle-timeout', DEFAULTS.idleTimeoutMs, 'never'),
    drainTimeoutMs: seconds(v, 'drain-timeout', DEFAULTS.drainTimeoutMs, 'close them at once'),
    udpTimeoutMs: seconds(v, 'udp-timeout', DEFAULTS.udpTimeoutMs),
    log: v.log === true,
  };
  if (v.user !== undefined) req.user = v.user;
  if (pp !== undefined) req.proxyProtocol = pp === 'v1' || pp === '1' ? 'v1' : 'v2';
  return req;
}

function ownerText(f: ForwardEntry, ownPolicy: string): string {
  if (f.owner.kind === 'policy') {
    const which = f.owner.id === ownPolicy ? 'policy file' : `another policy file (${f.policy ?? f.owner.id})`;
    return f.alive ? `${which} (--persist)` : `${which}, deleted: \`lowport forward gc\` removes it`;
  }
  const pid = f.pid ?? f.owner.pid;
  const where = f.pid !== undefined && f.pid !== f.owner.pid ? ` (pid ${f.owner.pid} in its container)` : '';
  if (!f.alive) return `pid ${f.owner.pid}, gone: \`lowport forward gc\` removes it`;
  if (f.pid === undefined && f.owner.ns !== undefined)
    return `pid ${f.owner.pid} in pid namespace ${f.owner.ns}, not visible from here (kept)`;
  if (f.command === undefined) return `pid ${pid}${where}`;
  // `node /path/to/dist/src/cli/main.js forward 80 8080` reads better as `lowport forward 80 8080`.
  const command = f.command.replace(/^\S*node\S* \S*(?:main\.js|lowport) /, 'lowport ');
  return `pid ${pid}${where} (${command.length > 60 ? `${command.slice(0, 57)}...` : command})`;
}

/** Owners' command lines and policy paths come from other users: every cell is escaped (text.ts) before it is measured and shown. */
function table(cells: string[][]): string {
  const rows = cells.map((r) => r.map(escapeControl));
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

type Ctx = Pick<CommandContext, 'io' | 'json' | 'note' | 'options'>;

/** A kernel redirect held until a signal, or persisted; or a persisted one removed. */
function kernelOrRemove(ctx: Ctx, req: Extract<ForwardRequest, { mode: 'kernel' | 'remove' }>): () => Promise<number> {
  // The redirect sends every client of the low port to whoever holds the high one: said once the redirect is
  // in place, never before an error that refuses it (a port forwarded already).
  const warning =
    req.mode === 'kernel' && req.spec.toPort >= 1024
      ? `any local user may bind ${req.spec.toPort} while your server is not running there; \`lowport reserve ${req.spec.toPort} --user SERVER-USER\` keeps it for the server`
      : undefined;
  return async () => {
    if (req.mode === 'kernel' && !req.persist) {
      // holdRedirect's first note ("forwarding ...") comes once the rules are in: the warning follows it.
      let warned = warning === undefined;
      return holdRedirect(req.spec, (text) => {
        ctx.note(text);
        if (!warned && warning !== undefined) ctx.note(warning);
        warned = true;
      });
    }
    const result = req.mode === 'remove' ? unpersistForward(ctx.options, req.port, req.protocols) : persistForward(ctx.options, req.spec);
    if (ctx.json) {
      printJson(ctx.io, result);
      return 0;
    }
    if (warning !== undefined) ctx.note(warning);
    for (const n of result.notes) ctx.note(n);
    ctx.io.stdout(
      `${result.policy}: ${result.changed ? 'written; ' : ''}${result.live} persisted redirect${result.live === 1 ? '' : 's'} live\n`,
    );
    return 0;
  };
}

export const add: Implementation = implement(commands.forwardAdd, (ctx) => kernelOrRemove(ctx, parseAddArgs(ctx.values, ctx.positionals)));

export const remove: Implementation = implement(commands.forwardRemove, (ctx) => kernelOrRemove(ctx, parseRemoveArgs(ctx.positionals)));

export const list: Implementation = implement(commands.forwardList, (ctx) => {
  noArguments(ctx, 'forward list');
  const policy = policyPath(ctx.options);
  return () => {
    const entries = listRedirects();
    if (ctx.json) {
      printJson(ctx.io, { redirects: entries });
      return 0;
    }
    if (entries.length === 0) {
      ctx.io.stdout('no redirects: lowport has no nftables rules here\n');
      return 0;
    }
    const own = policyOwner(policy);
    const id = own.kind === 'policy' ? own.id : '';
    const rows = [
      ['PORT', 'PROTO', 'TO', 'ADDRESSES', 'OWNER'],
      ...entries.map((f) => [
        String(f.port),
        f.protocols.join(','),
        String(f.toPort),
        f.addrs.length === 0 ? 'every local address' : f.addrs.join(','),
        ownerText(f, id),
      ]),
    ];
    ctx.io.stdout(`${table(rows)}\n`);
    return 0;
  };
});

export const gc: Implementation = implement(commands.forwardGc, (ctx) => {
  noArguments(ctx, 'forward gc');
  return () => {
    const removed = gcRedirects();
    if (ctx.json) printJson(ctx.io, { removed });
    else
      ctx.io.stdout(
        removed.length === 0
          ? nothingToCollect(listRedirects().length)
          : removed
              .map(
                (r) =>
                  `removed ${describeSpec(r)} (${r.owner.kind === 'pid' ? `its lowport, pid ${r.owner.pid}, is gone` : 'its policy file is gone'})\n`,
              )
              .join(''),
      );
    return 0;
  };
});

/** What `forward gc` says when it removed nothing: whether there was anything to look at. */
function nothingToCollect(left: number): string {
  return left === 0
    ? 'nothing to remove: lowport has no redirects here\n'
    : `nothing to remove: ${left === 1 ? 'the one redirect has' : `each of the ${left} redirects has`} a live owner\n`;
}

export const serve: Implementation = implement(commands.forwardServe, (ctx) => {
  const req = parseServeArgs(ctx.values, ctx.positionals);
  // An unknown --user is the argument's fault: shown against it, exit 2.
  return () => nameFromArgumentAsync('--user', req.user, () => runUserspace({ ...req, note: ctx.note }));
});
