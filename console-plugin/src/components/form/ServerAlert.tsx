import type * as React from 'react';
import { useTranslation } from 'react-i18next';
import { Alert } from '@patternfly/react-core';
import type { ServerErrors } from '../../lib/server-errors';
import type { View } from './useYamlView';

/** The API server's messages that no field shows: all of them in the YAML view. */
export const ServerAlert: React.FC<{ server: ServerErrors; view: View }> = ({ server, view }) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const serverFieldCount = Object.keys(server.fields).length;
  if (!(server.general.length > 0 || (view === 'yaml' && serverFieldCount > 0))) return null;
  return (
    <Alert
      variant="danger"
      isInline
      title={t('The API server rejected the MachineOSConfig')}
      data-test="server-errors"
    >
      <ul>
        {server.general.map((m, i) => (
          <li key={`g${i}`}>{m}</li>
        ))}
        {view === 'yaml' &&
          Object.entries(server.fields).flatMap(([k, ms]) =>
            (ms ?? []).map((m, i) => <li key={`${k}${i}`}>{m}</li>),
          )}
      </ul>
    </Alert>
  );
};
