/** `lowport install` and `lowport uninstall`: the policy applied at boot. */
import { UsageError } from '../errors.js';
import { install as installUnit, uninstall as uninstallUnit } from '../integrate/install.js';
import { escapeControl } from '../text.js';
import { implement, printJson, type Implementation } from './command.js';
import * as commands from './commands.js';
import { sudoArgv } from './sudo.js';
import { ownPackageDir } from '../os/package-dir.js';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * What the boot unit loads as root besides node and the script: the
 * package.json that makes dist/ ES modules, all of dist/, and koffi (its
 * JavaScript and native module). Not the rest of a checkout (.git, dev
 * dependencies), which nothing loads.
 */
function packageFiles(): string[] {
  const koffi = dirname(createRequire(import.meta.url).resolve('koffi'));
  return [join(ownPackageDir(), 'package.json'), join(ownPackageDir(), 'dist'), koffi];
}

/** The version, for the tarball's name in hints. Read here: importing main.js, the entry script, would wait on itself. */
function version(): string {
  return (JSON.parse(readFileSync(join(ownPackageDir(), 'package.json'), 'utf8')) as { version: string }).version;
}

export const install: Implementation = implement(commands.install, (ctx) => {
  if (ctx.positionals.length > 0) throw new UsageError('lowport install takes no arguments');
  return () => {
    const r = installUnit({
      ...ctx.options,
      ...(ctx.values.root === undefined ? {} : { root: ctx.values.root }),
      lowportArgv: sudoArgv([]),
      packageFiles: packageFiles(),
      ...(process.argv[1] === undefined ? {} : { invokedAs: process.argv[1] }),
      version: version(),
    });
    if (ctx.json) {
      printJson(ctx.io, r);
      return 0;
    }
    if (r.createdPolicy) ctx.io.stdout(`created ${escapeControl(r.policy)}\n`);
    if (r.unitFile !== undefined) ctx.io.stdout(`wrote and enabled ${escapeControl(r.unitFile)}\n`);
    if (r.logUnitFile !== undefined) ctx.io.stdout(`wrote and enabled ${escapeControl(r.logUnitFile)} (the audit trail's reader)\n`);
    if (r.instructions !== undefined) ctx.io.stdout(`${escapeControl(r.instructions)}\n`);
    for (const n of r.notes) ctx.note(escapeControl(n));
    return 0;
  };
});

export const uninstall: Implementation = implement(commands.uninstall, (ctx) => {
  if (ctx.positionals.length > 0) throw new UsageError('lowport uninstall takes no arguments');
  return () => {
    const r = uninstallUnit({
      ...ctx.options,
      ...(ctx.values.root === undefined ? {} : { root: ctx.values.root }),
      purge: ctx.values.purge === true,
    });
    if (ctx.json) {
      printJson(ctx.io, r);
      return 0;
    }
    ctx.io.stdout(r.removed.length === 0 ? 'nothing was installed\n' : r.removed.map((f) => `removed ${escapeControl(f)}\n`).join(''));
    for (const n of r.notes) ctx.note(escapeControl(n));
    return 0;
  };
});
