import type * as React from 'react';
import { useTranslation } from 'react-i18next';
import { FormGroup, TextInput } from '@patternfly/react-core';
import { FieldMessages } from './FieldMessages';
import type { FormModel } from './useFormState';

/** An example value (an image reference, not prose: not translated). */
const BASE_IMAGE_EXAMPLE = 'quay.io/example/os@sha256:…';

/** The base image instead of the release's OS image. */
export const BaseImageField: React.FC<{ form: FormModel }> = ({
  form: { state, shownClient, server, update },
}) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  return (
    <FormGroup label={t('Base image override')} fieldId="strata-baseImage">
      <TextInput
        id="strata-baseImage"
        data-test="field-baseImage"
        value={state.baseImage}
        onChange={(_e, v) => {
          update({ baseImage: v.trim() }, ['baseImage']);
        }}
        placeholder={BASE_IMAGE_EXAMPLE}
        validated={shownClient('baseImage') || server.fields.baseImage ? 'error' : 'default'}
      />
      <FieldMessages
        id="baseImage"
        client={shownClient('baseImage')}
        server={server.fields.baseImage}
        helper={t("Optional, pinned by digest. Empty: the release's OS base image.")}
      />
    </FormGroup>
  );
};
