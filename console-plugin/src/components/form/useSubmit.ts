import * as React from 'react';
import { useNavigate } from 'react-router';
import { useTranslation } from 'react-i18next';
import { k8sCreate, k8sPatch } from '@openshift-console/dynamic-plugin-sdk';
import { MachineOSConfigModel, type MachineOSConfigKind } from '../../models';
import { updatePatch } from '../../lib/form-state';
import { hasErrors } from '../../lib/validation';
import { serverErrors, statusOf } from '../../lib/server-errors';
import { detailsHref } from '../shared';
import type { FormModel } from './useFormState';
import type { YamlViewModel } from './useYamlView';

export interface SubmitModel {
  submitting: boolean;
  submitForm: (e?: React.FormEvent) => void;
  /** The YAML editor's Create/Save: it sends what it says; the API server validates it. */
  submitYaml: (content: string) => void;
}

/** Create or patch the MachineOSConfig, then go to its details; the server's messages otherwise. */
export const useSubmit = (
  existing: MachineOSConfigKind | undefined,
  form: FormModel,
  yaml: YamlViewModel,
): SubmitModel => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const navigate = useNavigate();
  const [submitting, setSubmitting] = React.useState(false);

  const send = async (obj: MachineOSConfigKind) => {
    setSubmitting(true);
    form.setServer({ fields: {}, general: [] });
    try {
      const saved = existing
        ? await k8sPatch({
            model: MachineOSConfigModel,
            resource: existing,
            data: updatePatch(existing, obj),
          })
        : await k8sCreate({ model: MachineOSConfigModel, data: obj });
      void navigate(detailsHref(saved.metadata?.name ?? obj.metadata?.name ?? ''));
    } catch (err) {
      const errors = serverErrors(err, t);
      // The patch's `test` of the loaded spec failed: someone changed the spec meanwhile (a
      // validation error has causes; this has none).
      const status = statusOf(err);
      if (existing && status?.code === 422 && !status.details?.causes?.length)
        errors.general.unshift(
          t(
            'MachineOSConfig {{name}} was changed by someone else since this page loaded: reload the page to edit the current version.',
            { name: existing.metadata?.name },
          ),
        );
      form.setServer(errors);
    } finally {
      setSubmitting(false);
    }
  };

  const submitForm = (e?: React.FormEvent) => {
    e?.preventDefault();
    form.setShowClientErrors(true);
    if (hasErrors(form.clientErrors)) return;
    void send(form.toObject());
  };

  const submitYaml = (content: string) => {
    yaml.setYamlText(content);
    const obj = yaml.parseYaml(content);
    if (obj) void send(obj);
  };

  return { submitting, submitForm, submitYaml };
};
