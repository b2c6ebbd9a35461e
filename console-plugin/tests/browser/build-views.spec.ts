// The build views against real objects: MachineOSBuilds (status written through the status
// subresource, as the controller does), the rendered-Containerfile ConfigMap and a builder pod
// (held by a scheduling gate, its container statuses written as the kubelet would), made here so
// the test does not depend on a build running. The builds carry the config label (the Builds tab
// watches by it) but no owner reference, so a running controller treats them as foreign and
// leaves them alone; the MachineOSConfig names a push Secret that does not exist, so the
// controller only marks it Degraded, starts no build and leaves the rebuild annotation in place.
import { expect, test } from '@playwright/test';
import {
  apply,
  cleanup,
  editorState,
  getJson,
  harness,
  highlighting,
  kubectl,
  missingKeys,
  pool,
  screenshot,
  uniqueName,
} from './kube';

const MOSB = '/k8s/cluster/strata.dev~v1alpha1~MachineOSBuild';
const MOSC = '/k8s/cluster/strata.dev~v1alpha1~MachineOSConfig';
const DIGEST = `sha256:${'5e'.repeat(32)}`;
const CONFIG_LABEL = 'strata.dev/machine-os-config';

const buildObject = (name: string, config: string) => ({
  apiVersion: 'strata.dev/v1alpha1',
  kind: 'MachineOSBuild',
  metadata: { name, labels: { [CONFIG_LABEL]: config } },
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

function setStatus(kind: string, name: string, status: object, namespace?: string) {
  kubectl([
    'patch',
    kind,
    name,
    ...(namespace ? ['-n', namespace] : []),
    '--subresource=status',
    '--type=merge',
    '-p',
    JSON.stringify({ status }),
  ]);
}

const ms = (iso: string) => Date.parse(iso);

test('build view, Builds tab and Rebuild read and write real objects', async ({ page }) => {
  const config = uniqueName('builds');
  const decoyConfig = `${config}-decoy`;
  const failed = `${config}-0123456789ab`;
  const succeeded = `${config}-ba9876543210`;
  const decoy = `${decoyConfig}-cafecafecafe`;
  const configMap = `containerfile-${failed}`;
  const job = `build-${failed}-1a2b3c4d`;
  const podName = `${job}-x7k2p`;
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
    setStatus('machineosbuild', succeeded, {
      buildStart: '2026-01-01T10:00:00Z',
      buildEnd: '2026-01-01T10:02:30Z',
      builder: {
        imageBuilderType: 'Job',
        job: {
          group: 'batch',
          resource: 'jobs',
          namespace: 'strata-system',
          name: `build-${succeeded}-x`,
        },
      },
      attempts: 1,
      digestedImagePushSpec: `registry.example.com/console/os-image@${DIGEST}`,
      phases: [
        { phase: 'pull', startMs: ms('2026-01-01T10:00:05Z'), endMs: ms('2026-01-01T10:00:20Z') },
        { phase: 'build', startMs: ms('2026-01-01T10:00:20Z'), endMs: ms('2026-01-01T10:02:00Z') },
        { phase: 'push', startMs: ms('2026-01-01T10:02:00Z'), endMs: ms('2026-01-01T10:02:25Z') },
      ],
      conditions: [
        cond('Succeeded', 'True', 'Pushed', 'image pushed and verified', '2026-01-01T10:02:30Z'),
      ],
    });
    apply(buildObject(failed, config));
    // Another config's build: the Builds tab must never receive it (the server filters by label).
    apply(buildObject(decoy, decoyConfig));
    const containerfile = `FROM registry.example.com/os/base@sha256:${'ba'.repeat(32)} AS base\nFROM base\nRUN false\nLABEL strata.dev/machine-os-config=${config}\n`;
    apply({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: {
        name: configMap,
        namespace: 'strata-system',
        labels: { 'strata.dev/machine-os-build': failed },
      },
      data: { Containerfile: containerfile },
    });
    setStatus('machineosbuild', failed, {
      buildStart: '2026-01-02T10:00:00Z',
      buildEnd: '2026-01-02T10:01:05Z',
      builder: {
        imageBuilderType: 'Job',
        job: { group: 'batch', resource: 'jobs', namespace: 'strata-system', name: job },
      },
      attempts: 2,
      failure: {
        reason: 'StepFailed',
        message: 'line 1: RUN false: exit status 1',
        logTail: 'STEP 3/4: RUN false\nError: building at STEP "RUN false": exit status 1',
      },
      conditions: [
        cond(
          'Failed',
          'True',
          'StepFailed',
          'line 1: RUN false: exit status 1',
          '2026-01-02T10:01:05Z',
        ),
      ],
    });
    // The failed build's builder pod: pull done, build failed (exit 3), push never ran.
    apply({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: podName,
        namespace: 'strata-system',
        labels: { 'strata.dev/machine-os-build': failed, 'app.kubernetes.io/component': 'builder' },
      },
      spec: {
        schedulingGates: [{ name: 'strata.dev/console-test' }],
        initContainers: [
          { name: 'pull', image: 'registry.example.com/none:latest' },
          { name: 'build', image: 'registry.example.com/none:latest' },
        ],
        containers: [{ name: 'push', image: 'registry.example.com/none:latest' }],
      },
    });
    const status = (name: string, state: object) => ({
      name,
      image: 'registry.example.com/none:latest',
      imageID: '',
      ready: false,
      restartCount: 0,
      state,
    });
    setStatus(
      'pod',
      podName,
      {
        initContainerStatuses: [
          status('pull', { terminated: { exitCode: 0, reason: 'Completed' } }),
          status('build', { terminated: { exitCode: 3, reason: 'Error' } }),
        ],
        containerStatuses: [status('push', { waiting: { reason: 'PodInitializing' } })],
      },
      'strata-system',
    );

    // The MachineOSBuild's "Build" tab.
    await page.goto(harness(`${MOSB}/${failed}/build`));
    const view = page.getByTestId('build-details');
    await expect(view.getByTestId('build-phase')).toHaveText('Failed');
    await expect(view.getByTestId('build-reason')).toHaveText('StepFailed');
    await expect(view.getByTestId('build-duration')).toHaveText('1m 05s');
    await expect(view.getByTestId('build-attempts')).toHaveText('2');
    await expect(view.getByTestId('build-failure')).toContainText(
      'StepFailed: line 1: RUN false: exit status 1',
    );
    await expect(view.getByTestId('build-logtail')).toContainText(
      'Error: building at STEP "RUN false": exit status 1',
    );
    // ResourceLinks to the MachineOSConfig and the Job; the logs link opens the failed step.
    await expect(view.getByTestId('build-config')).toHaveAttribute('href', `#${MOSC}/${config}`);
    await expect(view.getByTestId('build-job')).toHaveAttribute(
      'href',
      `#/k8s/ns/strata-system/jobs/${job}`,
    );
    await expect(view.getByTestId('build-pod')).toHaveAttribute(
      'href',
      `#/k8s/ns/strata-system/pods/${podName}`,
    );
    await expect(view.getByTestId('build-logs')).toHaveAttribute(
      'href',
      `#/k8s/ns/strata-system/pods/${podName}/logs?container=build`,
    );
    await expect(view.getByTestId('build-logs')).toHaveText('Logs of step build');
    // The rendered Containerfile in a read-only Monaco with Containerfile highlighting.
    await expect
      .poll(() => editorState(page, 'containerfile'))
      .toEqual({ value: containerfile, language: 'dockerfile' });
    const colors = await highlighting(page, 'containerfile', 'RUN', 'RUN false', 'dockerfile');
    expect(colors.tokens[0]).toBe('keyword.dockerfile');
    expect(colors.restColors.every((c) => c !== colors.keywordColor)).toBe(true);
    await screenshot(page, 'machineosbuild-failed');

    // Once the push step runs, the link follows it.
    setStatus(
      'pod',
      podName,
      {
        initContainerStatuses: [
          status('pull', { terminated: { exitCode: 0, reason: 'Completed' } }),
          status('build', { terminated: { exitCode: 0, reason: 'Completed' } }),
        ],
        containerStatuses: [status('push', { running: { startedAt: '2026-01-02T10:01:00Z' } })],
      },
      'strata-system',
    );
    await expect(view.getByTestId('build-logs')).toHaveAttribute(
      'href',
      `#/k8s/ns/strata-system/pods/${podName}/logs?container=push`,
    );

    await page.goto(harness(`${MOSB}/${succeeded}/build`));
    await expect(view.getByTestId('build-phase')).toHaveText('Succeeded');
    await expect(view.getByTestId('build-digest')).toHaveText(DIGEST);
    await expect(view.getByTestId('build-duration')).toHaveText('2m 30s');
    await expect(view.getByTestId('containerfile-missing')).toBeVisible();
    // No pod left: the link goes to the Job's pods.
    await expect(view.getByTestId('build-logs')).toHaveAttribute(
      'href',
      `#/k8s/ns/strata-system/jobs/build-${succeeded}-x/pods`,
    );
    const steps = view.getByTestId('build-steps');
    await expect(steps.locator('tbody tr')).toHaveCount(3);
    await expect(view.getByTestId('build-step-pull')).toContainText('15s');
    await expect(view.getByTestId('build-step-build')).toContainText('1m 40s');
    await expect(view.getByTestId('build-step-push')).toContainText('25s');

    // The MachineOSConfig's Builds tab: a PatternFly table of its builds (ResourceLinks), newest
    // first, watched by label selector: every MachineOSBuild request names the config label, and
    // the other config's build never reaches the page.
    const buildRequests: string[] = [];
    const listBodies: Promise<string>[] = [];
    page.on('request', (r) => {
      if (new URL(r.url()).pathname.endsWith('/machineosbuilds')) buildRequests.push(r.url());
    });
    page.on('response', (r) => {
      const url = r.url();
      if (new URL(url).pathname.endsWith('/machineosbuilds') && !url.includes('watch='))
        listBodies.push(r.text());
    });
    await page.goto(harness(`${MOSC}/${config}/builds`));
    const rows = page.getByTestId('builds-table').locator('tbody tr');
    await expect(rows).toHaveCount(2);
    await expect(rows.nth(0)).toContainText(failed);
    await expect(rows.nth(0)).toContainText('Failed');
    await expect(rows.nth(1)).toContainText(succeeded);
    await expect(rows.nth(1)).toContainText(DIGEST);
    await expect(rows.nth(1)).toContainText('pull 15s, build 1m 40s, push 25s');
    await expect(page.getByTestId(`build-link-${failed}`)).toHaveAttribute(
      'href',
      `#${MOSB}/${failed}`,
    );
    await expect(rows.nth(0).getByTestId('resource-badge')).toHaveText('SMOSB');
    await expect(page.getByText(decoy)).toHaveCount(0);
    expect(buildRequests.length).toBeGreaterThan(0);
    for (const url of buildRequests)
      expect(new URL(url).searchParams.get('labelSelector'), url).toBe(`${CONFIG_LABEL}=${config}`);
    const lists = (await Promise.all(listBodies)).map(
      (b) => JSON.parse(b) as { items: { metadata: { name: string } }[] },
    );
    expect(lists.length).toBeGreaterThan(0);
    for (const list of lists)
      expect(list.items.map((i) => i.metadata.name).sort()).toEqual([failed, succeeded].sort());

    // The MachineOSConfig's conditions as the API server has them (a running controller writes
    // them), one label each.
    await expect
      .poll(() => {
        const conditions: { type: string; status: string }[] =
          getJson(['get', 'machineosconfig', config]).status?.conditions ?? [];
        return conditions.length;
      })
      .toBeGreaterThan(0);
    const conditions: { type: string; status: string }[] = getJson([
      'get',
      'machineosconfig',
      config,
    ]).status.conditions;
    for (const c of conditions.filter((x) =>
      ['Ready', 'Building', 'Degraded', 'PoolUpdated', 'PoolHeld', 'WaitingForPool'].includes(
        x.type,
      ),
    ))
      await expect(page.getByTestId(`condition-${c.type}`)).toHaveText(`${c.type}=${c.status}`);
    await screenshot(page, 'machineosconfig-builds');

    // Rebuild sets the annotation on the real object; the page sees it through its watch.
    await page.getByTestId('rebuild').click();
    await expect(page.getByTestId('rebuild-pending')).toBeVisible();
    const annotations = getJson(['get', 'machineosconfig', config]).metadata.annotations ?? {};
    expect(Object.keys(annotations)).toContain('strata.dev/rebuild');
    expect(Number.isNaN(Date.parse(annotations['strata.dev/rebuild']))).toBe(false);
    expect(await missingKeys(page)).toEqual([]);
  } finally {
    await cleanup('pod', podName, 'strata-system');
    await cleanup('machineosbuild', failed);
    await cleanup('machineosbuild', succeeded);
    await cleanup('machineosbuild', decoy);
    await cleanup('configmap', configMap, 'strata-system');
    await cleanup('machineosconfig', config);
    await cleanup('machineconfigpool', config);
  }
});
