import * as React from 'react';
import { useParams } from 'react-router';
import { useTranslation } from 'react-i18next';
import {
  Alert,
  Content,
  Form,
  PageSection,
  Spinner,
  Title,
  ToggleGroup,
  ToggleGroupItem,
} from '@patternfly/react-core';
import {
  CONTROLLER_NAMESPACE,
  MachineOSConfigModel,
  gvk,
  type MachineOSConfigKind,
} from '../models';
import { errorText } from '../lib/server-errors';
import { useSecretMetadata } from './useSecretMetadata';
import { useWatchObject } from './useWatch';
import { useFormState } from './form/useFormState';
import { useYamlView } from './form/useYamlView';
import { useSubmit } from './form/useSubmit';
import { PoolFields, usePoolChoices } from './form/PoolFields';
import { PushFields } from './form/PushFields';
import { BaseImageField } from './form/BaseImageField';
import { FragmentsField } from './form/FragmentsField';
import { ServerAlert } from './form/ServerAlert';
import { SubmitBar } from './form/SubmitBar';
import { YamlView } from './form/YamlView';
import './strata.css';

export interface MachineOSConfigFormProps {
  /** The object being edited; undefined to create one. */
  existing?: MachineOSConfigKind;
}

/** The MachineOSConfig form (its state and sections are in ./form/) and its YAML view. */
export const MachineOSConfigForm: React.FC<MachineOSConfigFormProps> = ({ existing }) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const editing = !!existing;
  const form = useFormState(existing);
  const yaml = useYamlView(form);
  const { submitting, submitForm, submitYaml } = useSubmit(existing, form, yaml);
  const choices = usePoolChoices(existing, form.state.pool);
  const secrets = useSecretMetadata(CONTROLLER_NAMESPACE);
  const { view } = yaml;

  return (
    <PageSection className="strata-form" data-test="mosc-form">
      <Title headingLevel="h1" data-test="form-title">
        {editing
          ? t('Edit MachineOSConfig {{name}}', { name: existing.metadata?.name })
          : t('Create MachineOSConfig')}
      </Title>
      <Content component="p" className="strata-form__intro">
        {t(
          'Strata builds an OS image for the pool from the release base and your Containerfile fragments, pushes it, and pins the pool to it by digest.',
        )}
      </Content>
      <ToggleGroup aria-label={t('Configure via')} className="strata-form__toggle">
        <ToggleGroupItem
          text={t('Form view')}
          buttonId="strata-view-form"
          data-test="view-form"
          isSelected={view === 'form'}
          onChange={() => {
            if (view === 'yaml') yaml.toForm();
          }}
        />
        <ToggleGroupItem
          text={t('YAML view')}
          buttonId="strata-view-yaml"
          data-test="view-yaml"
          isSelected={view === 'yaml'}
          onChange={() => {
            if (view === 'form') yaml.toYaml();
          }}
        />
      </ToggleGroup>

      {view === 'yaml' && yaml.yamlStart ? (
        <YamlView
          start={yaml.yamlStart}
          error={yaml.yamlError}
          server={form.server}
          editing={editing}
          onChange={yaml.setYamlText}
          onSave={submitYaml}
        />
      ) : (
        <Form onSubmit={submitForm} className="strata-form__body" noValidate>
          <PoolFields form={form} choices={choices} editing={editing} />
          <PushFields form={form} secrets={secrets} />
          <BaseImageField form={form} />
          <FragmentsField form={form} />
          <ServerAlert server={form.server} view={view} />
          <SubmitBar form={form} editing={editing} submitting={submitting} />
        </Form>
      )}
    </PageSection>
  );
};

/** `console.resource/create` for MachineOSConfig. */
const MachineOSConfigCreatePage: React.FC<{ namespace?: string }> = () => <MachineOSConfigForm />;
export default MachineOSConfigCreatePage;

/** `console.page/route` /strata/machineosconfigs/:name/edit */
export const MachineOSConfigEditPage: React.FC = () => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const { name } = useParams<{ name: string }>();
  const [obj, loaded, error] = useWatchObject<MachineOSConfigKind>(
    name ? { groupVersionKind: gvk(MachineOSConfigModel), name } : null,
  );
  // Edit the object as it was when the page loaded; a concurrent change surfaces as a 409 on save.
  // (State set during render, React's pattern for state derived from the first load.)
  const [snapshot, setSnapshot] = React.useState<MachineOSConfigKind>();
  if (loaded && obj?.metadata?.name && !snapshot) setSnapshot(obj);
  if (error)
    return (
      <PageSection>
        <Alert
          variant="danger"
          isInline
          title={t('Cannot load MachineOSConfig {{name}}: {{e}}', { name, e: errorText(error) })}
        />
      </PageSection>
    );
  if (!snapshot)
    return (
      <PageSection>
        <Spinner aria-label={t('Loading')} />
      </PageSection>
    );
  return <MachineOSConfigForm existing={snapshot} />;
};
