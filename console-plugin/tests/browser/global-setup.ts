// Builds the harness page, then serves it and the API with
//   kubectl proxy --www=harness/dist --www-prefix=/ui/ --api-prefix=/ --port=0
// (KUBECONFIG and kubectl on PATH come from the caller: e2e/tests/console_plugin.rs or
// `. e2e/.state/env`). The page's URL reaches the tests as STRATA_HARNESS_URL.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.resolve(__dirname, '../..');

export default async function globalSetup() {
  if (!fs.existsSync(process.env.STRATA_CHROMIUM ?? '/usr/bin/chromium'))
    throw new Error(
      'no /usr/bin/chromium: apt-get install -y chromium (Playwright must not download browsers)',
    );
  const crd = spawnSync(
    'kubectl',
    ['get', 'crd', 'machineosconfigs.strata.dev', 'machineosbuilds.strata.dev', '-o', 'name'],
    {
      encoding: 'utf8',
    },
  );
  if (crd.status !== 0)
    throw new Error(
      `kubectl cannot see Strata's CRDs (KUBECONFIG=${process.env.KUBECONFIG ?? 'unset'}): ${crd.error ?? crd.stderr}\n` +
        'run against a cluster with `kubectl apply --server-side -f crds/crds.yaml` applied',
    );

  const build = spawnSync('npx', ['webpack', '--config', 'harness/webpack.config.ts'], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, TS_NODE_PROJECT: 'tsconfig.json' },
  });
  if (build.status !== 0)
    throw new Error(`harness build failed:\n${build.stdout}\n${build.stderr}`);

  const proxy = spawn(
    'kubectl',
    [
      'proxy',
      `--www=${path.join(root, 'harness/dist')}`,
      '--www-prefix=/ui/',
      '--api-prefix=/',
      '--port=0',
      '--address=127.0.0.1',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      reject(new Error(`kubectl proxy did not start: ${out}`));
    }, 15_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /Starting to serve on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(`http://127.0.0.1:${m[1]}/ui/`);
      }
    };
    proxy.stdout.on('data', onData);
    proxy.stderr.on('data', onData);
    proxy.on('exit', (code) => {
      reject(new Error(`kubectl proxy exited (${code}): ${out}`));
    });
  });
  process.env.STRATA_HARNESS_URL = url;
  return async () => {
    proxy.kill('SIGTERM');
  };
}
