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

export function validate(state: FormState): FieldErrors {
  const errors: FieldErrors = {};
  const set = (k: FieldKey, msg: string | undefined) => {
    if (msg) errors[k] = msg;
  };
  if (!state.pool) set('pool', 'Required: choose the MachineConfigPool to build for');
  else set('pool', checkReferenceName(state.pool));
  // name == pool is the object-level CEL rule; the server checks it (see crd-rules.ts).
  if (!state.name) set('name', 'Required');
  else set('name', checkReferenceName(state.name));
  set('pushSpec', checkPushSpec(state.pushSpec));
  set('pushSecret', checkReferenceName(state.pushSecret));
  set('pullSecret', checkReferenceName(state.pullSecret, true));
  set('baseImage', checkBaseImage(state.baseImage));
  if (state.fragments.length > MAX_CONTAINERFILES)
    set('fragments', `At most ${MAX_CONTAINERFILES} Containerfiles (one per architecture)`);
  const seen = new Set<string>();
  state.fragments.forEach((f, i) => {
    if (seen.has(f.arch)) set(`fragments.${i}`, `Duplicate architecture ${f.arch}: one Containerfile per architecture`);
    seen.add(f.arch);
    if (f.content.trim() === '') set(`fragments.${i}`, 'Empty: write instructions or remove this Containerfile');
    else if (runeLength(f.content) > MAX_CONTAINERFILE_LENGTH)
      set(`fragments.${i}`, `Too long: at most ${MAX_CONTAINERFILE_LENGTH} characters (32 KiB)`);
  });
  return errors;
}

export const hasErrors = (e: FieldErrors): boolean => Object.keys(e).length > 0;
