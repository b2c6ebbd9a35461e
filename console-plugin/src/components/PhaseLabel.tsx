import * as React from 'react';
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

export const PhaseLabel: React.FC<{ phase: Phase }> = ({ phase }) => (
  <Label color={COLORS[phase]} data-test="build-phase">
    {phase}
  </Label>
);
