import '@testing-library/jest-dom/vitest';
import i18next from 'i18next';
import { initReactI18next } from 'react-i18next';

// Keys are the English text (the console's convention); missing keys fall back to them.
i18next.use(initReactI18next).init({
  lng: 'en',
  resources: {},
  nsSeparator: '~',
  keySeparator: false,
  interpolation: { escapeValue: false },
  showSupportNotice: false,
});
