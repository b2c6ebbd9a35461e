// MachineOSConfig <-> the form's state. Pure: no React, no SDK calls.
import { ARCHES, type Arch, type ContainerFile, type MachineOSConfigKind, GROUP, VERSION } from '../models';

export type Fragment = { arch: Arch; content: string };

export type FormState = {
  name: string;
  pool: string;
  pushSpec: string;
  pushSecret: string;
  /** '' = anonymous pulls (field omitted). */
  pullSecret: string;
  /** '' = the release's base image (field omitted). */
  baseImage: string;
  fragments: Fragment[];
};

export const emptyFormState = (): FormState => ({
  name: '',
  pool: '',
  pushSpec: '',
  pushSecret: '',
  pullSecret: '',
  baseImage: '',
  fragments: [{ arch: 'NoArch', content: '' }],
});

const isArch = (a: unknown): a is Arch => typeof a === 'string' && (ARCHES as readonly string[]).includes(a);

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
      ? spec.containerFile.map((c: ContainerFile) => ({
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
export function toObject(state: FormState, base?: Partial<MachineOSConfigKind>): MachineOSConfigKind {
  const baseSpec = { ...((base?.spec ?? {}) as Record<string, unknown>) };
  const spec: Record<string, unknown> = {
    ...baseSpec,
    machineConfigPool: { name: state.pool },
    imageBuilder: (baseSpec.imageBuilder as object | undefined) ?? { imageBuilderType: 'Job' },
    renderedImagePushSpec: state.pushSpec,
    renderedImagePushSecret: { name: state.pushSecret },
  };
  if (state.pullSecret) spec.baseImagePullSecret = { name: state.pullSecret };
  else delete spec.baseImagePullSecret;
  if (state.baseImage) spec.baseImage = state.baseImage;
  else delete spec.baseImage;
  if (state.fragments.length > 0)
    spec.containerFile = state.fragments.map((f) => ({ containerfileArch: f.arch, content: f.content }));
  else delete spec.containerFile;
  return {
    ...(base ?? {}),
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'MachineOSConfig',
    metadata: { ...(base?.metadata ?? {}), name: state.name },
    spec: spec as MachineOSConfigKind['spec'],
  } as MachineOSConfigKind;
}

/** Architectures not yet used by a fragment (the list is keyed by architecture). */
export const freeArches = (fragments: Fragment[]): Arch[] =>
  ARCHES.filter((a) => !fragments.some((f) => f.arch === a));
