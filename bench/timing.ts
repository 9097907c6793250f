/** Wall-clock timing of whole commands, and the statistics the tables use. */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';

export interface Timed {
  ms: number;
  result: SpawnSyncReturns<string>;
}

/**
 * Runs a command to its end and returns its wall time, fork and exec
 * included, as a user sees it. stdout goes to /dev/null unless `capture`:
 * the cost of a terminal or a pipe reader is not lowport's.
 */
export function timeCommand(command: string, args: string[], capture = false, okStatus: readonly number[] = [0]): Timed {
  const start = process.hrtime.bigint();
  const result = spawnSync(command, args, {
    encoding: 'utf8',
    stdio: ['ignore', capture ? 'pipe' : 'ignore', 'pipe'],
    maxBuffer: 256 * 1024 * 1024,
  });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.error !== undefined) throw result.error;
  if (result.status === null || !okStatus.includes(result.status))
    throw new Error(`${command} ${args.join(' ')}: exit ${result.status ?? result.signal}: ${result.stderr.trim()}`);
  return { ms, result };
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

export function range(xs: number[]): [number, number] {
  return [Math.min(...xs), Math.max(...xs)];
}

/** 3 significant digits, without exponent notation. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return 'n/a';
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** A Markdown table, columns padded so it also reads well in a terminal. */
export function markdownTable(header: string[], rows: string[][], rightAligned: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const cell = (t: string, i: number): string => (rightAligned[i] === true ? t.padStart(widths[i] ?? 0) : t.padEnd(widths[i] ?? 0));
  const line = (cells: string[]): string => `| ${cells.map(cell).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (rightAligned[i] === true ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}
