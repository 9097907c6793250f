import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { findNft } from '../../../src/os/nft.js';
import { lookupUsers } from '../../../src/os/nss.js';
import { systemTool } from '../../../src/os/process.js';
import { systemctlPath } from '../../../src/os/systemctl.js';

describe('programs lowport runs as root come from the system, never from the caller’s PATH', () => {
  let dir: string;
  let savedPath: string | undefined;
  const marker = (name: string): string => join(dir, `${name}-ran`);

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'lowport-path-'));
    // What a user could leave on a PATH that a root shell kept (`su` without `-`, `sudo -E`).
    for (const name of ['getent', 'nft', 'systemctl', 'setpriv', 'setsid', 'cat']) {
      writeFileSync(join(dir, name), `#!/bin/sh\ntouch ${marker(name)}\nexit 0\n`, { mode: 0o755 });
    }
    savedPath = process.env.PATH;
    process.env.PATH = `${dir}:${savedPath ?? ''}`;
  });

  after(() => {
    process.env.PATH = savedPath;
    rmSync(dir, { recursive: true, force: true });
  });

  it('resolves users with the system’s getent, not one planted first on PATH', () => {
    const root = lookupUsers(['root']).get('root');
    assert.equal(root?.uid, 0);
    assert.equal(existsSync(marker('getent')), false, 'the planted getent ran');
  });

  it('finds nft, systemctl, setpriv and setsid only in the system’s directories', () => {
    for (const found of [findNft(), systemctlPath(), systemTool('setpriv'), systemTool('setsid')]) {
      if (found !== undefined) assert.equal(found.startsWith(dir), false, found);
    }
  });
});
