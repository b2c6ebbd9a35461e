// Test helpers: kubectl against the real cluster, names, cleanup, the CRD's own messages.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { load, loadAll } from 'js-yaml';
import type { Page } from '@playwright/test';

export const harness = (hash: string) => `${process.env.STRATA_HARNESS_URL}#${hash}`;

export function kubectl(args: string[], input?: string): string {
  return execFileSync('kubectl', args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Like kubectl but returns the exit status and stderr instead of throwing. */
export function kubectlTry(args: string[]): { ok: boolean; out: string; err: string } {
  try {
    return { ok: true, out: kubectl(args), err: '' };
  } catch (e) {
    const x = e as { stdout?: string; stderr?: string };
    return { ok: false, out: x.stdout ?? '', err: x.stderr ?? '' };
  }
}

export const apply = (obj: object) => kubectl(['apply', '-f', '-'], JSON.stringify(obj));
export const getJson = (args: string[]) => JSON.parse(kubectl([...args, '-o', 'json']));

/** Every object a test makes is named `console-…` (the shared cluster's rule). */
export const uniqueName = (what: string) => `console-${what}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`;

export const pool = (name: string) => ({
  apiVersion: 'machineconfiguration.openshift.io/v1',
  kind: 'MachineConfigPool',
  metadata: { name },
  spec: { machineConfigSelector: { matchLabels: { 'machineconfiguration.openshift.io/role': name } } },
});

/** Delete; a MachineOSConfig keeps the controller's finalizer until the controller acts, so drop
 * it after a grace period when no controller does (our own test objects only). */
export async function cleanup(kind: string, name: string, namespace?: string) {
  const ns = namespace ? ['-n', namespace] : [];
  kubectlTry(['delete', kind, name, ...ns, '--ignore-not-found', '--wait=false']);
  for (let i = 0; i < 20; i++) {
    if (!kubectlTry(['get', kind, name, ...ns]).ok) return;
    await new Promise((ok) => setTimeout(ok, 500));
  }
  kubectlTry(['patch', kind, name, ...ns, '--type=merge', '-p', '{"metadata":{"finalizers":null}}']);
}

type Validation = { message: string; rule: string };
/** The x-kubernetes-validations messages of crds/crds.yaml: what the API server will say. */
export function crdMessages() {
  const docs = loadAll(fs.readFileSync(path.resolve(__dirname, '../../../crds/crds.yaml'), 'utf8')) as any[];
  const mosc = docs.find((d) => d?.spec?.names?.kind === 'MachineOSConfig');
  const schema = mosc.spec.versions[0].schema.openAPIV3Schema;
  const v = (x: { 'x-kubernetes-validations': Validation[] }) => x['x-kubernetes-validations'][0].message;
  return { nameMatchesPool: v(schema), pushSpec: v(schema.properties.spec.properties.renderedImagePushSpec) };
}

export const parseYaml = (s: string) => load(s) as any;

export async function screenshot(page: Page, name: string) {
  const dir = path.resolve(__dirname, '../../test-results/screenshots');
  fs.mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
}
