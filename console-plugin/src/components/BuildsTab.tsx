import * as React from 'react';
import { Link } from 'react-router';
import { useTranslation } from 'react-i18next';
import { useK8sWatchResource } from '@openshift-console/dynamic-plugin-sdk';
import { Alert, Button, EmptyState, EmptyStateBody, PageSection, Spinner, Title } from '@patternfly/react-core';
import {
  MachineOSBuildModel,
  gvk,
  referenceFor,
  type MachineOSBuildKind,
  type MachineOSConfigKind,
} from '../models';
import { buildDuration, buildPhase, buildsOf, rebuildRequested } from '../lib/build';
import { PhaseLabel } from './PhaseLabel';
import { requestRebuild } from './actions';
import './strata.css';

const NS = 'plugin__strata-console-plugin';

export const buildHref = (name: string) =>
  `/k8s/cluster/${referenceFor(MachineOSBuildModel)}/${encodeURIComponent(name)}`;

/** `console.tab/horizontalNav` "Builds" on MachineOSConfig: its builds, newest first, and Rebuild. */
const BuildsTab: React.FC<{ obj?: MachineOSConfigKind }> = ({ obj }) => {
  const { t } = useTranslation(NS);
  const [builds, loaded, error] = useK8sWatchResource<MachineOSBuildKind[]>({
    groupVersionKind: gvk(MachineOSBuildModel),
    isList: true,
  });
  const [rebuildError, setRebuildError] = React.useState<string>();
  const [requesting, setRequesting] = React.useState(false);
  if (!obj) return <Spinner aria-label="Loading" />;
  const name = obj.metadata?.name ?? '';
  const current = obj.status?.machineOSBuild?.name;
  const mine = buildsOf(builds ?? [], name);
  const pending = rebuildRequested(obj);

  const rebuild = async () => {
    setRequesting(true);
    setRebuildError(undefined);
    try {
      await requestRebuild(obj);
    } catch (e) {
      setRebuildError(e instanceof Error ? e.message : String(e));
    } finally {
      setRequesting(false);
    }
  };

  return (
    <PageSection data-test="builds-tab">
      <div className="strata-fragment__head">
        <Title headingLevel="h2">{t('Builds')}</Title>
        <Button variant="secondary" onClick={rebuild} isDisabled={pending || requesting} isLoading={requesting} data-test="rebuild">
          {t('Rebuild')}
        </Button>
        {pending && <span data-test="rebuild-pending">{t('Rebuild requested; waiting for the controller')}</span>}
      </div>
      {rebuildError && <Alert variant="danger" isInline title={rebuildError} data-test="rebuild-error" />}
      {error ? (
        <Alert variant="danger" isInline title={t('Cannot list MachineOSBuilds: {{e}}', { e: String(error?.message ?? error) })} />
      ) : !loaded ? (
        <Spinner aria-label={t('Loading')} />
      ) : mine.length === 0 ? (
        <EmptyState titleText={t('No builds yet')} headingLevel="h3">
          <EmptyStateBody>{t('The controller creates a MachineOSBuild for every new set of inputs.')}</EmptyStateBody>
        </EmptyState>
      ) : (
        <table className="pf-v6-c-table pf-m-compact pf-m-grid-md" role="grid" data-test="builds-table">
          <thead className="pf-v6-c-table__thead">
            <tr className="pf-v6-c-table__tr">
              <th className="pf-v6-c-table__th">{t('Build')}</th>
              <th className="pf-v6-c-table__th">{t('Phase')}</th>
              <th className="pf-v6-c-table__th">{t('Started')}</th>
              <th className="pf-v6-c-table__th">{t('Duration')}</th>
              <th className="pf-v6-c-table__th">{t('Image / failure')}</th>
            </tr>
          </thead>
          <tbody className="pf-v6-c-table__tbody">
            {mine.map((b) => {
              const n = b.metadata?.name ?? '';
              return (
                <tr className="pf-v6-c-table__tr" key={n} data-test={`build-row-${n}`}>
                  <td className="pf-v6-c-table__td" data-label={t('Build')}>
                    <Link to={buildHref(n)}>{n}</Link>
                    {n === current && <> ({t('current')})</>}
                  </td>
                  <td className="pf-v6-c-table__td" data-label={t('Phase')}>
                    <PhaseLabel phase={buildPhase(b)} />
                  </td>
                  <td className="pf-v6-c-table__td" data-label={t('Started')}>
                    {b.status?.buildStart ? new Date(b.status.buildStart).toLocaleString() : '-'}
                  </td>
                  <td className="pf-v6-c-table__td" data-label={t('Duration')}>
                    {buildDuration(b) ?? '-'}
                  </td>
                  <td className="pf-v6-c-table__td strata-pre" data-label={t('Image / failure')}>
                    {b.status?.failure
                      ? `${b.status.failure.reason}: ${b.status.failure.message}`
                      : (b.status?.digestedImagePushSpec ?? '-')}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </PageSection>
  );
};
export default BuildsTab;
