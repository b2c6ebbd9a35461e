import type { K8sModel, K8sResourceCommon } from '@openshift-console/dynamic-plugin-sdk';

/** Strata's API group and the namespace the controller (and the Secrets it reads) lives in. */
export const GROUP = 'strata.dev';
export const VERSION = 'v1alpha1';
export const CONTROLLER_NAMESPACE = 'strata-system';
/** Presence of this annotation on a MachineOSConfig makes the controller build its inputs again;
 * the value is not read, and the controller removes the annotation once the rebuild started. */
export const REBUILD_ANNOTATION = 'strata.dev/rebuild';
/** Label on every object the controller makes for a build (ConfigMap, Job, pods). */
export const BUILD_LABEL = 'strata.dev/machine-os-build';
/** Key of the rendered Containerfile in the build's ConfigMap. */
export const CONTAINERFILE_KEY = 'Containerfile';
/** Name of the builder container in the build's pod. */
export const BUILDER_CONTAINER = 'builder';

export const MachineOSConfigModel: K8sModel = {
  apiGroup: GROUP,
  apiVersion: VERSION,
  kind: 'MachineOSConfig',
  plural: 'machineosconfigs',
  abbr: 'MOSC',
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
  abbr: 'MOSB',
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

export type Condition = {
  type: string;
  status: 'True' | 'False' | 'Unknown' | string;
  reason?: string;
  message?: string;
  lastTransitionTime?: string;
  observedGeneration?: number;
};

export type ObjectReference = { group?: string; resource?: string; namespace?: string; name: string };

export type ContainerFile = { containerfileArch?: Arch; content: string };

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
    containerfileSha256?: string;
    relatedObjects?: ObjectReference[];
  };
};

export type ConfigMapKind = K8sResourceCommon & { data?: Record<string, string> };
export type SecretKind = K8sResourceCommon & { type?: string };
export type PodKind = K8sResourceCommon & { status?: { phase?: string; startTime?: string } };
