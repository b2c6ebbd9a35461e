// Client-side checks of the form state: the CRD's field rules (crd-rules.ts) plus list rules.
import type { FormState } from './form-state';
import {
  MAX_CONTAINERFILES,
  MAX_CONTAINERFILE_LENGTH,
  checkBaseImage,
  checkPushSpec,
  checkReferenceName,
  runeLength,
} from './crd-rules';
import { english, type Translate } from './i18n';

/** Field keys of the form: also the targets of the API server's causes (server-errors.ts). */
export type FieldKey =
  | 'name'
  | 'pool'
  | 'pushSpec'
  | 'pushSecret'
  | 'pullSecret'
  | 'baseImage'
  | 'fragments'
  | `fragments.${number}`;

export type FieldErrors = Partial<Record<FieldKey, string>>;

export function validate(state: FormState, t: Translate = english): FieldErrors {
  const errors: FieldErrors = {};
  const set = (k: FieldKey, msg: string | undefined) => {
    if (msg) errors[k] = msg;
  };
  if (!state.pool) set('pool', t('Required: choose the MachineConfigPool to build for'));
  else set('pool', checkReferenceName(state.pool, false, t));
  // name == pool is the object-level CEL rule; the server checks it (see crd-rules.ts).
  if (!state.name) set('name', t('Required'));
  else set('name', checkReferenceName(state.name, false, t));
  set('pushSpec', checkPushSpec(state.pushSpec, t));
  set('pushSecret', checkReferenceName(state.pushSecret, false, t));
  set('pullSecret', checkReferenceName(state.pullSecret, true, t));
  set('baseImage', checkBaseImage(state.baseImage, t));
  if (state.fragments.length > MAX_CONTAINERFILES)
    set(
      'fragments',
      t('At most {{max}} Containerfiles (one per architecture)', { max: MAX_CONTAINERFILES }),
    );
  const seen = new Set<string>();
  state.fragments.forEach((f, i) => {
    if (seen.has(f.arch))
      set(
        `fragments.${i}`,
        t('Duplicate architecture {{arch}}: one Containerfile per architecture', { arch: f.arch }),
      );
    seen.add(f.arch);
    if (f.content.trim() === '')
      set(`fragments.${i}`, t('Empty: write instructions or remove this Containerfile'));
    else if (runeLength(f.content) > MAX_CONTAINERFILE_LENGTH)
      set(
        `fragments.${i}`,
        t('Too long: at most {{max}} characters (32 KiB)', { max: MAX_CONTAINERFILE_LENGTH }),
      );
  });
  return errors;
}

export const hasErrors = (e: FieldErrors): boolean => Object.keys(e).length > 0;
