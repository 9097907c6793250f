/**
 * Where lowport's package is, from a file of it: the directory above the
 * nearest dist/ that holds the file. One rule for both layouts the package
 * ships: tsc's dist/src/cli/main.js (the library, the tests) and the bundled
 * CLI's flat dist/bundle/main.js and its chunks. Paths only, no reads, so it
 * also serves paths inside an image (install --root).
 */
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package directory of `path`, a file under the package's dist/. */
export function packageDirOf(path: string): string {
  for (let dir = dirname(path); dir !== dirname(dir); dir = dirname(dir)) if (basename(dir) === 'dist') return dirname(dir);
  // Not under a dist/: the place tsc's layout would give (three levels above dist/src/cli/main.js).
  return dirname(dirname(dirname(dirname(path))));
}

/** The running lowport's package directory (where its package.json is), unbundled or bundled alike. */
export function ownPackageDir(): string {
  return packageDirOf(fileURLToPath(import.meta.url));
}
