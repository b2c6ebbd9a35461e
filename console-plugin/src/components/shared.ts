// What the MachineOSConfig form and the build views share (kept out of the form's module so that
// importing it does not pull in the form).
import type { CodeEditorProps } from '@openshift-console/dynamic-plugin-sdk';
import { MachineOSConfigModel, referenceFor } from '../models';

export const detailsHref = (name: string) =>
  `/k8s/cluster/${referenceFor(MachineOSConfigModel)}/${encodeURIComponent(name)}`;
export const editHref = (name: string) =>
  `/strata/machineosconfigs/${encodeURIComponent(name)}/edit`;

/** Monaco's language id for Containerfiles (the console bundles Monaco's `dockerfile` grammar).
 * PatternFly types it as its `Language` enum; importing the enum would bundle PatternFly's code
 * editor into the plugin, so the plain id is cast. */
// eslint-disable-next-line @typescript-eslint/no-unsafe-enum-assignment
export const CONTAINERFILE_LANGUAGE = 'dockerfile' as CodeEditorProps['language'];
