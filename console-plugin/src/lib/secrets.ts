// Secrets as the form sees them: names and annotations only. The plugin never asks for a Secret
// whose response could carry `data`: it lists them as PartialObjectMetadata. Pure.
import { ALLOWED_CONFIGS_ANNOTATION, type SecretMetadata } from '../models';

/** Accept header that makes the API server answer a list with PartialObjectMetadataList (no
 * `data`, no `type`: metadata only). */
export const METADATA_LIST_ACCEPT =
  'application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1';

/** The Secret types a push or pull Secret may have; Secrets' `type` is a field selector. */
export const DOCKER_SECRET_TYPES = [
  'kubernetes.io/dockerconfigjson',
  'kubernetes.io/dockercfg',
] as const;
export const typeSelector = (type: string) => `type=${type}`;

/** The MachineOSConfigs a Secret lets use it: the names of its annotation, `*` for all. */
export const allowedConfigs = (secret: SecretMetadata | undefined): string[] =>
  (secret?.metadata?.annotations?.[ALLOWED_CONFIGS_ANNOTATION] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** Whether Strata may use `secret` for MachineOSConfig `config` (the controller's `allows`). */
export const allowsConfig = (secret: SecretMetadata | undefined, config: string): boolean =>
  allowedConfigs(secret).some((a) => a === '*' || a === config);

/** The annotation value that would allow `config` too (what the Secret's owner sets). */
export const allowingValue = (secret: SecretMetadata | undefined, config: string): string =>
  [...allowedConfigs(secret), config].join(',');

const byName = (a: SecretMetadata, b: SecretMetadata) =>
  (a.metadata?.name ?? '').localeCompare(b.metadata?.name ?? '');

/** Names of the Secrets that allow `config`, sorted. */
export const secretsAllowing = (secrets: SecretMetadata[], config: string): string[] =>
  secrets
    .filter((s) => allowsConfig(s, config))
    .sort(byName)
    .map((s) => s.metadata?.name ?? '');
