// The MachineOSConfig form in real Chromium against the real API server: what the form submits is
// created for real (read back with kubectl), what the server rejects is shown next to the field,
// the Containerfiles and the YAML are edited in Monaco (the console's CodeEditor and
// ResourceYAMLEditor), and the Secret pickers read Secrets' metadata only: no response the page
// received carried a Secret's data.
import { expect, test } from '@playwright/test';
import {
  apply,
  cleanup,
  crdMessages,
  editorState,
  getJson,
  harness,
  highlighting,
  kubectl,
  kubectlTry,
  missingKeys,
  parseYaml,
  pool,
  recordTraffic,
  screenshot,
  setEditorText,
  uniqueName,
} from './kube';

const NEW = '/k8s/cluster/strata.dev~v1alpha1~MachineOSConfig/~new';
const ALLOWED = 'strata.dev/allowed-machine-os-configs';
const METADATA_ACCEPT = 'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';

const dockerSecret = (name: string, password: string) => {
  kubectl([
    'create',
    'secret',
    'docker-registry',
    name,
    '-n',
    'strata-system',
    '--docker-server=registry.example.com',
    '--docker-username=console-test',
    `--docker-password=${password}`,
  ]);
};

test('creates a MachineOSConfig through the form, reading Secrets as metadata only', async ({
  page,
}) => {
  const name = uniqueName('form');
  const pullSecret = `${name}-pull`; // allows this MachineOSConfig
  const otherSecret = `${name}-other`; // allows another one only
  const pushSecret = `${name}-push`; // deliberately absent: the controller waits for it, no build starts
  // Unique passwords: if any response carried a Secret's data, its base64 would contain them.
  const passwords = [`pw-${name}-a`, `pw-${name}-b`];
  apply(pool(name));
  dockerSecret(pullSecret, passwords[0]);
  dockerSecret(otherSecret, passwords[1]);
  kubectl(['annotate', 'secret', pullSecret, '-n', 'strata-system', `${ALLOWED}=${name}`]);
  kubectl(['annotate', 'secret', otherSecret, '-n', 'strata-system', `${ALLOWED}=someone-else`]);
  const traffic = recordTraffic(page);
  try {
    await page.goto(harness(NEW));
    await expect(page.getByTestId('form-title')).toHaveText('Create MachineOSConfig');

    // The pool picker lists the live MachineConfigPools; picking one names the config after it.
    const poolSelect = page.getByTestId('field-pool');
    await expect(poolSelect.locator(`option[value="${name}"]`)).toHaveCount(1);
    await poolSelect.selectOption(name);
    await expect(page.getByTestId('field-name')).toHaveValue(name);

    // Push spec: the CRD's rule, checked as you type, with the CRD's message.
    const pushSpec = page.getByTestId('field-pushSpec');
    await pushSpec.fill('nodot/os:latest');
    await pushSpec.blur();
    await expect(page.getByTestId('error-pushSpec')).toContainText(crdMessages().pushSpec);
    await pushSpec.fill('registry.example.com/console/os-image:latest');
    await expect(page.getByTestId('error-pushSpec')).toHaveCount(0);

    // Secret pickers: the dockerconfig Secrets of strata-system; the form says which allow this
    // MachineOSConfig (from their annotations) and warns on one that does not or is missing.
    await expect(
      page.locator(`#strata-pullSecret-options option[value="${pullSecret}"]`),
    ).toHaveCount(1);
    await expect(
      page.locator(`#strata-pullSecret-options option[value="${otherSecret}"]`),
    ).toHaveCount(1);
    await page.getByTestId('field-pullSecret').fill(otherSecret);
    await expect(page.getByTestId('warning-pullSecret')).toContainText(
      `Secret ${otherSecret} does not allow MachineOSConfig ${name}`,
    );
    await expect(page.getByTestId('warning-pullSecret')).toContainText(
      `${ALLOWED}=someone-else,${name}`,
    );
    await page.getByTestId('field-pullSecret').fill(pullSecret);
    await expect(page.getByTestId('warning-pullSecret')).toHaveCount(0);
    await page.getByTestId('field-pushSecret').fill(pushSecret);
    await expect(page.getByTestId('warning-pushSecret')).toContainText(
      `No Secret ${pushSecret} in strata-system`,
    );
    await page
      .getByRole('button', { name: 'Show the Secrets that allow this MachineOSConfig' })
      .click();
    const allowed = page.getByTestId('allowed-secrets');
    await expect(allowed.getByTestId(`allowed-secret-${pullSecret}`)).toHaveAttribute(
      'href',
      `#/k8s/ns/strata-system/secrets/${pullSecret}`,
    );
    await expect(allowed).not.toContainText(otherSecret);

    // Containerfiles in Monaco with Containerfile (dockerfile) highlighting: typed for real.
    const first = 'RUN echo "layered by the console" > /etc/motd';
    await page.getByTestId('fragment-0-content').locator('.monaco-editor').click();
    await page.keyboard.type(first);
    await expect
      .poll(() => editorState(page, 'fragment-0-content'))
      .toEqual({ value: first, language: 'dockerfile' });
    // Enter ends the line. A suggestion list that opens late (a loaded machine) takes an Enter
    // for itself: close it and press again, until the line is ended.
    await expect(async () => {
      if ((await editorState(page, 'fragment-0-content'))?.value === first) {
        await page.keyboard.press('Escape');
        await page.keyboard.press('Enter');
      }
      expect(await editorState(page, 'fragment-0-content')).toEqual({
        value: `${first}\n`,
        language: 'dockerfile',
      });
    }).toPass({ timeout: 15000 });
    const colors = await highlighting(page, 'fragment-0-content', 'RUN', first, 'dockerfile');
    expect(colors.tokens[0]).toBe('keyword.dockerfile');
    expect(colors.restColors.length).toBeGreaterThan(0);
    expect(colors.restColors.every((c) => c !== colors.keywordColor)).toBe(true);

    await page.getByTestId('fragment-add').click();
    await page.getByTestId('fragment-1-arch').selectOption('AMD64');
    await page.getByTestId('fragment-1-content').locator('.monaco-editor').click();
    await page.keyboard.insertText('RUN touch /etc/amd64-only\n');
    await expect
      .poll(async () => (await editorState(page, 'fragment-1-content'))?.value)
      .toBe('RUN touch /etc/amd64-only\n');

    // The YAML view is the console's ResourceYAMLEditor (Monaco, yaml) holding the object the form
    // builds; the form survives the round trip.
    await page.getByTestId('view-yaml').click();
    await expect.poll(async () => (await editorState(page, 'yaml-view'))?.language).toBe('yaml');
    const yaml = parseYaml((await editorState(page, 'yaml-view'))?.value ?? '');
    expect(yaml.spec.renderedImagePushSpec).toBe('registry.example.com/console/os-image:latest');
    expect(yaml.spec.containerFile).toHaveLength(2);
    await expect(page.getByTestId('save-changes')).toHaveText('Create');
    await page.getByTestId('view-form').click();
    await expect
      .poll(async () => (await editorState(page, 'fragment-1-content'))?.value)
      .toBe('RUN touch /etc/amd64-only\n');

    await screenshot(page, 'machineosconfig-form');
    await page.getByTestId('submit').click();

    // The harness routes to the console's details URL after the create.
    await expect(page.getByTestId('details-title')).toHaveText(`MachineOSConfig ${name}`);
    expect(page.url()).toContain(`/k8s/cluster/strata.dev~v1alpha1~MachineOSConfig/${name}`);

    // Read it back from the API server.
    const mosc = getJson(['get', 'machineosconfig', name]);
    expect(mosc.spec).toMatchObject({
      machineConfigPool: { name },
      imageBuilder: { imageBuilderType: 'Job' },
      renderedImagePushSpec: 'registry.example.com/console/os-image:latest',
      renderedImagePushSecret: { name: pushSecret },
      baseImagePullSecret: { name: pullSecret },
      containerFile: [
        { containerfileArch: 'NoArch', content: `${first}\n` },
        { containerfileArch: 'AMD64', content: 'RUN touch /etc/amd64-only\n' },
      ],
    });
    expect(mosc.spec.baseImage).toBeUndefined();

    // Edit through the form (Edit action): change the push spec, save, read back.
    await page.getByTestId('action-strata-edit-form').click();
    await expect(page.getByTestId('form-title')).toHaveText(`Edit MachineOSConfig ${name}`);
    await expect(page.getByTestId('field-pool')).toBeDisabled();
    await expect
      .poll(async () => (await editorState(page, 'fragment-0-content'))?.value)
      .toBe(`${first}\n`);
    await page.getByTestId('field-pushSpec').fill('registry.example.com/console/os-image:v2');
    await page.getByTestId('submit').click();
    await expect(page.getByTestId('details-title')).toHaveText(`MachineOSConfig ${name}`);
    expect(getJson(['get', 'machineosconfig', name]).spec.renderedImagePushSpec).toBe(
      'registry.example.com/console/os-image:v2',
    );

    // Every Secret request asked for metadata only, and the API server answered with metadata
    // only: no Secret `data` (nor the passwords, in any encoding) in any response the page got.
    await traffic.settled();
    expect(traffic.secretRequests.length).toBeGreaterThan(0);
    for (const r of traffic.secretRequests) {
      expect(r.body, `${r.url} is not a watch`).not.toBe('WATCH');
      expect(r.accept, r.url).toBe(METADATA_ACCEPT);
      const list = r.body as { kind: string; items: Record<string, unknown>[] | null };
      expect(list.kind, r.url).toBe('PartialObjectMetadataList');
      for (const item of list.items ?? []) {
        expect(Object.keys(item).sort(), r.url).toEqual(['apiVersion', 'kind', 'metadata']);
        expect(item.kind).toBe('PartialObjectMetadata');
      }
    }
    const allText = traffic.bodies.join('\n');
    expect(allText).toContain(pullSecret);
    const secretData = [pullSecret, otherSecret].map(
      (s) =>
        (getJson(['get', 'secret', s, '-n', 'strata-system']) as { data: Record<string, string> })
          .data,
    );
    for (const value of [...passwords, ...secretData.flatMap((d) => Object.values(d))]) {
      expect(value.length).toBeGreaterThan(8);
      expect(allText).not.toContain(value);
    }

    // Every string the plugin showed is in its locale file.
    expect(await missingKeys(page)).toEqual([]);
  } finally {
    await cleanup('machineosconfig', name);
    await cleanup('machineconfigpool', name);
    await cleanup('secret', pullSecret, 'strata-system');
    await cleanup('secret', otherSecret, 'strata-system');
  }
});

test("shows the API server's rejection next to the field it concerns", async ({ page }) => {
  const name = uniqueName('reject');
  const other = `${name}-other`;
  apply(pool(name));
  try {
    await page.goto(harness(NEW));
    await page.getByTestId('field-pool').selectOption(name);
    // The name differs from the pool: the CRD's object-level CEL rule rejects it on the server.
    await page.getByTestId('field-name').fill(other);
    await page.getByTestId('field-pushSpec').fill('registry.example.com/console/os-image:latest');
    await page.getByTestId('field-pushSecret').fill(`${name}-push`);
    await page.getByTestId('fragment-0-content').locator('.monaco-editor').click();
    await page.keyboard.insertText('RUN true\n');
    await page.getByTestId('submit').click();

    const { nameMatchesPool, pushSpec } = crdMessages();
    await expect(page.getByTestId('error-name')).toContainText(nameMatchesPool);
    await expect(page.getByTestId('details-title')).toHaveCount(0);
    await screenshot(page, 'machineosconfig-form-rejected');
    expect(kubectlTry(['get', 'machineosconfig', other]).ok).toBe(false);

    // The YAML view sends what it says (the editor's own Create button): a bad push spec comes
    // back from the server, is listed, and sits next to the push spec field in the form view.
    await page.getByTestId('field-name').fill(name);
    await page.getByTestId('view-yaml').click();
    await expect
      .poll(async () => (await editorState(page, 'yaml-view'))?.value)
      .toContain('registry.example.com/console/os-image:latest');
    const text = (await editorState(page, 'yaml-view'))?.value ?? '';
    await setEditorText(
      page,
      'yaml-view',
      text.replace('registry.example.com/console/os-image:latest', 'nodot/os:latest'),
    );
    await page.getByTestId('save-changes').click();
    await expect(page.getByTestId('server-errors')).toContainText(pushSpec);
    await screenshot(page, 'machineosconfig-yaml-rejected');
    await page.getByTestId('view-form').click();
    await expect(
      page.getByTestId('error-pushSpec').filter({ hasText: 'Invalid value: "nodot/os:latest"' }),
    ).toContainText(pushSpec);
    expect(kubectlTry(['get', 'machineosconfig', name]).ok).toBe(false);
    expect(await missingKeys(page)).toEqual([]);
  } finally {
    await cleanup('machineosconfig', other);
    await cleanup('machineosconfig', name);
    await cleanup('machineconfigpool', name);
  }
});
