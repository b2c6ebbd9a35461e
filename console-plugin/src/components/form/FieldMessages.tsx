import type * as React from 'react';
import { FormHelperText, HelperText, HelperTextItem } from '@patternfly/react-core';
import type { FieldKey } from '../../lib/validation';

/** One field's messages: the client-side check first, then the API server's. */
export const FieldMessages: React.FC<{
  id: FieldKey;
  client?: string;
  server?: string[];
  helper?: React.ReactNode;
  warning?: string;
}> = ({ id, client, server, helper, warning }) => {
  const errors = [...(client ? [client] : []), ...(server ?? [])];
  if (errors.length === 0 && !helper && !warning) return null;
  return (
    <FormHelperText>
      <HelperText>
        {errors.map((e, i) => (
          <HelperTextItem key={i} variant="error" data-test={`error-${id}`}>
            {e}
          </HelperTextItem>
        ))}
        {errors.length === 0 && warning && (
          <HelperTextItem variant="warning" data-test={`warning-${id}`}>
            {warning}
          </HelperTextItem>
        )}
        {errors.length === 0 && helper && <HelperTextItem>{helper}</HelperTextItem>}
      </HelperText>
    </FormHelperText>
  );
};
