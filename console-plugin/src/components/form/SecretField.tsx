import type * as React from 'react';
import { useTranslation } from 'react-i18next';
import { FormGroup, TextInput } from '@patternfly/react-core';
import {
  ALLOWED_CONFIGS_ANNOTATION,
  CONTROLLER_NAMESPACE,
  type SecretMetadata,
} from '../../models';
import { DOCKER_SECRET_TYPES, allowingValue, allowsConfig } from '../../lib/secrets';
import { FieldMessages } from './FieldMessages';

/** A Secret in the controller namespace: free text with the dockerconfig Secrets as suggestions (a
 * Secret may be created after the MachineOSConfig: the controller starts the build once it exists
 * and allows the MachineOSConfig). Only metadata is read, never a Secret's data. */
export const SecretField: React.FC<{
  id: 'pushSecret' | 'pullSecret';
  label: string;
  value: string;
  onChange: (v: string) => void;
  config: string;
  secrets: SecretMetadata[];
  dockerNames: Set<string>;
  loaded: boolean;
  required?: boolean;
  helper: string;
  client?: string;
  server?: string[];
}> = ({
  id,
  label,
  value,
  onChange,
  config,
  secrets,
  dockerNames,
  loaded,
  required,
  helper,
  client,
  server,
}) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const names = [...dockerNames].sort();
  const secret = secrets.find((s) => s.metadata?.name === value);
  let warning: string | undefined;
  if (loaded && value !== '') {
    if (!secret)
      warning = t('No Secret {{name}} in {{namespace}} yet: the build starts once it exists', {
        name: value,
        namespace: CONTROLLER_NAMESPACE,
      });
    else if (!dockerNames.has(value))
      warning = t('Secret {{name}} is not of type {{types}}', {
        name: value,
        types: DOCKER_SECRET_TYPES.join(' or '),
      });
    else if (config && !allowsConfig(secret, config))
      warning = t(
        'Secret {{name}} does not allow MachineOSConfig {{config}}: Strata will not use it until the Secret carries the annotation {{annotation}}={{value}}',
        {
          name: value,
          config,
          annotation: ALLOWED_CONFIGS_ANNOTATION,
          value: allowingValue(secret, config),
        },
      );
  }
  return (
    <FormGroup label={label} isRequired={required} fieldId={`strata-${id}`}>
      <TextInput
        id={`strata-${id}`}
        data-test={`field-${id}`}
        value={value}
        list={`strata-${id}-options`}
        onChange={(_e, v) => {
          onChange(v.trim());
        }}
        validated={client || server ? 'error' : warning ? 'warning' : 'default'}
        placeholder={required ? t('Secret name') : t('None: anonymous pulls')}
      />
      <datalist id={`strata-${id}-options`} data-test={`options-${id}`}>
        {names.map((n) => (
          <option key={n} value={n} />
        ))}
      </datalist>
      <FieldMessages id={id} client={client} server={server} helper={helper} warning={warning} />
    </FormGroup>
  );
};
