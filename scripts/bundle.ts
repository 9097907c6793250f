/**
 * Run by `npm run build` after tsc: the CLI as esbuild bundles, in dist/bundle,
 * what `lowport` (package.json's bin) runs. Its input is tsc's output in
 * dist/src, the very code the tests and the library load, so the bundle
 * differs only in how it is laid out: fewer files to find, read and compile at
 * start-up (bench/README.md, "The CLI bundle").
 *
 *   dist/bundle/main.js          the CLI (with its #! line)
 *   dist/bundle/probe-main.js    doctor's bind test, started as --user by path
 *   dist/bundle/worker-main.js   forward serve's worker processes
 *   dist/bundle/tcp-thread.js    their relay threads
 *   dist/bundle/chunk-*.js       code shared between them, and each command's
 *                                own code (a command loads only its chunk)
 *
 * Entries and chunks sit in one directory, so a path resolved beside the
 * running file (new URL('./probe-main.js', import.meta.url)) finds the same
 * file as in dist/src; the package directory comes from os/package-dir.ts.
 * koffi stays a dependency in node_modules (its native module cannot be
 * bundled). No source maps: the package does not ship them.
 */
import { build } from 'esbuild';
import { chmodSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The files started as their own process or thread by path, relative to dist/src; named by their base name in the bundle. */
export const ENTRIES = ['cli/main.js', 'doctor/probe-main.js', 'forward/worker-main.js', 'forward/tcp-thread.js', 'run/accept-main.js'];

/** dist/scripts/bundle.js -> dist */
const DIST = fileURLToPath(new URL('..', import.meta.url));

export async function bundle(dist = DIST): Promise<string[]> {
  const out = join(dist, 'bundle');
  rmSync(out, { recursive: true, force: true });
  const result = await build({
    entryPoints: ENTRIES.map((e) => join(dist, 'src', e)),
    outdir: out,
    entryNames: '[name]',
    chunkNames: 'chunk-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    external: ['koffi'],
    // Class names stay as written: errors take their name from their class (errors.ts).
    keepNames: true,
    sourcemap: false,
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
  });
  chmodSync(join(out, 'main.js'), 0o755);
  return Object.keys(result.metafile.outputs).sort();
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const files = await bundle();
  process.stdout.write(`bundled the CLI into ${join(DIST, 'bundle')} (${files.length} files)\n`);
}
