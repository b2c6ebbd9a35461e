import type { K8sModel, K8sResourceCommon } from '@openshift-console/dynamic-plugin-sdk';

// The contract with the controller (crds/src/contract.rs, crds/src/common.rs): the names here must
// match it; crds/tests/contract.rs compares them.

/** Strata's API group and the namespace the controller (and the Secrets it reads) lives in. */
export const GROUP = 'strata.dev';
export const VERSION = 'v1alpha1';
export const CONTROLLER_NAMESPACE = 'strata-system';
/** Presence of this annotation on a MachineOSConfig makes the controller build its inputs again;
 * the value is not read, and the controller removes the annotation once the rebuild started. */
export const REBUILD_ANNOTATION = 'strata.dev/rebuild';
/** Label on every object the controller makes for a build (ConfigMap, Job, pods): the build's
 * name cut to 63 characters. */
export const BUILD_LABEL = 'strata.dev/machine-os-build';
/** Label on every MachineOSBuild and build object: the MachineOSConfig's name cut to 63
 * characters (the annotation of the same name, where present, has the full name). */
export const CONFIG_LABEL = 'strata.dev/machine-os-config';
export const CONFIG_ANNOTATION = 'strata.dev/machine-os-config';
/** On a Secret in the controller namespace: the MachineOSConfigs allowed to use it (a
 * comma-separated list of names, or `*`). Without it Strata does not use the Secret. */
export const ALLOWED_CONFIGS_ANNOTATION = 'strata.dev/allowed-machine-os-configs';
/** `app.kubernetes.io/component=builder` on builder pods. */
export const COMPONENT_LABEL = 'app.kubernetes.io/component';
export const BUILDER_COMPONENT = 'builder';
/** Key of the rendered Containerfile in the build's ConfigMap. */
export const CONTAINERFILE_KEY = 'Containerfile';
/** The builder pod's containers, one per step, in order: `pull` and `build` are init
 * containers, `push` the main one. */
export const BUILDER_STEPS = ['pull', 'build', 'boot', 'push'] as const;
export type BuilderStep = (typeof BUILDER_STEPS)[number];
/** kubectl short names of the two kinds (OpenShift's own MachineOSConfig owns `mosc`). */
export const MACHINE_OS_CONFIG_SHORT_NAME = 'smosc';
export const MACHINE_OS_BUILD_SHORT_NAME = 'smosb';
/** MachineOSConfig condition types, in the order the plugin shows them. */
export const CONFIG_CONDITIONS = [
  'Ready',
  'Building',
  'Degraded',
  'PoolUpdated',
  'PoolHeld',
  'WaitingForPool',
  'Seeded',
] as const;

export const MachineOSConfigModel: K8sModel = {
  apiGroup: GROUP,
  apiVersion: VERSION,
  kind: 'MachineOSConfig',
  plural: 'machineosconfigs',
  abbr: 'SMOSC',
  label: 'MachineOSConfig',
  labelPlural: 'MachineOSConfigs',
  namespaced: false,
  crd: true,
};

export const MachineOSBuildModel: K8sModel = {
  apiGroup: GROUP,
  apiVersion: VERSION,
  kind: 'MachineOSBuild',
  plural: 'machineosbuilds',
  abbr: 'SMOSB',
  label: 'MachineOSBuild',
  labelPlural: 'MachineOSBuilds',
  namespaced: false,
  crd: true,
};

export const MachineConfigPoolModel: K8sModel = {
  apiGroup: 'machineconfiguration.openshift.io',
  apiVersion: 'v1',
  kind: 'MachineConfigPool',
  plural: 'machineconfigpools',
  abbr: 'MCP',
  label: 'MachineConfigPool',
  labelPlural: 'MachineConfigPools',
  namespaced: false,
  crd: true,
};

export const SecretModel: K8sModel = {
  apiVersion: 'v1',
  kind: 'Secret',
  plural: 'secrets',
  abbr: 'S',
  label: 'Secret',
  labelPlural: 'Secrets',
  namespaced: true,
};

export const ConfigMapModel: K8sModel = {
  apiVersion: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  abbr: 'CM',
  label: 'ConfigMap',
  labelPlural: 'ConfigMaps',
  namespaced: true,
};

export const JobModel: K8sModel = {
  apiGroup: 'batch',
  apiVersion: 'v1',
  kind: 'Job',
  plural: 'jobs',
  abbr: 'J',
  label: 'Job',
  labelPlural: 'Jobs',
  namespaced: true,
};

export const PodModel: K8sModel = {
  apiVersion: 'v1',
  kind: 'Pod',
  plural: 'pods',
  abbr: 'P',
  label: 'Pod',
  labelPlural: 'Pods',
  namespaced: true,
};

/** `group~version~Kind`, the console's model reference in URLs. */
export const referenceFor = (m: K8sModel): string =>
  m.apiGroup ? `${m.apiGroup}~${m.apiVersion}~${m.kind}` : m.kind;

/** `{group, version, kind}` for `useK8sWatchResource`. */
export const gvk = (m: K8sModel) => ({ group: m.apiGroup, version: m.apiVersion, kind: m.kind });

export const ARCHES = ['NoArch', 'AMD64', 'ARM64', 'PPC64LE', 'S390X'] as const;
export type Arch = (typeof ARCHES)[number];

export interface Condition {
  type: string;
  /** True, False or Unknown. */
  status: string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
}

export interface ObjectReference {
  group?: string;
  resource?: string;
  namespace?: string;
  name: string;
}

/** One builder step (pull, build, lint or push) and when it ran, in Unix milliseconds. */
export interface PhaseTiming {
  phase: string;
  startMs: number;
  endMs: number;
}

export interface ContainerFile {
  containerfileArch?: Arch;
  content: string;
}

export type MachineOSConfigKind = K8sResourceCommon & {
  spec: {
    machineConfigPool: { name: string };
    imageBuilder?: { imageBuilderType: 'Job' };
    renderedImagePushSpec: string;
    renderedImagePushSecret: { name: string };
    baseImagePullSecret?: { name: string };
    baseImage?: string;
    containerFile?: ContainerFile[];
    [k: string]: unknown;
  };
  status?: {
    conditions?: Condition[];
    currentImagePullSpec?: string;
    machineOSBuild?: ObjectReference;
    observedGeneration?: number;
  };
};

export type MachineOSBuildKind = K8sResourceCommon & {
  spec: {
    machineOSConfig: { name: string };
    machineConfigPool: { name: string };
    baseImage: string;
    renderedImagePushSpec: string;
    containerFile?: ContainerFile[];
  };
  status?: {
    conditions?: Condition[];
    buildStart?: string;
    buildEnd?: string;
    builder?: { imageBuilderType: 'Job'; job?: ObjectReference };
    digestedImagePushSpec?: string;
    attempts?: number;
    failure?: { reason: string; message: string; logTail?: string };
    /** The builder's steps and when each ran (Unix milliseconds). */
    phases?: PhaseTiming[];
    containerfileSha256?: string;
    relatedObjects?: ObjectReference[];
    /** What the boot check found (absent when it was disabled or did not run). */
    bootCheck?: {
      passed: boolean;
      seconds: number;
      accelerator: string;
      failedUnits?: string[];
      baseImageFailedUnits?: string[];
    };
    /** The first-boot disk image made after the pin (spec.diskImage). */
    diskImage?: {
      phase: 'Building' | 'Succeeded' | 'Failed';
      job?: string;
      image?: string;
      files?: { format: 'Qcow2' | 'Raw'; manifest: string; sizeBytes: number }[];
      seconds?: number;
      failure?: { reason: string; message: string; logTail?: string };
    };
  };
};

export type ConfigMapKind = K8sResourceCommon & { data?: Record<string, string> };
/** A Secret as PartialObjectMetadata: metadata only, never `data` (see lib/secrets.ts). */
export type SecretMetadata = K8sResourceCommon;

export interface ContainerState {
  running?: { startedAt?: string };
  waiting?: { reason?: string };
  terminated?: { exitCode: number; reason?: string };
}
export interface ContainerStatus {
  name: string;
  state?: ContainerState;
}
export type PodKind = K8sResourceCommon & {
  status?: {
    phase?: string;
    startTime?: string;
    initContainerStatuses?: ContainerStatus[];
    containerStatuses?: ContainerStatus[];
  };
};
