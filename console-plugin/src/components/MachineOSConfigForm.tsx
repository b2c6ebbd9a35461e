import * as React from 'react';
import { useNavigate, useParams } from 'react-router';
import { useTranslation } from 'react-i18next';
import {
  k8sCreate,
  k8sUpdate,
  useK8sWatchResource,
} from '@openshift-console/dynamic-plugin-sdk';
import {
  ActionGroup,
  Alert,
  Button,
  Content,
  Form,
  FormGroup,
  FormHelperText,
  FormSelect,
  FormSelectOption,
  HelperText,
  HelperTextItem,
  PageSection,
  Spinner,
  TextArea,
  TextInput,
  Title,
  ToggleGroup,
  ToggleGroupItem,
} from '@patternfly/react-core';
import { dump as dumpYaml, load as loadYaml } from 'js-yaml';
import {
  ARCHES,
  CONTROLLER_NAMESPACE,
  MachineConfigPoolModel,
  MachineOSConfigModel,
  SecretModel,
  gvk,
  referenceFor,
  type Arch,
  type MachineOSConfigKind,
  type SecretKind,
} from '../models';
import { emptyFormState, freeArches, toFormState, toObject, type FormState } from '../lib/form-state';
import { hasErrors, validate, type FieldErrors, type FieldKey } from '../lib/validation';
import { serverErrors, type ServerErrors } from '../lib/server-errors';
import { MAX_CONTAINERFILES } from '../lib/crd-rules';
import './strata.css';

const NS = 'plugin__strata-console-plugin';
const DOCKER_SECRET_TYPES = ['kubernetes.io/dockerconfigjson', 'kubernetes.io/dockercfg'];

export const detailsHref = (name: string) =>
  `/k8s/cluster/${referenceFor(MachineOSConfigModel)}/${encodeURIComponent(name)}`;
export const editHref = (name: string) => `/strata/machineosconfigs/${encodeURIComponent(name)}/edit`;

type View = 'form' | 'yaml';

/** One field's messages: the client-side check first, then the API server's. */
const FieldMessages: React.FC<{ id: FieldKey; client?: string; server?: string[]; helper?: React.ReactNode; warning?: string }> = ({
  id,
  client,
  server,
  helper,
  warning,
}) => {
  const errors = [...(client ? [client] : []), ...(server ?? [])];
  if (errors.length === 0 && !helper && !warning) return null;
  return (
    <FormHelperText>
      <HelperText>
        {errors.map((e, i) => (
          <HelperTextItem key={i} variant="error" data-test={`error-${id}`}>
            {e}
          </HelperTextItem>
        ))}
        {errors.length === 0 && warning && (
          <HelperTextItem variant="warning" data-test={`warning-${id}`}>
            {warning}
          </HelperTextItem>
        )}
        {errors.length === 0 && !warning && helper && <HelperTextItem>{helper}</HelperTextItem>}
      </HelperText>
    </FormHelperText>
  );
};

/** A Secret in the controller namespace: free text with the live list as suggestions (a Secret
 * may be created after the MachineOSConfig: the controller starts the build once it exists). */
const SecretField: React.FC<{
  id: 'pushSecret' | 'pullSecret';
  label: string;
  value: string;
  onChange: (v: string) => void;
  secrets: SecretKind[];
  loaded: boolean;
  required?: boolean;
  helper: string;
  client?: string;
  server?: string[];
}> = ({ id, label, value, onChange, secrets, loaded, required, helper, client, server }) => {
  const { t } = useTranslation(NS);
  const names = secrets
    .filter((s) => DOCKER_SECRET_TYPES.includes(s.type ?? ''))
    .map((s) => s.metadata?.name ?? '')
    .sort();
  const missing = loaded && value !== '' && !secrets.some((s) => s.metadata?.name === value);
  const wrongType =
    loaded && value !== '' && !missing && !names.includes(value)
      ? t('Secret {{name}} is not of type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg', { name: value })
      : undefined;
  const warning = missing
    ? t('No Secret {{name}} in {{ns}} yet: the build starts once it exists', { name: value, ns: CONTROLLER_NAMESPACE })
    : wrongType;
  return (
    <FormGroup label={label} isRequired={required} fieldId={`strata-${id}`}>
      <TextInput
        id={`strata-${id}`}
        data-test={`field-${id}`}
        value={value}
        list={`strata-${id}-options`}
        onChange={(_e, v) => onChange(v.trim())}
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

export type MachineOSConfigFormProps = {
  /** The object being edited; undefined to create one. */
  existing?: MachineOSConfigKind;
};

export const MachineOSConfigForm: React.FC<MachineOSConfigFormProps> = ({ existing }) => {
  const { t } = useTranslation(NS);
  const navigate = useNavigate();
  const editing = !!existing;

  const [state, setState] = React.useState<FormState>(() => (existing ? toFormState(existing) : emptyFormState()));
  // What the YAML view last held (keeps fields the form does not show).
  const [base, setBase] = React.useState<Partial<MachineOSConfigKind> | undefined>(existing);
  const [nameFollowsPool, setNameFollowsPool] = React.useState(!editing);
  const [view, setView] = React.useState<View>('form');
  const [yamlText, setYamlText] = React.useState('');
  const [yamlError, setYamlError] = React.useState<string>();
  const [showClientErrors, setShowClientErrors] = React.useState(false);
  const [server, setServer] = React.useState<ServerErrors>({ fields: {}, general: [] });
  const [submitting, setSubmitting] = React.useState(false);

  const [pools, poolsLoaded, poolsError] = useK8sWatchResource<{ metadata?: { name?: string } }[]>({
    groupVersionKind: gvk(MachineConfigPoolModel),
    isList: true,
  });
  const [configs] = useK8sWatchResource<MachineOSConfigKind[]>({
    groupVersionKind: gvk(MachineOSConfigModel),
    isList: true,
  });
  const [secrets, secretsLoaded] = useK8sWatchResource<SecretKind[]>({
    groupVersionKind: { version: SecretModel.apiVersion, kind: SecretModel.kind },
    namespace: CONTROLLER_NAMESPACE,
    isList: true,
  });

  const clientErrors: FieldErrors = React.useMemo(() => validate(state), [state]);
  const shownClient = (k: FieldKey) => (showClientErrors ? clientErrors[k] : undefined);

  const update = (patch: Partial<FormState>, touched: FieldKey[]) => {
    setState((s) => ({ ...s, ...patch }));
    // A server message about a field is stale once the user changes that field.
    setServer((s) => {
      const fields = { ...s.fields };
      for (const k of touched) delete fields[k];
      return { ...s, fields };
    });
  };

  const onPool = (pool: string) => {
    if (nameFollowsPool) update({ pool, name: pool }, ['pool', 'name']);
    else update({ pool }, ['pool']);
  };

  const toYaml = () => {
    setYamlText(dumpYaml(toObject(state, base), { lineWidth: -1, noRefs: true }));
    setYamlError(undefined);
    setView('yaml');
  };

  /** Parse the YAML view; on success the form shows what it says. */
  const parseYaml = (): MachineOSConfigKind | undefined => {
    try {
      const obj = loadYaml(yamlText) as MachineOSConfigKind;
      if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(t('The YAML must be one object'));
      if (obj.kind !== MachineOSConfigModel.kind) throw new Error(t('kind must be MachineOSConfig'));
      setYamlError(undefined);
      return obj;
    } catch (e) {
      setYamlError(e instanceof Error ? e.message : String(e));
      return undefined;
    }
  };

  const toForm = () => {
    const obj = parseYaml();
    if (!obj) return;
    const next = toFormState(obj);
    setBase(obj);
    setState(next);
    setNameFollowsPool(!editing && next.name === next.pool);
    setView('form');
  };

  const submit = async (e?: React.FormEvent) => {
    e?.preventDefault();
    let obj: MachineOSConfigKind | undefined;
    if (view === 'yaml') {
      // The YAML view sends what it says; the API server validates it.
      obj = parseYaml();
      if (!obj) return;
    } else {
      setShowClientErrors(true);
      if (hasErrors(clientErrors)) return;
      obj = toObject(state, base);
    }
    setSubmitting(true);
    setServer({ fields: {}, general: [] });
    try {
      const saved = editing
        ? await k8sUpdate({ model: MachineOSConfigModel, data: obj })
        : await k8sCreate({ model: MachineOSConfigModel, data: obj });
      navigate(detailsHref(saved?.metadata?.name ?? obj.metadata?.name ?? ''));
    } catch (err) {
      setServer(serverErrors(err));
    } finally {
      setSubmitting(false);
    }
  };

  const taken = new Set(
    (configs ?? []).map((c) => c.spec?.machineConfigPool?.name).filter((p) => p && p !== existing?.spec?.machineConfigPool?.name),
  );
  const poolNames = (pools ?? []).map((p) => p.metadata?.name ?? '').filter(Boolean).sort();
  if (state.pool && !poolNames.includes(state.pool)) poolNames.push(state.pool);

  const serverFieldCount = Object.keys(server.fields).length;
  const fragmentKeys = state.fragments.map((_f, i) => `fragments.${i}` as FieldKey);

  return (
    <PageSection className="strata-form" data-test="mosc-form">
      <Title headingLevel="h1" data-test="form-title">
        {editing ? t('Edit MachineOSConfig {{name}}', { name: existing?.metadata?.name }) : t('Create MachineOSConfig')}
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
          onChange={() => view === 'yaml' && toForm()}
        />
        <ToggleGroupItem
          text={t('YAML view')}
          buttonId="strata-view-yaml"
          data-test="view-yaml"
          isSelected={view === 'yaml'}
          onChange={() => view === 'form' && toYaml()}
        />
      </ToggleGroup>

      <Form onSubmit={submit} className="strata-form__body" noValidate>
        {view === 'yaml' ? (
          <FormGroup label={t('MachineOSConfig YAML')} fieldId="strata-yaml">
            <TextArea
              id="strata-yaml"
              data-test="yaml-editor"
              className="strata-code"
              value={yamlText}
              onChange={(_e, v) => setYamlText(v)}
              rows={24}
              resizeOrientation="vertical"
              aria-label={t('MachineOSConfig YAML')}
            />
            {yamlError && (
              <FormHelperText>
                <HelperText>
                  <HelperTextItem variant="error" data-test="error-yaml">
                    {yamlError}
                  </HelperTextItem>
                </HelperText>
              </FormHelperText>
            )}
          </FormGroup>
        ) : (
          <>
            <FormGroup label={t('MachineConfigPool')} isRequired fieldId="strata-pool">
              {poolsError ? (
                <Alert variant="danger" isInline isPlain title={t('Cannot list MachineConfigPools: {{e}}', { e: String(poolsError?.message ?? poolsError) })} />
              ) : !poolsLoaded ? (
                <Spinner size="md" aria-label={t('Loading pools')} />
              ) : (
                <FormSelect
                  id="strata-pool"
                  data-test="field-pool"
                  value={state.pool}
                  isDisabled={editing}
                  onChange={(_e, v) => onPool(v)}
                  validated={shownClient('pool') || server.fields.pool ? 'error' : 'default'}
                >
                  <FormSelectOption value="" label={t('Select a pool')} isPlaceholder />
                  {poolNames.map((p) => (
                    <FormSelectOption
                      key={p}
                      value={p}
                      label={taken.has(p) ? t('{{pool}} (has a MachineOSConfig)', { pool: p }) : p}
                      isDisabled={taken.has(p)}
                    />
                  ))}
                </FormSelect>
              )}
              <FieldMessages
                id="pool"
                client={shownClient('pool')}
                server={server.fields.pool}
                helper={editing ? t('The pool of an existing MachineOSConfig cannot change.') : t('The pool whose machines run the built image.')}
              />
            </FormGroup>

            <FormGroup label={t('Name')} isRequired fieldId="strata-name">
              <TextInput
                id="strata-name"
                data-test="field-name"
                value={state.name}
                readOnlyVariant={editing ? 'default' : undefined}
                onChange={(_e, v) => {
                  setNameFollowsPool(v === state.pool);
                  update({ name: v }, ['name']);
                }}
                validated={shownClient('name') || server.fields.name ? 'error' : 'default'}
              />
              <FieldMessages
                id="name"
                client={shownClient('name')}
                server={server.fields.name}
                helper={t("Must equal the pool's name: one MachineOSConfig per pool.")}
              />
            </FormGroup>

            <FormGroup label={t('Push spec')} isRequired fieldId="strata-pushSpec">
              <TextInput
                id="strata-pushSpec"
                data-test="field-pushSpec"
                value={state.pushSpec}
                onChange={(_e, v) => update({ pushSpec: v.trim() }, ['pushSpec'])}
                onBlur={() => state.pushSpec && setShowClientErrors(true)}
                placeholder="image-registry.openshift-image-registry.svc:5000/openshift-machine-config-operator/os-image:latest"
                validated={shownClient('pushSpec') || server.fields.pushSpec ? 'error' : 'default'}
              />
              <FieldMessages
                id="pushSpec"
                client={shownClient('pushSpec')}
                server={server.fields.pushSpec}
                helper={t('host[:port]/path/name:tag (the host contains a dot). The tag is replaced by the build name; the pool always gets the image by digest.')}
              />
            </FormGroup>

            <SecretField
              id="pushSecret"
              label={t('Push Secret')}
              required
              value={state.pushSecret}
              onChange={(v) => update({ pushSecret: v }, ['pushSecret'])}
              secrets={secrets ?? []}
              loaded={secretsLoaded}
              helper={t('A dockerconfigjson Secret in {{ns}} with push rights on the repository.', { ns: CONTROLLER_NAMESPACE })}
              client={shownClient('pushSecret')}
              server={server.fields.pushSecret}
            />
            <SecretField
              id="pullSecret"
              label={t('Base image pull Secret')}
              value={state.pullSecret}
              onChange={(v) => update({ pullSecret: v }, ['pullSecret'])}
              secrets={secrets ?? []}
              loaded={secretsLoaded}
              helper={t('Optional: a Secret in {{ns}} to pull the base image and images your fragments name.', { ns: CONTROLLER_NAMESPACE })}
              client={shownClient('pullSecret')}
              server={server.fields.pullSecret}
            />

            <FormGroup label={t('Base image override')} fieldId="strata-baseImage">
              <TextInput
                id="strata-baseImage"
                data-test="field-baseImage"
                value={state.baseImage}
                onChange={(_e, v) => update({ baseImage: v.trim() }, ['baseImage'])}
                placeholder="quay.io/example/os@sha256:…"
                validated={shownClient('baseImage') || server.fields.baseImage ? 'error' : 'default'}
              />
              <FieldMessages
                id="baseImage"
                client={shownClient('baseImage')}
                server={server.fields.baseImage}
                helper={t("Optional, pinned by digest. Empty: the release's OS base image.")}
              />
            </FormGroup>

            <FormGroup label={t('Containerfiles')} fieldId="strata-fragments" role="group">
              <FieldMessages id="fragments" client={shownClient('fragments')} server={server.fields.fragments} />
              {state.fragments.map((f, i) => {
                const key = fragmentKeys[i];
                const options: Arch[] = [f.arch, ...freeArches(state.fragments)];
                return (
                  <div className="strata-fragment" key={i} data-test={`fragment-${i}`}>
                    <div className="strata-fragment__head">
                      <FormSelect
                        id={`strata-fragment-${i}-arch`}
                        data-test={`fragment-${i}-arch`}
                        aria-label={t('Architecture')}
                        value={f.arch}
                        onChange={(_e, v) =>
                          update({ fragments: state.fragments.map((g, j) => (j === i ? { ...g, arch: v as Arch } : g)) }, [key])
                        }
                      >
                        {ARCHES.filter((a) => options.includes(a)).map((a) => (
                          <FormSelectOption key={a} value={a} label={a === 'NoArch' ? t('NoArch (any architecture)') : a} />
                        ))}
                      </FormSelect>
                      <Button
                        variant="link"
                        isDanger
                        data-test={`fragment-${i}-remove`}
                        onClick={() => update({ fragments: state.fragments.filter((_g, j) => j !== i) }, fragmentKeys)}
                      >
                        {t('Remove')}
                      </Button>
                    </div>
                    <TextArea
                      id={`strata-fragment-${i}`}
                      data-test={`fragment-${i}-content`}
                      className="strata-code"
                      aria-label={t('Containerfile fragment {{n}}', { n: i + 1 })}
                      value={f.content}
                      rows={8}
                      resizeOrientation="vertical"
                      placeholder={'RUN echo "layered by strata" > /etc/motd'}
                      onChange={(_e, v) =>
                        update({ fragments: state.fragments.map((g, j) => (j === i ? { ...g, content: v } : g)) }, [key])
                      }
                      validated={shownClient(key) || server.fields[key] ? 'error' : 'default'}
                    />
                    <FieldMessages id={key} client={shownClient(key)} server={server.fields[key]} />
                  </div>
                );
              })}
              <Button
                variant="secondary"
                data-test="fragment-add"
                isDisabled={state.fragments.length >= MAX_CONTAINERFILES || freeArches(state.fragments).length === 0}
                onClick={() =>
                  update({ fragments: [...state.fragments, { arch: freeArches(state.fragments)[0], content: '' }] }, [])
                }
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
          </>
        )}

        {(server.general.length > 0 || (view === 'yaml' && serverFieldCount > 0)) && (
          <Alert variant="danger" isInline title={t('The API server rejected the MachineOSConfig')} data-test="server-errors">
            <ul>
              {server.general.map((m, i) => (
                <li key={`g${i}`}>{m}</li>
              ))}
              {view === 'yaml' &&
                Object.entries(server.fields).flatMap(([k, ms]) => (ms ?? []).map((m, i) => <li key={`${k}${i}`}>{m}</li>))}
            </ul>
          </Alert>
        )}
        {view === 'form' && showClientErrors && hasErrors(clientErrors) && (
          <Alert variant="warning" isInline isPlain title={t('Fix the highlighted fields')} data-test="client-errors" />
        )}

        <ActionGroup>
          <Button type="submit" variant="primary" data-test="submit" isLoading={submitting} isDisabled={submitting}>
            {editing ? t('Save') : t('Create')}
          </Button>
          <Button variant="link" data-test="cancel" onClick={() => navigate(-1)}>
            {t('Cancel')}
          </Button>
        </ActionGroup>
      </Form>
    </PageSection>
  );
};

/** `console.resource/create` for MachineOSConfig. */
const MachineOSConfigCreatePage: React.FC<{ namespace?: string }> = () => <MachineOSConfigForm />;
export default MachineOSConfigCreatePage;

/** `console.page/route` /strata/machineosconfigs/:name/edit */
export const MachineOSConfigEditPage: React.FC = () => {
  const { t } = useTranslation(NS);
  const { name } = useParams<{ name: string }>();
  const [obj, loaded, error] = useK8sWatchResource<MachineOSConfigKind>(
    name ? { groupVersionKind: gvk(MachineOSConfigModel), name } : null,
  );
  // Edit the object as it was when the page loaded; a concurrent change surfaces as a 409 on save.
  const [snapshot, setSnapshot] = React.useState<MachineOSConfigKind>();
  React.useEffect(() => {
    if (loaded && obj?.metadata?.name && !snapshot) setSnapshot(obj);
  }, [loaded, obj, snapshot]);
  if (error)
    return (
      <PageSection>
        <Alert variant="danger" isInline title={t('Cannot load MachineOSConfig {{name}}: {{e}}', { name, e: String(error?.message ?? error) })} />
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
