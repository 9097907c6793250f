/**
 * The stack of ARCHITECTURE.md is eslint's allow-lists (eslint.config.js):
 * imports planted against it fail lint, and the imports it allows pass.
 * Linted as text under the real files' names, so nothing on disk changes.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { ESLint } from 'eslint';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** The no-restricted-imports messages eslint gives `file` when `importLine` is added to its top. */
async function layerErrors(file: string, importLine: string): Promise<string[]> {
  const eslint = new ESLint({ cwd: ROOT });
  const [result] = await eslint.lintText(`${importLine}\nexport {};\n`, { filePath: `${ROOT}${file}` });
  return (result?.messages ?? []).filter((m) => m.ruleId === 'no-restricted-imports').map((m) => m.message);
}

describe('the stack in eslint', () => {
  const forbidden: [string, string, RegExp][] = [
    ['src/os/mounts.ts', "import '../forward/nft.js';", /os\/ may import only errors\.ts/],
    ['src/policy/types.ts', "import '../forward/serve.js';", /policy\/ may import only errors\.ts/],
    ['src/bpf/asm.ts', "import '../grants/map-format.js';", /bpf\/ may import only os\//],
    ['src/grants/compile.ts', "import '../ops/apply.js';", /grants\/ may import only/],
    ['src/grants/live.ts', "import '../forward/redirect.js';", /grants\/ may import only/],
    ['src/forward/redirect.ts', "import '../grants/live.js';", /forward\/ may import only os\/, policy\/, policy-file\//],
    ['src/policy-file/policy-file.ts', "import '../grants/document.js';", /policy-file\/ may import only os\/, policy\//],
    ['src/ops/apply.ts', "import '../cli/io.js';", /ops\/ may import only/],
    ['src/doctor/doctor.ts', "import '../cli/main.js';", /doctor\/ may import only/],
    ['src/run/run.ts', "import '../doctor/doctor.js';", /run\/ may import only/],
    ['src/errors.ts', "import './os/libc.js';", /below every layer/],
  ];
  for (const [file, line, message] of forbidden) {
    it(`refuses ${line} in ${file}`, async () => {
      const errors = await layerErrors(file, line);
      assert.equal(errors.length, 1, `expected one layering error, got: ${JSON.stringify(errors)}`);
      assert.match(errors[0] ?? '', message);
    });
  }

  const allowed: [string, string][] = [
    ['src/os/mounts.ts', "import '../errors.js';"],
    ['src/bpf/asm.ts', "import '../os/libc.js';"],
    ['src/grants/live.ts', "import '../bpf/syscall.js';"],
    ['src/ops/apply.ts', "import '../forward/redirect.js';"],
    ['src/doctor/doctor.ts', "import '../integrate/authbind.js';"],
    ['src/cli/main.ts', "import '../doctor/doctor.js';"],
  ];
  for (const [file, line] of allowed) {
    it(`allows ${line} in ${file}`, async () => {
      assert.deepEqual(await layerErrors(file, line), []);
    });
  }
});
