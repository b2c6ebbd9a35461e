import {
  bootCheckSummary,
  diskImageSummary,
  buildDigest,
  builderPodsSelector,
  buildsSelector,
  logsContainer,
  stepTimings,
  buildDuration,
  buildPhase,
  buildsOf,
  containerfileConfigMapName,
  fit63,
  formatDuration,
  rebuildPatch,
  rebuildRequested,
} from './build';
import type { ContainerStatus, MachineOSBuildKind, MachineOSConfigKind } from '../models';

const cond = (type: string, status = 'True') => ({
  type,
  status,
  reason: 'R',
  message: '',
  lastTransitionTime: '2026-01-01T00:00:00Z',
});
const build = (
  name: string,
  config: string,
  status: MachineOSBuildKind['status'] = {},
  created = '2026-01-01T00:00:00Z',
): MachineOSBuildKind => ({
  metadata: { name, creationTimestamp: created },
  spec: {
    machineOSConfig: { name: config },
    machineConfigPool: { name: config },
    baseImage: 'b',
    renderedImagePushSpec: 'r',
  },
  status,
});

describe('buildPhase', () => {
  it('is the True condition, Pending before any', () => {
    expect(buildPhase(build('a', 'w'))).toBe('Pending');
    expect(
      buildPhase(build('a', 'w', { conditions: [cond('Prepared', 'False'), cond('Building')] })),
    ).toBe('Building');
    expect(
      buildPhase(build('a', 'w', { conditions: [cond('Building', 'False'), cond('Failed')] })),
    ).toBe('Failed');
    expect(buildPhase(build('a', 'w', { conditions: [cond('Succeeded')] }))).toBe('Succeeded');
    expect(buildPhase(build('a', 'w', { conditions: [cond('Interrupted')] }))).toBe('Interrupted');
  });
});

describe('durations and digest', () => {
  it('formats', () => {
    expect(formatDuration(45_000)).toBe('45s');
    expect(formatDuration(65_000)).toBe('1m 05s');
    expect(formatDuration(3_720_000)).toBe('1h 02m');
    expect(formatDuration(-5)).toBe('0s');
  });
  it('measures start to end, or to now while running', () => {
    const b = build('a', 'w', {
      buildStart: '2026-01-01T00:00:00Z',
      buildEnd: '2026-01-01T00:01:05Z',
    });
    expect(buildDuration(b)).toBe('1m 05s');
    const running = build('a', 'w', { buildStart: '2026-01-01T00:00:00Z' });
    expect(buildDuration(running, Date.parse('2026-01-01T00:00:30Z'))).toBe('30s');
    expect(buildDuration(build('a', 'w'))).toBeUndefined();
  });
  it('digest of the pushed image', () => {
    const d = `sha256:${'c'.repeat(64)}`;
    expect(buildDigest(build('a', 'w', { digestedImagePushSpec: `r.example.com/os@${d}` }))).toBe(
      d,
    );
    expect(buildDigest(build('a', 'w'))).toBeUndefined();
  });
});

describe('names (the controller fit_63)', () => {
  it('keeps short names', () => {
    expect(fit63('worker-0123456789ab')).toBe('worker-0123456789ab');
    expect(containerfileConfigMapName('worker-0123456789ab')).toBe(
      'containerfile-worker-0123456789ab',
    );
  });
  it('shortens long names to 63, keeping the hash', () => {
    const long = `containerfile-${'a'.repeat(60)}-0123456789ab`;
    const got = fit63(long);
    expect(got).toHaveLength(63);
    expect(got.endsWith('-0123456789ab')).toBe(true);
    expect(got).toBe(`containerfile-${'a'.repeat(36)}-0123456789ab`);
  });
  it('trims a trailing dash or dot before the hash', () => {
    // head is cut at 63 - 12 - 1 = 50 characters, which here ends in '-.'
    const name = `${'b'.repeat(48)}-.${'c'.repeat(10)}-0123456789ab`;
    expect(fit63(name)).toBe(`${'b'.repeat(48)}-0123456789ab`);
  });
});

describe('builds of a config', () => {
  it('filters and sorts newest first', () => {
    const all = [
      build('w-1', 'w', {}, '2026-01-01T00:00:00Z'),
      build('x-1', 'x'),
      build('w-2', 'w', {}, '2026-01-02T00:00:00Z'),
    ];
    expect(buildsOf(all, 'w').map((b) => b.metadata?.name)).toEqual(['w-2', 'w-1']);
  });
});

describe('rebuild', () => {
  const now = new Date('2026-02-03T04:05:06Z');
  const config = (annotations?: Record<string, string>) =>
    ({ metadata: { name: 'w', annotations }, spec: {} }) as unknown as MachineOSConfigKind;
  it('adds the annotation map when there is none', () => {
    expect(rebuildPatch(config(), now)).toEqual([
      {
        op: 'add',
        path: '/metadata/annotations',
        value: { 'strata.dev/rebuild': '2026-02-03T04:05:06.000Z' },
      },
    ]);
  });
  it('adds one key (JSON-pointer escaped) otherwise', () => {
    expect(rebuildPatch(config({ a: 'b' }), now)).toEqual([
      {
        op: 'add',
        path: '/metadata/annotations/strata.dev~1rebuild',
        value: '2026-02-03T04:05:06.000Z',
      },
    ]);
  });
  it('knows when one is pending', () => {
    expect(rebuildRequested(config({ 'strata.dev/rebuild': '' }))).toBe(true);
    expect(rebuildRequested(config({ a: 'b' }))).toBe(false);
  });
});

describe('builder pod and steps', () => {
  const pod = (init: ContainerStatus[], main: ContainerStatus[] = []) => ({
    metadata: { name: 'p' },
    status: { initContainerStatuses: init, containerStatuses: main },
  });
  const term = (name: string, exitCode: number): ContainerStatus => ({
    name,
    state: { terminated: { exitCode } },
  });
  const running = (name: string): ContainerStatus => ({ name, state: { running: {} } });
  const waiting = (name: string): ContainerStatus => ({
    name,
    state: { waiting: { reason: 'PodInitializing' } },
  });
  it('opens the logs at the failed step, else the running one, else push', () => {
    expect(logsContainer(undefined)).toBe('pull');
    expect(logsContainer(pod([running('pull'), waiting('build')], [waiting('push')]))).toBe('pull');
    expect(logsContainer(pod([term('pull', 0), running('build')], [waiting('push')]))).toBe(
      'build',
    );
    expect(logsContainer(pod([term('pull', 0), term('build', 3)], [waiting('push')]))).toBe(
      'build',
    );
    expect(logsContainer(pod([term('pull', 4), waiting('build')], [waiting('push')]))).toBe('pull');
    expect(logsContainer(pod([term('pull', 0), term('build', 0)], [running('push')]))).toBe('push');
    expect(logsContainer(pod([term('pull', 0), term('build', 0)], [term('push', 0)]))).toBe('push');
    expect(logsContainer(pod([term('pull', 0), term('build', 0)], [term('push', 4)]))).toBe('push');
    // With the boot check on, its step between build and push.
    const booting = [term('pull', 0), term('build', 0)];
    expect(logsContainer(pod([...booting, running('boot')], [waiting('push')]))).toBe('boot');
    expect(logsContainer(pod([...booting, term('boot', 3)], [waiting('push')]))).toBe('boot');
    expect(logsContainer(pod([...booting, term('boot', 0)], [running('push')]))).toBe('push');
  });
  it('orders step timings and measures them', () => {
    const b = build('a', 'w', {
      phases: [
        { phase: 'push', startMs: 5000, endMs: 7000 },
        { phase: 'pull', startMs: 1000, endMs: 2000 },
        { phase: 'build', startMs: 2000, endMs: 4500 },
      ],
    });
    expect(stepTimings(b).map((s) => [s.phase, s.durationMs])).toEqual([
      ['pull', 1000],
      ['build', 2500],
      ['push', 2000],
    ]);
  });
  it('selects builds by the config label, cut to 63 characters like the controller', () => {
    expect(buildsSelector('worker')).toEqual({
      matchLabels: { 'strata.dev/machine-os-config': 'worker' },
    });
    const long = `${'a'.repeat(70)}-x`;
    expect(buildsSelector(long).matchLabels['strata.dev/machine-os-config']).toHaveLength(63);
    expect(builderPodsSelector('w-0123')).toEqual({
      matchLabels: {
        'strata.dev/machine-os-build': 'w-0123',
        'app.kubernetes.io/component': 'builder',
      },
    });
  });
  it('translates durations through t', () => {
    const t = (key: string, o?: Record<string, unknown>) => `[${key}|${JSON.stringify(o)}]`;
    expect(formatDuration(65_000, t)).toBe('[{{m}}m {{s}}s|{"m":"1","s":"05"}]');
  });
});

describe('bootCheckSummary and diskImageSummary', () => {
  it('say how the boot check went, and nothing when none ran', () => {
    expect(bootCheckSummary(build('b', 'c'))).toBeUndefined();
    expect(
      bootCheckSummary(
        build('b', 'c', { bootCheck: { passed: true, seconds: 182, accelerator: 'TCG' } }),
      ),
    ).toBe('Passed in 3m 02s (TCG)');
    expect(
      bootCheckSummary(
        build('b', 'c', {
          bootCheck: {
            passed: false,
            seconds: 40,
            accelerator: 'KVM',
            failedUnits: ['x.mount', 'y.service'],
          },
        }),
      ),
    ).toBe('Failed after 40s (KVM): x.mount, y.service');
  });

  it('say where the disk image is', () => {
    expect(diskImageSummary(build('b', 'c'))).toBeUndefined();
    expect(diskImageSummary(build('b', 'c', { diskImage: { phase: 'Building' } }))).toBe(
      'Being made',
    );
    expect(
      diskImageSummary(
        build('b', 'c', {
          diskImage: {
            phase: 'Succeeded',
            image: 'r/os@sha256:1',
            seconds: 281,
            files: [{ format: 'Qcow2', manifest: 'sha256:2', sizeBytes: 772276224 }],
          },
        }),
      ),
    ).toBe('Pushed: qcow2 737 MiB, in 4m 41s');
    expect(
      diskImageSummary(
        build('b', 'c', {
          diskImage: {
            phase: 'Failed',
            failure: { reason: 'DiskImageFailed', message: 'no initramfs' },
          },
        }),
      ),
    ).toBe('Failed (DiskImageFailed): no initramfs');
  });
});
