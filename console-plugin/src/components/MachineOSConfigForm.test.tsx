import { render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter, Route, Routes } from 'react-router';
import { k8sCreate, watchResults } from '../__mocks__/dynamic-plugin-sdk';
import MachineOSConfigCreatePage from './MachineOSConfigForm';
import { NAME_MATCHES_POOL_MESSAGE, PUSH_SPEC_MESSAGE } from '../lib/crd-rules';

const renderForm = () =>
  render(
    <MemoryRouter initialEntries={['/new']}>
      <Routes>
        <Route path="/new" element={<MachineOSConfigCreatePage />} />
        <Route path="/k8s/cluster/:ref/:name" element={<div data-testid="details">details</div>} />
      </Routes>
    </MemoryRouter>,
  );

const byTest = (id: string) => document.querySelector(`[data-test="${id}"]`) as HTMLElement;

beforeEach(() => {
  k8sCreate.mockReset();
  watchResults.clear();
  watchResults.set('MachineConfigPool', [[{ metadata: { name: 'worker' } }, { metadata: { name: 'infra' } }], true, undefined]);
  watchResults.set('MachineOSConfig', [[{ metadata: { name: 'infra' }, spec: { machineConfigPool: { name: 'infra' } } }], true, undefined]);
  watchResults.set('Secret', [[{ metadata: { name: 'push' }, type: 'kubernetes.io/dockerconfigjson' }, { metadata: { name: 'opaque' }, type: 'Opaque' }], true, undefined]);
});

it('lists pools (marking taken ones), follows the pool with the name, and blocks invalid input', async () => {
  const user = userEvent.setup();
  renderForm();
  const poolSelect = byTest('field-pool') as HTMLSelectElement;
  const infra = within(poolSelect).getByRole('option', { name: 'infra (has a MachineOSConfig)' }) as HTMLOptionElement;
  expect(infra.disabled).toBe(true);
  await user.selectOptions(poolSelect, 'worker');
  expect(byTest('field-name')).toHaveValue('worker');
  // Only dockerconfig Secrets are suggested.
  expect([...byTest('options-pushSecret').querySelectorAll('option')].map((o) => o.value)).toEqual(['push']);

  await user.type(byTest('field-pushSpec'), 'nodot/x:latest');
  await user.click(byTest('submit'));
  expect(byTest('error-pushSpec')).toHaveTextContent(PUSH_SPEC_MESSAGE);
  expect(byTest('error-pushSecret')).toHaveTextContent('Required');
  expect(k8sCreate).not.toHaveBeenCalled();
});

it('sends the object, shows server causes next to their fields, and navigates on success', async () => {
  const user = userEvent.setup();
  renderForm();
  await user.selectOptions(byTest('field-pool'), 'worker');
  await user.clear(byTest('field-name'));
  await user.type(byTest('field-name'), 'other');
  await user.type(byTest('field-pushSpec'), 'registry.example.com/os/worker:latest');
  await user.type(byTest('field-pushSecret'), 'push');
  await user.type(byTest('fragment-0-content'), 'RUN true');
  k8sCreate.mockRejectedValueOnce(
    Object.assign(new Error('invalid'), {
      code: 422,
      json: { kind: 'Status', reason: 'Invalid', details: { causes: [{ field: '<nil>', message: `Invalid value: ${NAME_MATCHES_POOL_MESSAGE}` }] } },
    }),
  );
  await user.click(byTest('submit'));
  await waitFor(() => expect(byTest('error-name')).toHaveTextContent(NAME_MATCHES_POOL_MESSAGE));
  expect(k8sCreate.mock.calls[0][0].data).toMatchObject({
    metadata: { name: 'other' },
    spec: {
      machineConfigPool: { name: 'worker' },
      renderedImagePushSpec: 'registry.example.com/os/worker:latest',
      renderedImagePushSecret: { name: 'push' },
      containerFile: [{ containerfileArch: 'NoArch', content: 'RUN true' }],
    },
  });

  // Editing the field clears the server's message about it; a good object navigates to details.
  await user.clear(byTest('field-name'));
  await user.type(byTest('field-name'), 'worker');
  expect(byTest('error-name')).toBeNull();
  k8sCreate.mockImplementationOnce(async ({ data }) => data);
  await user.click(byTest('submit'));
  await screen.findByTestId('details');
});
