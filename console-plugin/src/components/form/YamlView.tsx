import * as React from 'react';
import { useTranslation } from 'react-i18next';
import { ResourceYAMLEditor } from '@openshift-console/dynamic-plugin-sdk';
import { Alert, Spinner } from '@patternfly/react-core';
import type { MachineOSConfigKind } from '../../models';
import type { ServerErrors } from '../../lib/server-errors';
import { ServerAlert } from './ServerAlert';

/** The console's own YAML editor (Monaco with the CRD's schema): its Create/Save button hands the
 * text to `onSave`. It is not inside <Form>: its buttons are submit buttons. */
export const YamlView: React.FC<{
  /** The object the view opened with. */
  start: MachineOSConfigKind;
  /** Why the text is not a MachineOSConfig. */
  error?: string;
  server: ServerErrors;
  editing: boolean;
  onChange: (text: string) => void;
  onSave: (content: string) => void;
}> = ({ start, error, server, editing, onChange, onSave }) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  return (
    <div className="strata-form__yaml" data-test="yaml-view">
      {error && <Alert variant="danger" isInline isPlain title={error} data-test="error-yaml" />}
      <ServerAlert server={server} view="yaml" />
      <div className="strata-form__yaml-editor">
        <React.Suspense fallback={<Spinner aria-label={t('Loading')} />}>
          <ResourceYAMLEditor
            initialResource={start}
            header={t('MachineOSConfig YAML')}
            hideHeader
            create={!editing}
            onChange={onChange}
            onSave={onSave}
          />
        </React.Suspense>
      </div>
    </div>
  );
};
