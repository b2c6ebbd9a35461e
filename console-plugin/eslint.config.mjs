// ESLint as in openshift/console-plugin-template (eslint.config.ts): @eslint/js recommended,
// typescript-eslint strict + stylistic (type-checked), react + jsx-runtime, react-hooks, import-x,
// consistent type imports, testing rules for unit tests, Playwright rules for browser tests, and
// prettier. Where this project differs: Vitest's rules in place of Jest's (the unit tests run on
// Vitest), and i18next/no-literal-string on the plugin's JSX so that no visible text escapes t().
import eslint from '@eslint/js';
import { defineConfig } from 'eslint/config';
import { configs as tseslint } from 'typescript-eslint';
import react from 'eslint-plugin-react';
import prettier from 'eslint-plugin-prettier/recommended';
import reactHooks from 'eslint-plugin-react-hooks';
import { importX } from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import playwright from 'eslint-plugin-playwright';
import vitest from '@vitest/eslint-plugin';
import testingLibrary from 'eslint-plugin-testing-library';
import i18next from 'eslint-plugin-i18next';
import globals from 'globals';

export default defineConfig(
  {
    ignores: ['dist/', 'harness/dist/', 'node_modules/', 'test-results/'],
  },
  eslint.configs.recommended,
  tseslint.strictTypeChecked,
  tseslint.stylisticTypeChecked,
  reactHooks.configs.flat['recommended-latest'],
  importX.flatConfigs.recommended,
  importX.flatConfigs.typescript,
  {
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver()],
    },
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['*.mjs', 'i18n-scripts/*.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
  },
  {
    rules: {
      // Project choices within the template's rule set: `_`-prefixed names are deliberately
      // unused, and numbers read fine in template strings (`fragments.${i}`).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
    },
  },
  {
    files: ['src/**/*.{ts,tsx}', 'harness/**/*.{ts,tsx}'],
    plugins: {
      react,
    },
    rules: {
      ...react.configs.recommended.rules,
      ...react.configs['jsx-runtime'].rules,
      '@typescript-eslint/consistent-type-imports': 'error',
    },
    languageOptions: {
      globals: globals.browser,
      parserOptions: {
        ecmaFeatures: {
          jsx: true,
        },
      },
    },
    settings: {
      react: {
        version: 'detect',
      },
    },
  },
  {
    // Every visible string of the plugin goes through t() (the locale check then finds it).
    files: ['src/**/*.tsx'],
    ignores: ['src/**/*.test.tsx', 'src/testing/**'],
    plugins: { i18next },
    rules: {
      'i18next/no-literal-string': [
        'error',
        {
          mode: 'jsx-only',
          'jsx-attributes': {
            include: [
              'aria-label',
              'title',
              'titleText',
              'label',
              'placeholder',
              'toggleText',
              'alt',
              'helper',
            ],
          },
        },
      ],
    },
  },
  {
    files: ['src/**/*.test.{ts,tsx}'],
    plugins: {
      vitest,
      ...testingLibrary.configs['flat/react'].plugins,
    },
    languageOptions: {
      globals: {
        ...vitest.environments.env.globals,
        ...globals.node,
      },
    },
    rules: {
      ...vitest.configs.recommended.rules,
      ...testingLibrary.configs['flat/react'].rules,
    },
  },
  {
    // As the template lints its integration tests: Playwright's rules, no type-aware rules.
    ...playwright.configs['flat/recommended'],
    files: ['tests/browser/**/*.ts'],
    ...tseslint.disableTypeChecked,
    rules: {
      ...playwright.configs['flat/recommended'].rules,
      ...tseslint.disableTypeChecked.rules,
      'no-console': 'off',
    },
  },
  {
    // The browser-test harness stands in for the console (untyped extension records, a fetch-based
    // SDK): test infrastructure, linted like the browser tests.
    files: ['harness/**/*.{ts,tsx}'],
    ...tseslint.disableTypeChecked,
    rules: {
      ...tseslint.disableTypeChecked.rules,
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  {
    files: ['*.{ts,mjs}', 'i18n-scripts/*.mjs', 'harness/webpack.config.ts'],
    languageOptions: { globals: globals.node },
  },
  {
    // Build tooling in plain JavaScript: no type information to check against.
    files: ['**/*.mjs'],
    ...tseslint.disableTypeChecked,
  },
  prettier,
);
