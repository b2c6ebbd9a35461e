import * as React from 'react';
import { Link } from 'react-router';
import { useTranslation } from 'react-i18next';
import { useK8sWatchResource } from '@openshift-console/dynamic-plugin-sdk';
import {
  Alert,
  ClipboardCopy,
  CodeBlock,
  CodeBlockCode,
  DescriptionList,
  DescriptionListDescription,
  DescriptionListGroup,
  DescriptionListTerm,
  PageSection,
  Spinner,
  Timestamp,
  Title,
} from '@patternfly/react-core';
import {
  BUILDER_CONTAINER,
  BUILD_LABEL,
  CONTAINERFILE_KEY,
  CONTROLLER_NAMESPACE,
  MachineOSConfigModel,
  referenceFor,
  type ConfigMapKind,
  type MachineOSBuildKind,
  type PodKind,
} from '../models';
import {
  buildDigest,
  buildDuration,
  buildLabelValue,
  buildPhase,
  containerfileConfigMapName,
  isTerminal,
  jobPodsHref,
  phaseCondition,
  podLogsHref,
} from '../lib/build';
import { PhaseLabel } from './PhaseLabel';
import './strata.css';

const NS = 'plugin__strata-console-plugin';

const isNotFound = (e: unknown) =>
  (e as { code?: number; json?: { code?: number } })?.code === 404 ||
  (e as { json?: { code?: number } })?.json?.code === 404;

/** Re-render every second while `active` (running builds show a growing duration). */
const useTick = (active: boolean) => {
  const [, set] = React.useState(0);
  React.useEffect(() => {
    if (!active) return undefined;
    const id = setInterval(() => set((n) => n + 1), 1000);
    return () => clearInterval(id);
  }, [active]);
};

const When: React.FC<{ at?: string }> = ({ at }) =>
  at ? <Timestamp date={new Date(at)} dateFormat="medium" timeFormat="medium" /> : <>-</>;

/** The builder pod's logs: the newest pod of the build, else the Job's pod list. */
const LogsLink: React.FC<{ build: string; job?: string; jobNamespace?: string }> = ({ build, job, jobNamespace }) => {
  const { t } = useTranslation(NS);
  const ns = jobNamespace ?? CONTROLLER_NAMESPACE;
  const [pods, loaded] = useK8sWatchResource<PodKind[]>({
    groupVersionKind: { version: 'v1', kind: 'Pod' },
    namespace: ns,
    isList: true,
    selector: { matchLabels: { [BUILD_LABEL]: buildLabelValue(build) } },
  });
  const newest = [...(pods ?? [])].sort((a, b) =>
    (b.metadata?.creationTimestamp ?? '').localeCompare(a.metadata?.creationTimestamp ?? ''),
  )[0];
  if (newest?.metadata?.name)
    return (
      <Link to={`${podLogsHref(newest.metadata.name, ns)}?container=${BUILDER_CONTAINER}`} data-test="build-logs">
        {t('Logs of pod {{pod}}', { pod: newest.metadata.name })}
      </Link>
    );
  if (job)
    return (
      <Link to={jobPodsHref(job, ns)} data-test="build-logs">
        {loaded ? t('Pods of Job {{job}} (no pod left)', { job }) : t('Pods of Job {{job}}', { job })}
      </Link>
    );
  return <span data-test="build-logs">{t('No builder Job yet')}</span>;
};

export const BuildSummary: React.FC<{ obj: MachineOSBuildKind }> = ({ obj }) => {
  const { t } = useTranslation(NS);
  const name = obj.metadata?.name ?? '';
  const phase = buildPhase(obj);
  useTick(!isTerminal(phase) && !!obj.status?.buildStart);
  const cond = phaseCondition(obj);
  const digest = buildDigest(obj);
  const failure = obj.status?.failure;
  const job = obj.status?.builder?.job;
  const [cm, cmLoaded, cmError] = useK8sWatchResource<ConfigMapKind>({
    groupVersionKind: { version: 'v1', kind: 'ConfigMap' },
    namespace: CONTROLLER_NAMESPACE,
    name: containerfileConfigMapName(name),
  });
  const containerfile = cm?.data?.[CONTAINERFILE_KEY];
  const config = obj.spec?.machineOSConfig?.name;

  return (
    <PageSection data-test="build-details">
      <Title headingLevel="h2">{t('Build {{name}}', { name })}</Title>
      <DescriptionList isHorizontal className="strata-build__section" columnModifier={{ default: '1Col', lg: '2Col' }}>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Phase')}</DescriptionListTerm>
          <DescriptionListDescription>
            <PhaseLabel phase={phase} />
            {cond?.reason && <span data-test="build-reason"> {cond.reason}</span>}
            {cond?.message && <div data-test="build-condition-message">{cond.message}</div>}
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('MachineOSConfig')}</DescriptionListTerm>
          <DescriptionListDescription>
            {config ? (
              <Link to={`/k8s/cluster/${referenceFor(MachineOSConfigModel)}/${encodeURIComponent(config)}`} data-test="build-config">
                {config}
              </Link>
            ) : (
              '-'
            )}{' '}
            ({t('pool {{pool}}', { pool: obj.spec?.machineConfigPool?.name })})
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Started')}</DescriptionListTerm>
          <DescriptionListDescription data-test="build-start">
            <When at={obj.status?.buildStart} />
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Finished')}</DescriptionListTerm>
          <DescriptionListDescription data-test="build-end">
            <When at={obj.status?.buildEnd} />
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Duration')}</DescriptionListTerm>
          <DescriptionListDescription data-test="build-duration">{buildDuration(obj) ?? '-'}</DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Attempts')}</DescriptionListTerm>
          <DescriptionListDescription data-test="build-attempts">{obj.status?.attempts ?? '-'}</DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Image')}</DescriptionListTerm>
          <DescriptionListDescription>
            {obj.status?.digestedImagePushSpec ? (
              <ClipboardCopy isReadOnly hoverTip={t('Copy')} clickTip={t('Copied')} data-test="build-image">
                {obj.status.digestedImagePushSpec}
              </ClipboardCopy>
            ) : (
              <span data-test="build-image">{t('Not pushed (yet)')}</span>
            )}
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Digest')}</DescriptionListTerm>
          <DescriptionListDescription data-test="build-digest">{digest ?? '-'}</DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Base image')}</DescriptionListTerm>
          <DescriptionListDescription className="strata-pre">{obj.spec?.baseImage}</DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Builder logs')}</DescriptionListTerm>
          <DescriptionListDescription>
            <LogsLink build={name} job={job?.name} jobNamespace={job?.namespace} />
          </DescriptionListDescription>
        </DescriptionListGroup>
      </DescriptionList>

      {failure && (
        <Alert
          className="strata-build__section"
          variant={phase === 'Interrupted' ? 'warning' : 'danger'}
          isInline
          title={`${failure.reason}: ${failure.message}`}
          data-test="build-failure"
        >
          {failure.logTail && (
            <CodeBlock>
              <CodeBlockCode data-test="build-logtail">{failure.logTail}</CodeBlockCode>
            </CodeBlock>
          )}
        </Alert>
      )}

      <Title headingLevel="h3" className="strata-build__section">
        {t('Rendered Containerfile')}
      </Title>
      {cmError && !isNotFound(cmError) ? (
        <Alert
          variant="info"
          isInline
          isPlain
          data-test="containerfile-missing"
          title={t('ConfigMap {{ns}}/{{cm}} is not readable: {{e}}', {
            ns: CONTROLLER_NAMESPACE,
            cm: containerfileConfigMapName(name),
            e: String(cmError?.message ?? cmError),
          })}
        />
      ) : !cmLoaded && !cmError ? (
        <Spinner size="md" aria-label={t('Loading')} />
      ) : containerfile !== undefined ? (
        <CodeBlock>
          <CodeBlockCode data-test="containerfile">{containerfile}</CodeBlockCode>
        </CodeBlock>
      ) : (
        <span data-test="containerfile-missing">{t('Not rendered (yet)')}</span>
      )}
      {obj.status?.containerfileSha256 && (
        <div className="strata-pre" data-test="containerfile-sha">
          sha256:{obj.status.containerfileSha256}
        </div>
      )}
    </PageSection>
  );
};

/** `console.tab/horizontalNav` on MachineOSBuild. */
const BuildDetails: React.FC<{ obj?: MachineOSBuildKind }> = ({ obj }) =>
  obj ? <BuildSummary obj={obj} /> : <Spinner aria-label="Loading" />;
export default BuildDetails;
