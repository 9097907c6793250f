/** `lowport install` and `lowport uninstall`: the policy applied at boot. */
import { UsageError } from '../errors.js';
import { install, uninstall } from '../integrate/install.js';
import { escapeControl } from '../text.js';
import { printJson, type Command } from './command.js';
import { sudoArgv } from './sudo.js';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * What the boot unit loads as root besides node and the script: the
 * package.json that makes dist/ ES modules, all of dist/, and koffi (its
 * JavaScript and native module). Not the rest of a checkout (.git, dev
 * dependencies), which nothing loads.
 */
function packageFiles(): string[] {
  const pkg = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const koffi = dirname(createRequire(import.meta.url).resolve('koffi'));
  return [join(pkg, 'package.json'), join(pkg, 'dist'), koffi];
}

const ROOT_OPTION = { root: { type: 'string' } } as const;

export const installCommand: Command = {
  name: 'install',
  help: `Usage: lowport install [--root DIR]

Writes and enables /etc/systemd/system/lowport.service, which runs
\`lowport apply\` at boot, after local filesystems and user lookups and before
the network comes up (so before network services bind), and \`lowport off\`
when stopped. Creates /etc/lowport/policy if it does not exist. Without
systemd, says what to add to the boot sequence instead.

  --root DIR   install into an image or another root (systemctl --root)`,
  options: ROOT_OPTION,
  needsRoot: () => true,
  prepare: (ctx) => {
    if (ctx.positionals.length > 0) throw new UsageError('lowport install takes no arguments');
    return () => {
      const r = install({ ...ctx.options, ...(ctx.values.root === undefined ? {} : { root: ctx.values.root as string }), lowportArgv: sudoArgv([]), packageFiles: packageFiles() });
      if (ctx.json) {
        printJson(ctx.io, r);
        return 0;
      }
      if (r.createdPolicy) ctx.io.stdout(`created ${escapeControl(r.policy)}\n`);
      if (r.unitFile !== undefined) ctx.io.stdout(`wrote and enabled ${escapeControl(r.unitFile)}\n`);
      if (r.instructions !== undefined) ctx.io.stdout(`${escapeControl(r.instructions)}\n`);
      for (const n of r.notes) ctx.io.stdout(`${escapeControl(n)}\n`);
      return 0;
    };
  },
};

export const uninstallCommand: Command = {
  name: 'uninstall',
  help: `Usage: lowport uninstall [--purge] [--root DIR]

Disables and removes lowport.service. Keeps the policy file unless --purge.
Grants live now stay until reboot or \`lowport off\`.`,
  options: { ...ROOT_OPTION, purge: { type: 'boolean' } },
  needsRoot: () => true,
  prepare: (ctx) => {
    if (ctx.positionals.length > 0) throw new UsageError('lowport uninstall takes no arguments');
    return () => {
      const r = uninstall({ ...ctx.options, ...(ctx.values.root === undefined ? {} : { root: ctx.values.root as string }), purge: ctx.values.purge === true });
      if (ctx.json) {
        printJson(ctx.io, r);
        return 0;
      }
      ctx.io.stdout(r.removed.length === 0 ? 'nothing was installed\n' : r.removed.map((f) => `removed ${escapeControl(f)}\n`).join(''));
      for (const n of r.notes) ctx.io.stdout(`${escapeControl(n)}\n`);
      return 0;
    };
  },
};
