import { render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter, Route, Routes } from 'react-router';
import { k8sCreate, k8sList, watchResults } from '../testing/sdk';
import { METADATA_LIST_ACCEPT } from '../lib/secrets';
import MachineOSConfigCreatePage from './MachineOSConfigForm';
import { NAME_MATCHES_POOL_MESSAGE, PUSH_SPEC_MESSAGE } from '../lib/crd-rules';

const renderForm = () =>
  render(
    <MemoryRouter initialEntries={['/new']}>
      <Routes>
        <Route path="/new" element={<MachineOSConfigCreatePage />} />
        <Route path="/k8s/cluster/:ref/:name" element={<div data-test="details">details</div>} />
      </Routes>
    </MemoryRouter>,
  );

// data-test is the test id attribute (test-setup.ts), as in the browser tests.
const byTest = (id: string) => screen.getByTestId(id);
const maybeTest = (id: string) => screen.queryByTestId(id);
/** The editor inside a wrapper (a textarea in unit tests, Monaco in the browser). */
const editorIn = (id: string) => within(byTest(id)).getByRole('textbox');

interface ListArg {
  queryParams: { fieldSelector?: string };
  requestInit?: { headers?: Record<string, string> };
}
const SECRETS = [
  {
    metadata: { name: 'push', annotations: { 'strata.dev/allowed-machine-os-configs': 'worker' } },
  },
  { metadata: { name: 'opaque', annotations: { 'strata.dev/allowed-machine-os-configs': '*' } } },
  { metadata: { name: 'other' } },
];

beforeEach(() => {
  k8sCreate.mockReset();
  watchResults.clear();
  watchResults.set('MachineConfigPool', [
    [{ metadata: { name: 'worker' } }, { metadata: { name: 'infra' } }],
    true,
    undefined,
  ]);
  watchResults.set('MachineOSConfig', [
    [{ metadata: { name: 'infra' }, spec: { machineConfigPool: { name: 'infra' } } }],
    true,
    undefined,
  ]);
  k8sList.mockReset();
  // Metadata only: the dockerconfigjson field selector answers `push` and `other`.
  k8sList.mockImplementation((options: unknown) => {
    const arg = options as ListArg;
    return Promise.resolve(
      arg.queryParams.fieldSelector === 'type=kubernetes.io/dockerconfigjson'
        ? SECRETS.filter((s) => s.metadata.name !== 'opaque')
        : arg.queryParams.fieldSelector
          ? undefined // what the SDK returns for an empty PartialObjectMetadataList (items: null)
          : SECRETS,
    );
  });
});

it('lists pools (marking taken ones), follows the pool with the name, and blocks invalid input', async () => {
  const user = userEvent.setup();
  renderForm();
  const poolSelect = byTest('field-pool');
  const infra = within(poolSelect).getByRole('option', { name: 'infra (has a MachineOSConfig)' });
  expect(infra).toBeDisabled();
  await user.selectOptions(poolSelect, 'worker');
  expect(byTest('field-name')).toHaveValue('worker');
  // Only dockerconfig Secrets are suggested, listed as metadata (never with their data).
  await waitFor(() => {
    expect(
      within(byTest('options-pushSecret'))
        .getAllByRole('option', { hidden: true })
        .map((o) => o.getAttribute('value')),
    ).toEqual(['other', 'push']);
  });
  for (const [arg] of k8sList.mock.calls as unknown as [ListArg][])
    expect(arg.requestInit?.headers?.Accept).toBe(METADATA_LIST_ACCEPT);
  // A Secret that does not allow this MachineOSConfig warns; one that does, not.
  await user.type(byTest('field-pushSecret'), 'other');
  expect(byTest('warning-pushSecret')).toHaveTextContent('does not allow MachineOSConfig worker');
  await user.clear(byTest('field-pushSecret'));
  await user.type(byTest('field-pushSecret'), 'push');
  expect(maybeTest('warning-pushSecret')).toBeNull();
  await user.click(
    screen.getByRole('button', { name: 'Show the Secrets that allow this MachineOSConfig' }),
  );
  expect(byTest('allowed-secrets')).toHaveTextContent('opaquepush');
  await user.clear(byTest('field-pushSecret'));

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
  await user.type(editorIn('fragment-0-content'), 'RUN true');
  k8sCreate.mockRejectedValueOnce(
    Object.assign(new Error('invalid'), {
      code: 422,
      json: {
        kind: 'Status',
        reason: 'Invalid',
        details: {
          causes: [{ field: '<nil>', message: `Invalid value: ${NAME_MATCHES_POOL_MESSAGE}` }],
        },
      },
    }),
  );
  await user.click(byTest('submit'));
  await waitFor(() => {
    expect(byTest('error-name')).toHaveTextContent(NAME_MATCHES_POOL_MESSAGE);
  });
  expect((k8sCreate.mock.calls[0][0] as { data: unknown }).data).toMatchObject({
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
  expect(maybeTest('error-name')).toBeNull();
  k8sCreate.mockImplementationOnce(({ data }: { data: unknown }) => Promise.resolve(data));
  await user.click(byTest('submit'));
  await screen.findByTestId('details');
});

it('the YAML view is the SDK ResourceYAMLEditor; its Create sends the edited text', async () => {
  const user = userEvent.setup();
  renderForm();
  await user.selectOptions(byTest('field-pool'), 'worker');
  await user.click(screen.getByRole('button', { name: 'YAML view' }));
  const editor = within(byTest('yaml-view')).getByRole('textbox');
  const obj = JSON.parse((editor as HTMLTextAreaElement).value) as {
    spec: Record<string, unknown>;
  };
  expect(obj).toMatchObject({ kind: 'MachineOSConfig', metadata: { name: 'worker' } });
  obj.spec.renderedImagePushSpec = 'registry.example.com/os/worker:yaml';
  await user.clear(editor);
  await user.click(editor);
  await user.paste(JSON.stringify(obj));
  k8sCreate.mockImplementationOnce(({ data }: { data: unknown }) => Promise.resolve(data));
  await user.click(byTest('save-changes'));
  await screen.findByTestId('details');
  expect((k8sCreate.mock.calls[0][0] as { data: unknown }).data).toMatchObject({
    spec: { renderedImagePushSpec: 'registry.example.com/os/worker:yaml' },
  });
});
