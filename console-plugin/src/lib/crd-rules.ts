// The MachineOSConfig CRD's validation rules, mirrored for instant feedback in the form. The API
// server stays the authority. Patterns and messages are copied from crds/crds.yaml (generated from
// crds/src); crd-rules.test.ts reads that file and fails when they drift apart.
import { english, type Translate } from './i18n';

/** `spec.renderedImagePushSpec`: the regex of the CEL rule `self.matches('…')`. */
export const PUSH_SPEC_PATTERN =
  '^([a-zA-Z0-9-]+\\.)+[a-zA-Z0-9-]+(:[0-9]{2,5})?(/[a-zA-Z0-9-_]{1,61})*/[a-zA-Z0-9-_.]+:[a-zA-Z0-9._-]+$';
export const PUSH_SPEC_MESSAGE =
  'the OCI Image name should follow the host[:port][/namespace]/name format, resembling a valid URL without the scheme. Or it must be a valid .svc followed by a port, repository, image name, and tag.';
export const PUSH_SPEC_MAX_LENGTH = 447;

/** `spec.baseImage`: `self.split('@').size() == 2 && self.split('@')[1].matches(DIGEST_PATTERN)`. */
export const DIGEST_PATTERN = '^sha256:[a-f0-9]{64}$';
export const DIGEST_MESSAGE =
  "the OCI Image reference must end with a valid '@sha256:<digest>' suffix, where '<digest>' is 64 characters long";

/** Object references (`…Secret.name`, `machineConfigPool.name`): `format.dns1123Subdomain()`. */
export const DNS1123_SUBDOMAIN_PATTERN =
  '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
export const DNS1123_SUBDOMAIN_MAX_LENGTH = 253;
export const DNS1123_MESSAGE =
  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character.";

/** The object-level rule (no field path: the server reports it at `<nil>`). It has an update
 * exception (`optionalOldSelf`), so the form leaves it to the server and maps the message back. */
export const NAME_MATCHES_POOL_MESSAGE =
  'MachineOSConfig name must match the referenced MachineConfigPool name; can only have one MachineOSConfig per MachineConfigPool';

/** `spec.containerFile`: maxItems and each `content`'s maxLength (characters). */
export const MAX_CONTAINERFILES = 4;
export const MAX_CONTAINERFILE_LENGTH = 32768;

const pushSpecRe = new RegExp(PUSH_SPEC_PATTERN);
const digestRe = new RegExp(DIGEST_PATTERN);
const dnsRe = new RegExp(DNS1123_SUBDOMAIN_PATTERN);

/** CEL's `size()` and the schema's maxLength count characters (runes), not UTF-16 units. */
export const runeLength = (s: string): number => Array.from(s).length;

// The messages below go through `t` as literals (the extraction check reads them); in English they
// are the CRD's own (crd-rules.test.ts compares them with the constants above).

/** The CRD's message when `value` breaks a rule of `spec.renderedImagePushSpec`, else undefined. */
export function checkPushSpec(value: string, t: Translate = english): string | undefined {
  if (value.length === 0)
    return t('Required: where to push the built image, host[:port]/path/name:tag');
  if (runeLength(value) > PUSH_SPEC_MAX_LENGTH)
    return t('Too long: may not be more than {{max}} characters', { max: PUSH_SPEC_MAX_LENGTH });
  return pushSpecRe.test(value)
    ? undefined
    : t(
        'the OCI Image name should follow the host[:port][/namespace]/name format, resembling a valid URL without the scheme. Or it must be a valid .svc followed by a port, repository, image name, and tag.',
      );
}

/** `spec.baseImage` (optional; empty means the release base). */
export function checkBaseImage(value: string, t: Translate = english): string | undefined {
  if (value.length === 0) return undefined;
  if (runeLength(value) > PUSH_SPEC_MAX_LENGTH)
    return t('Too long: may not be more than {{max}} characters', { max: PUSH_SPEC_MAX_LENGTH });
  const parts = value.split('@');
  return parts.length === 2 && digestRe.test(parts[1])
    ? undefined
    : t(
        "the OCI Image reference must end with a valid '@sha256:<digest>' suffix, where '<digest>' is 64 characters long",
      );
}

/** An object name in a reference (required unless `optional`). */
export function checkReferenceName(
  value: string,
  optional = false,
  t: Translate = english,
): string | undefined {
  if (value.length === 0) return optional ? undefined : t('Required');
  if (value.length > DNS1123_SUBDOMAIN_MAX_LENGTH)
    return t('Too long: may not be more than {{max}} characters', {
      max: DNS1123_SUBDOMAIN_MAX_LENGTH,
    });
  return dnsRe.test(value)
    ? undefined
    : t(
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character.",
      );
}
