import * as React from 'react';
import { useTranslation } from 'react-i18next';
import { CodeEditor } from '@openshift-console/dynamic-plugin-sdk';
import { Button, FormSelect, FormSelectOption, Spinner } from '@patternfly/react-core';
import { ARCHES, type Arch } from '../../models';
import { freeArches, type Fragment } from '../../lib/form-state';
import type { FieldKey } from '../../lib/validation';
import { CONTAINERFILE_LANGUAGE } from '../shared';
import { FieldMessages } from './FieldMessages';
import type { FormModel } from './useFormState';

/** Containerfile fragment `i`: its architecture, a remove button, and its Containerfile editor. */
export const FragmentField: React.FC<{ form: FormModel; i: number; fragmentKeys: FieldKey[] }> = ({
  form: { state, shownClient, server, update },
  i,
  fragmentKeys,
}) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const f = state.fragments[i];
  const key = fragmentKeys[i];
  const options: Arch[] = [f.arch, ...freeArches(state.fragments)];
  const invalid = !!(shownClient(key) ?? server.fields[key]);
  const change = (patch: Partial<Fragment>) => {
    update({ fragments: state.fragments.map((g, j) => (j === i ? { ...g, ...patch } : g)) }, [key]);
  };
  return (
    <div className="strata-fragment" data-test={`fragment-${i}`}>
      <div className="strata-fragment__head">
        <FormSelect
          id={`strata-fragment-${i}-arch`}
          data-test={`fragment-${i}-arch`}
          aria-label={t('Architecture')}
          value={f.arch}
          onChange={(_e, v) => {
            change({ arch: v as Arch });
          }}
        >
          {ARCHES.filter((a) => options.includes(a)).map((a) => (
            <FormSelectOption
              key={a}
              value={a}
              label={a === 'NoArch' ? t('NoArch (any architecture)') : a}
            />
          ))}
        </FormSelect>
        <Button
          variant="link"
          isDanger
          data-test={`fragment-${i}-remove`}
          onClick={() => {
            update({ fragments: state.fragments.filter((_g, j) => j !== i) }, fragmentKeys);
          }}
        >
          {t('Remove')}
        </Button>
      </div>
      <div
        className={`strata-fragment__editor${invalid ? ' strata-fragment__editor--invalid' : ''}`}
        data-test={`fragment-${i}-content`}
        aria-label={t('Containerfile fragment {{n}}', { n: i + 1 })}
        role="group"
      >
        <React.Suspense fallback={<Spinner size="md" aria-label={t('Loading')} />}>
          <CodeEditor
            value={f.content}
            language={CONTAINERFILE_LANGUAGE}
            isFullHeight={false}
            height="12rem"
            isLanguageLabelVisible
            options={{
              minimap: { enabled: false },
              scrollBeyondLastLine: false,
              tabSize: 4,
            }}
            onChange={(v: string) => {
              change({ content: v });
            }}
          />
        </React.Suspense>
      </div>
      <FieldMessages id={key} client={shownClient(key)} server={server.fields[key]} />
    </div>
  );
};
