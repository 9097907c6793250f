/**
 * `lowport log [--follow [--journal]] [--json]`: the audit trail's events, as lines, JSON lines or journal entries;
 * `lowport log enable|disable`: the policy's `log` statement, edited and made live as `grant` does.
 */
import { UsageError } from '../errors.js';
import { LogSink } from '../os/journal.js';
import { followLog, peekLog, unreadableNote, type LoggedEvent } from '../ops/log.js';
import { disableLogging, enableLogging } from '../ops/logging.js';
import { dropinFileName } from '../policy/sources.js';
import { LOG_WHATS, type LogWhat } from '../policy/types.js';
import { escapeControl } from '../text.js';
import { policyPath } from '../grants/target.js';
import { implement, jsonEscape, noArguments, printJson, type Implementation } from './command.js';
import * as commands from './commands.js';
import { reportEdit } from './grant.js';
import { ruleWhere } from './list.js';

/** `alice (1000)`, or the id alone when NSS does not know it. */
function who(name: string | undefined, id: number): string {
  return name === undefined ? String(id) : `${escapeControl(name)} (${id})`;
}

/** The address and port as a socket address: `127.0.0.1:80`, `[::1]:80`. */
function socketAddress(e: LoggedEvent): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/**
 * The statement that decided, as `list` names a rule: `line 3` in the policy
 * file, `policy.d/audit.policy:2` in a drop-in; `a run scope`; and where the
 * files are not known, the line through all of them, said as such.
 */
export function eventWhere(e: Pick<LoggedEvent, 'line' | 'file'>, policy: string): string {
  if (e.line === 0) return 'a run scope';
  if (e.file === undefined) return `line ${e.line} of the applied policy`;
  return e.file === policy ? `line ${e.line}` : ruleWhere(e, policy);
}

/**
 * One event as a line: `2026-11-30T07:40:01.123Z granted tcp 127.0.0.1:80 pid 4242 'python3' user nobody (65534)
 * group nogroup (65534) cgroup 1234 line 3` (or `... policy.d/audit.policy:2`: eventWhere). The process name is
 * the process's own choice: escaped, in quotes.
 */
export function formatEvent(e: LoggedEvent, policy: string): string {
  const line = eventWhere(e, policy);
  return (
    `${isoTime(e.time)} ${e.verdict} ${e.protocol} ${socketAddress(e)} pid ${e.pid} '${escapeControl(e.comm)}' ` +
    `user ${who(e.user, e.uid)} group ${who(e.group, e.gid)} cgroup ${e.cgroupId} ${line}`
  );
}

/** One event as a JSON object (one line): ids as numbers, the cgroup id as a decimal string (a u64). */
export function eventJson(e: LoggedEvent): string {
  // Every key in one order, absent ones undefined (JSON.stringify leaves them out), and the
  // bigint made a string here: no spread and no replacer per event, which cost a follower
  // most of its time (bench/README.md).
  return jsonEscape(
    JSON.stringify({
      time: isoTime(e.time),
      verdict: e.verdict,
      protocol: e.protocol,
      family: e.family,
      address: e.address,
      port: e.port,
      pid: e.pid,
      comm: e.comm,
      uid: e.uid,
      user: e.user,
      gid: e.gid,
      group: e.group,
      cgroupId: String(e.cgroupId),
      // The file's path and the line there; without a file (a run scope, files not known), the line as the program has it.
      file: e.file,
      line: e.line,
    }),
  );
}

/** The events of a burst share their millisecond: each is formatted once. */
let lastIso = { ms: Number.NaN, text: '' };
function isoTime(time: Date): string {
  const ms = time.getTime();
  if (ms !== lastIso.ms) lastIso = { ms, text: time.toISOString() };
  return lastIso.text;
}

/** LOG_INFO for a grant used, LOG_NOTICE for a refusal. */
const PRIORITY = { granted: 6, refused: 5 } as const;

/** The journal entry: a MESSAGE as `lowport log` prints it, and every part as its own LOWPORT_ field. */
export function journalFields(e: LoggedEvent, policy: string): [string, string][] {
  const fields: [string, string][] = [
    ['MESSAGE', formatEvent(e, policy).slice(e.time.toISOString().length + 1)],
    ['PRIORITY', String(PRIORITY[e.verdict])],
    ['SYSLOG_IDENTIFIER', 'lowport-log'],
    // journald adds the OBJECT_ fields (command line, unit, ...) of this pid from a root sender (systemd.journal-fields(7)).
    ['OBJECT_PID', String(e.pid)],
    ['LOWPORT_VERDICT', e.verdict],
    ['LOWPORT_PROTOCOL', e.protocol],
    ['LOWPORT_FAMILY', String(e.family)],
    ['LOWPORT_ADDRESS', e.address],
    ['LOWPORT_PORT', String(e.port)],
    ['LOWPORT_PID', String(e.pid)],
    ['LOWPORT_COMM', e.comm],
    ['LOWPORT_UID', String(e.uid)],
    ['LOWPORT_GID', String(e.gid)],
    ['LOWPORT_CGROUP_ID', String(e.cgroupId)],
    ...(e.file === undefined ? [] : [['LOWPORT_FILE', e.file] as [string, string]]),
    ['LOWPORT_LINE', String(e.line)],
    ['LOWPORT_EVENT_TIME', isoTime(e.time)],
  ];
  if (e.user !== undefined) fields.push(['LOWPORT_USER', e.user]);
  if (e.group !== undefined) fields.push(['LOWPORT_GROUP', e.group]);
  return fields;
}

export const log: Implementation = implement(commands.logShow, (ctx) => {
  noArguments(ctx, 'log');
  const follow = ctx.values.follow === true;
  const journal = ctx.values.journal === true;
  if (journal && !follow)
    throw new UsageError('--journal needs --follow', 'The journal writer is the reader: run `lowport log --follow --journal`.');
  if (journal && ctx.json) throw new UsageError('--journal and --json do not go together', 'The journal gets structured fields already.');
  const policy = policyPath(ctx.options);
  // One write per batch of events: a write per line would be a syscall per event.
  const print = (events: readonly LoggedEvent[]): void => {
    if (events.length > 0) ctx.io.stdout(events.map((e) => `${ctx.json ? eventJson(e) : formatEvent(e, policy)}\n`).join(''));
  };
  if (!follow) {
    return () => {
      const peek = peekLog(ctx.options);
      print(peek.events);
      if (!peek.ring) {
        ctx.note(
          peek.logging === undefined
            ? 'lowport is off: no events. Add a `log all` line to the policy and run `lowport apply`.'
            : "no audit trail: the policy has no 'log' statement. Add `log all` (or `log grants`, `log refusals`) and run `lowport apply`.",
        );
      } else if (peek.logging !== undefined && !peek.logging.grants && !peek.logging.refusals) {
        ctx.note("the live policy has no 'log' statement any more: no new events are written.");
      }
      if (peek.unreadable > 0) ctx.note(unreadableNote(peek.unreadable));
      if (peek.consumedBytes > 0n) {
        ctx.note('earlier events were taken by the reader (the lowport-log service): see `journalctl -u lowport-log`.');
      }
      return 0;
    };
  }
  return async () => {
    const abort = new AbortController();
    const stop = (): void => {
      abort.abort();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const sink = journal ? new LogSink() : undefined;
    if (sink?.kind === 'syslog') ctx.note('no journald here: writing the events to syslog (/dev/log)');
    try {
      await followLog(ctx.options, {
        signal: abort.signal,
        onEvents:
          sink === undefined
            ? print
            : (events) => {
                for (const e of events) sink.send(journalFields(e, policy), 'lowport-log', PRIORITY[e.verdict]);
              },
        onWaiting: (why) => ctx.note(why),
        onUnreadable: (count) => ctx.note(unreadableNote(count)),
      });
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      sink?.close();
    }
    return 0;
  };
});

export const enable: Implementation = implement(commands.logEnable, (ctx) => {
  const [word, extra] = ctx.positionals;
  if (extra !== undefined) throw new UsageError(`unexpected '${extra}': give one of grants, refusals or all`);
  const what = LOG_WHATS.find((w) => w === (word ?? 'all'));
  if (what === undefined)
    throw new UsageError(
      `lowport log enable takes grants, refusals or all, not '${word ?? ''}'`,
      'See `lowport log enable --help`; without a word it logs all.',
    );
  const chosen: LogWhat = what;
  // A bad --file is the command line's fault: said before any offer to run as root.
  if (ctx.values.file !== undefined) dropinFileName(ctx.values.file);
  return () => reportEdit(ctx, enableLogging(ctx.options, chosen, ctx.values.file));
});

export const disable: Implementation = implement(commands.logDisable, (ctx) => {
  noArguments(ctx, 'log disable');
  if (ctx.values.file !== undefined) dropinFileName(ctx.values.file);
  return () => {
    const outcome = disableLogging(ctx.options, ctx.values.file);
    if ('rules' in outcome) return reportEdit(ctx, outcome);
    // Nothing to remove: nothing was edited or made live.
    if (ctx.json) printJson(ctx.io, outcome);
    else for (const note of outcome.notes) ctx.note(note);
    return 0;
  };
});
