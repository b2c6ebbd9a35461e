import type * as React from 'react';
import { useTranslation } from 'react-i18next';
import { TextField } from './TextField';
import type { FormModel } from './useFormState';

/** An example value (an image reference, not prose: not translated). */
const BASE_IMAGE_EXAMPLE = 'quay.io/example/os@sha256:…';

/** The base image instead of the release's OS image. */
export const BaseImageField: React.FC<{ form: FormModel }> = ({ form }) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  return (
    <TextField
      form={form}
      id="baseImage"
      label={t('Base image override')}
      onChange={(v) => {
        form.update({ baseImage: v.trim() }, ['baseImage']);
      }}
      placeholder={BASE_IMAGE_EXAMPLE}
      helper={t("Optional, pinned by digest. Empty: the release's OS base image.")}
    />
  );
};
