import type * as React from 'react';
import { FormGroup, TextInput, type TextInputProps } from '@patternfly/react-core';
import { FieldMessages } from './FieldMessages';
import type { FormModel } from './useFormState';

/** A text field of the form with its messages (client-side, server's, helper). */
export const TextField: React.FC<
  {
    form: FormModel;
    id: 'name' | 'pushSpec' | 'baseImage';
    label: string;
    required?: boolean;
    helper: string;
    onChange: (v: string) => void;
  } & Pick<TextInputProps, 'placeholder' | 'onBlur' | 'readOnlyVariant'>
> = ({ form: { state, shownClient, server }, id, label, required, helper, onChange, ...input }) => (
  <FormGroup label={label} isRequired={required} fieldId={`strata-${id}`}>
    <TextInput
      id={`strata-${id}`}
      data-test={`field-${id}`}
      value={state[id]}
      onChange={(_e, v) => {
        onChange(v);
      }}
      validated={shownClient(id) || server.fields[id] ? 'error' : 'default'}
      {...input}
    />
    <FieldMessages id={id} client={shownClient(id)} server={server.fields[id]} helper={helper} />
  </FormGroup>
);
