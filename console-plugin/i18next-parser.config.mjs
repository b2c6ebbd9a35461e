// i18next-parser (as the console plugin template uses it): the keys of every t('…') in the plugin's
// sources and every %plugin__…~…% of console-extensions.json, into locales/en/<namespace>.json.
// `npm run i18n` writes the file; `npm run i18n-check` (in `make console-test`) fails when it is
// not what the sources say (a visible string missing, or a stale key).
import { ConsoleExtensionsLexer } from './i18n-scripts/lexers.mjs';

export default {
  input: [
    'src/**/*.{ts,tsx}',
    '!src/**/*.test.{ts,tsx}',
    '!src/testing/**',
    'console-extensions.json',
  ],
  output: 'locales/$LOCALE/$NAMESPACE.json',
  sort: true,
  createOldCatalogs: false,
  keySeparator: false,
  namespaceSeparator: '~',
  pluralSeparator: '_',
  locales: ['en'],
  defaultNamespace: 'plugin__strata-console-plugin',
  reactNamespace: false,
  // English is the key itself.
  defaultValue: (_locale, _namespace, key) => key,
  failOnWarnings: true,
  lexers: {
    ts: ['JavascriptLexer'],
    tsx: ['JsxLexer'],
    json: [ConsoleExtensionsLexer],
    default: ['JavascriptLexer'],
  },
};
