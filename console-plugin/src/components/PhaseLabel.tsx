import type * as React from 'react';
import { useTranslation } from 'react-i18next';
import { Label } from '@patternfly/react-core';
import type { Phase } from '../lib/build';

const COLORS: Record<Phase, React.ComponentProps<typeof Label>['color']> = {
  Pending: 'grey',
  Prepared: 'blue',
  Building: 'blue',
  Succeeded: 'green',
  Failed: 'red',
  Interrupted: 'orange',
};

export const PhaseLabel: React.FC<{ phase: Phase }> = ({ phase }) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  // The phases by name, so that the extraction check sees every label.
  const text: Record<Phase, string> = {
    Pending: t('Pending'),
    Prepared: t('Prepared'),
    Building: t('Building'),
    Succeeded: t('Succeeded'),
    Failed: t('Failed'),
    Interrupted: t('Interrupted'),
  };
  return (
    <Label color={COLORS[phase]} data-test="build-phase" data-phase={phase}>
      {text[phase]}
    </Label>
  );
};
