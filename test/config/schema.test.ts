// lockstep.schema.json, the JSON Schema editors use to complete and check configuration files and the one
// lockstep checks against (compiled at build time): it is a valid draft-07 schema (Ajv, strict), the
// generated check is its current compilation, it accepts what validateConfig accepts and refuses what
// it refuses (but for the checks it cannot state, listed here), and its defaults are the types' defaults.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Ajv, type ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { CONFIG_DEFAULTS, CONFIG_LIMITS, ConfigError, validateConfig } from '../../src/config/index.js';
import { BAD, KEY_HEX, base } from './bad-configs.js';

const SCHEMA_URL = new URL('../../src/config/lockstep.schema.json', import.meta.url);
const schema = JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as Record<string, any>;

function compile(): ValidateFunction {
  // strict: unknown keywords, ignored formats and ambiguous types are errors, not silently skipped;
  // strictRequired off for the usual idiom of `required` alone in oneOf/anyOf branches.
  return new Ajv({ strict: true, strictRequired: false, allErrors: true, allowUnionTypes: true }).compile(schema);
}

/** Refusals of the validator that no JSON Schema can state (by the BAD table's names), and why. */
const SEMANTIC_ONLY = new Map<string, string>([
  ['udp host 999.1.1.1', 'IPv4 numbers 0..255'],
  ['udp host not a name', 'host name label rules (a..b)'],
  ['ft.listen host 999.1.1.1', 'IPv4 numbers 0..255'],
  ['ft.listen host of three numbers', 'dotted numbers must be four'],
  ['ft.listen a bad IPv6 address', 'IPv6 address syntax'],
  ['ft.listen a host label too long', 'host name label lengths'],
  ['timeoutMs under 3 heartbeats', 'a relation between two fields'],
  ['default timeout under 3 heartbeats', 'a relation between a field and a default'],
  ['maxLagMs under lagTargetMs', 'a relation between two fields'],
  ['maxLagMs equal to lagTargetMs', 'a relation between two fields'],
  ['default maxLagMs under lagTargetMs', 'a relation between a field and a default'],
  ['etcd endpoint host 999.1.1.1', 'IPv4 numbers 0..255'],
  ['metrics.listen host 256.0.0.1', 'IPv4 numbers 0..255'],
]);

/** Every configuration the validator's own tests accept, in the forms a user writes them. */
function validConfigs(): [string, unknown][] {
  const all = base();
  all['vm'] = {
    id: 'db-2.prod_x',
    guest: '/abs/guest.elf',
    ramMiB: 2047,
    clock: 'virtual',
    append: 'kvserver.storage=memory',
    devices: { rng: true, disk: { path: 'd.img', mode: 'separate' }, net: { backend: 'tap', name: 'tap-lockstep0', mac: '52:54:00:AA:BB:CC' } },
  };
  all['ft'] = {
    enabled: true,
    listen: '[::1]:7401',
    keyEnv: 'LOCKSTEP_KEY',
    tls: { cert: 'c.pem', key: 'k.pem', ca: '/pki/ca.pem' },
    heartbeatMs: 50,
    timeoutMs: 150,
    lagTargetMs: 20,
    maxLagMs: 40,
    maxUnackedBytes: 65536,
    outputRule: false,
    arbiter: { backend: 'etcd', endpoints: ['http://etcd-1:2379', 'https://[::1]:2379'], prefix: '/ft/', timeoutMs: 500 },
    hashIntervalInstructions: 0,
    dataPath: 'js',
  };
  all['metrics'] = { listen: '0.0.0.0:9100' };
  const linux = base();
  delete linux['vm'].guest;
  Object.assign(linux['vm'], { kernel: 'Image', initrd: 'rootfs.cpio', bios: '/fw/firmware.elf', dtb: 'virt.dtb' });
  const udp = base();
  udp['vm'].devices = { net: { backend: 'udp', hostPort: 0, host: 'localhost', guestPort: 7, mac: '52:54:00:12:34:56' }, disk: null };
  udp['metrics'] = {};
  const nulls = base();
  Object.assign(nulls, { metrics: null });
  nulls['vm'].devices = null;
  nulls['ft'].tls = null;
  const withSchema = { $schema: './node_modules/lockstep/src/config/lockstep.schema.json', ...base() };
  // docs/config.md's examples, as written there.
  const doc = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8').split('\n## Example\n')[1]!;
  const yamlExample = parseYaml(/```yaml\n([\s\S]*?)```/.exec(doc)![1]!) as unknown;
  const jsonExample = JSON.parse(/```json\n([\s\S]*?)```/.exec(doc)![1]!) as unknown;
  return [
    ['the minimal configuration', base()],
    ['every field set', all],
    ['a Linux boot', linux],
    ['udp networking with every field, and defaults', udp],
    ['null sections', nulls],
    ['ft disabled, without key or arbiter', { vm: { id: 'solo', guest: 'g.elf' }, ft: { enabled: false } }],
    ['ft disabled, with a key and an arbiter', { vm: { id: 'solo', guest: 'g.elf' }, ft: { enabled: false, keyHex: KEY_HEX, arbiter: { backend: 'file', dir: 'a' } } }],
    ['a $schema field', withSchema],
    ["docs/config.md's YAML example", yamlExample],
    ["docs/config.md's JSON example", jsonExample],
  ];
}

describe('lockstep.schema.json', () => {
  it('is a valid draft-07 schema that Ajv compiles in strict mode', () => {
    expect(schema['$schema']).toBe('http://json-schema.org/draft-07/schema#');
    expect(() => compile()).not.toThrow();
  });

  it('is compiled into schema-check.generated.ts as it is now (else: npm run build:schema)', () => {
    const generator = new URL('../../src/config/generate-schema-check.mjs', import.meta.url);
    const fresh = spawnSync(process.execPath, [generator.pathname, '--print'], { encoding: 'utf8' });
    expect(fresh.status, fresh.stderr).toBe(0);
    const committed = readFileSync(new URL('../../src/config/schema-check.generated.ts', import.meta.url), 'utf8');
    expect(committed === fresh.stdout, 'src/config/schema-check.generated.ts is stale: run npm run build:schema').toBe(true);
    // Standalone: nothing of Ajv is imported when a configuration is checked.
    expect(committed).not.toMatch(/\bimport\b|require\(/);
  });

  it.each(validConfigs())('accepts %s, as the validator does', (_name, config) => {
    expect(() => validateConfig(config, 'vm.json', '/cfg')).not.toThrow();
    const validate = compile();
    expect(validate(config), JSON.stringify(validate.errors, null, 2)).toBe(true);
  });

  it.each(BAD)('refuses %s, as the validator does (unless the check is beyond a schema)', (name, mutate) => {
    const c = base();
    mutate(c);
    expect(() => validateConfig(c, 'vm.json', '/cfg')).toThrow(ConfigError);
    const validate = compile();
    // The table's prototype-key case cannot be written in JSON or YAML as a field: JSON.parse makes it one.
    const asFile = JSON.parse(JSON.stringify(c, (_k, v: unknown) => (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === null ? { ...v } : v))) as unknown;
    expect(validate(asFile), SEMANTIC_ONLY.get(name) ?? "the schema should refuse it").toBe(SEMANTIC_ONLY.has(name));
  });

  it('lists, for each section, exactly the fields the validator accepts', () => {
    // The validator names the fields a section accepts when it meets an unknown one far from all of them.
    const accepted = (mutate: (c: Record<string, any>) => void): string[] => {
      const c = base();
      mutate(c);
      try {
        validateConfig(c, 'vm.json', '/');
      } catch (err) {
        const m = / accepts ([^)]*)\)/.exec((err as Error).message);
        if (m) return m[1]!.split(', ').sort();
      }
      throw new Error('the validator did not list the fields');
    };
    const props = (node: Record<string, any>): string[] => Object.keys(node['properties']).sort();
    const p = schema['properties'];
    const d = schema['definitions'];
    expect(props(schema).filter((k) => k !== '$schema')).toEqual(accepted((c) => (c['zzzzzzzz'] = 1)));
    expect(props(p.vm)).toEqual(accepted((c) => (c['vm'].zzzzzzzz = 1)));
    expect(props(p.vm.properties.devices)).toEqual(accepted((c) => (c['vm'].devices = { zzzzzzzz: 1 })));
    expect(props(p.vm.properties.devices.properties.disk)).toEqual(accepted((c) => (c['vm'].devices = { disk: { path: 'd', zzzzzzzz: 1 } })));
    expect(props(d.udpNet)).toEqual(accepted((c) => (c['vm'].devices = { net: { backend: 'udp', hostPort: 1, zzzzzzzz: 1 } })));
    expect(props(d.tapNet)).toEqual(accepted((c) => (c['vm'].devices = { net: { backend: 'tap', name: 't', zzzzzzzz: 1 } })));
    expect(props(p.ft)).toEqual(accepted((c) => (c['ft'].zzzzzzzz = 1)));
    expect(props(p.ft.properties.tls)).toEqual(accepted((c) => (c['ft'].tls = { cert: 'c', key: 'k', ca: 'a', zzzzzzzz: 1 })));
    expect(props(d.fileArbiter)).toEqual(accepted((c) => (c['ft'].arbiter = { backend: 'file', dir: 'd', zzzzzzzz: 1 })));
    expect(props(d.etcdArbiter)).toEqual(accepted((c) => (c['ft'].arbiter = { backend: 'etcd', endpoints: ['http://e:1'], zzzzzzzz: 1 })));
    expect(props(p.metrics)).toEqual(accepted((c) => (c['metrics'] = { zzzzzzzz: 1 })));
  });

  it("has the validator's defaults and ranges", () => {
    const p = schema['properties'];
    const d = schema['definitions'];
    const D = CONFIG_DEFAULTS;
    const L = CONFIG_LIMITS;
    const range = (node: Record<string, any>) => ({ min: node['minimum'] as number, max: node['maximum'] as number });
    const vm = p.vm.properties;
    const ft = p.ft.properties;
    expect([vm.ramMiB.default, vm.clock.default, vm.engine.default, vm.append.default]).toEqual([D.vm.ramMiB, D.vm.clock, D.vm.engine, '']);
    expect(range(vm.ramMiB)).toEqual(L.ramMiB);
    expect([vm.devices.properties.rng.default, vm.devices.properties.disk.properties.mode.default]).toEqual([D.vm.devices.rng, D.vm.devices.diskMode]);
    expect([d.udpNet.properties.host.default, d.udpNet.properties.guestPort.default]).toEqual([D.vm.devices.udpHost, D.vm.devices.guestPort]);
    expect([range(d.udpNet.properties.hostPort), range(d.udpNet.properties.guestPort)]).toEqual([L.port, L.guestPort]);
    for (const k of ['enabled', 'listen', 'heartbeatMs', 'timeoutMs', 'lagTargetMs', 'maxLagMs', 'maxUnackedBytes', 'outputRule', 'hashIntervalInstructions', 'dataPath'] as const) {
      expect(ft[k].default, `ft.${k}`).toEqual(D.ft[k]);
    }
    for (const k of ['heartbeatMs', 'timeoutMs', 'lagTargetMs', 'maxLagMs', 'maxUnackedBytes', 'hashIntervalInstructions'] as const) {
      expect(range(ft[k]), `ft.${k}`).toEqual(L[k]);
    }
    expect([d.etcdArbiter.properties.prefix.default, d.etcdArbiter.properties.timeoutMs.default]).toEqual([D.ft.etcdPrefix, D.ft.etcdTimeoutMs]);
    expect(range(d.etcdArbiter.properties.timeoutMs)).toEqual(L.etcdTimeoutMs);
    expect(p.metrics.properties.listen.default).toBe(D.metrics.listen);
  });
});
