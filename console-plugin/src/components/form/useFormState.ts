import * as React from 'react';
import { useTranslation } from 'react-i18next';
import type { MachineOSConfigKind } from '../../models';
import { emptyFormState, toFormState, toObject, type FormState } from '../../lib/form-state';
import { validate, type FieldErrors, type FieldKey } from '../../lib/validation';
import type { ServerErrors } from '../../lib/server-errors';

/** The form's fields, their client-side and server-side messages, and how they change. */
export interface FormModel {
  state: FormState;
  clientErrors: FieldErrors;
  /** Whether the client-side messages show (after the first submit, or leaving a filled field). */
  showClientErrors: boolean;
  setShowClientErrors: (show: boolean) => void;
  /** A field's client-side message, once they show. */
  shownClient: (k: FieldKey) => string | undefined;
  server: ServerErrors;
  setServer: (errors: ServerErrors) => void;
  /** Change fields; the server's messages about the `touched` ones go. */
  update: (patch: Partial<FormState>, touched: FieldKey[]) => void;
  onPool: (pool: string) => void;
  onName: (name: string) => void;
  /** The object to send: the fields over what the YAML view last held. */
  toObject: () => MachineOSConfigKind;
  /** Take the fields from an object (the YAML view's). */
  load: (obj: MachineOSConfigKind) => void;
}

export const useFormState = (existing: MachineOSConfigKind | undefined): FormModel => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const editing = !!existing;
  const [state, setState] = React.useState<FormState>(() =>
    existing ? toFormState(existing) : emptyFormState(),
  );
  // What the YAML view last held (keeps fields the form does not show).
  const [base, setBase] = React.useState<Partial<MachineOSConfigKind> | undefined>(existing);
  const [nameFollowsPool, setNameFollowsPool] = React.useState(!editing);
  const [showClientErrors, setShowClientErrors] = React.useState(false);
  const [server, setServer] = React.useState<ServerErrors>({ fields: {}, general: [] });

  const clientErrors: FieldErrors = React.useMemo(() => validate(state, t), [state, t]);
  const shownClient = (k: FieldKey) => (showClientErrors ? clientErrors[k] : undefined);

  const update = (patch: Partial<FormState>, touched: FieldKey[]) => {
    setState((s) => ({ ...s, ...patch }));
    // A server message about a field is stale once the user changes that field.
    setServer((s) => {
      const fields = { ...s.fields };
      for (const k of touched) fields[k] = undefined;
      return { ...s, fields };
    });
  };

  const onPool = (pool: string) => {
    if (nameFollowsPool) update({ pool, name: pool }, ['pool', 'name']);
    else update({ pool }, ['pool']);
  };

  const onName = (name: string) => {
    setNameFollowsPool(name === state.pool);
    update({ name }, ['name']);
  };

  const load = (obj: MachineOSConfigKind) => {
    const next = toFormState(obj);
    setBase(obj);
    setState(next);
    setNameFollowsPool(!editing && next.name === next.pool);
  };

  return {
    state,
    clientErrors,
    showClientErrors,
    setShowClientErrors,
    shownClient,
    server,
    setServer,
    update,
    onPool,
    onName,
    toObject: () => toObject(state, base),
    load,
  };
};
