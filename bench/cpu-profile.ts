/**
 * Where a CLI command's time goes: reads a V8 .cpuprofile (`node --cpu-prof`)
 * and sums sample time by area (each of Node's own functions, koffi, each
 * lowport module) and by lowport function (inclusive), so the README can
 * say what dominates `apply` and `list` without a profiler UI.
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  /** Profiled time in ms (from V8's profiler start, after Node's own bootstrap, to exit). */
  totalMs: number;
  /** Self time by area, ms, largest first. */
  areas: [string, number][];
  /** Inclusive time of lowport's own functions, ms, largest first. */
  functions: [string, number][];
}

/** `dist/src/ops/apply.js` for lowport's files, `koffi`, `node:internal` for Node's own, or the V8 pseudo-frame. */
function areaOf(f: CallFrame): string {
  const url = f.url;
  if (url === '') return f.functionName.startsWith('(') ? f.functionName : '(native)';
  const ours = /\/dist\/(src\/.*)$/.exec(url);
  if (ours?.[1] !== undefined) return ours[1];
  if (url.includes('/node_modules/koffi/')) return 'koffi';
  // Node's own code: module loading as one area; the rest by function, since
  // `spawnSync` (waiting for a child such as getent) means something else.
  if (/^node:internal\/(modules|bootstrap)\//.test(url)) return 'node: loading modules';
  if (url.startsWith('node:')) return `${url} ${f.functionName || '(top level)'}`;
  return url;
}

function functionOf(f: CallFrame): string | undefined {
  const ours = /\/dist\/(src\/.*)$/.exec(f.url);
  if (ours?.[1] === undefined) return undefined;
  return `${f.functionName || '(top level)'}  ${ours[1]}:${f.lineNumber + 1}`;
}

export function summarizeProfile(path: string): ProfileSummary {
  const p = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const areas = new Map<string, number>();
  const functions = new Map<string, number>();
  // timeDeltas[i + 1] is the time from sample i to the next: the time sample i stands for.
  for (let i = 0; i < p.samples.length; i++) {
    const us = p.timeDeltas[i + 1] ?? 0;
    const node = byId.get(p.samples[i] ?? -1);
    if (node === undefined) continue;
    const area = areaOf(node.callFrame);
    areas.set(area, (areas.get(area) ?? 0) + us);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id);
      const name = f === undefined ? undefined : functionOf(f.callFrame);
      if (name === undefined || seen.has(name)) continue;
      seen.add(name);
      functions.set(name, (functions.get(name) ?? 0) + us);
    }
  }
  const ms = (m: Map<string, number>): [string, number][] =>
    [...m].map(([k, v]): [string, number] => [k, v / 1000]).sort((a, b) => b[1] - a[1]);
  return { totalMs: (p.endTime - p.startTime) / 1000, areas: ms(areas), functions: ms(functions) };
}
