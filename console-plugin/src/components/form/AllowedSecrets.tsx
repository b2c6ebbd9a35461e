import * as React from 'react';
import { useTranslation } from 'react-i18next';
import { ResourceLink } from '@openshift-console/dynamic-plugin-sdk';
import { Alert, ExpandableSection, List, ListItem, Spinner } from '@patternfly/react-core';
import { CONTROLLER_NAMESPACE, SecretModel, gvk, type SecretMetadata } from '../../models';
import { secretsAllowing } from '../../lib/secrets';
import { errorText } from '../../lib/server-errors';

/** Which Secrets of the controller namespace allow this MachineOSConfig (from their annotations). */
export const AllowedSecrets: React.FC<{
  config: string;
  secrets: SecretMetadata[];
  loaded: boolean;
  error?: unknown;
}> = ({ config, secrets, loaded, error }) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const [expanded, setExpanded] = React.useState(false);
  const allowing = secretsAllowing(secrets, config);
  let body: React.ReactNode;
  if (error)
    body = (
      <Alert
        variant="danger"
        isInline
        isPlain
        title={t('Cannot list Secrets in {{namespace}}: {{e}}', {
          namespace: CONTROLLER_NAMESPACE,
          e: errorText(error),
        })}
      />
    );
  else if (!loaded) body = <Spinner size="md" aria-label={t('Loading')} />;
  else if (!config) body = t('Choose a pool first: the list depends on the MachineOSConfig name.');
  else if (allowing.length === 0)
    body = t('No Secret in {{namespace}} allows MachineOSConfig {{config}} yet.', {
      namespace: CONTROLLER_NAMESPACE,
      config,
    });
  else
    body = (
      <List isPlain>
        {allowing.map((n) => (
          <ListItem key={n}>
            <ResourceLink
              groupVersionKind={gvk(SecretModel)}
              name={n}
              namespace={CONTROLLER_NAMESPACE}
              dataTest={`allowed-secret-${n}`}
            />
          </ListItem>
        ))}
      </List>
    );
  return (
    <ExpandableSection
      toggleText={
        expanded
          ? t('Hide the Secrets that allow this MachineOSConfig')
          : t('Show the Secrets that allow this MachineOSConfig')
      }
      onToggle={(_e, v) => {
        setExpanded(v);
      }}
      isExpanded={expanded}
      data-test="allowed-secrets-toggle"
    >
      <div data-test="allowed-secrets">{body}</div>
    </ExpandableSection>
  );
};
