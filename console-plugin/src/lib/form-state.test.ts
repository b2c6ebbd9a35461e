import { emptyFormState, freeArches, toFormState, toObject, updatePatch } from './form-state';
import { validate } from './validation';
import type { MachineOSConfigKind } from '../models';

const existing: MachineOSConfigKind = {
  apiVersion: 'strata.dev/v1alpha1',
  kind: 'MachineOSConfig',
  metadata: { name: 'worker', resourceVersion: '42', generation: 3, annotations: { keep: 'me' } },
  spec: {
    machineConfigPool: { name: 'worker' },
    imageBuilder: { imageBuilderType: 'Job' },
    renderedImagePushSpec: 'registry.example.com/os/worker:latest',
    renderedImagePushSecret: { name: 'push' },
    baseImagePullSecret: { name: 'pull' },
    baseImage: `quay.io/x/os@sha256:${'a'.repeat(64)}`,
    containerFile: [{ containerfileArch: 'AMD64', content: 'RUN true' }, { content: 'RUN echo' }],
    futureField: { x: 1 },
  },
  status: { currentImagePullSpec: 'r.example.com/x@sha256:' + 'b'.repeat(64) },
};

describe('toFormState / toObject', () => {
  it('reads every field the form shows (missing arch = NoArch, the CRD default)', () => {
    expect(toFormState(existing)).toEqual({
      name: 'worker',
      pool: 'worker',
      pushSpec: 'registry.example.com/os/worker:latest',
      pushSecret: 'push',
      pullSecret: 'pull',
      baseImage: `quay.io/x/os@sha256:${'a'.repeat(64)}`,
      fragments: [
        { arch: 'AMD64', content: 'RUN true' },
        { arch: 'NoArch', content: 'RUN echo' },
      ],
    });
  });

  it('round-trips and keeps what the form does not show', () => {
    const obj = toObject(toFormState(existing), existing);
    expect(obj.metadata).toEqual(existing.metadata);
    expect(obj.status).toEqual(existing.status);
    expect(obj.spec.futureField).toEqual({ x: 1 });
    expect(obj.spec.containerFile).toEqual([
      { containerfileArch: 'AMD64', content: 'RUN true' },
      { containerfileArch: 'NoArch', content: 'RUN echo' },
    ]);
  });

  it('drops optional fields left empty', () => {
    const s = { ...toFormState(existing), pullSecret: '', baseImage: '', fragments: [] };
    const obj = toObject(s, existing);
    expect(obj.spec).not.toHaveProperty('baseImagePullSecret');
    expect(obj.spec).not.toHaveProperty('baseImage');
    expect(obj.spec).not.toHaveProperty('containerFile');
  });

  it('builds a new object with the required fields', () => {
    const s = {
      ...emptyFormState(),
      name: 'infra',
      pool: 'infra',
      pushSpec: 'r.example.com/a:b',
      pushSecret: 'p',
    };
    expect(toObject(s)).toEqual({
      apiVersion: 'strata.dev/v1alpha1',
      kind: 'MachineOSConfig',
      metadata: { name: 'infra' },
      spec: {
        machineConfigPool: { name: 'infra' },
        imageBuilder: { imageBuilderType: 'Job' },
        renderedImagePushSpec: 'r.example.com/a:b',
        renderedImagePushSecret: { name: 'p' },
        containerFile: [{ containerfileArch: 'NoArch', content: '' }],
      },
    });
  });

  it('tolerates garbage from the YAML view', () => {
    expect(
      toFormState({
        spec: { containerFile: [{ containerfileArch: 'SPARC', content: 3 }] },
      } as never),
    ).toMatchObject({
      name: '',
      fragments: [{ arch: 'NoArch', content: '' }],
    });
    expect(toFormState(undefined)).toMatchObject({ name: '', fragments: [] });
  });

  it('offers each architecture once', () => {
    expect(
      freeArches([
        { arch: 'NoArch', content: '' },
        { arch: 'S390X', content: '' },
      ]),
    ).toEqual(['AMD64', 'ARM64', 'PPC64LE']);
  });
});

describe('validate', () => {
  const good = { ...toFormState(existing) };
  it('passes a valid state', () => {
    expect(validate(good)).toEqual({});
  });
  it('flags each bad field', () => {
    const e = validate({
      ...good,
      name: '',
      pool: '',
      pushSpec: 'nope',
      pushSecret: 'Bad',
      pullSecret: 'ok',
      baseImage: 'x:latest',
      fragments: [
        { arch: 'NoArch', content: ' ' },
        { arch: 'NoArch', content: 'RUN x' },
        { arch: 'AMD64', content: 'x'.repeat(32769) },
      ],
    });
    expect(Object.keys(e).sort()).toEqual(
      [
        'baseImage',
        'fragments.0',
        'fragments.1',
        'fragments.2',
        'name',
        'pool',
        'pushSecret',
        'pushSpec',
      ].sort(),
    );
    expect(e['fragments.1']).toMatch(/Duplicate architecture NoArch/);
    expect(e['fragments.2']).toMatch(/Too long/);
  });
  it('limits the number of Containerfiles', () => {
    const five = ['NoArch', 'AMD64', 'ARM64', 'PPC64LE', 'S390X'].map((arch) => ({
      arch,
      content: 'RUN x',
    })) as never;
    expect(validate({ ...good, fragments: five }).fragments).toMatch(/At most 4/);
  });
  it('leaves name == pool to the API server', () => {
    expect(validate({ ...good, name: 'other' })).toEqual({});
  });
});

describe('updatePatch', () => {
  it('replaces the spec if the server still has the loaded one, and only edited metadata', () => {
    const edited = toObject(
      { ...toFormState(existing), pushSpec: 'registry.example.com/os/worker:v2' },
      existing,
    );
    const ops = updatePatch(existing, edited);
    expect(ops).toEqual([
      { op: 'test', path: '/metadata/generation', value: 3 },
      { op: 'replace', path: '/spec', value: edited.spec },
    ]);
    const relabeled = { ...edited, metadata: { ...edited.metadata, labels: { team: 'os' } } };
    expect(updatePatch(existing, relabeled).slice(2)).toEqual([
      { op: 'add', path: '/metadata/labels', value: { team: 'os' } },
    ]);
  });
});
