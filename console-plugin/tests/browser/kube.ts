// Test helpers: kubectl against the real cluster, names, cleanup, the CRD's own messages.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { load, loadAll } from 'js-yaml';
import type { Page } from '@playwright/test';

export const harness = (hash: string) => `${process.env.STRATA_HARNESS_URL}#${hash}`;

export function kubectl(args: string[], input?: string): string {
  return execFileSync('kubectl', args, {
    encoding: 'utf8',
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
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
export const uniqueName = (what: string) =>
  `console-${what}-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4).toString(36)}`;

export const pool = (name: string) => ({
  apiVersion: 'machineconfiguration.openshift.io/v1',
  kind: 'MachineConfigPool',
  metadata: { name },
  spec: {
    machineConfigSelector: { matchLabels: { 'machineconfiguration.openshift.io/role': name } },
  },
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
  kubectlTry([
    'patch',
    kind,
    name,
    ...ns,
    '--type=merge',
    '-p',
    '{"metadata":{"finalizers":null}}',
  ]);
}

interface Validation {
  message: string;
  rule: string;
}
/** The x-kubernetes-validations messages of crds/crds.yaml: what the API server will say. */
export function crdMessages() {
  interface Schema {
    properties: Record<string, Schema>;
    'x-kubernetes-validations': Validation[];
  }
  interface Crd {
    spec: { names: { kind: string }; versions: { schema: { openAPIV3Schema: Schema } }[] };
  }
  const docs = loadAll(
    fs.readFileSync(path.resolve(__dirname, '../../../crds/crds.yaml'), 'utf8'),
  ) as (Crd | null)[];
  const mosc = docs.find((d) => d?.spec.names.kind === 'MachineOSConfig');
  if (!mosc) throw new Error('crds.yaml has no MachineOSConfig');
  const schema = mosc.spec.versions[0].schema.openAPIV3Schema;
  const v = (x: { 'x-kubernetes-validations': Validation[] }) =>
    x['x-kubernetes-validations'][0].message;
  return {
    nameMatchesPool: v(schema),
    pushSpec: v(schema.properties.spec.properties.renderedImagePushSpec),
  };
}

/** The YAML view's object, as far as the tests read it. */
export const parseYaml = (s: string) =>
  load(s) as { spec: { renderedImagePushSpec: string; containerFile: unknown[] } };

export async function screenshot(page: Page, name: string) {
  const dir = path.resolve(__dirname, '../../test-results/screenshots');
  fs.mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, `${name}.png`), fullPage: true });
}

type Monaco = typeof import('monaco-editor');
declare global {
  interface Window {
    monaco: Monaco;
    __strataMissingKeys: string[];
  }
}

/** The Monaco editor inside the element with `data-test=testId`: its text and language. */
export function editorState(page: Page, testId: string) {
  return page.evaluate((id) => {
    const host = document.querySelector(`[data-test="${id}"]`);
    const editor = window.monaco.editor
      .getEditors()
      .find((e) => host?.contains(e.getContainerDomNode()));
    return editor
      ? { value: editor.getValue(), language: editor.getModel()?.getLanguageId() ?? '' }
      : null;
  }, testId);
}

/** Replace the text of the Monaco editor inside `data-test=testId` (as a paste does: one edit). */
export async function setEditorText(page: Page, testId: string, text: string) {
  await page.evaluate(
    ([id, value]) => {
      const host = document.querySelector(`[data-test="${id}"]`);
      const editor = window.monaco.editor
        .getEditors()
        .find((e) => host?.contains(e.getContainerDomNode()));
      const model = editor?.getModel();
      if (!editor || !model) throw new Error(`no editor in ${id}`);
      editor.executeEdits('test', [{ range: model.getFullModelRange(), text: value }]);
    },
    [testId, text] as const,
  );
}

/**
 * Containerfile highlighting, seen two ways: Monaco's own tokens for `line` in `language`, and the
 * rendered colors of the first two words of the first line showing `keyword` in the editor.
 */
export function highlighting(
  page: Page,
  testId: string,
  keyword: string,
  line: string,
  language: string,
) {
  return page.evaluate(
    ([id, word, text, lang]) => {
      const tokens = window.monaco.editor.tokenize(text, lang)[0].map((t) => t.type);
      const host = document.querySelector(`[data-test="${id}"]`);
      const row = [...(host?.querySelectorAll('.view-line') ?? [])].find((l) =>
        l.textContent?.startsWith(word),
      );
      const spans = [...(row?.querySelectorAll('span > span') ?? [])].filter((s) =>
        s.textContent?.trim(),
      );
      const colors = spans.map((s) => getComputedStyle(s).color);
      return { tokens, keywordColor: colors[0], restColors: colors.slice(1) };
    },
    [testId, keyword, line, language] as const,
  );
}

/** Keys the plugin asked i18next for that the locale file lacks (the harness records them). */
export const missingKeys = (page: Page) => page.evaluate(() => window.__strataMissingKeys);

/** What the page received for Secrets, and every response body, to assert no Secret data leaked. */
export function recordTraffic(page: Page) {
  const secretRequests: { url: string; accept: string; body: unknown }[] = [];
  const bodies: string[] = [];
  const pending: Promise<void>[] = [];
  page.on('response', (res) => {
    const url = res.url();
    // Watches stream until closed; none is on Secrets (asserted below through secretRequests).
    if (url.includes('watch=')) {
      if (url.includes('/secrets')) secretRequests.push({ url, accept: '', body: 'WATCH' });
      return;
    }
    pending.push(
      res
        .text()
        .then((text) => {
          bodies.push(text);
          if (new URL(url).pathname.includes('/secrets'))
            secretRequests.push({
              url,
              accept: res.request().headers().accept ?? '',
              body: JSON.parse(text) as unknown,
            });
        })
        .catch(() => undefined),
    );
  });
  return {
    secretRequests,
    bodies,
    settled: () => Promise.all(pending),
  };
}
