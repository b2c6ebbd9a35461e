import { render, screen, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router';
import { useK8sWatchResource, watchResults } from '../testing/sdk';
import BuildsTab from './BuildsTab';
import type { MachineOSBuildKind, MachineOSConfigKind } from '../models';

const cond = (type: string, status: string) => ({
  type,
  status,
  reason: 'R',
  message: 'm',
  lastTransitionTime: '2026-01-01T00:00:00Z',
});
const config: MachineOSConfigKind = {
  metadata: { name: 'worker' },
  spec: {
    machineConfigPool: { name: 'worker' },
    renderedImagePushSpec: 'r.example.com/os:latest',
    renderedImagePushSecret: { name: 'push' },
  },
  status: {
    conditions: [
      cond('PoolHeld', 'True'),
      cond('Ready', 'False'),
      cond('PoolUpdated', 'True'),
      cond('Degraded', 'False'),
      cond('WaitingForPool', 'True'),
      cond('Seeded', 'True'),
    ],
  },
};
const build = (name: string, configName: string, start: string): MachineOSBuildKind => ({
  metadata: { name, creationTimestamp: start },
  spec: {
    machineOSConfig: { name: configName },
    machineConfigPool: { name: configName },
    baseImage: 'b',
    renderedImagePushSpec: 'r',
  },
  status: {
    buildStart: start,
    buildEnd: start,
    conditions: [cond('Succeeded', 'True')],
    phases: [{ phase: 'pull', startMs: 0, endMs: 2000 }],
  },
});

beforeEach(() => {
  watchResults.clear();
  useK8sWatchResource.mockClear();
});

it('watches the builds by the config label and lists them newest first with the conditions', () => {
  watchResults.set('MachineOSBuild', [
    [
      build('worker-aaa', 'worker', '2026-01-01T00:00:00Z'),
      build('worker-bbb', 'worker', '2026-01-02T00:00:00Z'),
      // Shares the label's first 63 characters in real life; the spec name tells them apart.
      build('worker2-ccc', 'worker2', '2026-01-03T00:00:00Z'),
    ],
    true,
    undefined,
  ]);
  render(
    <MemoryRouter>
      <BuildsTab obj={config} />
    </MemoryRouter>,
  );
  expect(useK8sWatchResource).toHaveBeenCalledWith(
    expect.objectContaining({
      isList: true,
      selector: { matchLabels: { 'strata.dev/machine-os-config': 'worker' } },
    }),
  );
  const rows = within(screen.getByTestId('builds-table')).getAllByRole('row').slice(1);
  expect(rows.map((r) => within(r).getAllByRole('cell')[0].textContent)).toEqual([
    'worker-bbb',
    'worker-aaa',
  ]);
  expect(rows[0]).toHaveTextContent('pull 2s');
  expect(screen.getByTestId('condition-PoolHeld')).toHaveTextContent('PoolHeld=True');
  expect(screen.getByTestId('condition-PoolUpdated')).toHaveTextContent('PoolUpdated=True');
  // Shown in a fixed order: Ready, Building, Degraded, PoolUpdated, PoolHeld, WaitingForPool,
  // Seeded (a config seeded with a pre-built image).
  expect(
    within(screen.getByTestId('config-conditions'))
      .getAllByText(/=/)
      .map((l) => l.textContent),
  ).toEqual([
    'Ready=False',
    'Degraded=False',
    'PoolUpdated=True',
    'PoolHeld=True',
    'WaitingForPool=True',
    'Seeded=True',
  ]);
});
