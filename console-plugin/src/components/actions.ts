import * as React from 'react';
import { useTranslation } from 'react-i18next';
import { k8sPatch, type Action } from '@openshift-console/dynamic-plugin-sdk';
import { MachineOSConfigModel, type MachineOSConfigKind } from '../models';
import { rebuildPatch, rebuildRequested } from '../lib/build';
import { editHref } from './shared';

/** Set `strata.dev/rebuild`: the controller builds the current inputs again and removes it. */
export const requestRebuild = (obj: MachineOSConfigKind): Promise<MachineOSConfigKind> =>
  k8sPatch({ model: MachineOSConfigModel, resource: obj, data: rebuildPatch(obj) });

/** `console.action/resource-provider` for MachineOSConfig: Rebuild, Edit (form). */
export const useMachineOSConfigActions = (
  obj: MachineOSConfigKind,
): [Action[], boolean, unknown] => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const actions = React.useMemo<Action[]>(() => {
    const name = obj.metadata?.name ?? '';
    const pending = rebuildRequested(obj);
    return [
      {
        id: 'strata-rebuild',
        label: t('Rebuild'),
        description: t('Build the current inputs again'),
        cta: () => {
          requestRebuild(obj).catch((e: unknown) => {
            // The console shows no result for a callback action; keep the reason in the log.

            console.error('strata: rebuild request failed', e);
          });
        },
        disabled: pending,
        disabledTooltip: t('A rebuild was requested; the controller has not picked it up yet'),
        accessReview: {
          group: MachineOSConfigModel.apiGroup,
          resource: MachineOSConfigModel.plural,
          name,
          verb: 'patch',
        },
      },
      {
        id: 'strata-edit-form',
        label: t('Edit MachineOSConfig (form)'),
        cta: { href: editHref(name) },
        accessReview: {
          group: MachineOSConfigModel.apiGroup,
          resource: MachineOSConfigModel.plural,
          name,
          verb: 'update',
        },
      },
    ];
  }, [obj, t]);
  return [actions, true, undefined];
};
