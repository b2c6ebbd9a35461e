// The MachineOSConfig form in real Chromium against the real API server: what the form submits is
// created for real (read back with kubectl), and what the server rejects is shown next to the field.
import { expect, test } from '@playwright/test';
import { apply, cleanup, crdMessages, getJson, harness, kubectl, kubectlTry, parseYaml, pool, screenshot, uniqueName } from './kube';

const NEW = '/k8s/cluster/strata.dev~v1alpha1~MachineOSConfig/~new';

test('creates a MachineOSConfig through the form', async ({ page }) => {
  const name = uniqueName('form');
  const pullSecret = `${name}-pull`;
  const pushSecret = `${name}-push`; // deliberately absent: the controller waits for it, no build starts
  apply(pool(name));
  kubectl(
    ['create', 'secret', 'docker-registry', pullSecret, '-n', 'strata-system', '--docker-server=registry.example.com', '--docker-username=u', '--docker-password=p'],
  );
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

    // Secret pickers: the live list of dockerconfig Secrets in strata-system; a missing one warns.
    await expect(page.locator(`#strata-pullSecret-options option[value="${pullSecret}"]`)).toHaveCount(1);
    await page.getByTestId('field-pullSecret').fill(pullSecret);
    await expect(page.getByTestId('warning-pullSecret')).toHaveCount(0);
    await page.getByTestId('field-pushSecret').fill(pushSecret);
    await expect(page.getByTestId('warning-pushSecret')).toContainText(`No Secret ${pushSecret} in strata-system`);

    // Two Containerfiles: NoArch and AMD64.
    await page.getByTestId('fragment-0-content').fill('RUN echo "layered by the console" > /etc/motd\n');
    await page.getByTestId('fragment-add').click();
    await page.getByTestId('fragment-1-arch').selectOption('AMD64');
    await page.getByTestId('fragment-1-content').fill('RUN touch /etc/amd64-only\n');

    // The YAML view shows the object the form builds, and the form survives the round trip.
    await page.getByTestId('view-yaml').click();
    const yaml = parseYaml(await page.getByTestId('yaml-editor').inputValue());
    expect(yaml.spec.renderedImagePushSpec).toBe('registry.example.com/console/os-image:latest');
    expect(yaml.spec.containerFile).toHaveLength(2);
    await page.getByTestId('view-form').click();
    await expect(page.getByTestId('fragment-1-content')).toHaveValue('RUN touch /etc/amd64-only\n');

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
        { containerfileArch: 'NoArch', content: 'RUN echo "layered by the console" > /etc/motd\n' },
        { containerfileArch: 'AMD64', content: 'RUN touch /etc/amd64-only\n' },
      ],
    });
    expect(mosc.spec.baseImage).toBeUndefined();

    // Edit through the form (Edit action): change the push spec, save, read back.
    await page.getByTestId('action-strata-edit-form').click();
    await expect(page.getByTestId('form-title')).toHaveText(`Edit MachineOSConfig ${name}`);
    await expect(page.getByTestId('field-pool')).toBeDisabled();
    await page.getByTestId('field-pushSpec').fill('registry.example.com/console/os-image:v2');
    await page.getByTestId('submit').click();
    await expect(page.getByTestId('details-title')).toHaveText(`MachineOSConfig ${name}`);
    expect(getJson(['get', 'machineosconfig', name]).spec.renderedImagePushSpec).toBe('registry.example.com/console/os-image:v2');
  } finally {
    await cleanup('machineosconfig', name);
    await cleanup('machineconfigpool', name);
    await cleanup('secret', pullSecret, 'strata-system');
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
    await page.getByTestId('fragment-0-content').fill('RUN true\n');
    await page.getByTestId('submit').click();

    const { nameMatchesPool, pushSpec } = crdMessages();
    await expect(page.getByTestId('error-name')).toContainText(nameMatchesPool);
    await expect(page.getByTestId('details-title')).toHaveCount(0);
    await screenshot(page, 'machineosconfig-form-rejected');
    expect(kubectlTry(['get', 'machineosconfig', other]).ok).toBe(false);

    // The YAML view sends what it says: a bad push spec comes back from the server, is listed, and
    // sits next to the push spec field once back in the form view.
    await page.getByTestId('field-name').fill(name);
    await page.getByTestId('view-yaml').click();
    const editor = page.getByTestId('yaml-editor');
    await editor.fill((await editor.inputValue()).replace('registry.example.com/console/os-image:latest', 'nodot/os:latest'));
    await page.getByTestId('submit').click();
    await expect(page.getByTestId('server-errors')).toContainText(pushSpec);
    await page.getByTestId('view-form').click();
    await expect(page.getByTestId('error-pushSpec').filter({ hasText: 'Invalid value: "nodot/os:latest"' })).toContainText(pushSpec);
    expect(kubectlTry(['get', 'machineosconfig', name]).ok).toBe(false);
  } finally {
    await cleanup('machineosconfig', other);
    await cleanup('machineosconfig', name);
    await cleanup('machineconfigpool', name);
  }
});
