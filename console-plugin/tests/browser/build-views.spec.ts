// The build views against real objects: MachineOSBuilds (status written through the status
// subresource, as the controller does) and the rendered-Containerfile ConfigMap, made here so the
// test does not depend on a controller. The builds carry no `strata.dev/machine-os-config` label,
// so a running controller does not adopt them; the MachineOSConfig names a push Secret that does not
// exist, so a running controller only marks it Degraded, starts no build and leaves the rebuild
// annotation in place.
import { expect, test } from '@playwright/test';
import { apply, cleanup, getJson, harness, kubectl, pool, screenshot, uniqueName } from './kube';

const MOSB = '/k8s/cluster/strata.dev~v1alpha1~MachineOSBuild';
const MOSC = '/k8s/cluster/strata.dev~v1alpha1~MachineOSConfig';
const DIGEST = `sha256:${'5e'.repeat(32)}`;

const buildObject = (name: string, config: string) => ({
  apiVersion: 'strata.dev/v1alpha1',
  kind: 'MachineOSBuild',
  metadata: { name },
  spec: {
    machineOSConfig: { name: config },
    machineConfigPool: { name: config },
    baseImage: `registry.example.com/os/base@sha256:${'ba'.repeat(32)}`,
    renderedImagePushSpec: `registry.example.com/console/os-image:${name}`,
    containerFile: [{ containerfileArch: 'NoArch', content: 'RUN false\n' }],
  },
});

const cond = (type: string, status: string, reason: string, message: string, at: string) => ({
  type,
  status,
  reason,
  message,
  lastTransitionTime: at,
});

function setStatus(name: string, status: object) {
  kubectl(['patch', 'machineosbuild', name, '--subresource=status', '--type=merge', '-p', JSON.stringify({ status })]);
}

test('build view, Builds tab and Rebuild read and write real objects', async ({ page }) => {
  const config = uniqueName('builds');
  const failed = `${config}-0123456789ab`;
  const succeeded = `${config}-ba9876543210`;
  const configMap = `containerfile-${failed}`;
  const job = `build-${failed}-1a2b3c4d`;
  apply(pool(config));
  try {
    apply({
      apiVersion: 'strata.dev/v1alpha1',
      kind: 'MachineOSConfig',
      metadata: { name: config },
      spec: {
        machineConfigPool: { name: config },
        imageBuilder: { imageBuilderType: 'Job' },
        renderedImagePushSpec: 'registry.example.com/console/os-image:latest',
        renderedImagePushSecret: { name: `${config}-absent` },
      },
    });
    apply(buildObject(succeeded, config));
    setStatus(succeeded, {
      buildStart: '2026-01-01T10:00:00Z',
      buildEnd: '2026-01-01T10:02:30Z',
      builder: { imageBuilderType: 'Job', job: { group: 'batch', resource: 'jobs', namespace: 'strata-system', name: `build-${succeeded}-x` } },
      attempts: 1,
      digestedImagePushSpec: `registry.example.com/console/os-image@${DIGEST}`,
      conditions: [cond('Succeeded', 'True', 'Pushed', 'image pushed and verified', '2026-01-01T10:02:30Z')],
    });
    apply(buildObject(failed, config));
    const containerfile = `FROM registry.example.com/os/base@sha256:${'ba'.repeat(32)} AS base\nFROM base\nRUN false\nLABEL strata.dev/machine-os-config=${config}\n`;
    apply({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: configMap, namespace: 'strata-system', labels: { 'strata.dev/machine-os-build': failed } },
      data: { Containerfile: containerfile },
    });
    setStatus(failed, {
      buildStart: '2026-01-02T10:00:00Z',
      buildEnd: '2026-01-02T10:01:05Z',
      builder: { imageBuilderType: 'Job', job: { group: 'batch', resource: 'jobs', namespace: 'strata-system', name: job } },
      attempts: 2,
      failure: { reason: 'StepFailed', message: 'line 1: RUN false: exit status 1', logTail: 'STEP 3/4: RUN false\nError: building at STEP "RUN false": exit status 1' },
      conditions: [cond('Failed', 'True', 'StepFailed', 'line 1: RUN false: exit status 1', '2026-01-02T10:01:05Z')],
    });

    // The MachineOSBuild's "Build" tab.
    await page.goto(harness(`${MOSB}/${failed}/build`));
    const view = page.getByTestId('build-details');
    await expect(view.getByTestId('build-phase')).toHaveText('Failed');
    await expect(view.getByTestId('build-reason')).toHaveText('StepFailed');
    await expect(view.getByTestId('build-duration')).toHaveText('1m 05s');
    await expect(view.getByTestId('build-attempts')).toHaveText('2');
    await expect(view.getByTestId('build-failure')).toContainText('StepFailed: line 1: RUN false: exit status 1');
    await expect(view.getByTestId('build-logtail')).toContainText('Error: building at STEP "RUN false": exit status 1');
    await expect(view.getByTestId('containerfile')).toHaveText(containerfile.trimEnd());
    // No builder pod is left in this test, so the link goes to the Job's pods.
    await expect(view.getByTestId('build-logs')).toHaveAttribute('href', new RegExp(`/k8s/ns/strata-system/jobs/${job}/pods$`));
    await screenshot(page, 'machineosbuild-failed');

    await page.goto(harness(`${MOSB}/${succeeded}/build`));
    await expect(view.getByTestId('build-phase')).toHaveText('Succeeded');
    await expect(view.getByTestId('build-digest')).toHaveText(DIGEST);
    await expect(view.getByTestId('build-duration')).toHaveText('2m 30s');
    await expect(view.getByTestId('containerfile-missing')).toBeVisible();

    // The MachineOSConfig's Builds tab: both builds, newest first, live.
    await page.goto(harness(`${MOSC}/${config}/builds`));
    const rows = page.getByTestId('builds-table').locator('tbody tr');
    await expect(rows).toHaveCount(2);
    await expect(rows.nth(0)).toContainText(failed);
    await expect(rows.nth(0)).toContainText('Failed');
    await expect(rows.nth(1)).toContainText(succeeded);
    await expect(rows.nth(1)).toContainText(DIGEST);
    await screenshot(page, 'machineosconfig-builds');

    // Rebuild sets the annotation on the real object; the page sees it through its watch.
    await page.getByTestId('rebuild').click();
    await expect(page.getByTestId('rebuild-pending')).toBeVisible();
    const annotations = getJson(['get', 'machineosconfig', config]).metadata.annotations ?? {};
    expect(Object.keys(annotations)).toContain('strata.dev/rebuild');
    expect(Number.isNaN(Date.parse(annotations['strata.dev/rebuild']))).toBe(false);
  } finally {
    await cleanup('machineosbuild', failed);
    await cleanup('machineosbuild', succeeded);
    await cleanup('configmap', configMap, 'strata-system');
    await cleanup('machineosconfig', config);
    await cleanup('machineconfigpool', config);
  }
});
