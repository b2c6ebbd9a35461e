// MachineOSBuild helpers for the build views. Pure.
import type { Patch } from '@openshift-console/dynamic-plugin-sdk';
import {
  BUILDER_STEPS,
  BUILD_LABEL,
  BUILDER_COMPONENT,
  COMPONENT_LABEL,
  CONFIG_LABEL,
  CONTROLLER_NAMESPACE,
  REBUILD_ANNOTATION,
  type BuilderStep,
  type ContainerStatus,
  type MachineOSBuildKind,
  type MachineOSConfigKind,
  type PodKind,
} from '../models';
import { english, type Translate } from './i18n';

/** Exactly one of these is True once a build started; the terminal ones never change again. */
export const PHASES = ['Interrupted', 'Failed', 'Succeeded', 'Building', 'Prepared'] as const;
export type Phase = (typeof PHASES)[number] | 'Pending';

export function buildPhase(b: MachineOSBuildKind | undefined): Phase {
  const conds = b?.status?.conditions ?? [];
  for (const p of PHASES) if (conds.some((c) => c.type === p && c.status === 'True')) return p;
  return 'Pending';
}

export const isTerminal = (p: Phase): boolean =>
  p === 'Succeeded' || p === 'Failed' || p === 'Interrupted';

/** The True phase condition (its reason/message explain the phase). */
export const phaseCondition = (b: MachineOSBuildKind | undefined) =>
  b?.status?.conditions?.find((c) => c.type === buildPhase(b) && c.status === 'True');

/** "45s", "3m 05s", "1h 02m" (translated through `t`). */
export function formatDuration(ms: number, t: Translate = english): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const m = String(Math.floor((s % 3600) / 60));
  const sec = String(s % 60);
  if (h > 0) return t('{{h}}h {{m}}m', { h, m: m.padStart(2, '0') });
  if (m !== '0') return t('{{m}}m {{s}}s', { m, s: sec.padStart(2, '0') });
  return t('{{s}}s', { s: sec });
}

/** Build duration: start to end, or start to `now` while running; undefined before the start. */
export function buildDuration(
  b: MachineOSBuildKind | undefined,
  now: number = Date.now(),
  t: Translate = english,
): string | undefined {
  const start = b?.status?.buildStart ? Date.parse(b.status.buildStart) : NaN;
  if (Number.isNaN(start)) return undefined;
  const end = b?.status?.buildEnd ? Date.parse(b.status.buildEnd) : now;
  return formatDuration(end - start, t);
}

/** The boot check in one line: passed or failed, how long, on what; undefined when none ran. */
export function bootCheckSummary(
  b: MachineOSBuildKind | undefined,
  t: Translate = english,
): string | undefined {
  const check = b?.status?.bootCheck;
  if (!check) return undefined;
  const duration = formatDuration(check.seconds * 1000, t);
  const accelerator = check.accelerator;
  const failed = check.failedUnits ?? [];
  if (check.passed) return t('Passed in {{duration}} ({{accelerator}})', { duration, accelerator });
  if (failed.length === 0)
    return t('Failed after {{duration}} ({{accelerator}})', { duration, accelerator });
  return t('Failed after {{duration}} ({{accelerator}}): {{units}}', {
    duration,
    accelerator,
    units: failed.join(', '),
  });
}

/** The disk image in one line (its phase, files and time); undefined when none was asked for. */
export function diskImageSummary(
  b: MachineOSBuildKind | undefined,
  t: Translate = english,
): string | undefined {
  const disk = b?.status?.diskImage;
  if (!disk) return undefined;
  if (disk.phase === 'Building') return t('Being made');
  if (disk.phase === 'Failed')
    return t('Failed ({{reason}}): {{message}}', {
      reason: disk.failure?.reason ?? '',
      message: disk.failure?.message ?? '',
    });
  const files = (disk.files ?? [])
    .map((f) => `${f.format.toLowerCase()} ${String(Math.round(f.sizeBytes / 2 ** 20))} MiB`)
    .join(', ');
  return t('Pushed: {{files}}, in {{duration}}', {
    files,
    duration: formatDuration((disk.seconds ?? 0) * 1000, t),
  });
}

/** The builder's step timings (status.phases) in the order they ran, each with its duration. */
export const stepTimings = (b: MachineOSBuildKind | undefined) =>
  [...(b?.status?.phases ?? [])]
    .sort((x, y) => x.startMs - y.startMs)
    .map((p) => ({ ...p, durationMs: Math.max(0, p.endMs - p.startMs) }));

/** `sha256:…` of the pushed image. */
export const buildDigest = (b: MachineOSBuildKind | undefined): string | undefined =>
  b?.status?.digestedImagePushSpec?.split('@')[1];

/** The controller's name shortening (objects.rs `fit_63`): names and label values of at most 63
 * characters, keeping the last `-` segment (the build's hash) so shortened names stay unique. */
export function fit63(name: string): string {
  const MAX = 63;
  if (name.length <= MAX) return name;
  const segs = name.split('-');
  let hash = segs[segs.length - 1];
  hash = hash.slice(0, Math.min(hash.length, Math.floor(MAX / 2)));
  const head = name.slice(0, MAX - hash.length - 1).replace(/[-.]+$/, '');
  return `${head}-${hash}`;
}

/** The ConfigMap `containerfile-<build>` (in the controller namespace) holding the rendered Containerfile. */
export const containerfileConfigMapName = (build: string): string =>
  fit63(`containerfile-${build}`);

/** The label selector of the build's pods (and ConfigMap): `strata.dev/machine-os-build=<fit63(build)>`. */
export const buildLabelValue = (build: string): string => fit63(build);

/** Where the console shows a pod's logs, and a Job's pods. */
export const podLogsHref = (pod: string, ns = CONTROLLER_NAMESPACE): string =>
  `/k8s/ns/${encodeURIComponent(ns)}/pods/${encodeURIComponent(pod)}/logs`;
export const jobPodsHref = (job: string, ns = CONTROLLER_NAMESPACE): string =>
  `/k8s/ns/${encodeURIComponent(ns)}/jobs/${encodeURIComponent(job)}/pods`;

/** The label selector of one MachineOSConfig's MachineOSBuilds: the server filters, the browser
 * only drops the (rare) other config whose name shares the label's first 63 characters. */
export const buildsSelector = (config: string) => ({
  matchLabels: { [CONFIG_LABEL]: fit63(config) },
});

/** The label selector of one build's builder pods. */
export const builderPodsSelector = (build: string) => ({
  matchLabels: { [BUILD_LABEL]: buildLabelValue(build), [COMPONENT_LABEL]: BUILDER_COMPONENT },
});

/**
 * The builder pod's container whose log explains the build: the step that failed, else the step
 * running (or waiting to run), else `push`, the last one. `pull`, `build` and `boot` are init
 * containers; `boot` only where the config's boot check is on. Without statuses yet: `pull`.
 */
export function logsContainer(pod: PodKind | undefined): BuilderStep {
  const statuses: ContainerStatus[] = [
    ...(pod?.status?.initContainerStatuses ?? []),
    ...(pod?.status?.containerStatuses ?? []),
  ];
  if (statuses.length === 0) return 'pull';
  const of = (step: BuilderStep) => statuses.find((c) => c.name === step);
  const steps = BUILDER_STEPS.filter((s) => of(s) !== undefined);
  const failed = steps.find((s) => {
    const exit = of(s)?.state?.terminated?.exitCode;
    return exit !== undefined && exit !== 0;
  });
  if (failed) return failed;
  const current = steps.find((s) => !of(s)?.state?.terminated);
  return current ?? 'push';
}

/** The builds of one MachineOSConfig, newest first. */
export function buildsOf(builds: MachineOSBuildKind[], config: string): MachineOSBuildKind[] {
  return builds
    .filter((b) => b.spec.machineOSConfig.name === config)
    .sort(
      (a, b) =>
        (b.metadata?.creationTimestamp ?? '').localeCompare(a.metadata?.creationTimestamp ?? '') ||
        (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''),
    );
}

/** JSON patch that sets the rebuild annotation (its presence is what counts; the value records when). */
export function rebuildPatch(config: MachineOSConfigKind, now: Date = new Date()): Patch[] {
  const value = now.toISOString();
  if (config.metadata?.annotations)
    return [
      {
        op: 'add',
        path: `/metadata/annotations/${REBUILD_ANNOTATION.replace(/~/g, '~0').replace(/\//g, '~1')}`,
        value,
      },
    ];
  return [{ op: 'add', path: '/metadata/annotations', value: { [REBUILD_ANNOTATION]: value } }];
}

export const rebuildRequested = (config: MachineOSConfigKind | undefined): boolean =>
  !!config?.metadata?.annotations && REBUILD_ANNOTATION in config.metadata.annotations;
