// Unit-test stand-in for the console SDK (its runtime only exists inside the console). Tests set
// what the hooks return and inspect the calls through the vi.fn()s. The editors are plain
// textareas here: Monaco runs in the browser tests (harness/sdk.tsx), not in jsdom.
import * as React from 'react';
import { vi } from 'vitest';

export type WatchResult = [unknown, boolean, unknown];
export const watchResults = new Map<string, WatchResult>();
type WatchArg = { groupVersionKind?: { kind: string }; name?: string; isList?: boolean } | null;
const keyOf = (r: WatchArg) =>
  r ? `${r.groupVersionKind?.kind ?? ''}${r.name ? `/${r.name}` : ''}` : '';

export const useK8sWatchResource = vi.fn(
  (r: WatchArg): WatchResult =>
    watchResults.get(keyOf(r)) ?? [r?.isList ? [] : undefined, true, undefined],
);
export const k8sCreate = vi.fn();
export const k8sUpdate = vi.fn();
export const k8sPatch = vi.fn();
export const k8sList = vi.fn((_options: unknown): Promise<unknown[] | undefined> =>
  Promise.resolve([]),
);

interface EditorProps {
  value?: string;
  onChange?: (v: string) => void;
  options?: { readOnly?: boolean };
}
export const CodeEditor: React.FC<EditorProps> = ({ value, onChange, options }) => (
  <textarea
    value={value}
    readOnly={options?.readOnly}
    onChange={(e) => onChange?.(e.target.value)}
  />
);

export const ResourceYAMLEditor: React.FC<{
  initialResource: unknown;
  onChange?: (v: string) => void;
  onSave?: (v: string) => void;
  create?: boolean;
}> = ({ initialResource, onChange, onSave, create }) => {
  const [text, setText] = React.useState(() => JSON.stringify(initialResource, null, 2));
  return (
    <>
      <textarea
        data-test="yaml-editor"
        value={text}
        onChange={(e) => {
          setText(e.target.value);
          onChange?.(e.target.value);
        }}
      />
      <button type="button" data-test="save-changes" onClick={() => onSave?.(text)}>
        {create ? 'Create' : 'Save'}
      </button>
    </>
  );
};

export const ResourceLink: React.FC<{
  name?: string;
  dataTest?: string;
  nameSuffix?: React.ReactNode;
}> = ({ name, dataTest, nameSuffix }) => (
  <span data-test={dataTest}>
    {name}
    {nameSuffix}
  </span>
);

export const Timestamp: React.FC<{ timestamp?: string }> = ({ timestamp }) => (
  <span>{timestamp}</span>
);
