import type * as React from 'react';
import { useNavigate } from 'react-router';
import { useTranslation } from 'react-i18next';
import { ActionGroup, Alert, Button } from '@patternfly/react-core';
import { hasErrors } from '../../lib/validation';
import type { FormModel } from './useFormState';

/** The form's buttons, with a reminder when the fields block the submit. */
export const SubmitBar: React.FC<{ form: FormModel; editing: boolean; submitting: boolean }> = ({
  form: { showClientErrors, clientErrors },
  editing,
  submitting,
}) => {
  const { t } = useTranslation('plugin__strata-console-plugin');
  const navigate = useNavigate();
  return (
    <>
      {showClientErrors && hasErrors(clientErrors) && (
        <Alert
          variant="warning"
          isInline
          isPlain
          title={t('Fix the highlighted fields')}
          data-test="client-errors"
        />
      )}
      <ActionGroup>
        <Button
          type="submit"
          variant="primary"
          data-test="submit"
          isLoading={submitting}
          isDisabled={submitting}
        >
          {editing ? t('Save') : t('Create')}
        </Button>
        <Button variant="link" data-test="cancel" onClick={() => void navigate(-1)}>
          {t('Cancel')}
        </Button>
      </ActionGroup>
    </>
  );
};
