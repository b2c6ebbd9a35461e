import * as React from 'react';
import { Link } from 'react-router';
import { useTranslation } from 'react-i18next';
import { CodeEditor, ResourceLink, Timestamp } from '@openshift-console/dynamic-plugin-sdk';
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
  Title,
} from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import {
  CONTAINERFILE_KEY,
  CONTROLLER_NAMESPACE,
  JobModel,
  MachineOSConfigModel,
  PodModel,
  gvk,
  type ConfigMapKind,
  type MachineOSBuildKind,
  type PodKind,
} from '../models';
import {
  bootCheckSummary,
  buildDigest,
  buildDuration,
  diskImageSummary,
  buildPhase,
  builderPodsSelector,
  containerfileConfigMapName,
  formatDuration,
  isTerminal,
  jobPodsHref,
  logsContainer,
  phaseCondition,
  podLogsHref,
  stepTimings,
} from '../lib/build';
import { errorText } from '../lib/server-errors';
import { CONTAINERFILE_LANGUAGE } from './shared';
import { PhaseLabel } from './PhaseLabel';
import { useNow } from './useNow';
import { useWatchList, useWatchObject } from './useWatch';
import './strata.css';

const isNotFound = (e: unknown) =>
  (e as { code?: number } | undefined)?.code === 404 ||
  (e as { json?: { code?: number } } | undefined)?.json?.code === 404;

const When: React.FC<{ at?: string }> = ({ at }) => (at ? <Timestamp timestamp={at} /> : <>-</>);

/** The builder pod's logs, opened at the container that explains the build (the failed step, the
 * running one, else push); without a pod, the Job's pod list. */
const LogsLink: React.FC<{ build: string; job?: string; jobNamespace?: string }> = ({
  build,
  job,
  jobNamespace,
}) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const ns = jobNamespace ?? CONTROLLER_NAMESPACE;
  const [pods, loaded] = useWatchList<PodKind>({
    groupVersionKind: { version: 'v1', kind: 'Pod' },
    namespace: ns,
    isList: true,
    selector: builderPodsSelector(build),
  });
  const newest = [...pods].sort((a, b) =>
    (b.metadata?.creationTimestamp ?? '').localeCompare(a.metadata?.creationTimestamp ?? ''),
  )[0] as PodKind | undefined;
  const podName = newest?.metadata?.name;
  if (podName) {
    const container = logsContainer(newest);
    return (
      <span className="strata-build__logs">
        <ResourceLink
          groupVersionKind={gvk(PodModel)}
          name={podName}
          namespace={ns}
          dataTest="build-pod"
        />
        <Link to={`${podLogsHref(podName, ns)}?container=${container}`} data-test="build-logs">
          {t('Logs of step {{container}}', { container })}
        </Link>
      </span>
    );
  }
  if (job)
    return (
      <Link to={jobPodsHref(job, ns)} data-test="build-logs">
        {loaded
          ? t('Pods of Job {{job}} (no pod left)', { job })
          : t('Pods of Job {{job}}', { job })}
      </Link>
    );
  return <span data-test="build-logs">{t('No builder Job yet')}</span>;
};

export const BuildSummary: React.FC<{ obj: MachineOSBuildKind }> = ({ obj }) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const name = obj.metadata?.name ?? '';
  const phase = buildPhase(obj);
  const now = useNow(!isTerminal(phase) && !!obj.status?.buildStart);
  const cond = phaseCondition(obj);
  const digest = buildDigest(obj);
  const failure = obj.status?.failure;
  const job = obj.status?.builder?.job;
  const [cm, cmLoaded, cmError] = useWatchObject<ConfigMapKind>({
    groupVersionKind: { version: 'v1', kind: 'ConfigMap' },
    namespace: CONTROLLER_NAMESPACE,
    name: containerfileConfigMapName(name),
  });
  const containerfile = cm?.data?.[CONTAINERFILE_KEY];
  const config = obj.spec.machineOSConfig.name;
  const steps = stepTimings(obj);

  return (
    <PageSection data-test="build-details">
      <Title headingLevel="h2">{t('Build {{name}}', { name })}</Title>
      <DescriptionList
        isHorizontal
        className="strata-build__section"
        columnModifier={{ default: '1Col', lg: '2Col' }}
      >
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
              <ResourceLink
                groupVersionKind={gvk(MachineOSConfigModel)}
                name={config}
                dataTest="build-config"
                nameSuffix={<> ({t('pool {{pool}}', { pool: obj.spec.machineConfigPool.name })})</>}
              />
            ) : (
              '-'
            )}
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
          <DescriptionListDescription data-test="build-duration">
            {buildDuration(obj, now, t) ?? '-'}
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Attempts')}</DescriptionListTerm>
          <DescriptionListDescription data-test="build-attempts">
            {obj.status?.attempts ?? '-'}
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Image')}</DescriptionListTerm>
          <DescriptionListDescription>
            {obj.status?.digestedImagePushSpec ? (
              <ClipboardCopy
                isReadOnly
                hoverTip={t('Copy')}
                clickTip={t('Copied')}
                data-test="build-image"
              >
                {obj.status.digestedImagePushSpec}
              </ClipboardCopy>
            ) : (
              <span data-test="build-image">{t('Not pushed (yet)')}</span>
            )}
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Digest')}</DescriptionListTerm>
          <DescriptionListDescription data-test="build-digest">
            {digest ?? '-'}
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Boot check')}</DescriptionListTerm>
          <DescriptionListDescription data-test="build-boot-check">
            {bootCheckSummary(obj, t) ?? t('Not checked')}
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Disk image')}</DescriptionListTerm>
          <DescriptionListDescription data-test="build-disk-image">
            {diskImageSummary(obj, t) ?? t('None asked for')}
            {obj.status?.diskImage?.image && (
              <ClipboardCopy isReadOnly hoverTip={t('Copy')} clickTip={t('Copied')}>
                {obj.status.diskImage.image}
              </ClipboardCopy>
            )}
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Base image')}</DescriptionListTerm>
          <DescriptionListDescription className="strata-pre">
            {obj.spec.baseImage}
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Builder Job')}</DescriptionListTerm>
          <DescriptionListDescription>
            {job?.name ? (
              <ResourceLink
                groupVersionKind={gvk(JobModel)}
                name={job.name}
                namespace={job.namespace ?? CONTROLLER_NAMESPACE}
                dataTest="build-job"
              />
            ) : (
              '-'
            )}
          </DescriptionListDescription>
        </DescriptionListGroup>
        <DescriptionListGroup>
          <DescriptionListTerm>{t('Builder logs')}</DescriptionListTerm>
          <DescriptionListDescription>
            <LogsLink build={name} job={job?.name} jobNamespace={job?.namespace} />
          </DescriptionListDescription>
        </DescriptionListGroup>
      </DescriptionList>

      {steps.length > 0 && (
        <>
          <Title headingLevel="h3" className="strata-build__section">
            {t('Steps')}
          </Title>
          <Table aria-label={t('Steps')} variant="compact" data-test="build-steps">
            <Thead>
              <Tr>
                <Th>{t('Step')}</Th>
                <Th>{t('Started')}</Th>
                <Th>{t('Duration')}</Th>
              </Tr>
            </Thead>
            <Tbody>
              {steps.map((s) => (
                <Tr key={`${s.phase}-${String(s.startMs)}`} data-test={`build-step-${s.phase}`}>
                  <Td dataLabel={t('Step')}>{s.phase}</Td>
                  <Td dataLabel={t('Started')}>
                    <Timestamp timestamp={new Date(s.startMs).toISOString()} />
                  </Td>
                  <Td dataLabel={t('Duration')}>{formatDuration(s.durationMs, t)}</Td>
                </Tr>
              ))}
            </Tbody>
          </Table>
        </>
      )}

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
          title={t('ConfigMap {{namespace}}/{{cm}} is not readable: {{e}}', {
            namespace: CONTROLLER_NAMESPACE,
            cm: containerfileConfigMapName(name),
            e: errorText(cmError),
          })}
        />
      ) : !cmLoaded && !cmError ? (
        <Spinner size="md" aria-label={t('Loading')} />
      ) : containerfile !== undefined ? (
        <div className="strata-build__containerfile" data-test="containerfile">
          <React.Suspense fallback={<Spinner size="md" aria-label={t('Loading')} />}>
            <CodeEditor
              value={containerfile}
              language={CONTAINERFILE_LANGUAGE}
              isFullHeight={false}
              height="sizeToFit"
              isLanguageLabelVisible
              isCopyEnabled
              options={{ readOnly: true, minimap: { enabled: false }, scrollBeyondLastLine: false }}
            />
          </React.Suspense>
        </div>
      ) : (
        <span data-test="containerfile-missing">{t('Not rendered (yet)')}</span>
      )}
      {obj.status?.containerfileSha256 && (
        <div className="strata-pre" data-test="containerfile-sha">
          {t('sha256:{{hash}}', { hash: obj.status.containerfileSha256 })}
        </div>
      )}
    </PageSection>
  );
};

/** `console.tab/horizontalNav` on MachineOSBuild. */
const BuildDetails: React.FC<{ obj?: MachineOSBuildKind }> = ({ obj }) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  return obj ? <BuildSummary obj={obj} /> : <Spinner aria-label={t('Loading')} />;
};
export default BuildDetails;
