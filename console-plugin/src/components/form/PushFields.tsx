import type * as React from 'react';
import { useTranslation } from 'react-i18next';
import { ALLOWED_CONFIGS_ANNOTATION, CONTROLLER_NAMESPACE } from '../../models';
import type { SecretMetadataState } from '../useSecretMetadata';
import { AllowedSecrets } from './AllowedSecrets';
import { SecretField } from './SecretField';
import { TextField } from './TextField';
import type { FormModel } from './useFormState';

/** An example value (an image reference, not prose: not translated). */
const PUSH_SPEC_EXAMPLE =
  'image-registry.openshift-image-registry.svc:5000/openshift-machine-config-operator/os-image:latest';

/** Where the image goes (push spec and Secret), the base image's pull Secret, and which Secrets
 * allow this MachineOSConfig. */
export const PushFields: React.FC<{ form: FormModel; secrets: SecretMetadataState }> = ({
  form,
  secrets,
}) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const { state, shownClient, server, update, setShowClientErrors } = form;
  const allowNote = t(
    'Strata uses a Secret only when its annotation {{annotation}} names this MachineOSConfig (or is *); the plugin reads Secret names and annotations, never their data.',
    { annotation: ALLOWED_CONFIGS_ANNOTATION },
  );
  return (
    <>
      <TextField
        form={form}
        id="pushSpec"
        label={t('Push spec')}
        required
        onChange={(v) => {
          update({ pushSpec: v.trim() }, ['pushSpec']);
        }}
        onBlur={() => {
          if (state.pushSpec) setShowClientErrors(true);
        }}
        placeholder={PUSH_SPEC_EXAMPLE}
        helper={t(
          'host[:port]/path/name:tag (the host contains a dot). The tag is replaced by the build name; the pool always gets the image by digest.',
        )}
      />

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
