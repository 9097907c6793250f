/** systemctl(1), for the boot unit. `root` is systemctl's --root: an image or a test's directory instead of the running system. */
import { spawnSync } from 'node:child_process';
import { MissingToolError, systemTool, systemToolEnv } from './process.js';

export function systemctlPath(): string | undefined {
  return systemTool('systemctl');
}

export function systemctl(args: string[], root?: string): { ok: boolean; output: string } {
  const path = systemctlPath();
  if (path === undefined) throw new MissingToolError(['systemctl'], 'systemd', 'lowport installs its boot unit with it');
  const r = spawnSync(path, [...(root === undefined ? [] : [`--root=${root}`]), ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: systemToolEnv(),
  });
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}`.trim() };
}
