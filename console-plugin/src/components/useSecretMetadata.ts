import * as React from 'react';
import { k8sList } from '@openshift-console/dynamic-plugin-sdk';
import { SecretModel, type SecretMetadata } from '../models';
import { DOCKER_SECRET_TYPES, METADATA_LIST_ACCEPT, typeSelector } from '../lib/secrets';

/** How often the lists are read again while the form is open (a watch cannot ask for metadata
 * only through the SDK, and a Secret may be created while the form is open). */
const REFRESH_MS = 15_000;

export interface SecretMetadataState {
  /** Every Secret of the namespace (metadata only). */
  all: SecretMetadata[];
  /** Names of the dockerconfigjson / dockercfg Secrets. */
  dockerNames: Set<string>;
  loaded: boolean;
  error?: unknown;
}

const listMetadata = async (
  namespace: string,
  fieldSelector?: string,
): Promise<SecretMetadata[]> => {
  // Widened: an empty PartialObjectMetadataList has `items: null`, which the SDK's list turns
  // into undefined (k8sListItems would throw on it).
  const list = (await k8sList<SecretMetadata>({
    model: SecretModel,
    queryParams: { ns: namespace, ...(fieldSelector ? { fieldSelector } : {}) },
    // The API server then answers PartialObjectMetadataList: names and annotations, no data.
    requestInit: { headers: { Accept: METADATA_LIST_ACCEPT } },
  })) as SecretMetadata[] | { items?: SecretMetadata[] | null } | undefined;
  return Array.isArray(list) ? list : (list?.items ?? []);
};

/** The Secrets of `namespace` as PartialObjectMetadata, read again every 15 s. */
export const useSecretMetadata = (namespace: string): SecretMetadataState => {
  const [state, setState] = React.useState<SecretMetadataState>({
    all: [],
    dockerNames: new Set(),
    loaded: false,
  });
  React.useEffect(() => {
    let live = true;
    const read = async () => {
      try {
        const [all, ...typed] = await Promise.all([
          listMetadata(namespace),
          ...DOCKER_SECRET_TYPES.map((type) => listMetadata(namespace, typeSelector(type))),
        ]);
        const dockerNames = new Set(typed.flat().map((s) => s.metadata?.name ?? ''));
        if (live) setState({ all, dockerNames, loaded: true });
      } catch (error) {
        if (live) setState((s) => ({ ...s, loaded: true, error }));
      }
    };
    void read();
    const timer = setInterval(() => void read(), REFRESH_MS);
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [namespace]);
  return state;
};
