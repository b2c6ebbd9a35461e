// The harness's stand-in for @openshift-console/dynamic-plugin-sdk: the few hooks and calls the
// plugin uses, implemented on fetch against a real API server. The harness page is served by
// `kubectl proxy --www=harness/dist --www-prefix=/ui/ --api-prefix=/`, so `/api/…` and `/apis/…`
// on the page's origin reach the cluster with kubectl's credentials. Webpack aliases the SDK's
// module name to this file for the harness build only; the plugin build uses the real SDK.
import * as React from 'react';
import { ConfigMapModel, MachineConfigPoolModel, MachineOSBuildModel, MachineOSConfigModel, PodModel, SecretModel } from '../src/models';

type Model = {
  apiGroup?: string;
  apiVersion: string;
  kind: string;
  plural: string;
  namespaced?: boolean;
};
type Obj = { apiVersion?: string; kind?: string; metadata?: { name?: string; namespace?: string; resourceVersion?: string; [k: string]: unknown }; [k: string]: unknown };
type GVK = { group?: string; version: string; kind: string };
type Selector = { matchLabels?: Record<string, string> };
export type WatchK8sResource = {
  groupVersionKind?: GVK;
  isList?: boolean;
  name?: string;
  namespace?: string;
  selector?: Selector;
};

const MODELS: Model[] = [MachineOSConfigModel, MachineOSBuildModel, MachineConfigPoolModel, SecretModel, ConfigMapModel, PodModel];

const modelFor = (g: GVK): Model => {
  const m = MODELS.find((x) => (x.apiGroup ?? '') === (g.group ?? '') && x.apiVersion === g.version && x.kind === g.kind);
  if (!m) throw new Error(`harness: no model for ${g.group}/${g.version}/${g.kind}`);
  return m;
};

const collectionPath = (m: Model, ns?: string) =>
  `${m.apiGroup ? `/apis/${m.apiGroup}/${m.apiVersion}` : `/api/${m.apiVersion}`}${m.namespaced && ns ? `/namespaces/${ns}` : ''}/${m.plural}`;

/** Same shape as the console's HttpError: `code`, `json` (the Status body), `response`. */
export class HttpError extends Error {
  constructor(
    message: string,
    public code: number,
    public response?: Response,
    public json?: unknown,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

async function request(method: string, path: string, body?: unknown, contentType = 'application/json') {
  const res = await fetch(path, {
    method,
    headers: body === undefined ? { Accept: 'application/json' } : { Accept: 'application/json', 'Content-Type': contentType },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!res.ok) {
    const message = (json as { message?: string })?.message ?? `${res.status} ${res.statusText}`;
    throw new HttpError(message, res.status, res, json);
  }
  return json;
}

export const k8sGet = ({ model, name, ns }: { model: Model; name: string; ns?: string }) =>
  request('GET', `${collectionPath(model, ns)}/${name}`);
export const k8sCreate = ({ model, data }: { model: Model; data: Obj }) =>
  request('POST', collectionPath(model, data.metadata?.namespace), data);
export const k8sUpdate = ({ model, data }: { model: Model; data: Obj }) =>
  request('PUT', `${collectionPath(model, data.metadata?.namespace)}/${data.metadata?.name}`, data);
export const k8sPatch = ({ model, resource, data }: { model: Model; resource: Obj; data: unknown[] }) =>
  request(
    'PATCH',
    `${collectionPath(model, resource.metadata?.namespace)}/${resource.metadata?.name}`,
    data,
    'application/json-patch+json',
  );

const selectorQuery = (r: WatchK8sResource) => {
  const q = new URLSearchParams();
  const labels = Object.entries(r.selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  if (labels.length) q.set('labelSelector', labels.join(','));
  if (r.name) q.set('fieldSelector', `metadata.name=${r.name}`);
  return q;
};

/** List, then watch from the list's resourceVersion; re-list when the watch ends or fails. */
export function useK8sWatchResource<R>(resource: WatchK8sResource | null): [R, boolean, any] {
  const key = JSON.stringify(resource);
  const [state, setState] = React.useState<{ data: unknown; loaded: boolean; error: unknown }>({
    data: resource?.isList ? [] : undefined,
    loaded: false,
    error: undefined,
  });
  React.useEffect(() => {
    if (!resource?.groupVersionKind) return undefined;
    const r = resource;
    const model = modelFor(r.groupVersionKind!);
    const base = collectionPath(model, r.namespace);
    const abort = new AbortController();
    let items = new Map<string, Obj>();
    const publish = () => {
      const list = [...items.values()].sort((a, b) => (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''));
      if (r.isList) setState({ data: list, loaded: true, error: undefined });
      else if (list.length) setState({ data: list[0], loaded: true, error: undefined });
      else
        setState({
          data: undefined,
          loaded: false,
          error: new HttpError(`${model.kind} "${r.name}" not found`, 404, undefined, { code: 404, reason: 'NotFound' }),
        });
    };
    const run = async () => {
      while (!abort.signal.aborted) {
        try {
          const q = selectorQuery(r);
          const list = (await request('GET', `${base}?${q}`)) as { items: Obj[]; metadata: { resourceVersion: string } };
          items = new Map(list.items.map((o) => [o.metadata?.name ?? '', { ...o, apiVersion: o.apiVersion ?? model.apiVersion, kind: model.kind }]));
          publish();
          q.set('watch', '1');
          q.set('resourceVersion', list.metadata.resourceVersion);
          q.set('timeoutSeconds', '240');
          const res = await fetch(`${base}?${q}`, { signal: abort.signal });
          if (!res.ok || !res.body) throw new Error(`watch ${res.status}`);
          const reader = res.body.getReader();
          const decoder = new TextDecoder();
          let buf = '';
          for (;;) {
            const { done, value } = await reader.read();
            if (done) break;
            buf += decoder.decode(value, { stream: true });
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl).trim();
              buf = buf.slice(nl + 1);
              if (!line) continue;
              const ev = JSON.parse(line) as { type: string; object: Obj };
              if (ev.type === 'ERROR') throw new Error('watch expired');
              const name = ev.object.metadata?.name ?? '';
              if (ev.type === 'DELETED') items.delete(name);
              else items.set(name, { ...ev.object, kind: model.kind });
              publish();
            }
          }
        } catch (e) {
          if (abort.signal.aborted) return;
          if (e instanceof HttpError) setState((s) => ({ ...s, loaded: false, error: e }));
        }
        await new Promise((ok) => setTimeout(ok, 1000));
      }
    };
    run();
    return () => abort.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return [state.data as R, state.loaded, state.error];
}
