// MachineOSConfig <-> the form's state. Pure: no React, no SDK calls.
import type { Patch } from '@openshift-console/dynamic-plugin-sdk';
import {
  ARCHES,
  type Arch,
  type ContainerFile,
  type MachineOSConfigKind,
  GROUP,
  VERSION,
} from '../models';

export interface Fragment {
  arch: Arch;
  content: string;
}

export interface FormState {
  name: string;
  pool: string;
  pushSpec: string;
  pushSecret: string;
  /** '' = anonymous pulls (field omitted). */
  pullSecret: string;
  /** '' = the release's base image (field omitted). */
  baseImage: string;
  fragments: Fragment[];
}

export const emptyFormState = (): FormState => ({
  name: '',
  pool: '',
  pushSpec: '',
  pushSecret: '',
  pullSecret: '',
  baseImage: '',
  fragments: [{ arch: 'NoArch', content: '' }],
});

const isArch = (a: unknown): a is Arch =>
  typeof a === 'string' && (ARCHES as readonly string[]).includes(a);

/** The form's view of an object (from the cluster, or parsed from the YAML view). */
export function toFormState(obj: Partial<MachineOSConfigKind> | undefined): FormState {
  const spec = (obj?.spec ?? {}) as Partial<MachineOSConfigKind['spec']>;
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  return {
    name: str(obj?.metadata?.name),
    pool: str(spec.machineConfigPool?.name),
    pushSpec: str(spec.renderedImagePushSpec),
    pushSecret: str(spec.renderedImagePushSecret?.name),
    pullSecret: str(spec.baseImagePullSecret?.name),
    baseImage: str(spec.baseImage),
    fragments: Array.isArray(spec.containerFile)
      ? spec.containerFile.map((c: ContainerFile | null) => ({
          arch: isArch(c?.containerfileArch) ? c.containerfileArch : 'NoArch',
          content: str(c?.content),
        }))
      : [],
  };
}

/**
 * The object to send. `base` (the object being edited, or what the YAML view held) keeps
 * everything the form does not show: metadata (resourceVersion, labels, annotations), other spec
 * fields, status. Optional fields the form leaves empty are removed.
 */
export function toObject(
  state: FormState,
  base?: Partial<MachineOSConfigKind>,
): MachineOSConfigKind {
  const baseSpec = { ...((base?.spec ?? {}) as Record<string, unknown>) };
  const spec: Record<string, unknown> = {
    ...baseSpec,
    machineConfigPool: { name: state.pool },
    imageBuilder: baseSpec.imageBuilder ?? { imageBuilderType: 'Job' },
    renderedImagePushSpec: state.pushSpec,
    renderedImagePushSecret: { name: state.pushSecret },
  };
  if (state.pullSecret) spec.baseImagePullSecret = { name: state.pullSecret };
  else delete spec.baseImagePullSecret;
  if (state.baseImage) spec.baseImage = state.baseImage;
  else delete spec.baseImage;
  if (state.fragments.length > 0)
    spec.containerFile = state.fragments.map((f) => ({
      containerfileArch: f.arch,
      content: f.content,
    }));
  else delete spec.containerFile;
  return {
    ...(base ?? {}),
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'MachineOSConfig',
    metadata: { ...(base?.metadata ?? {}), name: state.name },
    spec: spec as MachineOSConfigKind['spec'],
  };
}

/** Architectures not yet used by a fragment (the list is keyed by architecture). */
export const freeArches = (fragments: Fragment[]): Arch[] =>
  ARCHES.filter((a) => !fragments.some((f) => f.arch === a));

const same = (a: unknown, b: unknown) => JSON.stringify(a ?? {}) === JSON.stringify(b ?? {});

/**
 * The JSON patch that saves an edit: the new spec, on the condition that the spec on the server is
 * still the one the page loaded (its `metadata.generation`, which only spec changes raise). The
 * controller keeps writing the object (finalizer, status, the rebuild annotation): a PUT of the
 * loaded object would conflict with those writes, or undo them; this patch touches only what the
 * user edited. Labels and annotations are sent only when the user changed them (YAML view).
 * (Not a `test` of /spec itself: the API server compares strings as serialized, and Go escapes
 * `<`, `>` and `&` where JSON.stringify does not, so a Containerfile with `>` never matches.)
 */
export function updatePatch(loaded: MachineOSConfigKind, edited: MachineOSConfigKind): Patch[] {
  const generation = loaded.metadata?.generation;
  const ops: Patch[] = [
    ...(generation === undefined
      ? []
      : [{ op: 'test', path: '/metadata/generation', value: generation }]),
    { op: 'replace', path: '/spec', value: edited.spec },
  ];
  for (const key of ['labels', 'annotations'] as const) {
    const before = loaded.metadata?.[key];
    const after = edited.metadata?.[key];
    if (!same(before, after)) ops.push({ op: 'add', path: `/metadata/${key}`, value: after ?? {} });
  }
  return ops;
}
