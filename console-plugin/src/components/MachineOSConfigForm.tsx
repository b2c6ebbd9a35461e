import * as React from 'react';
import { useNavigate, useParams } from 'react-router';
import { useTranslation } from 'react-i18next';
import {
  CodeEditor,
  ResourceLink,
  ResourceYAMLEditor,
  k8sCreate,
  k8sPatch,
  type CodeEditorProps,
} from '@openshift-console/dynamic-plugin-sdk';
import {
  ActionGroup,
  Alert,
  Button,
  Content,
  ExpandableSection,
  Form,
  FormGroup,
  FormHelperText,
  FormSelect,
  FormSelectOption,
  HelperText,
  HelperTextItem,
  List,
  ListItem,
  PageSection,
  Spinner,
  TextInput,
  Title,
  ToggleGroup,
  ToggleGroupItem,
} from '@patternfly/react-core';
import { load as loadYaml } from 'js-yaml';
import {
  ALLOWED_CONFIGS_ANNOTATION,
  ARCHES,
  CONTROLLER_NAMESPACE,
  MachineConfigPoolModel,
  MachineOSConfigModel,
  SecretModel,
  gvk,
  referenceFor,
  type Arch,
  type MachineOSConfigKind,
  type SecretMetadata,
} from '../models';
import {
  emptyFormState,
  freeArches,
  toFormState,
  toObject,
  updatePatch,
  type FormState,
} from '../lib/form-state';
import { hasErrors, validate, type FieldErrors, type FieldKey } from '../lib/validation';
import { serverErrors, statusOf, type ServerErrors } from '../lib/server-errors';
import { MAX_CONTAINERFILES } from '../lib/crd-rules';
import { DOCKER_SECRET_TYPES, allowingValue, allowsConfig, secretsAllowing } from '../lib/secrets';
import { useSecretMetadata } from './useSecretMetadata';
import { useWatchList, useWatchObject } from './useWatch';
import './strata.css';

export const detailsHref = (name: string) =>
  `/k8s/cluster/${referenceFor(MachineOSConfigModel)}/${encodeURIComponent(name)}`;
export const editHref = (name: string) =>
  `/strata/machineosconfigs/${encodeURIComponent(name)}/edit`;

/** Monaco's language id for Containerfiles (the console bundles Monaco's `dockerfile` grammar).
 * PatternFly types it as its `Language` enum; importing the enum would bundle PatternFly's code
 * editor into the plugin, so the plain id is cast. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment
export const CONTAINERFILE_LANGUAGE = 'dockerfile' as CodeEditorProps['language'];

/** Example values (image references, not prose: not translated). */
const PUSH_SPEC_EXAMPLE =
  'image-registry.openshift-image-registry.svc:5000/openshift-machine-config-operator/os-image:latest';
const BASE_IMAGE_EXAMPLE = 'quay.io/example/os@sha256:…';

type View = 'form' | 'yaml';

/** One field's messages: the client-side check first, then the API server's. */
const FieldMessages: React.FC<{
  id: FieldKey;
  client?: string;
  server?: string[];
  helper?: React.ReactNode;
  warning?: string;
}> = ({ id, client, server, helper, warning }) => {
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
        {errors.length === 0 && helper && <HelperTextItem>{helper}</HelperTextItem>}
      </HelperText>
    </FormHelperText>
  );
};

/** A Secret in the controller namespace: free text with the dockerconfig Secrets as suggestions (a
 * Secret may be created after the MachineOSConfig: the controller starts the build once it exists
 * and allows the MachineOSConfig). Only metadata is read, never a Secret's data. */
const SecretField: React.FC<{
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

/** Which Secrets of the controller namespace allow this MachineOSConfig (from their annotations). */
const AllowedSecrets: React.FC<{
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

const errorText = (e: unknown): string =>
  e instanceof Error ? e.message : typeof e === 'string' ? e : JSON.stringify(e);

export interface MachineOSConfigFormProps {
  /** The object being edited; undefined to create one. */
  existing?: MachineOSConfigKind;
}

export const MachineOSConfigForm: React.FC<MachineOSConfigFormProps> = ({ existing }) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const navigate = useNavigate();
  const editing = !!existing;

  const [state, setState] = React.useState<FormState>(() =>
    existing ? toFormState(existing) : emptyFormState(),
  );
  // What the YAML view last held (keeps fields the form does not show).
  const [base, setBase] = React.useState<Partial<MachineOSConfigKind> | undefined>(existing);
  const [nameFollowsPool, setNameFollowsPool] = React.useState(!editing);
  const [view, setView] = React.useState<View>('form');
  // The YAML view: the object it opened with, and the text as edited since.
  const [yamlStart, setYamlStart] = React.useState<MachineOSConfigKind>();
  const [yamlText, setYamlText] = React.useState<string>();
  const [yamlError, setYamlError] = React.useState<string>();
  const [showClientErrors, setShowClientErrors] = React.useState(false);
  const [server, setServer] = React.useState<ServerErrors>({ fields: {}, general: [] });
  const [submitting, setSubmitting] = React.useState(false);

  const [pools, poolsLoaded, poolsError] = useWatchList<{ metadata?: { name?: string } }>({
    groupVersionKind: gvk(MachineConfigPoolModel),
    isList: true,
  });
  const [configs] = useWatchList<MachineOSConfigKind>({
    groupVersionKind: gvk(MachineOSConfigModel),
    isList: true,
  });
  const secrets = useSecretMetadata(CONTROLLER_NAMESPACE);

  const clientErrors: FieldErrors = React.useMemo(() => validate(state, t), [state, t]);
  const shownClient = (k: FieldKey) => (showClientErrors ? clientErrors[k] : undefined);

  const update = (patch: Partial<FormState>, touched: FieldKey[]) => {
    setState((s) => ({ ...s, ...patch }));
    // A server message about a field is stale once the user changes that field.
    setServer((s) => {
      const fields = { ...s.fields };
      for (const k of touched) fields[k] = undefined;
      return { ...s, fields };
    });
  };

  const onPool = (pool: string) => {
    if (nameFollowsPool) update({ pool, name: pool }, ['pool', 'name']);
    else update({ pool }, ['pool']);
  };

  const toYaml = () => {
    setYamlStart(toObject(state, base));
    setYamlText(undefined);
    setYamlError(undefined);
    setView('yaml');
  };

  /** Parse the YAML view's text (or, untouched, the object it opened with). */
  const parseYaml = (text = yamlText): MachineOSConfigKind | undefined => {
    if (text === undefined) return yamlStart;
    try {
      const obj = loadYaml(text) as MachineOSConfigKind | null;
      if (!obj || typeof obj !== 'object' || Array.isArray(obj))
        throw new Error(t('The YAML must be one object'));
      if (obj.kind !== MachineOSConfigModel.kind)
        throw new Error(t('kind must be MachineOSConfig'));
      setYamlError(undefined);
      return obj;
    } catch (e) {
      setYamlError(errorText(e));
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

  const send = async (obj: MachineOSConfigKind) => {
    setSubmitting(true);
    setServer({ fields: {}, general: [] });
    try {
      const saved = editing
        ? await k8sPatch({
            model: MachineOSConfigModel,
            resource: existing,
            data: updatePatch(existing, obj),
          })
        : await k8sCreate({ model: MachineOSConfigModel, data: obj });
      void navigate(detailsHref(saved.metadata?.name ?? obj.metadata?.name ?? ''));
    } catch (err) {
      const errors = serverErrors(err, t);
      // The patch's `test` of the loaded spec failed: someone changed the spec meanwhile (a
      // validation error has causes; this has none).
      const status = statusOf(err);
      if (existing && status?.code === 422 && !status.details?.causes?.length)
        errors.general.unshift(
          t(
            'MachineOSConfig {{name}} was changed by someone else since this page loaded: reload the page to edit the current version.',
            { name: existing.metadata?.name },
          ),
        );
      setServer(errors);
    } finally {
      setSubmitting(false);
    }
  };

  const submitForm = (e?: React.FormEvent) => {
    e?.preventDefault();
    setShowClientErrors(true);
    if (hasErrors(clientErrors)) return;
    void send(toObject(state, base));
  };

  /** The YAML editor's Create/Save: it sends what it says; the API server validates it. */
  const submitYaml = (content: string) => {
    setYamlText(content);
    const obj = parseYaml(content);
    if (obj) void send(obj);
  };

  const taken = new Set(
    configs
      .map((c) => c.spec.machineConfigPool.name)
      .filter((p) => p && p !== existing?.spec.machineConfigPool.name),
  );
  const poolNames = pools
    .map((p) => p.metadata?.name ?? '')
    .filter(Boolean)
    .sort();
  if (state.pool && !poolNames.includes(state.pool)) poolNames.push(state.pool);

  const serverFieldCount = Object.keys(server.fields).length;
  const fragmentKeys = state.fragments.map((_f, i): FieldKey => `fragments.${i}`);
  const allowNote = t(
    'Strata uses a Secret only when its annotation {{annotation}} names this MachineOSConfig (or is *); the plugin reads Secret names and annotations, never their data.',
    { annotation: ALLOWED_CONFIGS_ANNOTATION },
  );

  const serverAlert = (server.general.length > 0 || (view === 'yaml' && serverFieldCount > 0)) && (
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
            if (view === 'yaml') toForm();
          }}
        />
        <ToggleGroupItem
          text={t('YAML view')}
          buttonId="strata-view-yaml"
          data-test="view-yaml"
          isSelected={view === 'yaml'}
          onChange={() => {
            if (view === 'form') toYaml();
          }}
        />
      </ToggleGroup>

      {view === 'yaml' && yamlStart ? (
        // The console's own YAML editor (Monaco with the CRD's schema): its Create/Save button
        // hands the text to submitYaml. It is not inside <Form>: its buttons are submit buttons.
        <div className="strata-form__yaml" data-test="yaml-view">
          {yamlError && (
            <Alert variant="danger" isInline isPlain title={yamlError} data-test="error-yaml" />
          )}
          {serverAlert}
          <div className="strata-form__yaml-editor">
            <React.Suspense fallback={<Spinner aria-label={t('Loading')} />}>
              <ResourceYAMLEditor
                initialResource={yamlStart}
                header={t('MachineOSConfig YAML')}
                hideHeader
                create={!editing}
                onChange={setYamlText}
                onSave={submitYaml}
              />
            </React.Suspense>
          </div>
        </div>
      ) : (
        <Form onSubmit={submitForm} className="strata-form__body" noValidate>
          <FormGroup label={t('MachineConfigPool')} isRequired fieldId="strata-pool">
            {poolsError ? (
              <Alert
                variant="danger"
                isInline
                isPlain
                title={t('Cannot list MachineConfigPools: {{e}}', { e: errorText(poolsError) })}
              />
            ) : !poolsLoaded ? (
              <Spinner size="md" aria-label={t('Loading pools')} />
            ) : (
              <FormSelect
                id="strata-pool"
                data-test="field-pool"
                value={state.pool}
                isDisabled={editing}
                onChange={(_e, v) => {
                  onPool(v);
                }}
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
              helper={
                editing
                  ? t('The pool of an existing MachineOSConfig cannot change.')
                  : t('The pool whose machines run the built image.')
              }
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

          <FormGroup label={t('Base image override')} fieldId="strata-baseImage">
            <TextInput
              id="strata-baseImage"
              data-test="field-baseImage"
              value={state.baseImage}
              onChange={(_e, v) => {
                update({ baseImage: v.trim() }, ['baseImage']);
              }}
              placeholder={BASE_IMAGE_EXAMPLE}
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
            <FieldMessages
              id="fragments"
              client={shownClient('fragments')}
              server={server.fields.fragments}
            />
            {state.fragments.map((f, i) => {
              const key = fragmentKeys[i];
              const options: Arch[] = [f.arch, ...freeArches(state.fragments)];
              const invalid = !!(shownClient(key) ?? server.fields[key]);
              return (
                <div className="strata-fragment" key={i} data-test={`fragment-${i}`}>
                  <div className="strata-fragment__head">
                    <FormSelect
                      id={`strata-fragment-${i}-arch`}
                      data-test={`fragment-${i}-arch`}
                      aria-label={t('Architecture')}
                      value={f.arch}
                      onChange={(_e, v) => {
                        update(
                          {
                            fragments: state.fragments.map((g, j) =>
                              j === i ? { ...g, arch: v as Arch } : g,
                            ),
                          },
                          [key],
                        );
                      }}
                    >
                      {ARCHES.filter((a) => options.includes(a)).map((a) => (
                        <FormSelectOption
                          key={a}
                          value={a}
                          label={a === 'NoArch' ? t('NoArch (any architecture)') : a}
                        />
                      ))}
                    </FormSelect>
                    <Button
                      variant="link"
                      isDanger
                      data-test={`fragment-${i}-remove`}
                      onClick={() => {
                        update(
                          { fragments: state.fragments.filter((_g, j) => j !== i) },
                          fragmentKeys,
                        );
                      }}
                    >
                      {t('Remove')}
                    </Button>
                  </div>
                  <div
                    className={`strata-fragment__editor${invalid ? ' strata-fragment__editor--invalid' : ''}`}
                    data-test={`fragment-${i}-content`}
                    aria-label={t('Containerfile fragment {{n}}', { n: i + 1 })}
                    role="group"
                  >
                    <React.Suspense fallback={<Spinner size="md" aria-label={t('Loading')} />}>
                      <CodeEditor
                        value={f.content}
                        language={CONTAINERFILE_LANGUAGE}
                        isFullHeight={false}
                        height="12rem"
                        isLanguageLabelVisible
                        options={{
                          minimap: { enabled: false },
                          scrollBeyondLastLine: false,
                          tabSize: 4,
                        }}
                        onChange={(v: string) => {
                          update(
                            {
                              fragments: state.fragments.map((g, j) =>
                                j === i ? { ...g, content: v } : g,
                              ),
                            },
                            [key],
                          );
                        }}
                      />
                    </React.Suspense>
                  </div>
                  <FieldMessages id={key} client={shownClient(key)} server={server.fields[key]} />
                </div>
              );
            })}
            <Button
              variant="secondary"
              data-test="fragment-add"
              isDisabled={
                state.fragments.length >= MAX_CONTAINERFILES ||
                freeArches(state.fragments).length === 0
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

          {serverAlert}
          {showClientErrors && hasErrors(clientErrors) && (
            <Alert
              variant="warning"
              isInline
              isPlain
              title={t('Fix the highlighted fields')}
              data-test="client-errors"
            />
          )}

          <ActionGroup>
            <Button
              type="submit"
              variant="primary"
              data-test="submit"
              isLoading={submitting}
              isDisabled={submitting}
            >
              {editing ? t('Save') : t('Create')}
            </Button>
            <Button variant="link" data-test="cancel" onClick={() => void navigate(-1)}>
              {t('Cancel')}
            </Button>
          </ActionGroup>
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
