import { fieldForPath, serverErrors, statusOf } from './server-errors';
import { NAME_MATCHES_POOL_MESSAGE, PUSH_SPEC_MESSAGE } from './crd-rules';

// The Status body the API server returned for a MachineOSConfig named differently from its pool
// with a bad push spec (captured from the local cluster with a dry-run create).
const invalid = {
  kind: 'Status',
  apiVersion: 'v1',
  status: 'Failure',
  message: 'MachineOSConfig.strata.dev "console-zz" is invalid: […]',
  reason: 'Invalid',
  details: {
    name: 'console-zz',
    group: 'strata.dev',
    kind: 'MachineOSConfig',
    causes: [
      {
        reason: 'FieldValueInvalid',
        message: `Invalid value: ${NAME_MATCHES_POOL_MESSAGE}`,
        field: '<nil>',
      },
      {
        reason: 'FieldValueInvalid',
        message: `Invalid value: "nodot/x:latest": ${PUSH_SPEC_MESSAGE}`,
        field: 'spec.renderedImagePushSpec',
      },
    ],
  },
  code: 422,
};
/** The console's HttpError carries the Status as `json`. */
const httpError = (json: unknown) =>
  Object.assign(new Error((json as { message: string }).message), { code: 422, json });

describe('serverErrors', () => {
  it('puts each cause next to its field; the object-level rule goes to the name', () => {
    expect(serverErrors(httpError(invalid))).toEqual({
      fields: {
        name: [`Invalid value: ${NAME_MATCHES_POOL_MESSAGE}`],
        pushSpec: [`Invalid value: "nodot/x:latest": ${PUSH_SPEC_MESSAGE}`],
      },
      general: [],
    });
  });

  it('keeps causes of fields the form does not have, with their path', () => {
    const s = {
      ...invalid,
      details: {
        causes: [
          { field: 'spec.imageBuilder.imageBuilderType', message: 'Unsupported value: "Pod"' },
          { field: '<nil>', message: 'something else' },
        ],
      },
    };
    expect(serverErrors(httpError(s))).toEqual({
      fields: {},
      general: ['spec.imageBuilder.imageBuilderType: Unsupported value: "Pod"', 'something else'],
    });
  });

  it('AlreadyExists belongs to the name; other failures are general', () => {
    const exists = {
      kind: 'Status',
      reason: 'AlreadyExists',
      message: 'machineosconfigs.strata.dev "worker" already exists',
      code: 409,
      details: { name: 'worker' },
    };
    expect(serverErrors(httpError(exists)).fields.name).toEqual([exists.message]);
    const conflict = {
      kind: 'Status',
      reason: 'Conflict',
      message: 'the object has been modified',
      code: 409,
    };
    expect(serverErrors(httpError(conflict)).general).toEqual([conflict.message]);
    expect(serverErrors(new Error('Failed to fetch')).general).toEqual(['Failed to fetch']);
    expect(statusOf(invalid)).toBe(invalid);
    expect(statusOf('x')).toBeUndefined();
  });
});

describe('fieldForPath', () => {
  it.each([
    ['metadata.name', 'name'],
    ['spec.machineConfigPool.name', 'pool'],
    ['spec.renderedImagePushSpec', 'pushSpec'],
    ['spec.renderedImagePushSecret.name', 'pushSecret'],
    ['spec.baseImagePullSecret.name', 'pullSecret'],
    ['spec.baseImage', 'baseImage'],
    ['spec.containerFile[2].content', 'fragments.2'],
    ['spec.containerFile[0]', 'fragments.0'],
    ['spec.containerFile', 'fragments'],
    ['spec.somethingElse', undefined],
    ['<nil>', undefined],
  ])('%s -> %s', (p, f) => {
    expect(fieldForPath(p)).toBe(f);
  });
});
