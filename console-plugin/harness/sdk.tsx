// The harness's stand-in for @openshift-console/dynamic-plugin-sdk: the few hooks and calls the
// plugin uses, implemented on fetch against a real API server. The harness page is served by
// `kubectl proxy --www=harness/dist --www-prefix=/ui/ --api-prefix=/`, so `/api/…` and `/apis/…`
// on the page's origin reach the cluster with kubectl's credentials. Webpack aliases the SDK's
// module name to this file for the harness build only; the plugin build uses the real SDK.
import * as React from 'react';
import { Link } from 'react-router';
import { Tooltip } from '@patternfly/react-core';
import { GlobeAmericasIcon } from '@patternfly/react-icons';
import type {
  ResourceLinkProps,
  ResourceYAMLEditorProps,
} from '@openshift-console/dynamic-plugin-sdk';
import {
  ConfigMapModel,
  JobModel,
  MachineConfigPoolModel,
  MachineOSBuildModel,
  MachineOSConfigModel,
  PodModel,
  SecretModel,
  referenceFor,
} from '../src/models';
import { CodeEditor, ResourceYAMLEditor as YAMLEditor } from './editor';

interface Model {
  apiGroup?: string;
  apiVersion: string;
  kind: string;
  plural: string;
  namespaced?: boolean;
  abbr: string;
  crd?: boolean;
}
interface Obj {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  [k: string]: unknown;
}
interface GVK {
  group?: string;
  version: string;
  kind: string;
}
interface Selector {
  matchLabels?: Record<string, string>;
}
export interface WatchK8sResource {
  groupVersionKind?: GVK;
  isList?: boolean;
  name?: string;
  namespace?: string;
  selector?: Selector;
}

const MODELS: Model[] = [
  MachineOSConfigModel,
  MachineOSBuildModel,
  MachineConfigPoolModel,
  SecretModel,
  ConfigMapModel,
  PodModel,
  JobModel,
];

const modelFor = (g: GVK): Model => {
  const m = MODELS.find(
    (x) =>
      (x.apiGroup ?? '') === (g.group ?? '') && x.apiVersion === g.version && x.kind === g.kind,
  );
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

async function request(
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
  headers: Record<string, string> = {},
) {
  // Like consoleFetchJSON: Accept JSON unless the caller says otherwise.
  const res = await fetch(path, {
    method,
    headers: {
      Accept: 'application/json',
      ...(body === undefined ? {} : { 'Content-Type': contentType }),
      ...headers,
    },
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
export const k8sPatch = ({
  model,
  resource,
  data,
}: {
  model: Model;
  resource: Obj;
  data: unknown[];
}) =>
  request(
    'PATCH',
    `${collectionPath(model, resource.metadata?.namespace)}/${resource.metadata?.name}`,
    data,
    'application/json-patch+json',
  );

/** `k8sList` (the SDK's k8sListResource): GET the collection with `queryParams` (`ns` picks the
 * namespace, a `labelSelector` object becomes its string form) and the caller's `requestInit`
 * headers; the items typed with the model's kind, `undefined` when the server sent `items: null`. */
export const k8sList = async ({
  model,
  queryParams = {},
  requestInit = {},
  raw = false,
}: {
  model: Model;
  queryParams?: Record<string, unknown>;
  requestInit?: { headers?: Record<string, string> };
  raw?: boolean;
}) => {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(queryParams)) {
    if (k === 'ns') continue;
    q.set(
      k,
      k === 'labelSelector' && typeof v === 'object' ? labelsString(v as Selector) : String(v),
    );
  }
  const ns = typeof queryParams.ns === 'string' ? queryParams.ns : undefined;
  const list = (await request(
    'GET',
    `${collectionPath(model, ns)}?${q}`,
    undefined,
    undefined,
    requestInit.headers,
  )) as {
    apiVersion?: string;
    items?: Obj[] | null;
  };
  const items = list.items?.map((i) => ({ kind: model.kind, apiVersion: list.apiVersion, ...i }));
  return raw ? { ...list, items } : items;
};

/** `k8sListItems`, as the SDK's (it fails on a list without items). */
export const k8sListItems = async (options: Parameters<typeof k8sList>[0]) => {
  const res = await k8sList(options);
  return Array.isArray(res) ? res : (res as { items: Obj[] }).items;
};

const labelsString = (s: Selector) =>
  Object.entries(s.matchLabels ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(',');

const selectorQuery = (r: WatchK8sResource) => {
  const q = new URLSearchParams();
  const labels = labelsString(r.selector ?? {});
  if (labels) q.set('labelSelector', labels);
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
    // A new resource: nothing loaded yet (never the previous resource's data).
    setState({ data: resource?.isList ? [] : undefined, loaded: false, error: undefined });
    if (!resource?.groupVersionKind) return undefined;
    const r = resource;
    const model = modelFor(resource.groupVersionKind);
    const base = collectionPath(model, r.namespace);
    const abort = new AbortController();
    let items = new Map<string, Obj>();
    const publish = () => {
      const list = [...items.values()].sort((a, b) =>
        (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? ''),
      );
      if (r.isList) setState({ data: list, loaded: true, error: undefined });
      else if (list.length) setState({ data: list[0], loaded: true, error: undefined });
      else
        setState({
          data: undefined,
          loaded: false,
          error: new HttpError(`${model.kind} "${r.name}" not found`, 404, undefined, {
            code: 404,
            reason: 'NotFound',
          }),
        });
    };
    const run = async () => {
      while (!abort.signal.aborted) {
        try {
          const q = selectorQuery(r);
          const list = (await request('GET', `${base}?${q}`)) as {
            items: Obj[];
            metadata: { resourceVersion: string };
          };
          items = new Map(
            list.items.map((o) => [
              o.metadata?.name ?? '',
              { ...o, apiVersion: o.apiVersion ?? model.apiVersion, kind: model.kind },
            ]),
          );
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
    return () => {
      abort.abort();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return [state.data as R, state.loaded, state.error];
}

/** The console's resource path: CRDs by `group~version~Kind`, built-in kinds by plural. */
const resourcePath = (m: Model, name: string, ns?: string) =>
  `/k8s/${m.namespaced && ns ? `ns/${ns}` : 'cluster'}/${m.crd ? referenceFor(m as never) : m.plural}/${encodeURIComponent(name)}`;

/** `ResourceLink`: the kind's badge and a link to the resource's details page. */
export const ResourceLink: React.FC<ResourceLinkProps> = ({
  kind,
  groupVersionKind,
  name = '',
  namespace,
  displayName,
  dataTest,
  nameSuffix,
  children,
  linkTo = true,
}) => {
  const model = groupVersionKind
    ? modelFor(groupVersionKind)
    : MODELS.find((m) => m.kind === kind || referenceFor(m as never) === kind);
  if (!model)
    throw new Error(
      `harness: ResourceLink for unknown kind ${kind ?? JSON.stringify(groupVersionKind)}`,
    );
  const label = displayName ?? name;
  return (
    <span className="co-resource-item" data-test-kind={model.kind}>
      <Tooltip content={model.kind}>
        <span
          className="co-m-resource-icon"
          data-test="resource-badge"
          // The console's badge look (its CSS is not loaded here).
          style={{
            background: 'var(--pf-t--global--color--brand--default)',
            color: 'var(--pf-t--global--text--color--on-brand--default)',
            borderRadius: '0.75rem',
            padding: '0 0.375rem',
            fontSize: '0.75rem',
          }}
        >
          {model.abbr}
        </span>
      </Tooltip>{' '}
      {linkTo ? (
        <Link
          to={resourcePath(model, name, namespace)}
          data-test-id={name}
          data-test={dataTest ?? name}
        >
          {label}
        </Link>
      ) : (
        <span data-test={dataTest ?? name}>{label}</span>
      )}
      {nameSuffix}
      {children}
    </span>
  );
};

/** `Timestamp`: the time, with the full date as a tooltip. */
export const Timestamp: React.FC<{ timestamp?: string }> = ({ timestamp }) => {
  if (!timestamp) return <>-</>;
  const d = new Date(timestamp);
  return (
    <Tooltip content={d.toISOString()}>
      <span className="co-timestamp" data-test="timestamp">
        <GlobeAmericasIcon /> {d.toLocaleString()}
      </span>
    </Tooltip>
  );
};

export { CodeEditor };

/** `ResourceYAMLEditor`, saving through this file's k8sCreate/k8sUpdate unless `onSave` is given. */
export const ResourceYAMLEditor: React.FC<ResourceYAMLEditorProps> = (props) => (
  <YAMLEditor
    {...props}
    save={(obj, create) => {
      const [group = '', version] = (obj.apiVersion ?? '').includes('/')
        ? (obj.apiVersion ?? '').split('/')
        : ['', obj.apiVersion];
      const model = modelFor({ group, version: version ?? '', kind: obj.kind ?? '' });
      return create
        ? k8sCreate({ model, data: obj as Obj })
        : k8sUpdate({ model, data: obj as Obj });
    }}
  />
);
