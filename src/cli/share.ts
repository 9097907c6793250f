/**
 * Run by `npm run build` after tsc: writes the man page and the completion
 * scripts, generated from the command declarations, to dist/share, in the
 * places a package installs them from (under /usr/share):
 *   dist/share/man/man8/lowport.8
 *   dist/share/bash-completion/completions/lowport
 *   dist/share/zsh/vendor-completions/_lowport
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bashCompletion, zshCompletion } from './completion.js';
import { version } from './main.js';
import { manPage } from './manpage.js';

/** The files, by path under share/. */
function shareFiles(): Record<string, string> {
  return {
    'man/man8/lowport.8': manPage(version()),
    'bash-completion/completions/lowport': bashCompletion(),
    'zsh/vendor-completions/_lowport': zshCompletion(),
  };
}

function writeShare(dir: string): string[] {
  return Object.entries(shareFiles()).map(([path, text]) => {
    const file = join(dir, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
    return file;
  });
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  // dist/src/cli/share.js -> dist/share
  const dist = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
  for (const f of writeShare(join(dist, 'share'))) process.stdout.write(`wrote ${f}\n`);
}
