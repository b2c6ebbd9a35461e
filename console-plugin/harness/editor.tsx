// The console's code editors for the harness, built the way the console builds them
// (console-shared's BasicCodeEditor/CodeEditor and public/components/edit-yaml.tsx): PatternFly's
// CodeEditor on Monaco from npm (never a CDN), Monaco's yaml/dockerfile/json grammars bundled by
// monaco-editor-webpack-plugin with `globalAPI` (window.monaco), as in the console's webpack config.
// Not reproduced: the console's monaco-yaml schema completion and its YAML sidebar.
import * as React from 'react';
import { loader } from '@monaco-editor/react';
import * as monaco from 'monaco-editor';
import { CodeEditor as PfCodeEditor, Language } from '@patternfly/react-code-editor';
import { ActionGroup, Alert, Button, Title } from '@patternfly/react-core';
import { dump, load } from 'js-yaml';
import { useNavigate } from 'react-router';
import type {
  CodeEditorProps,
  CodeEditorRef,
  K8sResourceCommon,
  ResourceYAMLEditorProps,
} from '@openshift-console/dynamic-plugin-sdk';

// Avoid Monaco from a CDN, as the console does.
loader.config({ monaco });
// The console exposes window.monaco (monaco-editor-webpack-plugin `globalAPI`); so does the harness,
// explicitly: the browser tests read the editors' models through it.
(window as unknown as { monaco: typeof monaco }).monaco = monaco;

const defaultEditorOptions = { readOnly: false, scrollBeyondLastLine: false };

/** The SDK's `CodeEditor`. */
export const CodeEditor = React.forwardRef<CodeEditorRef | undefined, CodeEditorProps>(
  (props, ref) => {
    const {
      value,
      minHeight,
      showShortcuts: _s,
      toolbarLinks: _l,
      shortcutsPopoverProps: _p,
      onSave,
      options,
      language,
      onEditorDidMount,
      ...rest
    } = props;
    const [refs, setRefs] = React.useState<{
      editor?: monaco.editor.IStandaloneCodeEditor;
      monaco?: typeof monaco;
    }>({});
    React.useImperativeHandle(
      ref,
      () => (refs.editor && refs.monaco ? { editor: refs.editor, monaco: refs.monaco } : undefined),
      [refs],
    );
    return (
      <div
        style={{
          minHeight,
          width: '100%',
          ...(props.isFullHeight === false
            ? {}
            : { flex: 1, display: 'flex', flexDirection: 'column', minHeight: 0 }),
        }}
        className="ocs-yaml-editor-wrapper"
      >
        <PfCodeEditor
          {...rest}
          language={language ?? Language.yaml}
          code={value}
          options={{ ...defaultEditorOptions, ...options }}
          isFullHeight={props.isFullHeight ?? true}
          onEditorDidMount={(editor, m) => {
            setRefs({ editor, monaco: m });
            editor.getModel()?.updateOptions({ tabSize: 2 });
            editor.layout();
            if (onSave) editor.addCommand(m.KeyMod.CtrlCmd | m.KeyCode.KeyS, onSave);
            onEditorDidMount?.(editor, m);
          }}
        />
      </div>
    );
  },
);
CodeEditor.displayName = 'CodeEditor';

/** The SDK's `ResourceYAMLEditor` (the console's EditYAML, single resource): Create (create mode)
 * or Save/Reload, Cancel; `onSave` receives the editor's text instead of the built-in save. */
export const ResourceYAMLEditor: React.FC<
  ResourceYAMLEditorProps & {
    save: (obj: K8sResourceCommon, create: boolean) => Promise<unknown>;
  }
> = ({ initialResource, header, onSave, readOnly, create, onChange, hideHeader, save }) => {
  const navigate = useNavigate();
  const editorRef = React.useRef<CodeEditorRef>(undefined);
  const [error, setError] = React.useState<string>();
  const initial = React.useMemo(() => dump(initialResource, { lineWidth: -1 }), [initialResource]);
  const doSave = () => {
    const text = editorRef.current?.editor.getValue() ?? '';
    setError(undefined);
    if (onSave) {
      onSave(text);
      return;
    }
    try {
      save(load(text) as K8sResourceCommon, !!create).catch((e: unknown) => {
        setError(String(e));
      });
    } catch (e) {
      setError(`Error parsing YAML: ${String(e)}`);
    }
  };
  return (
    // Like the console's EditYAML: a column filling its parent, the editor taking what is left.
    <div
      style={{ display: 'flex', flexDirection: 'column', flex: 1, minHeight: 0, height: '100%' }}
    >
      {(header ?? create) && !hideHeader && <Title headingLevel="h1">{header}</Title>}
      <div
        className="yaml-editor"
        data-test="yaml-editor"
        style={{ flex: 1, minHeight: '10rem', display: 'flex', flexDirection: 'column' }}
      >
        <CodeEditor
          ref={editorRef}
          value={initial}
          language={Language.yaml}
          options={{ readOnly }}
          showShortcuts
          isCopyEnabled
          onChange={(v: string) => onChange?.(v)}
          onSave={doSave}
        />
      </div>
      {error && (
        <Alert isInline variant="danger" title="An error occurred" data-test="yaml-error">
          {error}
        </Alert>
      )}
      <ActionGroup className="pf-v6-c-form__group--no-top-margin">
        {create && (
          <Button
            type="submit"
            variant="primary"
            id="save-changes"
            data-test="save-changes"
            onClick={doSave}
          >
            Create
          </Button>
        )}
        {!create && !readOnly && (
          <Button
            type="submit"
            variant="primary"
            id="save-changes"
            data-test="save-changes"
            onClick={doSave}
          >
            Save
          </Button>
        )}
        {!create && (
          <Button
            type="submit"
            variant="secondary"
            id="reload-object"
            data-test="reload-object"
            onClick={() => editorRef.current?.editor.setValue(initial)}
          >
            Reload
          </Button>
        )}
        <Button
          variant="secondary"
          id="cancel"
          data-test="cancel"
          onClick={() => void navigate(-1)}
        >
          Cancel
        </Button>
      </ActionGroup>
    </div>
  );
};
