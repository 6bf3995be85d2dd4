// Configuration files: valid JSON and YAML, every default, every bad field named by its path, syntax
// errors by line and column, path resolution, and the checks loadConfig makes on the files named.
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CONFIG_DEFAULTS,
  ConfigError,
  ftKeyFileBytes,
  loadConfig,
  parseConfig,
  readFtKey,
  validateConfig,
  type LockstepConfig,
} from '../../src/config/index.js';
import { LockstepError } from '../../src/errors.js';
import { configToJson } from '../../src/cluster/manager/desired.js';
import { vmSpecOf } from '../../src/ft/settings.js';
import { makeCerts, opensslMissing } from '../protocol/helpers.js';
import { BAD, KEY_HEX, base } from './bad-configs.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-config-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A minimal ELF header is all loadConfig looks at. */
const ELF = Uint8Array.from([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1, 0]);

function expectConfigError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toBeInstanceOf(LockstepError);
    expect((err as ConfigError).code).toBe('ERR_LOCKSTEP_CONFIG_INVALID');
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

async function expectConfigErrorAsync(p: Promise<unknown>): Promise<ConfigError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('validateConfig: defaults', () => {
  it('fills every default of a minimal configuration', () => {
    const { config, warnings } = validateConfig(base(), 'vm.json', '/etc/lockstep');
    expect(warnings).toEqual([]);
    expect(config.vm).toEqual({
      id: 'kv1',
      guest: '/etc/lockstep/guest.elf',
      ramMiB: 64,
      clock: 'real',
      engine: 'jit',
      append: '',
      devices: { rng: false, disk: undefined, net: undefined },
    });
    expect(config.ft).toEqual({
      enabled: true,
      listen: { host: '127.0.0.1', port: 7400 },
      key: { source: 'hex', hex: KEY_HEX },
      tls: undefined,
      heartbeatMs: 100,
      timeoutMs: 600,
      cloneTimeoutMs: 10_000,
      lagTargetMs: 100,
      maxLagMs: 1000,
      maxUnackedBytes: 64 * 1024 * 1024,
      outputRule: true,
      arbiter: { backend: 'file', dir: '/etc/lockstep/arbiter' },
      hashIntervalInstructions: 67108864,
      dataPath: 'native',
    });
    expect(config.metrics).toBeUndefined();
  });

  it('fills the defaults of devices, the etcd arbiter and metrics', () => {
    const c = base();
    c['vm'].devices = { disk: { path: 'disk.img' }, net: { backend: 'udp', hostPort: 0 } };
    c['ft'].arbiter = { backend: 'etcd', endpoints: ['http://127.0.0.1:2379', 'https://[::1]:2379'] };
    c['metrics'] = {};
    const { config } = validateConfig(c, 'vm.json', '/srv');
    expect(config.vm.devices).toEqual({
      rng: false,
      disk: { path: '/srv/disk.img', mode: 'shared' },
      net: { backend: 'udp', host: '127.0.0.1', hostPort: 0, guestPort: 11211, mac: undefined },
    });
    expect(config.ft.arbiter).toEqual({
      backend: 'etcd',
      endpoints: ['http://127.0.0.1:2379', 'https://[::1]:2379'],
      prefix: CONFIG_DEFAULTS.ft.etcdPrefix,
      timeoutMs: 2000,
    });
    expect(config.metrics).toEqual({ listen: { host: '127.0.0.1', port: 9464 } });
  });

  it('takes every field as given when all are set', () => {
    const c = {
      vm: {
        id: 'db-2.prod_x',
        guest: '/abs/guest.elf',
        ramMiB: 2047,
        clock: 'virtual',
        engine: 'interp',
        devices: { rng: true, disk: { path: 'd.img', mode: 'separate' }, net: { backend: 'tap', name: 'tap-lockstep0', mac: '52:54:00:AA:BB:CC' } },
      },
      ft: {
        enabled: true,
        listen: '[::1]:7401',
        keyEnv: 'LOCKSTEP_KEY',
        tls: { cert: 'c.pem', key: 'k.pem', ca: '/pki/ca.pem' },
        heartbeatMs: 50,
        timeoutMs: 150,
        cloneTimeoutMs: 0,
        lagTargetMs: 20,
        maxLagMs: 40,
        maxUnackedBytes: 65536,
        outputRule: true,
        arbiter: { backend: 'etcd', endpoints: ['http://etcd-1:2379'], prefix: '/ft/', timeoutMs: 500 },
        hashIntervalInstructions: 0,
      },
      metrics: { listen: '0.0.0.0:9100' },
    };
    const { config } = validateConfig(c, 'vm.json', '/cfg');
    expect(config.vm.ramMiB).toBe(2047);
    expect(config.vm.clock).toBe('virtual');
    expect(config.vm.engine).toBe('interp');
    // The machine's spec: interp is passed on; the default (jit) is left to the Machine and LOCKSTEP_ENGINE.
    expect(vmSpecOf({ config, warnings: [], source: '/cfg/vm.json', key: undefined }).engine).toBe('interp');
    const byDefault = validateConfig(base(), 'vm.json', '/cfg').config;
    expect(vmSpecOf({ config: byDefault, warnings: [], source: '/cfg/vm.json', key: undefined }).engine).toBeUndefined();
    expect(config.vm.devices.net).toEqual({ backend: 'tap', name: 'tap-lockstep0', mac: '52:54:00:aa:bb:cc' });
    expect(config.vm.devices.disk).toEqual({ path: '/cfg/d.img', mode: 'separate' });
    expect(config.ft.listen).toEqual({ host: '::1', port: 7401 });
    expect(config.ft.key).toEqual({ source: 'env', name: 'LOCKSTEP_KEY' });
    expect(config.ft.tls).toEqual({ cert: '/cfg/c.pem', key: '/cfg/k.pem', ca: '/pki/ca.pem' });
    expect([config.ft.heartbeatMs, config.ft.timeoutMs, config.ft.lagTargetMs, config.ft.maxLagMs]).toEqual([50, 150, 20, 40]);
    expect(config.ft.hashIntervalInstructions).toBe(0);
    expect(config.ft.cloneTimeoutMs).toBe(0);
    expect(config.ft.arbiter).toEqual({ backend: 'etcd', endpoints: ['http://etcd-1:2379'], prefix: '/ft/', timeoutMs: 500 });
    expect(config.metrics?.listen).toEqual({ host: '0.0.0.0', port: 9100 });
  });

  it('takes a Linux boot as QEMU names its images: vm.kernel, vm.initrd, vm.bios, vm.dtb (resolved), vm.append', () => {
    const c = base();
    delete c['vm'].guest;
    Object.assign(c['vm'], { kernel: 'Image', initrd: 'rootfs.cpio', bios: '/fw/firmware.elf', dtb: 'virt.dtb', append: 'console=ttyS0 quiet' });
    const { config } = validateConfig(c, 'vm.json', '/srv');
    expect(config.vm.guest).toBeUndefined();
    expect(config.vm.linux).toEqual({ kernel: '/srv/Image', initrd: '/srv/rootfs.cpio', bios: '/fw/firmware.elf', dtb: '/srv/virt.dtb' });
    expect(config.vm.append).toBe('console=ttyS0 quiet');
    // The file form a cluster manager hands an agent keeps the boot (and the command line) as it was.
    expect(validateConfig(configToJson(config), 'desired.json', '/elsewhere').config.vm).toEqual(config.vm);
    const minimal = base();
    delete minimal['vm'].guest;
    minimal['vm'].kernel = 'Image';
    expect(validateConfig(minimal, 'vm.json', '/srv').config.vm.linux).toEqual({ kernel: '/srv/Image', initrd: undefined, bios: undefined, dtb: undefined });
  });

  it('needs neither key nor arbiter when ft is disabled', () => {
    const { config } = validateConfig({ vm: { id: 'solo', guest: 'g.elf' }, ft: { enabled: false } }, 'vm.json', '/');
    expect(config.ft.enabled).toBe(false);
    expect(config.ft.key).toBeUndefined();
    expect(config.ft.arbiter).toBeUndefined();
  });

  it('returns a deeply frozen configuration', () => {
    const c = base();
    c['ft'].arbiter = { backend: 'etcd', endpoints: ['http://127.0.0.1:2379'] };
    const loaded = validateConfig(c, 'vm.json', '/');
    const config: LockstepConfig = loaded.config;
    expect(Object.isFrozen(loaded)).toBe(true);
    expect(Object.isFrozen(loaded.warnings)).toBe(true);
    expect(Object.isFrozen(config.vm.devices)).toBe(true);
    expect(Object.isFrozen(config.ft.listen)).toBe(true);
    expect(config.ft.arbiter?.backend === 'etcd' && Object.isFrozen(config.ft.arbiter.endpoints)).toBe(true);
    expect(() => {
      (config.ft as { timeoutMs: number }).timeoutMs = 1;
    }).toThrow(TypeError);
  });

  it('warns loudly when the output rule is off', () => {
    const c = base();
    c['ft'].outputRule = false;
    const { config, warnings } = validateConfig(c, 'vm.json', '/');
    expect(config.ft.outputRule).toBe(false);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^vm\.json: ft\.outputRule is false: .*failover can lose or contradict/);
  });
});

describe('validateConfig: $schema', () => {
  it('takes a top-level $schema (where editors find lockstep.schema.json) and ignores it, but only a string', () => {
    const c = { $schema: './node_modules/lockstep/src/config/lockstep.schema.json', ...base() };
    expect(validateConfig(c, 'vm.json', '/').config).toEqual(validateConfig(base(), 'vm.json', '/').config);
    const bad = expectConfigError(() => validateConfig({ ...c, $schema: 1 }, 'vm.json', '/'));
    expect(bad.message).toBe('vm.json: $schema: must be a string (where editors find lockstep.schema.json), got 1');
    const nested = base();
    nested['vm'].$schema = 'x';
    expect(expectConfigError(() => validateConfig(nested, 'vm.json', '/')).field).toBe('vm.$schema');
  });
});

describe('validateConfig: bad fields', () => {
  it.each(BAD)('%s names the field', (_name, mutate, field, fragment) => {
    const c = base();
    mutate(c);
    const err = expectConfigError(() => validateConfig(c, 'vm.json', '/cfg'));
    expect(err.field).toBe(field);
    expect(err.source).toBe('vm.json');
    const first = err.message.split('\n')[0]!;
    expect(first.startsWith(`vm.json: ${field}: `) || first.startsWith(`vm.json: unknown field ${field}`)).toBe(true);
    if (typeof fragment === 'string') expect(first).toContain(fragment);
    else expect(first).toMatch(fragment);
  });

  it('says exactly what the design asks of a bad timeout', () => {
    const c = base();
    c['ft'].timeoutMs = 'abc';
    const err = expectConfigError(() => validateConfig(c, 'vm.json', '/'));
    expect(err.message).toBe('vm.json: ft.timeoutMs: must be an integer between 50 and 60000, got "abc"');
  });

  it('suggests the field that was probably meant', () => {
    const c = base();
    c['ft'].timout = 900;
    c['vm'].ramMB = 64;
    c['vm'].devices = { disc: {} };
    const err = expectConfigError(() => validateConfig(c, 'vm.json', '/'));
    expect(err.message.split('\n')).toEqual([
      'vm.json: unknown field vm.ramMB — did you mean vm.ramMiB?',
      'vm.json: unknown field vm.devices.disc — did you mean vm.devices.disk?',
      'vm.json: unknown field ft.timout — did you mean ft.timeoutMs?',
    ]);
    expect(err.issues.map((i) => i.field)).toEqual(['vm.ramMB', 'vm.devices.disc', 'ft.timout']);
  });

  it('lists the accepted fields when nothing is close', () => {
    const c = base();
    c['ft'].quorum = 3;
    const err = expectConfigError(() => validateConfig(c, 'vm.json', '/'));
    expect(err.message).toMatch(/^vm\.json: unknown field ft\.quorum \(ft accepts enabled, listen, keyFile, .*hashIntervalInstructions, dataPath\)$/);
  });

  it('reports every problem at once', () => {
    const c = base();
    c['vm'].ramMiB = 0;
    c['ft'].heartbeatMs = 'fast';
    delete c['ft'].arbiter;
    const err = expectConfigError(() => validateConfig(c, 'vm.json', '/'));
    expect(err.issues.map((i) => i.field)).toEqual(['vm.ramMiB', 'ft.heartbeatMs', 'ft.arbiter']);
    expect(err.message.split('\n')).toHaveLength(3);
  });

  it("reports the schema's problems and the checks beyond it together, in the file's order", () => {
    const c = base();
    c['ft'] = { listen: '999.1.1.1:7400', heartbeatMs: 250, ...c['ft'], outputRule: 'no' };
    c['vm'].clock = 'wall';
    const err = expectConfigError(() => validateConfig(c, 'vm.json', '/'));
    expect(err.issues.map((i) => i.field)).toEqual(['vm.clock', 'ft.listen', 'ft.outputRule', 'ft.timeoutMs']);
    expect(err.issues[3]!.message).toContain('got 600 (the default)');
  });

  it('takes ft: null as an absent ft section', () => {
    const err = expectConfigError(() => validateConfig({ vm: { id: 'a', guest: 'g' }, ft: null }, 'vm.json', '/'));
    expect(err.message).toBe('vm.json: ft: is required (the fault-tolerant pair: a key and an arbiter, or enabled: false)');
    expect(expectConfigError(() => validateConfig({ vm: { id: 'a', guest: 'g' } }, 'vm.json', '/')).message).toBe(err.message);
    // A section of the wrong type is one problem, not also every rule about its fields.
    expect(expectConfigError(() => validateConfig({ vm: 'kv1', ft: 'on' }, 'vm.json', '/')).issues.map((i) => i.field)).toEqual(['vm', 'ft']);
  });

  it('never repeats a key in a message', () => {
    const c = base();
    c['ft'].keyHex = 'secret-secret-secret-secret-secret';
    const err = expectConfigError(() => validateConfig(c, 'vm.json', '/'));
    expect(err.message).not.toContain('secret');
  });

  it('refuses an empty configuration and a top-level list', () => {
    expect(expectConfigError(() => validateConfig(null, 'vm.yaml', '/')).message).toMatch(/^vm\.yaml: the configuration is empty/);
    expect(expectConfigError(() => validateConfig([], 'vm.yaml', '/')).message).toMatch(/^vm\.yaml: : must be an object|^vm\.yaml: .*got a list/);
  });
});

describe('parseConfig: JSON and YAML text', () => {
  const yaml = `# a VM
vm:
  id: kv1
  guest: ./bin/kv.elf
  ramMiB: 128
  devices:
    rng: true
    net: { backend: udp, hostPort: 11211 }
ft:
  listen: 10.0.0.1:7400
  keyHex: ${KEY_HEX}
  arbiter:
    backend: etcd
    endpoints:
      - http://10.0.0.5:2379
`;

  it('reads YAML with paths resolved against the base directory', () => {
    const { config } = parseConfig(yaml, 'yaml', 'vm.yaml', '/etc/lockstep');
    expect(config.vm.guest).toBe('/etc/lockstep/bin/kv.elf');
    expect(config.vm.ramMiB).toBe(128);
    expect(config.vm.devices.net).toMatchObject({ backend: 'udp', hostPort: 11211, guestPort: 11211 });
    expect(config.ft.listen).toEqual({ host: '10.0.0.1', port: 7400 });
    expect(config.ft.arbiter).toMatchObject({ backend: 'etcd', endpoints: ['http://10.0.0.5:2379'] });
  });

  it('reads the same configuration written as JSON', () => {
    const json = JSON.stringify({
      vm: { id: 'kv1', guest: './bin/kv.elf', ramMiB: 128, devices: { rng: true, net: { backend: 'udp', hostPort: 11211 } } },
      ft: { listen: '10.0.0.1:7400', keyHex: KEY_HEX, arbiter: { backend: 'etcd', endpoints: ['http://10.0.0.5:2379'] } },
    });
    expect(parseConfig(json, 'json', 'vm.json', '/etc/lockstep').config).toEqual(parseConfig(yaml, 'yaml', 'vm.yaml', '/etc/lockstep').config);
  });

  it('names the line and column of a bad field in YAML', () => {
    const err = expectConfigError(() => parseConfig(yaml.replace('ramMiB: 128', 'ramMiB: lots'), 'yaml', 'vm.yaml', '/'));
    expect(err.message).toBe('vm.yaml: vm.ramMiB: must be an integer between 1 and 2047, got "lots" (line 5, column 3)');
    expect([err.issues[0]!.line, err.issues[0]!.column]).toEqual([5, 3]);
  });

  it('names the line and column of an unknown field and of a list element', () => {
    const err = expectConfigError(() =>
      parseConfig(yaml.replace('  listen:', '  listn:').replace('http://10.0.0.5:2379', '10.0.0.5:2379'), 'yaml', 'vm.yaml', '/'),
    );
    expect(err.message.split('\n')).toEqual([
      'vm.yaml: unknown field ft.listn — did you mean ft.listen? (line 10, column 3)',
      'vm.yaml: ft.arbiter.endpoints[0]: must be an etcd URL as http(s)://host:port (e.g. http://127.0.0.1:2379), got "10.0.0.5:2379" (line 15, column 9)',
    ]);
  });

  it('names the line and column of a bad field in JSON', () => {
    const text = '{\n  "vm": { "id": "kv1", "guest": "g.elf" },\n  "ft": {\n    "keyHex": "' + KEY_HEX + '",\n    "timeoutMs": "abc",\n    "arbiter": { "backend": "file", "dir": "/a" }\n  }\n}\n';
    const err = expectConfigError(() => parseConfig(text, 'json', 'vm.json', '/'));
    expect(err.message).toBe('vm.json: ft.timeoutMs: must be an integer between 50 and 60000, got "abc" (line 5, column 5)');
  });

  it('reports a YAML syntax error with line and column', () => {
    const err = expectConfigError(() => parseConfig('vm:\n  id: kv1\n  guest: [a, b\nft: {}\n', 'yaml', 'vm.yaml', '/'));
    expect(err.field).toBe('');
    expect(err.message).toMatch(/^vm\.yaml: line \d+, column \d+: invalid YAML: /);
    expect(err.issues[0]!.line).toBeGreaterThanOrEqual(3);
  });

  it('reports a YAML field given twice', () => {
    const err = expectConfigError(() => parseConfig('vm:\n  id: a\n  id: b\n', 'yaml', 'vm.yaml', '/'));
    expect(err.message.split('\n')[0]).toBe('vm.yaml: line 3, column 3: invalid YAML: the field "id" is given twice');
  });

  it('reports a JSON syntax error with line, column and a caret', () => {
    const err = expectConfigError(() => parseConfig('{\n  "vm": {\n    "id": "kv1",\n  }\n}', 'json', 'vm.json', '/'));
    expect(err.message).toBe('vm.json: line 4, column 3: invalid JSON: trailing comma before "}"\n  4 |   }\n    |   ^');
    expect([err.issues[0]!.line, err.issues[0]!.column]).toEqual([4, 3]);
  });

  it.each([
    ['{"vm": {"id": "a", "id": "b"}}', 1, 20, 'duplicate field "id"'],
    ["{'vm': 1}", 1, 2, 'expected a field name in double quotes'],
    ['{"vm": tru}', 1, 8, 'expected a value'],
    ['{"vm": 01}', 1, 9, 'malformed number'],
    ['{"vm": "a\tb"}', 1, 10, 'control character'],
    ['{"vm": {}} x', 1, 12, 'expected the end of the file'],
    ['\n\n{"vm": [1, 2,]}', 3, 14, 'trailing comma before "]"'],
    ['{"vm": "\\x"}', 1, 9, 'invalid escape'],
    ['{"vm": "abc', 1, 8, 'unterminated string'],
    ['', 1, 1, 'the file is empty'],
  ])('JSON syntax %j: line %i, column %i', (text, line, column, what) => {
    const err = expectConfigError(() => parseConfig(text, 'json', 'x.json', '/'));
    expect(err.message.split('\n')[0]).toMatch(new RegExp(`^x\\.json: line ${line}, column ${column}: invalid JSON: .*${what.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  });

  it('decodes JSON strings and numbers as JSON.parse does (BOM allowed)', () => {
    const guest = 'g\u00e9\u{1f600}"\\/\b\f\n\r\t\u0001.elf';
    const good = JSON.stringify({ vm: { id: 'a', guest, ramMiB: 1e3 }, ft: { enabled: false, heartbeatMs: 1.5e2 } }, null, '\t');
    const { config } = parseConfig('\ufeff' + good, 'json', 'x.json', '/');
    expect(config.vm.guest).toBe('/' + guest);
    expect(config.vm.ramMiB).toBe(1000);
    expect(config.ft.heartbeatMs).toBe(150);
  });

  it('treats a __proto__ key as an unknown field, not as a prototype', () => {
    const text = `{"vm": {"id": "a", "guest": "g", "__proto__": {"polluted": true}}, "ft": {"enabled": false}}`;
    const err = expectConfigError(() => parseConfig(text, 'json', 'x.json', '/'));
    expect(err.field).toBe('vm.__proto__');
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
    const y = expectConfigError(() => parseConfig('vm: {id: a, guest: g, __proto__: {polluted: true}}\nft: {enabled: false}\n', 'yaml', 'x.yaml', '/'));
    expect(y.field).toBe('vm.__proto__');
  });

  it('refuses YAML that would change meaning: unresolved tags, multiple documents', () => {
    expect(expectConfigError(() => parseConfig('vm: !weird {}\n', 'yaml', 'x.yaml', '/')).message).toMatch(/line 1, column \d+: invalid YAML: .*tag/i);
    expect(expectConfigError(() => parseConfig('vm: {}\n---\nvm: {}\n', 'yaml', 'x.yaml', '/')).message).toMatch(/line \d+, column \d+: invalid YAML: .*multiple documents/);
  });

  it('refuses unquoted yes/no/on/off/y/n (true in YAML 1.1, strings in 1.2) wherever they stand, naming the field', () => {
    const err = expectConfigError(() => parseConfig('vm: {id: a, guest: g, devices: {rng: yes}}\nft: {enabled: false}\n', 'yaml', 'x.yaml', '/'));
    expect(err.field).toBe('vm.devices.rng');
    expect(err.message).toBe(
      'x.yaml: vm.devices.rng: the unquoted value yes means true in YAML 1.1 but the string "yes" in YAML 1.2 (which lockstep reads): write true or false for a boolean, or quote it ("yes") for a string (line 1, column 38)',
    );
    const off = expectConfigError(() => parseConfig('vm: {id: a, guest: g}\nft: {enabled: Off}\n', 'yaml', 'x.yaml', '/'));
    expect(off.message).toContain('ft.enabled: the unquoted value Off means false in YAML 1.1');
    const name = expectConfigError(() => parseConfig('vm: {id: a, guest: g, devices: {net: {backend: tap, name: on}}}\nft: {enabled: false}\n', 'yaml', 'x.yaml', '/'));
    expect(name.field).toBe('vm.devices.net.name');
    // Quoted, it is the string, and true/false are booleans in both versions.
    const { config } = parseConfig('vm: {id: a, guest: g, devices: {rng: true, net: {backend: tap, name: "on"}}}\nft: {enabled: false}\n', 'yaml', 'x.yaml', '/');
    expect(config.vm.devices.rng).toBe(true);
    expect(config.vm.devices.net).toMatchObject({ name: 'on' });
  });

  it('refuses a %YAML 1.1 directive (which made yes true) and unquoted numbers with a leading zero (octal in 1.1)', () => {
    const err = expectConfigError(() => parseConfig('# vm\n%YAML 1.1\n---\nvm: {id: a, guest: g, devices: {rng: true}}\nft: {enabled: false}\n', 'yaml', 'x.yaml', '/'));
    expect(err.message.split('\n')[0]).toBe(
      'x.yaml: line 2, column 1: %YAML 1.1: lockstep reads configuration as YAML 1.2 (core schema), where yes/no/on/off are strings and 017 is 17; remove the directive',
    );
    const octal = expectConfigError(() => parseConfig('vm: {id: a, guest: g, ramMiB: 017}\nft: {enabled: false}\n', 'yaml', 'x.yaml', '/'));
    expect(octal.field).toBe('vm.ramMiB');
    expect(octal.message).toContain('the unquoted number 017 is octal in YAML 1.1 but decimal in YAML 1.2');
    // %YAML 1.2 is what it reads anyway.
    expect(parseConfig('%YAML 1.2\n---\nvm: {id: a, guest: g, ramMiB: 17}\nft: {enabled: false}\n', 'yaml', 'x.yaml', '/').config.vm.ramMiB).toBe(17);
  });
});

describe('loadConfig: files', () => {
  const dir = join(tmp, 'conf');
  mkdirSync(join(dir, 'bin'), { recursive: true });
  mkdirSync(join(tmp, 'arbiter'));
  const arb = join(tmp, 'arbiter');
  writeFileSync(join(dir, 'bin', 'kv.elf'), ELF);
  writeFileSync(join(dir, 'not-elf.bin'), 'hello');
  writeFileSync(join(dir, 'disk.img'), new Uint8Array(512));
  writeFileSync(join(dir, 'key'), 'sixteen-byte-key\n');
  writeFileSync(join(dir, 'short-key'), 'fifteen-bytes!!\n');

  const write = (name: string, text: string | Uint8Array) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };

  it('loads YAML, resolving paths against the file, not the working directory', async () => {
    const path = write(
      'vm.yaml',
      'vm:\n  id: kv1\n  guest: bin/kv.elf\n  devices: { disk: { path: disk.img, mode: separate } }\nft:\n  keyFile: key\n  arbiter: { backend: file, dir: ../arbiter }\n',
    );
    const loaded = await loadConfig(path);
    expect(loaded.source).toBe(path);
    expect(loaded.warnings).toEqual([]);
    expect(loaded.config.vm.guest).toBe(join(dir, 'bin', 'kv.elf'));
    expect(loaded.config.vm.devices.disk).toEqual({ path: join(dir, 'disk.img'), mode: 'separate' });
    expect(loaded.config.ft.key).toEqual({ source: 'file', path: join(dir, 'key') });
    expect(loaded.config.ft.arbiter).toEqual({ backend: 'file', dir: join(tmp, 'arbiter') });
    // The trailing newline is not part of the key.
    expect(Buffer.from(loaded.key!).toString()).toBe('sixteen-byte-key');
    expect(Object.keys(loaded)).not.toContain('key');
    expect(JSON.stringify(loaded)).not.toContain('sixteen');
  });

  it('loads JSON (.json) and YAML (.yml), and a relative path to the file itself', async () => {
    const json = write('vm.json', JSON.stringify({ vm: { id: 'kv1', guest: 'bin/kv.elf' }, ft: { keyHex: KEY_HEX, arbiter: { backend: 'file', dir: arb } } }));
    const yml = write('vm.yml', `vm: {id: kv1, guest: bin/kv.elf}\nft: {keyHex: "${KEY_HEX}", arbiter: {backend: file, dir: ${arb}}}\n`);
    const a = await loadConfig(json);
    const b = await loadConfig(yml);
    expect(a.config).toEqual(b.config);
    expect(Buffer.from(a.key!).toString('hex')).toBe(KEY_HEX);
    const rel = await loadConfig(relative(process.cwd(), json));
    expect(rel.config.vm.guest).toBe(join(dir, 'bin', 'kv.elf'));
  });

  it('returns the output-rule warning for the caller to print', async () => {
    const path = write('norule.yaml', `vm: {id: kv1, guest: bin/kv.elf}\nft: {keyHex: "${KEY_HEX}", outputRule: false, arbiter: {backend: file, dir: ${arb}}}\n`);
    const { warnings } = await loadConfig(path);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('norule.yaml: ft.outputRule is false');
  });

  it('names a guest that is missing or not an ELF file', async () => {
    const missing = write('missing.yaml', `vm: {id: kv1, guest: bin/nope.elf}\nft: {enabled: false}\n`);
    const e1 = await expectConfigErrorAsync(loadConfig(missing));
    expect(e1.field).toBe('vm.guest');
    expect(e1.message).toBe(`${missing}: vm.guest: cannot read ${join(dir, 'bin', 'nope.elf')}: no such file (ENOENT)`);
    const notElf = write('notelf.yaml', `vm: {id: kv1, guest: not-elf.bin}\nft: {enabled: false}\n`);
    expect((await expectConfigErrorAsync(loadConfig(notElf))).message).toContain('vm.guest: ' + join(dir, 'not-elf.bin') + ' is not an ELF file');
    const isDir = write('dir.yaml', `vm: {id: kv1, guest: bin}\nft: {enabled: false}\n`);
    expect((await expectConfigErrorAsync(loadConfig(isDir))).message).toContain('is not a regular file');
  });

  it('names a missing disk image, missing and non-PEM TLS files, and a missing arbiter directory, all at once', async () => {
    const path = write(
      'tls.yaml',
      `vm: {id: kv1, guest: bin/kv.elf, devices: {disk: {path: none.img}}}\nft: {keyHex: "${KEY_HEX}", tls: {cert: c.pem, key: k.pem, ca: key}, arbiter: {backend: file, dir: no-such-dir}}\n`,
    );
    const err = await expectConfigErrorAsync(loadConfig(path));
    expect(err.issues.map((i) => i.field)).toEqual(['vm.devices.disk.path', 'ft.tls.cert', 'ft.tls.key', 'ft.tls.ca', 'ft.arbiter.dir']);
    expect(err.issues[3]!.message).toBe(`ft.tls.ca: ${join(dir, 'key')} is not a PEM certificate (-----BEGIN CERTIFICATE-----)`);
    expect(err.issues[4]!.message).toMatch(new RegExp(`^ft\\.arbiter\\.dir: ${join(dir, 'no-such-dir').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not exist: it must be a directory both halves share`));
  });

  it('refuses a disk image that is not whole 512-byte sectors, or empty', async () => {
    writeFileSync(join(dir, 'odd.img'), new Uint8Array(1000));
    writeFileSync(join(dir, 'empty.img'), new Uint8Array(0));
    for (const [img, text] of [
      ['odd.img', `${join(dir, 'odd.img')} is 1000 bytes, not a whole number of 512-byte sectors: virtio-blk could not reach its last 488 bytes (resize it, e.g. truncate -s 1024 ${join(dir, 'odd.img')})`],
      ['empty.img', `${join(dir, 'empty.img')} is empty`],
    ] as const) {
      const path = write(`disk-${img}.yaml`, `vm: {id: kv1, guest: bin/kv.elf, devices: {disk: {path: ${img}}}}\nft: {enabled: false}\n`);
      const err = await expectConfigErrorAsync(loadConfig(path));
      expect(err.field).toBe('vm.devices.disk.path');
      expect(err.message).toContain(`vm.devices.disk.path: ${text}`);
    }
  });

  it('refuses an arbiter directory that is a file', async () => {
    const path = write('arb-file.yaml', `vm: {id: kv1, guest: bin/kv.elf}\nft: {keyHex: "${KEY_HEX}", arbiter: {backend: file, dir: key}}\n`);
    const err = await expectConfigErrorAsync(loadConfig(path));
    expect(err.message).toContain(`ft.arbiter.dir: ${join(dir, 'key')} is not a directory`);
  });

  const noTls = opensslMissing();
  it.skipIf(noTls !== undefined)('takes PEM TLS files whose key is the certificate\'s; refuses DER, garbage and a key of another certificate', async () => {
    const certs = makeCerts();
    writeFileSync(join(dir, 'ca.pem'), certs.ca);
    writeFileSync(join(dir, 'cert.pem'), certs.serverCert);
    writeFileSync(join(dir, 'key.pem'), certs.serverKey);
    writeFileSync(join(dir, 'other-key.pem'), certs.clientKey);
    writeFileSync(join(dir, 'cert.der'), new X509Certificate(certs.serverCert).raw);
    const tls = (cert: string, key: string, ca: string) =>
      write(`tls-${cert}-${key}-${ca}.yaml`, `vm: {id: kv1, guest: bin/kv.elf}\nft: {keyHex: "${KEY_HEX}", tls: {cert: ${cert}, key: ${key}, ca: ${ca}}, arbiter: {backend: file, dir: ${arb}}}\n`);
    expect((await loadConfig(tls('cert.pem', 'key.pem', 'ca.pem'))).config.ft.tls?.cert).toBe(join(dir, 'cert.pem'));
    const der = await expectConfigErrorAsync(loadConfig(tls('cert.der', 'key.pem', 'ca.pem')));
    expect(der.issues.map((i) => i.field)).toEqual(['ft.tls.cert']);
    expect(der.message).toContain('is not a PEM certificate');
    const garbage = await expectConfigErrorAsync(loadConfig(tls('cert.pem', 'disk.img', 'ca.pem')));
    expect(garbage.message).toContain(`ft.tls.key: ${join(dir, 'disk.img')} is not a PEM private key`);
    const mismatch = await expectConfigErrorAsync(loadConfig(tls('cert.pem', 'other-key.pem', 'ca.pem')));
    expect(mismatch.message).toContain(`ft.tls.key: ${join(dir, 'other-key.pem')} is not the private key of the certificate ${join(dir, 'cert.pem')}`);
  });

  it('checks the key file, the key variable and its length', async () => {
    const short = write('short.yaml', `vm: {id: kv1, guest: bin/kv.elf}\nft: {keyFile: short-key, arbiter: {backend: file, dir: ${arb}}}\n`);
    expect((await expectConfigErrorAsync(loadConfig(short))).message).toMatch(/ft\.keyFile: .*short-key holds 15 bytes of key; at least 16 are needed/);
    const env = write('env.yaml', `vm: {id: kv1, guest: bin/kv.elf}\nft: {keyEnv: LOCKSTEP_TEST_KEY, arbiter: {backend: file, dir: ${arb}}}\n`);
    const unset = await expectConfigErrorAsync(loadConfig(env, { env: {} }));
    expect(unset.message).toContain('ft.keyEnv: the environment variable LOCKSTEP_TEST_KEY is not set');
    const bad = await expectConfigErrorAsync(loadConfig(env, { env: { LOCKSTEP_TEST_KEY: 'abcd' } }));
    expect(bad.message).toContain('ft.keyEnv: the environment variable LOCKSTEP_TEST_KEY must hold an even number of hex digits');
    expect(bad.message).not.toContain('abcd');
    const ok = await loadConfig(env, { env: { LOCKSTEP_TEST_KEY: KEY_HEX.toUpperCase() + '\n' } });
    expect(Buffer.from(ok.key!).toString('hex')).toBe(KEY_HEX);
    expect(Buffer.from(await readFtKey({ source: 'env', name: 'K' }, 'x', { K: KEY_HEX })).toString('hex')).toBe(KEY_HEX);
  });

  it('a key file written as ftKeyFileBytes writes it reads back as the same key whatever its last bytes (a newline, a CR, both); one trailing newline of a file is dropped, nothing more', async () => {
    const key = Buffer.from('0123456789abcdef0123456789abcdef');
    for (const tail of ['\n', '\r', '\r\n', '\n\n', 'x']) {
      const k = Buffer.concat([key, Buffer.from(tail)]);
      const path = write(`key-${k.toString('hex').slice(-6)}`, ftKeyFileBytes(k));
      expect(Buffer.from(await readFtKey({ source: 'file', path }, 'x')).toString('hex'), JSON.stringify(tail)).toBe(k.toString('hex'));
    }
    // A file as `echo` or an editor leaves it: the newline is not part of the key, a CR before it is.
    expect(Buffer.from(await readFtKey({ source: 'file', path: write('echoed', `${key}\n`) }, 'x')).toString()).toBe(`${key}`);
    expect(Buffer.from(await readFtKey({ source: 'file', path: write('crlf', `${key}\r\n`) }, 'x')).toString()).toBe(`${key}\r`);
  });

  it('refuses an unknown extension, a missing file, and a syntax error with line and column', async () => {
    expect((await expectConfigErrorAsync(loadConfig(join(dir, 'vm.toml')))).message).toContain('must end in .json, .yaml or .yml');
    const missing = join(dir, 'absent.yaml');
    expect((await expectConfigErrorAsync(loadConfig(missing))).message).toBe(`${missing}: cannot read the configuration file: no such file (ENOENT)`);
    const broken = write('broken.json', '{\n  "vm": {\n    "id": "kv1"\n    "guest": "g"\n  }\n}\n');
    const err = await expectConfigErrorAsync(loadConfig(broken));
    expect(err.message.split('\n')[0]).toBe(`${broken}: line 4, column 5: invalid JSON: expected "," or "}", found "\\""`);
  });
});
