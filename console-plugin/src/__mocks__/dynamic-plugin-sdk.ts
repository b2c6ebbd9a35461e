// Unit-test stand-in for the console SDK (its runtime only exists inside the console). Tests set
// what the hooks return and inspect the calls through the vi.fn()s.
import { vi } from 'vitest';

export type WatchResult = [unknown, boolean, unknown];
export const watchResults = new Map<string, WatchResult>();
const keyOf = (r: { groupVersionKind?: { kind: string }; name?: string } | null) =>
  r ? `${r.groupVersionKind?.kind}${r.name ? `/${r.name}` : ''}` : '';

export const useK8sWatchResource = vi.fn((r: { groupVersionKind?: { kind: string }; name?: string; isList?: boolean } | null) =>
  watchResults.get(keyOf(r)) ?? [r?.isList ? [] : undefined, true, undefined],
);
export const k8sCreate = vi.fn();
export const k8sUpdate = vi.fn();
export const k8sPatch = vi.fn();
