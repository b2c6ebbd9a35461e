import type * as React from 'react';
import { useTranslation } from 'react-i18next';
import { FormGroup, TextInput } from '@patternfly/react-core';
import { ALLOWED_CONFIGS_ANNOTATION, CONTROLLER_NAMESPACE } from '../../models';
import type { SecretMetadataState } from '../useSecretMetadata';
import { AllowedSecrets } from './AllowedSecrets';
import { FieldMessages } from './FieldMessages';
import { SecretField } from './SecretField';
import type { FormModel } from './useFormState';

/** An example value (an image reference, not prose: not translated). */
const PUSH_SPEC_EXAMPLE =
  'image-registry.openshift-image-registry.svc:5000/openshift-machine-config-operator/os-image:latest';

/** Where the image goes (push spec and Secret), the base image's pull Secret, and which Secrets
 * allow this MachineOSConfig. */
export const PushFields: React.FC<{ form: FormModel; secrets: SecretMetadataState }> = ({
  form: { state, shownClient, server, update, setShowClientErrors },
  secrets,
}) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const allowNote = t(
    'Strata uses a Secret only when its annotation {{annotation}} names this MachineOSConfig (or is *); the plugin reads Secret names and annotations, never their data.',
    { annotation: ALLOWED_CONFIGS_ANNOTATION },
  );
  return (
    <>
      <FormGroup label={t('Push spec')} isRequired fieldId="strata-pushSpec">
        <TextInput
          id="strata-pushSpec"
          data-test="field-pushSpec"
          value={state.pushSpec}
          onChange={(_e, v) => {
            update({ pushSpec: v.trim() }, ['pushSpec']);
          }}
          onBlur={() => {
            if (state.pushSpec) setShowClientErrors(true);
          }}
          placeholder={PUSH_SPEC_EXAMPLE}
          validated={shownClient('pushSpec') || server.fields.pushSpec ? 'error' : 'default'}
        />
        <FieldMessages
          id="pushSpec"
          client={shownClient('pushSpec')}
          server={server.fields.pushSpec}
          helper={t(
            'host[:port]/path/name:tag (the host contains a dot). The tag is replaced by the build name; the pool always gets the image by digest.',
          )}
        />
      </FormGroup>

      <SecretField
        id="pushSecret"
        label={t('Push Secret')}
        required
        value={state.pushSecret}
        onChange={(v) => {
          update({ pushSecret: v }, ['pushSecret']);
        }}
        config={state.name}
        secrets={secrets.all}
        dockerNames={secrets.dockerNames}
        loaded={secrets.loaded}
        helper={`${t(
          'A dockerconfigjson Secret in {{namespace}} with push rights on the repository.',
          {
            namespace: CONTROLLER_NAMESPACE,
          },
        )} ${allowNote}`}
        client={shownClient('pushSecret')}
        server={server.fields.pushSecret}
      />
      <SecretField
        id="pullSecret"
        label={t('Base image pull Secret')}
        value={state.pullSecret}
        onChange={(v) => {
          update({ pullSecret: v }, ['pullSecret']);
        }}
        config={state.name}
        secrets={secrets.all}
        dockerNames={secrets.dockerNames}
        loaded={secrets.loaded}
        helper={t(
          'Optional: a Secret in {{namespace}} to pull the base image and images your fragments name.',
          {
            namespace: CONTROLLER_NAMESPACE,
          },
        )}
        client={shownClient('pullSecret')}
        server={server.fields.pullSecret}
      />
      <AllowedSecrets
        config={state.name}
        secrets={secrets.all}
        loaded={secrets.loaded}
        error={secrets.error}
      />
    </>
  );
};
