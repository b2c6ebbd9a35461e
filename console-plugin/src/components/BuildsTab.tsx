import * as React from 'react';
import { useTranslation } from 'react-i18next';
import { ResourceLink, Timestamp } from '@openshift-console/dynamic-plugin-sdk';
import {
  Alert,
  Button,
  EmptyState,
  EmptyStateBody,
  Label,
  LabelGroup,
  PageSection,
  Spinner,
  Title,
  Tooltip,
} from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr, type ThProps } from '@patternfly/react-table';
import {
  CONFIG_CONDITIONS,
  MachineOSBuildModel,
  gvk,
  referenceFor,
  type Condition,
  type MachineOSBuildKind,
  type MachineOSConfigKind,
} from '../models';
import {
  buildDuration,
  buildPhase,
  buildsOf,
  buildsSelector,
  formatDuration,
  isTerminal,
  rebuildRequested,
  stepTimings,
} from '../lib/build';
import { errorText } from '../lib/server-errors';
import { PhaseLabel } from './PhaseLabel';
import { requestRebuild } from './actions';
import { useNow } from './useNow';
import { useWatchList } from './useWatch';
import './strata.css';

export const buildHref = (name: string) =>
  `/k8s/cluster/${referenceFor(MachineOSBuildModel)}/${encodeURIComponent(name)}`;

/** Color of a MachineOSConfig condition's label: green when it says what an administrator wants. */
const conditionColor = (c: Condition): React.ComponentProps<typeof Label>['color'] => {
  if (c.status === 'Unknown') return 'grey';
  if (c.type === 'Building' || c.type === 'PoolHeld') return c.status === 'True' ? 'blue' : 'grey';
  // Seeded=False while the pre-built image is checked (reason Seeding) is work in progress.
  if (c.type === 'Seeded' && c.status === 'False' && c.reason === 'Seeding') return 'blue';
  // Degraded and WaitingForPool say what is wrong when True.
  const good =
    c.type === 'Degraded' || c.type === 'WaitingForPool'
      ? c.status === 'False'
      : c.status === 'True';
  return good ? 'green' : 'red';
};

/** The MachineOSConfig's conditions (Ready, Building, Degraded, PoolUpdated, PoolHeld,
 * WaitingForPool, Seeded). */
export const ConfigConditions: React.FC<{ obj: MachineOSConfigKind }> = ({ obj }) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const conditions = CONFIG_CONDITIONS.flatMap(
    (type) => obj.status?.conditions?.filter((c) => c.type === type) ?? [],
  );
  if (conditions.length === 0)
    return <span data-test="config-conditions">{t('No status reported yet')}</span>;
  return (
    <LabelGroup
      categoryName={t('Status')}
      numLabels={CONFIG_CONDITIONS.length}
      data-test="config-conditions"
    >
      {conditions.map((c) => (
        <Tooltip
          key={c.type}
          content={c.message ? `${c.reason ?? ''}: ${c.message}` : (c.reason ?? c.type)}
        >
          <Label color={conditionColor(c)} data-test={`condition-${c.type}`}>
            {c.type}={c.status}
          </Label>
        </Tooltip>
      ))}
    </LabelGroup>
  );
};

type SortKey = 'name' | 'started';

/** `console.tab/horizontalNav` "Builds" on MachineOSConfig: its builds (watched by label
 * selector), newest first, their step timings, and Rebuild. */
const BuildsTab: React.FC<{ obj?: MachineOSConfigKind }> = ({ obj }) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const name = obj?.metadata?.name ?? '';
  // The API server filters by the config label; no other config's builds reach the browser.
  const [builds, loaded, error] = useWatchList<MachineOSBuildKind>(
    obj
      ? { groupVersionKind: gvk(MachineOSBuildModel), isList: true, selector: buildsSelector(name) }
      : null,
  );
  const [rebuildError, setRebuildError] = React.useState<string>();
  const [requesting, setRequesting] = React.useState(false);
  const [sort, setSort] = React.useState<{ key: SortKey; direction: 'asc' | 'desc' }>({
    key: 'started',
    direction: 'desc',
  });
  const now = useNow(builds.some((b) => !isTerminal(buildPhase(b)) && !!b.status?.buildStart));
  if (!obj) return <Spinner aria-label={t('Loading')} />;
  const current = obj.status?.machineOSBuild?.name;
  const sortValue = (b: MachineOSBuildKind) =>
    sort.key === 'name'
      ? (b.metadata?.name ?? '')
      : (b.status?.buildStart ?? b.metadata?.creationTimestamp ?? '');
  const mine = buildsOf(builds, name).sort((a, b) => sortValue(a).localeCompare(sortValue(b)));
  if (sort.direction === 'desc') mine.reverse();
  const pending = rebuildRequested(obj);

  const sortBy = (key: SortKey, index: number): ThProps['sort'] => ({
    sortBy: { index: sort.key === 'name' ? 0 : 2, direction: sort.direction },
    onSort: (_e, _i, direction) => {
      setSort({ key, direction });
    },
    columnIndex: index,
  });

  const rebuild = async () => {
    setRequesting(true);
    setRebuildError(undefined);
    try {
      await requestRebuild(obj);
    } catch (e) {
      setRebuildError(errorText(e));
    } finally {
      setRequesting(false);
    }
  };

  const columns = {
    build: t('Build'),
    phase: t('Phase'),
    started: t('Started'),
    duration: t('Duration'),
    steps: t('Steps'),
    result: t('Image / failure'),
  };

  return (
    <PageSection data-test="builds-tab">
      <div className="strata-fragment__head">
        <Title headingLevel="h2">{t('Builds')}</Title>
        <Button
          variant="secondary"
          onClick={() => void rebuild()}
          isDisabled={pending || requesting}
          isLoading={requesting}
          data-test="rebuild"
        >
          {t('Rebuild')}
        </Button>
        {pending && (
          <span data-test="rebuild-pending">
            {t('Rebuild requested; waiting for the controller')}
          </span>
        )}
      </div>
      <div className="strata-build__conditions">
        <ConfigConditions obj={obj} />
      </div>
      {rebuildError && (
        <Alert variant="danger" isInline title={rebuildError} data-test="rebuild-error" />
      )}
      {error ? (
        <Alert
          variant="danger"
          isInline
          title={t('Cannot list MachineOSBuilds: {{e}}', { e: errorText(error) })}
        />
      ) : !loaded ? (
        <Spinner aria-label={t('Loading')} />
      ) : mine.length === 0 ? (
        <EmptyState titleText={t('No builds yet')} headingLevel="h3">
          <EmptyStateBody>
            {t('The controller creates a MachineOSBuild for every new set of inputs.')}
          </EmptyStateBody>
        </EmptyState>
      ) : (
        <Table
          aria-label={t('Builds of {{name}}', { name })}
          variant="compact"
          gridBreakPoint="grid-md"
          data-test="builds-table"
        >
          <Thead>
            <Tr>
              <Th sort={sortBy('name', 0)}>{columns.build}</Th>
              <Th modifier="nowrap">{columns.phase}</Th>
              <Th sort={sortBy('started', 2)} modifier="nowrap">
                {columns.started}
              </Th>
              <Th modifier="nowrap">{columns.duration}</Th>
              <Th>{columns.steps}</Th>
              <Th>{columns.result}</Th>
            </Tr>
          </Thead>
          <Tbody>
            {mine.map((b) => {
              const n = b.metadata?.name ?? '';
              const steps = stepTimings(b);
              return (
                <Tr key={n} data-test={`build-row-${n}`}>
                  <Td dataLabel={columns.build}>
                    <ResourceLink
                      groupVersionKind={gvk(MachineOSBuildModel)}
                      name={n}
                      dataTest={`build-link-${n}`}
                      nameSuffix={n === current ? <> ({t('current')})</> : undefined}
                    />
                  </Td>
                  <Td dataLabel={columns.phase}>
                    <PhaseLabel phase={buildPhase(b)} />
                  </Td>
                  <Td dataLabel={columns.started}>
                    {b.status?.buildStart ? <Timestamp timestamp={b.status.buildStart} /> : '-'}
                  </Td>
                  <Td dataLabel={columns.duration}>{buildDuration(b, now, t) ?? '-'}</Td>
                  <Td dataLabel={columns.steps} data-test={`build-steps-${n}`}>
                    {steps.length === 0
                      ? '-'
                      : steps
                          .map((s) =>
                            t('{{step}} {{duration}}', {
                              step: s.phase,
                              duration: formatDuration(s.durationMs, t),
                            }),
                          )
                          .join(', ')}
                  </Td>
                  <Td dataLabel={columns.result} className="strata-pre">
                    {b.status?.failure
                      ? `${b.status.failure.reason}: ${b.status.failure.message}`
                      : (b.status?.digestedImagePushSpec ?? '-')}
                  </Td>
                </Tr>
              );
            })}
          </Tbody>
        </Table>
      )}
    </PageSection>
  );
};
export default BuildsTab;
