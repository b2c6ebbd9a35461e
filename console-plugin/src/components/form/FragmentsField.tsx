import type * as React from 'react';
import { useTranslation } from 'react-i18next';
import { Button, FormGroup } from '@patternfly/react-core';
import { freeArches } from '../../lib/form-state';
import type { FieldKey } from '../../lib/validation';
import { MAX_CONTAINERFILES } from '../../lib/crd-rules';
import { FieldMessages } from './FieldMessages';
import { FragmentField } from './FragmentField';
import type { FormModel } from './useFormState';

/** The Containerfile fragments, at most one per architecture. */
export const FragmentsField: React.FC<{ form: FormModel }> = ({ form }) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const { state, shownClient, server, update } = form;
  const fragmentKeys = state.fragments.map((_f, i): FieldKey => `fragments.${i}`);
  return (
    <FormGroup label={t('Containerfiles')} fieldId="strata-fragments" role="group">
      <FieldMessages
        id="fragments"
        client={shownClient('fragments')}
        server={server.fields.fragments}
      />
      {state.fragments.map((_f, i) => (
        <FragmentField key={i} form={form} i={i} fragmentKeys={fragmentKeys} />
      ))}
      <Button
        variant="secondary"
        data-test="fragment-add"
        isDisabled={
          state.fragments.length >= MAX_CONTAINERFILES || freeArches(state.fragments).length === 0
        }
        onClick={() => {
          update(
            {
              fragments: [
                ...state.fragments,
                { arch: freeArches(state.fragments)[0], content: '' },
              ],
            },
            [],
          );
        }}
      >
        {t('Add Containerfile')}
      </Button>
      <FieldMessages
        id="fragments"
        helper={t(
          'Without FROM, instructions apply on top of the OS base; a multi-stage fragment names the base `base` and its final stage must descend from it. amd64 builds use the AMD64 entry, else NoArch.',
        )}
      />
    </FormGroup>
  );
};
