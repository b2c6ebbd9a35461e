import { allowedConfigs, allowingValue, allowsConfig, secretsAllowing } from './secrets';
import { ALLOWED_CONFIGS_ANNOTATION } from '../models';

const secret = (name: string, allowed?: string) => ({
  metadata: {
    name,
    ...(allowed === undefined ? {} : { annotations: { [ALLOWED_CONFIGS_ANNOTATION]: allowed } }),
  },
});

describe('the allowed-machine-os-configs annotation', () => {
  it('is a comma-separated list of names or *', () => {
    expect(allowedConfigs(secret('a', ' worker , infra,'))).toEqual(['worker', 'infra']);
    expect(allowsConfig(secret('a', 'worker,infra'), 'infra')).toBe(true);
    expect(allowsConfig(secret('a', 'worker'), 'work')).toBe(false);
    expect(allowsConfig(secret('a', '*'), 'anything')).toBe(true);
    expect(allowsConfig(secret('a'), 'worker')).toBe(false);
    expect(allowsConfig(undefined, 'worker')).toBe(false);
  });
  it('tells the value that would allow a config, and which Secrets allow one', () => {
    expect(allowingValue(secret('a', 'infra'), 'worker')).toBe('infra,worker');
    expect(allowingValue(secret('a'), 'worker')).toBe('worker');
    expect(
      secretsAllowing(
        [secret('z', '*'), secret('b', 'worker'), secret('c', 'infra'), secret('a')],
        'worker',
      ),
    ).toEqual(['b', 'z']);
  });
});
