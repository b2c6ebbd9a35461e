import * as fs from 'fs';
import * as path from 'path';
import { loadAll } from 'js-yaml';
import {
  DIGEST_MESSAGE,
  DIGEST_PATTERN,
  DNS1123_MESSAGE,
  MAX_CONTAINERFILES,
  MAX_CONTAINERFILE_LENGTH,
  NAME_MATCHES_POOL_MESSAGE,
  PUSH_SPEC_MAX_LENGTH,
  PUSH_SPEC_MESSAGE,
  PUSH_SPEC_PATTERN,
  checkBaseImage,
  checkPushSpec,
  checkReferenceName,
} from './crd-rules';

interface V {
  rule: string;
  message: string;
}
/** The parts of an OpenAPI schema these tests read. */
interface Schema {
  properties: Record<string, Schema>;
  items: Schema;
  maxItems?: number;
  maxLength?: number;
  'x-kubernetes-validations': V[];
}
interface Crd {
  spec: { names: { kind: string }; versions: { schema: { openAPIV3Schema: Schema } }[] };
}
const docs = loadAll(
  fs.readFileSync(path.resolve(__dirname, '../../../crds/crds.yaml'), 'utf8'),
) as (Crd | null)[];
const mosc = docs.find((d) => d?.spec.names.kind === 'MachineOSConfig');
if (!mosc) throw new Error('crds.yaml has no MachineOSConfig CRD');
const schema = mosc.spec.versions[0].schema.openAPIV3Schema;
const spec = schema.properties.spec.properties;
const rules = (x: Schema): V[] => x['x-kubernetes-validations'];
/** The regex inside CEL `matches('…')`, with the CEL string literal's escapes undone. */
const celRegex = (rule: string, i = 0) =>
  [...rule.matchAll(/matches\('((?:[^'\\]|\\.)*)'\)/g)][i][1].replace(/\\\\/g, '\\');

describe('the mirrored rules equal crds/crds.yaml', () => {
  it('push spec: regex, message, max length', () => {
    const [r] = rules(spec.renderedImagePushSpec);
    expect(celRegex(r.rule)).toBe(PUSH_SPEC_PATTERN);
    expect(r.message).toBe(PUSH_SPEC_MESSAGE);
    expect(spec.renderedImagePushSpec.maxLength).toBe(PUSH_SPEC_MAX_LENGTH);
  });
  it('base image digest', () => {
    const [r] = rules(spec.baseImage);
    expect(r.rule).toContain("self.split('@').size() == 2");
    expect(celRegex(r.rule)).toBe(DIGEST_PATTERN);
    expect(r.message).toBe(DIGEST_MESSAGE);
  });
  it('reference names and the name == pool rule', () => {
    for (const f of ['machineConfigPool', 'renderedImagePushSecret', 'baseImagePullSecret']) {
      const [r] = rules(spec[f].properties.name);
      expect(r.rule).toBe('!format.dns1123Subdomain().validate(self).hasValue()');
      expect(r.message).toBe(DNS1123_MESSAGE);
    }
    expect(rules(schema)[0].message).toBe(NAME_MATCHES_POOL_MESSAGE);
  });
  it('containerFile limits', () => {
    expect(spec.containerFile.maxItems).toBe(MAX_CONTAINERFILES);
    expect(spec.containerFile.items.properties.content.maxLength).toBe(MAX_CONTAINERFILE_LENGTH);
  });
});

describe('checkPushSpec', () => {
  it.each([
    'image-registry.openshift-image-registry.svc:5000/openshift-machine-config-operator/os-image:latest',
    'registry.example.com/os/worker:latest',
    'quay.io/org/image:tag',
    '192.0.2.2:55677/strata-e2e/e2e-flow:latest',
    'registry.example.com/a/b/c/name_with-dash.x:v1.2_3',
  ])('accepts %s', (v) => {
    expect(checkPushSpec(v)).toBeUndefined();
  });
  it.each([
    ['nodot/os:latest'],
    ['registry.example.com/os/worker'], // no tag
    ['registry.example.com/os/worker@sha256:' + 'a'.repeat(64)], // a digest, not a tag
    ['https://registry.example.com/os:latest'], // scheme
    ['registry.example.com:1/os:latest'], // port of one digit
  ])('rejects %s with the CRD message', (v) => {
    expect(checkPushSpec(v)).toBe(PUSH_SPEC_MESSAGE);
  });
  it('requires a value and bounds its length', () => {
    expect(checkPushSpec('')).toMatch(/^Required/);
    expect(checkPushSpec(`registry.example.com/${'a'.repeat(440)}:t`)).toMatch(/^Too long/);
  });
});

describe('checkBaseImage and checkReferenceName', () => {
  it('base image must be pinned by digest, or empty', () => {
    expect(checkBaseImage('')).toBeUndefined();
    expect(checkBaseImage(`quay.io/x/os@sha256:${'0a'.repeat(32)}`)).toBeUndefined();
    expect(checkBaseImage('quay.io/x/os:latest')).toBe(DIGEST_MESSAGE);
    expect(checkBaseImage(`quay.io/x/os@sha256:${'A'.repeat(64)}`)).toBe(DIGEST_MESSAGE);
    expect(checkBaseImage(`a@b@sha256:${'0'.repeat(64)}`)).toBe(DIGEST_MESSAGE);
  });
  it('names are RFC 1123 subdomains', () => {
    expect(checkReferenceName('push-secret')).toBeUndefined();
    expect(checkReferenceName('a.b-c')).toBeUndefined();
    expect(checkReferenceName('Push')).toBe(DNS1123_MESSAGE);
    expect(checkReferenceName('-x')).toBe(DNS1123_MESSAGE);
    expect(checkReferenceName('')).toBe('Required');
    expect(checkReferenceName('', true)).toBeUndefined();
    expect(checkReferenceName('a'.repeat(254))).toMatch(/^Too long/);
  });
});
