// The pure helpers take i18next's `t` so that the components' messages are translated; without
// one they answer in English (the keys are the English text, as in the console).

export type Translate = (key: string, options?: Record<string, unknown>) => string;

/** `t` without i18next: the key with its `{{name}}` placeholders filled in. */
export const english: Translate = (key, options = {}) =>
  key.replace(/\{\{(\w+)\}\}/g, (_m, k: string) => {
    const v = options[k];
    return typeof v === 'string' || typeof v === 'number' ? String(v) : '';
  });
