import type * as React from 'react';
import { useTranslation } from 'react-i18next';
import { Alert, FormGroup, FormSelect, FormSelectOption, Spinner } from '@patternfly/react-core';
import {
  MachineConfigPoolModel,
  MachineOSConfigModel,
  gvk,
  type MachineOSConfigKind,
} from '../../models';
import { errorText } from '../../lib/server-errors';
import { useWatchList } from '../useWatch';
import { FieldMessages } from './FieldMessages';
import { TextField } from './TextField';
import type { FormModel } from './useFormState';

export interface PoolChoices {
  /** The cluster's pools (and the chosen one, listed or not), sorted. */
  poolNames: string[];
  /** Pools another MachineOSConfig has. */
  taken: Set<string>;
  loaded: boolean;
  error: unknown;
}

/** The pools to choose from. Watched by the form itself, not by the pool field, so that the
 * watches last across switches to the YAML view. */
export const usePoolChoices = (
  existing: MachineOSConfigKind | undefined,
  pool: string,
): PoolChoices => {
  const [pools, loaded, error] = useWatchList<{ metadata?: { name?: string } }>({
    groupVersionKind: gvk(MachineConfigPoolModel),
    isList: true,
  });
  const [configs] = useWatchList<MachineOSConfigKind>({
    groupVersionKind: gvk(MachineOSConfigModel),
    isList: true,
  });
  const taken = new Set(
    configs
      .map((c) => c.spec.machineConfigPool.name)
      .filter((p) => p && p !== existing?.spec.machineConfigPool.name),
  );
  const poolNames = pools
    .map((p) => p.metadata?.name ?? '')
    .filter(Boolean)
    .sort();
  if (pool && !poolNames.includes(pool)) poolNames.push(pool);
  return { poolNames, taken, loaded, error };
};

/** The pool and the MachineOSConfig's name, which follows the pool until edited. */
export const PoolFields: React.FC<{ form: FormModel; choices: PoolChoices; editing: boolean }> = ({
  form,
  choices: { poolNames, taken, loaded, error },
  editing,
}) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const { state, shownClient, server, onPool, onName } = form;
  return (
    <>
      <FormGroup label={t('MachineConfigPool')} isRequired fieldId="strata-pool">
        {error ? (
          <Alert
            variant="danger"
            isInline
            isPlain
            title={t('Cannot list MachineConfigPools: {{e}}', { e: errorText(error) })}
          />
        ) : !loaded ? (
          <Spinner size="md" aria-label={t('Loading pools')} />
        ) : (
          <FormSelect
            id="strata-pool"
            data-test="field-pool"
            value={state.pool}
            isDisabled={editing}
            onChange={(_e, v) => {
              onPool(v);
            }}
            validated={shownClient('pool') || server.fields.pool ? 'error' : 'default'}
          >
            <FormSelectOption value="" label={t('Select a pool')} isPlaceholder />
            {poolNames.map((p) => (
              <FormSelectOption
                key={p}
                value={p}
                label={taken.has(p) ? t('{{pool}} (has a MachineOSConfig)', { pool: p }) : p}
                isDisabled={taken.has(p)}
              />
            ))}
          </FormSelect>
        )}
        <FieldMessages
          id="pool"
          client={shownClient('pool')}
          server={server.fields.pool}
          helper={
            editing
              ? t('The pool of an existing MachineOSConfig cannot change.')
              : t('The pool whose machines run the built image.')
          }
        />
      </FormGroup>

      <TextField
        form={form}
        id="name"
        label={t('Name')}
        required
        readOnlyVariant={editing ? 'default' : undefined}
        onChange={onName}
        helper={t("Must equal the pool's name: one MachineOSConfig per pool.")}
      />
    </>
  );
};
