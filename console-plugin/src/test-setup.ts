import '@testing-library/jest-dom/vitest';
import { configure } from '@testing-library/react';
import { createInstance } from 'i18next';
import { initReactI18next } from 'react-i18next';
import locale from '../locales/en/plugin__strata-console-plugin.json';

// The browser tests' attribute (Playwright's testIdAttribute) for getByTestId.
configure({ testIdAttribute: 'data-test' });

// The console's i18n conventions (keys are the English text, `~` before the key), with the
// plugin's locale file: a key it lacks fails the test that rendered it.
const NS = 'plugin__strata-console-plugin';
const missing: string[] = [];
void createInstance()
  .use(initReactI18next)
  .init({
    lng: 'en',
    ns: [NS],
    defaultNS: NS,
    resources: { en: { [NS]: locale } },
    nsSeparator: '~',
    keySeparator: false,
    interpolation: { escapeValue: false },
    saveMissing: true,
    missingKeyHandler: (_lngs, ns, key) => {
      missing.push(`${ns}~${key}`);
    },
    showSupportNotice: false,
  });

afterEach(() => {
  expect(missing.splice(0), 'keys missing from locales/en').toEqual([]);
});
