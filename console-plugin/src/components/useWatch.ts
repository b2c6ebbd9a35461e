import {
  useK8sWatchResource,
  type K8sResourceCommon,
  type WatchK8sResource,
} from '@openshift-console/dynamic-plugin-sdk';

/** `useK8sWatchResource` for a list, its load error typed `unknown` rather than `any`. */
export const useWatchList = <R extends K8sResourceCommon>(
  resource: (WatchK8sResource & { isList: true }) | null,
): [R[], boolean, unknown] => {
  const result: [R[], boolean, unknown] = useK8sWatchResource<R[]>(resource);
  return result;
};

/** `useK8sWatchResource` for one object: undefined until loaded (or when it does not exist). */
export const useWatchObject = <R extends K8sResourceCommon>(
  resource: WatchK8sResource | null,
): [R | undefined, boolean, unknown] => {
  const result: [R | undefined, boolean, unknown] = useK8sWatchResource<R>(resource);
  return result;
};
