// A tiny stand-in for the OpenShift console: it reads console-extensions.json and mounts the
// plugin's exposed components at the console's URLs (hash-routed: kubectl proxy serves files only):
//   #/k8s/cluster/<group~version~Kind>            list (names, links)
//   #/k8s/cluster/<ref>/~new                       console.resource/create
//   #/k8s/cluster/<ref>/<name>[/<tab>]              details: YAML + console.tab/horizontalNav tabs + actions
//   #<console.page/route path>                      console.page/route
// The SDK calls go to the real API server (see sdk.tsx).
import * as React from 'react';
import { createRoot } from 'react-dom/client';
import { HashRouter, Link, Route, Routes, useNavigate, useParams } from 'react-router';
import { createInstance } from 'i18next';
import { initReactI18next } from 'react-i18next';
import { dump } from 'js-yaml';
import {
  Button,
  CodeBlock,
  CodeBlockCode,
  Content,
  PageSection,
  Tab,
  Tabs,
  TabTitleText,
  Title,
} from '@patternfly/react-core';
import '@patternfly/react-core/dist/styles/base.css';
import '@patternfly/react-styles/css/components/Table/table.css';
import extensions from '../console-extensions.json';
import pkg from '../package.json';
import * as MachineOSConfigForm from '../src/components/MachineOSConfigForm';
import * as BuildsTab from '../src/components/BuildsTab';
import * as BuildDetails from '../src/components/BuildDetails';
import * as actions from '../src/components/actions';
import { useK8sWatchResource } from './sdk';
import { MachineOSBuildModel, MachineOSConfigModel, referenceFor } from '../src/models';

import locale from '../locales/en/plugin__strata-console-plugin.json';

// The console's i18n setup (keys are the English text, `~` separates the namespace), loaded with
// the plugin's locale file. A key the file lacks is recorded in window.__strataMissingKeys: the
// browser tests fail on any (every visible string must be in the locale file).
declare global {
  interface Window {
    __strataMissingKeys: string[];
  }
}
window.__strataMissingKeys = [];
const I18N_NS = 'plugin__strata-console-plugin';
void createInstance()
  .use(initReactI18next)
  .init({
    lng: 'en',
    fallbackLng: 'en',
    ns: [I18N_NS],
    resources: { en: { [I18N_NS]: locale } },
    nsSeparator: '~',
    keySeparator: false,
    interpolation: { escapeValue: false },
    saveMissing: true,
    missingKeyHandler: (_lngs, ns, key) => {
      window.__strataMissingKeys.push(`${ns}~${key}`);
    },
    showSupportNotice: false,
  });

/** The exposed modules, by the names package.json#consolePlugin.exposedModules gives them. */
const MODULES: Record<string, Record<string, unknown>> = {
  MachineOSConfigForm,
  BuildsTab,
  BuildDetails,
  actions,
};
const exposed = Object.keys(pkg.consolePlugin.exposedModules);
if (exposed.sort().join() !== Object.keys(MODULES).sort().join())
  throw new Error(
    `harness: exposed modules ${exposed} differ from the harness's ${Object.keys(MODULES)}`,
  );

/** Resolve a `$codeRef` ("Module" or "Module.export") as the console does. */
const codeRef = (ref: string): any => {
  const [mod, name = 'default'] = ref.split('.');
  const v = MODULES[mod]?.[name];
  if (v === undefined) throw new Error(`harness: unresolved $codeRef ${ref}`);
  return v;
};

interface Ext {
  type: string;
  properties: any;
}
const EXT = extensions as Ext[];
const modelRef = (m: { group: string; version: string; kind: string }) =>
  `${m.group}~${m.version}~${m.kind}`;
const MODELS = [MachineOSConfigModel, MachineOSBuildModel];
const modelOf = (ref: string) => MODELS.find((m) => referenceFor(m) === ref);
const gvkOf = (ref: string) => {
  const [group, version, kind] = ref.split('~');
  return { group, version, kind };
};

const ListPage: React.FC = () => {
  const { ref = '' } = useParams();
  const [items, loaded] = useK8sWatchResource<any[]>({
    groupVersionKind: gvkOf(ref),
    isList: true,
  });
  const canCreate = EXT.some(
    (e) => e.type === 'console.resource/create' && modelRef(e.properties.model) === ref,
  );
  return (
    <PageSection>
      <Title headingLevel="h1">{modelOf(ref)?.labelPlural ?? ref}</Title>
      {canCreate && <Link to={`/k8s/cluster/${ref}/~new`}>Create</Link>}
      <ul data-test="list">
        {loaded &&
          items.map((o) => (
            <li key={o.metadata.name}>
              <Link to={`/k8s/cluster/${ref}/${o.metadata.name}`}>{o.metadata.name}</Link>
            </li>
          ))}
      </ul>
    </PageSection>
  );
};

const CreatePage: React.FC = () => {
  const { ref = '' } = useParams();
  const ext = EXT.find(
    (e) => e.type === 'console.resource/create' && modelRef(e.properties.model) === ref,
  );
  if (!ext) return <PageSection>Create YAML (no plugin form for {ref})</PageSection>;
  // The exposed modules are static, so the component is too (createElement: no new type per render).
  return React.createElement(codeRef(ext.properties.component.$codeRef));
};

const Actions: React.FC<{ useProvider: (o: any) => [any[], boolean, unknown]; obj: any }> = ({
  useProvider,
  obj,
}) => {
  const navigate = useNavigate();
  const [list] = useProvider(obj);
  return (
    <>
      {list.map((a) => (
        <Button
          key={a.id}
          variant="secondary"
          data-test={`action-${a.id}`}
          isDisabled={a.disabled}
          onClick={() => (typeof a.cta === 'function' ? a.cta() : navigate(a.cta.href))}
        >
          {a.label}
        </Button>
      ))}
    </>
  );
};

/** A new details page per resource, as the console mounts one (no state from the previous one). */
const FreshDetailsPage: React.FC = () => {
  const { ref = '', name = '' } = useParams();
  return <DetailsPage key={`${ref}/${name}`} />;
};

const DetailsPage: React.FC = () => {
  const { ref = '', name = '', tab = '' } = useParams();
  const navigate = useNavigate();
  const [obj, loaded, error] = useK8sWatchResource<any>({ groupVersionKind: gvkOf(ref), name });
  const tabs = EXT.filter(
    (e) => e.type === 'console.tab/horizontalNav' && modelRef(e.properties.model) === ref,
  );
  const providers = EXT.filter(
    (e) => e.type === 'console.action/resource-provider' && modelRef(e.properties.model) === ref,
  );
  if (error && !loaded)
    return <PageSection data-test="details-error">{String(error.message)}</PageSection>;
  if (!obj) return <PageSection>Loading</PageSection>;
  const active = tab || 'details';
  return (
    <PageSection data-test="details-page">
      <Title headingLevel="h1" data-test="details-title">
        {modelOf(ref)?.label} {name}
      </Title>
      {providers.map((p, i) => (
        <Actions key={i} useProvider={codeRef(p.properties.provider.$codeRef)} obj={obj} />
      ))}
      <Tabs
        activeKey={active}
        onSelect={(_e, k) =>
          navigate(`/k8s/cluster/${ref}/${name}${k === 'details' ? '' : `/${k}`}`)
        }
      >
        {[
          <Tab
            key="details"
            eventKey="details"
            title={<TabTitleText>Details</TabTitleText>}
            data-test="tab-details"
          >
            <CodeBlock>
              <CodeBlockCode data-test="details-yaml">{dump(obj, { lineWidth: -1 })}</CodeBlockCode>
            </CodeBlock>
          </Tab>,
          ...tabs.map((t) => {
            const href: string = t.properties.page.href;
            return (
              <Tab
                key={href}
                eventKey={href}
                title={
                  <TabTitleText>
                    {t.properties.page.name.replace(/^%[^~]*~(.*)%$/, '$1')}
                  </TabTitleText>
                }
                data-test={`tab-${href}`}
              >
                {active === href &&
                  React.createElement(codeRef(t.properties.component.$codeRef), { obj })}
              </Tab>
            );
          }),
        ]}
      </Tabs>
    </PageSection>
  );
};

const Home: React.FC = () => (
  <PageSection>
    <Title headingLevel="h1">Strata console plugin harness</Title>
    <Content component="p">
      {pkg.consolePlugin.displayName} {pkg.consolePlugin.version}: pages mounted from
      console-extensions.json.
    </Content>
    <ul>
      {EXT.filter((e) => e.type === 'console.navigation/resource-cluster').map((e) => (
        <li key={e.properties.id}>
          <Link to={`/k8s/cluster/${modelRef(e.properties.model)}`}>
            {e.properties.name.replace(/^%[^~]*~(.*)%$/, '$1')}
          </Link>
        </li>
      ))}
    </ul>
  </PageSection>
);

const pageRoutes = EXT.filter((e) => e.type === 'console.page/route');

const App: React.FC = () => (
  <HashRouter>
    <Routes>
      <Route path="/" element={<Home />} />
      {pageRoutes.map((e) => {
        return (
          <Route
            key={e.properties.path}
            path={e.properties.path}
            element={React.createElement(codeRef(e.properties.component.$codeRef))}
          />
        );
      })}
      <Route path="/k8s/cluster/:ref" element={<ListPage />} />
      <Route path="/k8s/cluster/:ref/~new" element={<CreatePage />} />
      <Route path="/k8s/cluster/:ref/:name" element={<FreshDetailsPage />} />
      <Route path="/k8s/cluster/:ref/:name/:tab" element={<FreshDetailsPage />} />
    </Routes>
  </HashRouter>
);

const root = document.getElementById('root');
if (!root) throw new Error('harness: no #root');
createRoot(root).render(<App />);
