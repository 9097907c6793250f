// Lint: typescript-eslint's recommended type-aware rules, plus the stack of
// ARCHITECTURE.md as allow-lists: each layer of src/ names the layers it may
// import, and an import of any other (an upward one, or a sideways one not
// listed) fails lint. test/unit/lint-layers.test.ts plants such imports to
// show that it does.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** src/*.ts below every layer: errors and the escaping of text. */
const BASE = ['errors', 'text', 'diagnostic'];

/**
 * The stack, bottom up: layer -> the layers it may import (besides itself and
 * BASE). cli, at the top, may import everything; index.ts is the library's
 * entry and exports from any layer.
 */
export const STACK = {
  os: [],
  bpf: ['os'],
  policy: [],
  'policy-file': ['os', 'policy'],
  grants: ['os', 'bpf', 'policy', 'policy-file'],
  forward: ['os', 'policy', 'policy-file'],
  ops: ['os', 'bpf', 'policy', 'policy-file', 'grants', 'forward'],
  integrate: ['os', 'bpf', 'policy', 'policy-file', 'grants', 'forward', 'ops'],
  run: ['os', 'bpf', 'policy', 'policy-file', 'grants', 'forward', 'ops'],
  doctor: ['os', 'bpf', 'policy', 'policy-file', 'grants', 'forward', 'ops', 'integrate'],
};

/** Only the named siblings of a layer: everything under ../ is refused but these. */
const allowOnly = (layer, allowed) => ({
  files: [`src/${layer}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          {
            group: ['../*', ...BASE.map((b) => `!../${b}.js`), ...allowed.map((l) => `!../${l}`)],
            message: `${layer}/ may import only ${[...allowed.map((l) => `${l}/`), 'errors.ts', 'text.ts', 'diagnostic.ts'].join(', ')} (ARCHITECTURE.md, the stack)`,
          },
        ],
      },
    ],
  },
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // prettier (printWidth 140, `npm run lint` checks it) wraps code; this holds comments to the
      // same limit. Strings and templates stay whole (messages are grepped for).
      'max-len': ['error', { code: 140, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true, ignoreUrls: true }],
    },
  },
  ...Object.entries(STACK).map(([layer, allowed]) => allowOnly(layer, allowed)),
  {
    files: BASE.map((b) => `src/${b}.ts`),
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['./*/**'], message: 'errors.ts, text.ts and diagnostic.ts are below every layer: they import none' }] },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-floating-promises': 'off' },
  },
  { files: ['eslint.config.js'], ...tseslint.configs.disableTypeChecked },
);
