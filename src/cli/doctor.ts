/** `lowport doctor`: why a port cannot be bound, and the simplest safe fix here. */
import { UsageError } from '../errors.js';
import { doctor as diagnose, type CheckStatus, type DoctorReport } from '../doctor/doctor.js';
import { MAX_PORT, MIN_PORT } from '../policy/ports.js';
import { escapeControl } from '../text.js';
import { nameFromArgument } from './args.js';
import { implement, printJson, type Implementation } from './command.js';
import * as commands from './commands.js';
import { lowportForSudo } from './sudo.js';

const MARK: Record<CheckStatus, string> = { ok: '✓', fail: '✗', info: '–' };
const COMBO_NAME = { tcp4: 'TCP/IPv4', tcp6: 'TCP/IPv6', udp4: 'UDP/IPv4', udp6: 'UDP/IPv6' } as const;

/**
 * The human report. Much of it comes from other users (process names and
 * command lines from /proc, user names from NSS, paths, a script's shebang),
 * so every such piece is escaped (text.ts) before it reaches the terminal, and
 * each line of a recommended command separately, so the command stays as
 * recommend() wrote it.
 */
function formatDoctor(r: DoctorReport): string {
  const out: string[] = [`Can ${escapeControl(r.user.name)} (uid ${r.user.uid}) bind ${r.ports.map((p) => p.port).join(', ')}?`, ''];
  for (const p of r.ports) {
    const combos = Object.entries(p.canBind) as [keyof typeof COMBO_NAME, boolean | null][];
    const failed = combos.filter(([, v]) => v === false);
    if (failed.length === 0) {
      const skipped = combos.filter(([, v]) => v === null).map(([c]) => COMBO_NAME[c]);
      out.push(
        `${MARK.ok} port ${p.port}: binds on TCP and UDP, IPv4 and IPv6, wildcard and loopback${skipped.length > 0 ? ` (not available here: ${skipped.join(', ')})` : ''}`,
      );
    } else if (p.attempts.some((a) => a.error === undefined)) {
      // Some addresses bind and some do not (a grant for some addresses only): say which.
      out.push(`${MARK.fail} port ${p.port}: ${byAddress(p.attempts)}`);
    } else {
      out.push(`${MARK.fail} port ${p.port}: ${failed.map(([c]) => `${COMBO_NAME[c]} ${p.error[c] ?? ''}`).join(', ')}`);
    }
    for (const h of p.heldBy) {
      out.push(
        `    in use (${h.protocol}/IPv${h.family}) by ${h.pid === undefined ? `a process of uid ${h.uid} (run as root to see which)` : `${escapeControl(h.command ?? '?')} (pid ${h.pid}, uid ${h.uid})`}`,
      );
    }
  }
  out.push('');
  for (const c of r.checks) out.push(`${MARK[c.status]} ${escapeControl(c.detail)}`);
  out.push('');
  if (r.recommendation.method === 'none') {
    out.push(escapeControl(r.recommendation.why));
  } else {
    out.push(`Recommended (${r.recommendation.method}): ${escapeControl(r.recommendation.why)}`);
    out.push(...r.recommendation.command.split('\n').map((l) => `    ${escapeControl(l)}`));
    if (r.alternatives.length > 0) {
      out.push('', 'Other ways:');
      for (const a of r.alternatives)
        out.push(
          `  - ${a.method}: ${escapeControl(a.why)}`,
          `      ${escapeControl(a.command.split('\n')[0] ?? '')}${a.command.includes('\n') ? ' ...' : ''}`,
        );
    }
  }
  return `${out.join('\n')}\n`;
}

/** `binds on 127.0.0.1, ::1 (TCP, UDP); EACCES on 0.0.0.0, :: (TCP, UDP)`: addresses grouped by outcome and protocols. */
function byAddress(attempts: DoctorReport['ports'][number]['attempts']): string {
  const outcomes = new Map<string, string[]>();
  const addresses = [...new Set(attempts.map((a) => a.address))];
  for (const address of addresses) {
    const mine = attempts.filter((a) => a.address === address);
    for (const outcome of [...new Set(mine.map((a) => a.error ?? 'binds'))]) {
      const protocols = mine.filter((a) => (a.error ?? 'binds') === outcome).map((a) => a.protocol.toUpperCase());
      const key = `${outcome}|${protocols.join(', ')}`;
      outcomes.set(key, [...(outcomes.get(key) ?? []), address]);
    }
  }
  const parts = [...outcomes].map(([key, addrs]) => {
    const [outcome = '', protocols = ''] = key.split('|');
    return `${outcome === 'binds' ? 'binds' : outcome} on ${addrs.join(', ')} (${protocols})`;
  });
  // What binds first.
  return parts.sort((a, b) => Number(!a.startsWith('binds')) - Number(!b.startsWith('binds'))).join('; ');
}

function parsePort(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < MIN_PORT || n > MAX_PORT)
    throw new UsageError(`--port ${text}: a port is a number from ${MIN_PORT} to ${MAX_PORT}`);
  return n;
}

export const doctor: Implementation = implement(commands.doctor, (ctx) => {
  if (ctx.positionals.length > 0) throw new UsageError(`unexpected '${ctx.positionals[0]}': give ports with --port N`);
  const ports = [...new Set((ctx.values.port ?? ['80', '443']).flatMap((v) => v.split(',')).map(parsePort))];
  return () => {
    // An unknown --user is a bad argument: exit status 2, as for any usage error.
    const report = nameFromArgument('--user', ctx.values.user, () =>
      diagnose({
        ...ctx.options,
        ports,
        ...(ctx.values.user === undefined ? {} : { user: ctx.values.user }),
        ...(ctx.values.program === undefined ? {} : { program: ctx.values.program }),
        lowportCommand: lowportForSudo(),
      }),
    );
    if (ctx.json) printJson(ctx.io, report);
    else ctx.io.stdout(formatDoctor(report));
    return report.ok ? 0 : 1;
  };
});
