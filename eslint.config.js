// Lint: typescript-eslint's recommended type-aware rules, plus the one-way
// import rule of ARCHITECTURE.md: cli -> engine -> policy, kernel; kernel and
// policy import nothing of ours but errors.ts.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const restrict = (patterns, message) => ({
  'no-restricted-imports': ['error', { patterns: patterns.map((group) => ({ group: [group], message })) }],
});

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  { files: ['src/kernel/**/*.ts'], rules: restrict(['../cli/*', '../engine/*', '../policy/*'], 'kernel/ is the bottom layer: it imports nothing of ours but errors.ts') },
  { files: ['src/policy/**/*.ts'], rules: restrict(['../cli/*', '../engine/*', '../kernel/*'], 'policy/ is pure: it imports nothing of ours but errors.ts') },
  // engine/apply.ts and off.ts restore and remove the policy's persisted forwards (forward/redirect.ts), so forward sits below engine.
  { files: ['src/engine/**/*.ts'], rules: restrict(['../cli/*', '../doctor/*', '../run/*', '../integrate/*'], 'imports flow one way: cli -> engine') },
  { files: ['src/{doctor,run,integrate}/**/*.ts'], rules: restrict(['../cli/*'], 'imports flow one way: cli -> doctor, run, integrate') },
  { files: ['src/forward/**/*.ts'], rules: restrict(['../cli/*', '../engine/*', '../doctor/*', '../run/*', '../integrate/*'], 'imports flow one way: cli -> engine -> forward -> policy, kernel') },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-floating-promises': 'off' },
  },
  { files: ['eslint.config.js'], ...tseslint.configs.disableTypeChecked },
);
