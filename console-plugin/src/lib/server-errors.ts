// The API server's rejection (a metav1.Status) -> messages per form field.
// The console's k8sCreate/k8sUpdate reject with an HttpError whose `json` is the Status body.
import { NAME_MATCHES_POOL_MESSAGE } from './crd-rules';
import type { FieldKey } from './validation';
import { english, type Translate } from './i18n';

export interface StatusCause {
  reason?: string;
  message?: string;
  field?: string;
}
export interface Status {
  kind?: string;
  status?: string;
  message?: string;
  reason?: string;
  code?: number;
  details?: { name?: string; kind?: string; causes?: StatusCause[] };
}

export interface ServerErrors {
  /** Messages shown next to a field. */
  fields: Partial<Record<FieldKey, string[]>>;
  /** Messages with no field of the form (shown above the buttons), each with its field path. */
  general: string[];
}

/** Any error as one line of text (an Error's message, a string, or the value as JSON). */
export const errorText = (e: unknown): string =>
  e instanceof Error ? e.message : typeof e === 'string' ? e : JSON.stringify(e);

/** The Status body carried by an error from the SDK's k8s calls, if any. */
export function statusOf(err: unknown): Status | undefined {
  if (!err || typeof err !== 'object') return undefined;
  const e = err as { json?: unknown; kind?: unknown };
  if (e.json && typeof e.json === 'object') return e.json;
  if (e.kind === 'Status') return e as Status;
  return undefined;
}

/** The form field a server field path (`spec.containerFile[1].content`, …) belongs to. */
export function fieldForPath(path: string | undefined, message = ''): FieldKey | undefined {
  const p = (path ?? '').trim();
  if (p === '' || p === '<nil>' || p === 'metadata') {
    // Object-level rules carry no path; the only one on MachineOSConfig is name == pool.
    return message.includes(NAME_MATCHES_POOL_MESSAGE) ? 'name' : undefined;
  }
  if (p === 'metadata.name') return 'name';
  if (/^spec\.machineConfigPool(\.name)?$/.test(p)) return 'pool';
  if (p === 'spec.renderedImagePushSpec') return 'pushSpec';
  if (/^spec\.renderedImagePushSecret(\.name)?$/.test(p)) return 'pushSecret';
  if (/^spec\.baseImagePullSecret(\.name)?$/.test(p)) return 'pullSecret';
  if (p === 'spec.baseImage') return 'baseImage';
  const m = /^spec\.containerFile\[(\d+)\]/.exec(p);
  if (m) return `fragments.${Number(m[1])}`;
  if (p === 'spec.containerFile') return 'fragments';
  return undefined;
}

export function serverErrors(err: unknown, t: Translate = english): ServerErrors {
  const out: ServerErrors = { fields: {}, general: [] };
  const add = (k: FieldKey, msg: string) => {
    (out.fields[k] ??= []).push(msg);
  };
  const status = statusOf(err);
  const causes = status?.details?.causes ?? [];
  for (const c of causes) {
    const msg = c.message ?? c.reason ?? t('invalid');
    const key = fieldForPath(c.field, msg);
    if (key) add(key, msg);
    else out.general.push(c.field && c.field !== '<nil>' ? `${c.field}: ${msg}` : msg);
  }
  if (causes.length === 0) {
    const msg =
      status?.message ??
      (err instanceof Error ? err.message : typeof err === 'string' ? err : t('Request failed'));
    if (status?.reason === 'AlreadyExists') add('name', msg);
    else out.general.push(msg);
  }
  return out;
}
