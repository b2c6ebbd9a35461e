import * as React from 'react';
import { useTranslation } from 'react-i18next';
import { load as loadYaml } from 'js-yaml';
import { MachineOSConfigModel, type MachineOSConfigKind } from '../../models';
import { errorText } from '../../lib/server-errors';
import type { FormModel } from './useFormState';

export type View = 'form' | 'yaml';

export interface YamlViewModel {
  view: View;
  /** The object the YAML view opened with. */
  yamlStart?: MachineOSConfigKind;
  /** Why the YAML view's text is not a MachineOSConfig. */
  yamlError?: string;
  /** The YAML view's text as edited. */
  setYamlText: (text: string) => void;
  toYaml: () => void;
  /** Back to the form with the YAML view's object (stays when the text does not parse). */
  toForm: () => void;
  /** Parse the YAML view's text (or, untouched, the object it opened with). */
  parseYaml: (text?: string) => MachineOSConfigKind | undefined;
}

/** The switch between the form and the YAML view, each taking over what the other holds. */
export const useYamlView = (form: FormModel): YamlViewModel => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const [view, setView] = React.useState<View>('form');
  const [yamlStart, setYamlStart] = React.useState<MachineOSConfigKind>();
  const [yamlText, setYamlText] = React.useState<string>();
  const [yamlError, setYamlError] = React.useState<string>();

  const toYaml = () => {
    setYamlStart(form.toObject());
    setYamlText(undefined);
    setYamlError(undefined);
    setView('yaml');
  };

  const parseYaml = (text = yamlText): MachineOSConfigKind | undefined => {
    if (text === undefined) return yamlStart;
    try {
      const obj = loadYaml(text) as MachineOSConfigKind | null;
      if (!obj || typeof obj !== 'object' || Array.isArray(obj))
        throw new Error(t('The YAML must be one object'));
      if (obj.kind !== MachineOSConfigModel.kind)
        throw new Error(t('kind must be MachineOSConfig'));
      setYamlError(undefined);
      return obj;
    } catch (e) {
      setYamlError(errorText(e));
      return undefined;
    }
  };

  const toForm = () => {
    const obj = parseYaml();
    if (!obj) return;
    form.load(obj);
    setView('form');
  };

  return { view, yamlStart, yamlError, setYamlText, toYaml, toForm, parseYaml };
};
