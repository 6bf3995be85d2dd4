// The configuration's checks: lockstep.schema.json, compiled by Ajv at build time, checks the structure;
// this file turns its errors into messages that name the field and say what it wants, adds the checks a
// schema cannot state, fills defaults, resolves paths and freezes the result. No files, no environment.
import { isIPv4, isIPv6 } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { parseHostPort } from './address.js';
import { ConfigError, type ConfigIssue } from './errors.js';
import schemaCheck from './schema-check.generated.js';
import { suggest } from './suggest.js';
import {
  CONFIG_DEFAULTS as D,
  CONFIG_LIMITS as L,
  type ArbiterConfig,
  type FtKeyConfig,
  type HostPort,
  type LockstepConfig,
  type NetConfig,
  type ValidatedConfig,
  type VmConfig,
} from './types.js';

/** A field's place in the document: keys and array indices from the top. */
export type FieldPath = readonly (string | number)[];
/** Finds where a field is in the parsed text (1-based), for messages; undefined when unknown. */
export type Locate = (path: FieldPath) => { line: number; column: number } | undefined;

/** `ft.arbiter.endpoints[1]` for `['ft', 'arbiter', 'endpoints', 1]`. */
export function fieldName(path: FieldPath): string {
  let out = '';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  return out;
}

/** One error of the compiled schema (Ajv's ErrorObject, `verbose`: with the schema node and the value). */
interface SchemaError {
  readonly instancePath: string;
  readonly schemaPath: string;
  readonly keyword: string;
  readonly params: Record<string, unknown>;
  readonly message?: string;
  readonly parentSchema?: Record<string, unknown>;
  readonly data?: unknown;
}
const check = schemaCheck as unknown as ((data: unknown) => boolean) & { errors?: readonly SchemaError[] | null };

/** What a field wants, as messages say it; keyed by the field's path with list indices as `[]`. */
interface FieldText {
  /** Follows "must be" (and "is required" in parentheses when `required` is not given); integers, booleans, enums and objects say it from the schema. */
  readonly want?: string;
  /** Follows an integer's range. */
  readonly unit?: string;
  /** Follows "is required" when the field is missing. */
  readonly required?: string;
  /** A path: "must be" adds that relative paths are taken from the configuration's directory. */
  readonly path?: true;
}

const ADDRESS = 'an address as host:port (e.g. 127.0.0.1:7400, [::1]:7400), port 0..65535';
const NET_BACKENDS = ' (udp: host port forwarding; tap: a Linux TAP device)';
const ARBITER_BACKENDS = ' (file: a directory both halves share; etcd: an etcd cluster)';
const FIELD_TEXT: Readonly<Record<string, FieldText>> = {
  $schema: { want: 'a string (where editors find lockstep.schema.json)' },
  vm: { required: ' (the VM: at least id and guest)' },
  ft: { required: ' (the fault-tolerant pair: a key and an arbiter, or enabled: false)' },
  'vm.id': { want: 'a VM name: 1 to 63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit' },
  'vm.guest': { want: 'the path of the guest ELF file, or vm.kernel to boot Linux', path: true },
  'vm.kernel': { want: 'the path of a Linux kernel Image (raw or gzip)', path: true },
  'vm.initrd': { want: 'the path of an initrd (a cpio archive, raw or gzip)', path: true },
  'vm.bios': { want: 'the path of an M-mode firmware ELF', path: true },
  'vm.dtb': { want: 'the path of a flattened device tree (.dtb)', path: true },
  'vm.append': { want: 'the guest command line: at most 4096 characters, no NUL' },
  'vm.devices.disk.path': { want: 'the path of a raw disk image (a multiple of 512 bytes)', path: true },
  'vm.devices.net.backend': { want: '"udp" or "tap"', required: `: "udp" or "tap"${NET_BACKENDS}` },
  'vm.devices.net.host': { want: 'an IPv4 address or a host name (e.g. 127.0.0.1)' },
  'vm.devices.net.hostPort': { required: ' (the host UDP port forwarded to the guest; 0 for any free port)' },
  'vm.devices.net.name': { want: 'a network interface name of 1 to 15 letters, digits, ".", "-" or "_"' },
  'ft.listen': { want: ADDRESS },
  'ft.keyFile': { want: `the path of a file holding the pre-shared key (at least ${L.keyBytes} bytes)`, path: true },
  'ft.keyEnv': { want: 'the name of an environment variable (letters, digits and "_", not starting with a digit)' },
  'ft.tls.cert': { want: "the path of this side's certificate (PEM)", path: true },
  'ft.tls.key': { want: "the path of this side's private key (PEM)", path: true },
  'ft.tls.ca': { want: 'the path of the CA certificate both sides are signed by (PEM)', path: true },
  'ft.hashIntervalInstructions': { unit: ' (0: no hashes)' },
  'ft.arbiter.backend': { want: '"file" or "etcd"', required: `: "file" or "etcd"${ARBITER_BACKENDS}` },
  'ft.arbiter.dir': { want: 'the path of a directory both halves share (e.g. on NFS)', path: true },
  'ft.arbiter.endpoints': { want: 'a non-empty list of etcd URLs such as http://127.0.0.1:2379', required: ' (a list of etcd URLs such as http://127.0.0.1:2379)' },
  'ft.arbiter.endpoints[]': { want: 'an etcd URL as http(s)://host:port (e.g. http://127.0.0.1:2379)' },
  'ft.arbiter.prefix': { want: 'a key prefix of 1 to 256 printable characters without spaces' },
  'metrics.listen': { want: ADDRESS },
};
const PATH_NOTE = " (relative paths are taken from the configuration file's directory)";

/** The two sections whose shape depends on `backend`: the schema's oneOf branches, by backend. */
const BRANCHES: Readonly<Record<string, { readonly schemaPath: string; readonly byBackend: Readonly<Record<string, string>>; readonly union: readonly string[] }>> = {
  'vm.devices.net': {
    schemaPath: '#/properties/vm/properties/devices/properties/net/oneOf',
    byBackend: { udp: '#/definitions/udpNet/', tap: '#/definitions/tapNet/' },
    union: ['backend', 'host', 'hostPort', 'guestPort', 'mac', 'name'],
  },
  'ft.arbiter': {
    schemaPath: '#/properties/ft/properties/arbiter/oneOf',
    byBackend: { file: '#/definitions/fileArbiter/', etcd: '#/definitions/etcdArbiter/' },
    union: ['backend', 'dir', 'endpoints', 'prefix', 'timeoutMs'],
  },
};
const KEY_FIELDS = ['keyFile', 'keyHex', 'keyEnv'] as const;
const NEEDS_ARBITER = 'is required when ft.enabled is true: { backend: file, dir } or { backend: etcd, endpoints }';
const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const MAC = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;
const HEX = /^[0-9a-fA-F]+$/;

/** The value as a message shows it: strings quoted and cut short, containers by kind. */
function show(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Uint8Array) return 'binary data';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

function oneOf(values: readonly unknown[]): string {
  const q = values.map((v) => JSON.stringify(v));
  return q.length === 1 ? q[0]! : `${q.slice(0, -1).join(', ')} or ${q[q.length - 1]}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The value at `path` in `root`, own properties only; undefined when absent. */
function at(root: unknown, path: FieldPath): unknown {
  let v = root;
  for (const seg of path) {
    if (typeof v !== 'object' || v === null || !Object.prototype.hasOwnProperty.call(v, seg)) return undefined;
    v = (v as Record<string | number, unknown>)[seg];
  }
  return v;
}

/** `/ft/arbiter/endpoints/0` as a field path (indices as numbers where the value is a list). */
function pointerPath(root: unknown, pointer: string): (string | number)[] {
  const out: (string | number)[] = [];
  if (pointer === '') return out;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out.push(Array.isArray(at(root, out)) ? Number(seg) : seg);
  }
  return out;
}

/** `ft.arbiter.endpoints[]`: the FIELD_TEXT key of a path. */
function textKey(path: FieldPath): string {
  return path.map((s) => (typeof s === 'number' ? '[]' : s)).join('.').replace(/\.\[\]/g, '[]');
}

/**
 * Why `host` is not an address or a host name (`v6`: it was in brackets); undefined when it is one.
 * Dotted numbers must be an IPv4 address (no `999.1.1.1`, no `10.1`), names follow RFC 1123 (labels of
 * 1..63, 253 in all). The schema's patterns cannot count.
 */
function hostProblem(host: string, v6: boolean): string | undefined {
  if (v6) return isIPv6(host.replace(/%.*$/, '')) ? undefined : 'not an IPv6 address';
  if (/^[\d.]+$/.test(host)) return isIPv4(host) ? undefined : 'not an IPv4 address (four numbers 0..255, as 10.0.0.1)';
  if (host.length > 253 || !host.split('.').every((l) => HOST_LABEL.test(l))) {
    return 'not a host name (labels of 1 to 63 letters, digits and "-", separated by dots)';
  }
  return undefined;
}

/** A problem found, before it is placed in the text: the field and the message (which names it). */
interface Problem {
  readonly path: FieldPath;
  readonly message: string;
}

class Problems {
  readonly list: Problem[] = [];
  readonly #seen = new Set<string>();

  /** `<field>: <text>`, once per field (the schema can fail one value on several keywords). */
  fail(path: FieldPath, text: string): void {
    this.add(path, `${fieldName(path)}: ${text}`);
  }

  add(path: FieldPath, message: string): void {
    const key = fieldName(path);
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.list.push({ path, message });
  }

  /** Whether a problem was reported at `path` itself (its value is then not checked further). */
  has(path: FieldPath): boolean {
    return this.#seen.has(fieldName(path));
  }

  unknownField(path: FieldPath, key: string, known: readonly string[]): void {
    const child = [...path, key];
    const s = suggest(key, known);
    const where = path.length === 0 ? 'the top level' : fieldName(path);
    this.add(
      child,
      s !== undefined
        ? `unknown field ${fieldName(child)} — did you mean ${fieldName([...path, s])}?`
        : `unknown field ${fieldName(child)} (${where} accepts ${known.join(', ')})`,
    );
  }
}

/** The fields a schema node lists (without `$schema`, which only the top level takes, for editors). */
function fieldsOf(node: Record<string, unknown> | undefined): string[] {
  const props = node?.['properties'];
  return isObject(props) ? Object.keys(props).filter((k) => k !== '$schema') : [];
}

/** "must be …" for a value the schema refused at `path` (type, pattern, range, enum, …). */
function wrongValue(p: Problems, path: FieldPath, value: unknown, e: SchemaError): void {
  const key = textKey(path);
  const node = e.parentSchema ?? {};
  const text = FIELD_TEXT[key];
  if (key === 'ft.keyHex') {
    // The value is a secret: messages describe it, never repeat it.
    if (typeof value !== 'string') return p.fail(path, `must be a string of hex digits, got ${isObject(value) || Array.isArray(value) || value === null ? show(value) : `a ${typeof value}`}`);
    return p.fail(
      path,
      `must be an even number of hex digits, at least ${2 * L.keyBytes} (${L.keyBytes} bytes), got ${value.length} characters${HEX.test(value) || value === '' ? '' : ' that are not all hex digits'}`,
    );
  }
  if (key === 'vm.devices.net.mac' && typeof value === 'string') {
    if (!MAC.test(value)) return p.fail(path, `must be a MAC address as xx:xx:xx:xx:xx:xx (e.g. 52:54:00:12:34:56), got ${show(value)}`);
    if (parseInt(value.slice(0, 2), 16) & 1) return p.fail(path, `must be a unicast address (the first byte even; odd is multicast or broadcast), got ${show(value)}`);
    return p.fail(path, 'must not be 00:00:00:00:00:00 (no station has it; e.g. 52:54:00:12:34:56)');
  }
  if (key === 'vm.devices.net.mac') return p.fail(path, `must be a MAC address as xx:xx:xx:xx:xx:xx (e.g. 52:54:00:12:34:56), got ${show(value)}`);
  if (key === 'vm.devices.net.host' && typeof value === 'string' && isIPv6(value)) return p.fail(path, `${show(value)} is an IPv6 address; the udp back-end binds IPv4 only`);
  if (key === 'ft.arbiter.endpoints' && Array.isArray(value)) return p.fail(path, `must be ${text!.want!}, got an empty list`);
  let want: string;
  const type = node['type'];
  if (type === 'integer') {
    want = `an integer between ${String(node['minimum'])} and ${String(node['maximum'])}${text?.unit ?? ''}`;
  } else if (type === 'boolean') {
    want = 'true or false';
  } else if (Array.isArray(node['enum'])) {
    want = oneOf(node['enum']);
  } else if (type === 'object' || (Array.isArray(type) && type.includes('object'))) {
    want = `an object with the fields ${fieldsOf(node).join(', ')}`;
  } else if (text?.want !== undefined) {
    want = text.path ? `${text.want}${PATH_NOTE}` : text.want;
  } else {
    // A keyword no message above covers: Ajv's own words (they never repeat the value).
    return p.fail(path, `${e.message ?? `fails the schema's ${e.keyword}`}`);
  }
  p.fail(path, `must be ${want}, got ${show(value)}`);
}

/** The shape of a `backend`-chosen section whose value matched none of the schema's branches. */
function wrongBranch(p: Problems, path: FieldPath, value: unknown, branch: (typeof BRANCHES)[string]): void {
  if (!isObject(value)) return p.fail(path, `must be an object with the fields ${branch.union.join(', ')}, got ${show(value)}`);
  for (const k of Object.keys(value)) if (!branch.union.includes(k)) p.unknownField(path, k, branch.union);
  const backends = Object.keys(branch.byBackend);
  const key = textKey([...path, 'backend']);
  if (value['backend'] === undefined) p.fail([...path, 'backend'], `is required${FIELD_TEXT[key]!.required!}`);
  else p.fail([...path, 'backend'], `must be ${oneOf(backends)}, got ${show(value['backend'])}`);
}

/** The schema's errors as problems, one per field, in words. */
function schemaProblems(root: unknown, errors: readonly SchemaError[], p: Problems): void {
  // The oneOf branches a section's `backend` did not choose say nothing about it.
  const chosen = new Map<string, string | undefined>();
  for (const [name, branch] of Object.entries(BRANCHES)) {
    const value = at(root, name.split('.'));
    const backend = isObject(value) ? value['backend'] : undefined;
    chosen.set(name, typeof backend === 'string' ? branch.byBackend[backend] : undefined);
  }
  const branchOf = (e: SchemaError): string | undefined =>
    Object.keys(BRANCHES).find((name) => e.instancePath === `/${name.replace(/\./g, '/')}` || e.instancePath.startsWith(`/${name.replace(/\./g, '/')}/`));
  for (const e of errors) {
    const path = pointerPath(root, e.instancePath);
    const value = at(root, path);
    const s = e.schemaPath;
    if (s.startsWith('#/definitions/')) {
      const name = branchOf(e);
      if (name === undefined || !s.startsWith(chosen.get(name) ?? '\0')) continue;
    } else if (Object.values(BRANCHES).some((b) => s.startsWith(`${b.schemaPath}/`))) {
      continue; // the null branch
    }
    const branch = Object.entries(BRANCHES).find(([, b]) => s === b.schemaPath);
    if (branch) {
      if (chosen.get(branch[0]) === undefined) wrongBranch(p, path, value, branch[1]);
      continue;
    }
    // `required` passes on a value that is not an object, so `not` and `oneOf` over it fail there:
    // the type error at the same place is the one to report.
    if ((s === '#/properties/vm/oneOf' || s === '#/properties/ft/not') && !isObject(value)) continue;
    switch (s) {
      case '#/properties/vm/oneOf': {
        const vm = value as Record<string, unknown>;
        if (vm['guest'] !== undefined && vm['kernel'] !== undefined) p.fail([...path, 'guest'], 'and vm.kernel are exclusive: a VM boots either a bare-metal ELF (guest) or Linux (kernel)');
        else p.fail([...path, 'guest'], `is required (${FIELD_TEXT['vm.guest']!.want})`);
        continue;
      }
      case '#/properties/ft/not': {
        const given = Object.keys(value as object).filter((k) => (KEY_FIELDS as readonly string[]).includes(k));
        p.fail([...path, given[1]!], `only one of keyFile, keyHex or keyEnv may be given, but ${given.join(' and ')} are`);
        continue;
      }
      case '#/properties/ft/else/anyOf':
        p.fail(path, "needs one of keyFile, keyHex or keyEnv (the logging channel's pre-shared key) when ft.enabled is true");
        continue;
      case '#/properties/ft/else/required':
      case '#/properties/ft/else/properties/arbiter/type':
        p.fail(['ft', 'arbiter'], NEEDS_ARBITER);
        continue;
      case '#/properties/ft/if':
        continue;
    }
    if (s.startsWith('#/properties/vm/oneOf/') || s.startsWith('#/properties/ft/else/anyOf/')) continue;
    switch (e.keyword) {
      case 'additionalProperties':
        p.unknownField(path, String(e.params['additionalProperty']), fieldsOf(e.parentSchema));
        break;
      case 'required': {
        const field = [...path, String(e.params['missingProperty'])];
        const text = FIELD_TEXT[textKey(field)];
        p.fail(field, `is required${text?.required ?? (text?.want !== undefined ? ` (${text.want})` : '')}`);
        break;
      }
      case 'dependencies':
        p.fail([...path, String(e.params['property'])], 'needs vm.kernel (it is part of a Linux boot)');
        break;
      default:
        // `ft: null` counts as absent, as for the other sections.
        if (path.length === 1 && path[0] === 'ft' && value === null) p.fail(path, `is required${FIELD_TEXT['ft']!.required!}`);
        else wrongValue(p, path, value, e);
    }
  }
}

/** The checks no JSON Schema can state, on the values the schema passed: addresses and relations. */
function semanticProblems(root: unknown, p: Problems): void {
  const address = (path: FieldPath) => {
    const v = at(root, path);
    if (typeof v !== 'string' || p.has(path)) return;
    const colon = v.lastIndexOf(':');
    const host = v.slice(0, colon);
    const v6 = host.startsWith('[');
    const why = hostProblem(v6 ? parseHostPort(v)?.host ?? '' : host, v6);
    if (why !== undefined) p.fail(path, `${JSON.stringify(host)} is ${why}, in ${show(v)}`);
  };
  address(['ft', 'listen']);
  address(['metrics', 'listen']);
  const net = at(root, ['vm', 'devices', 'net']);
  const udpHost = ['vm', 'devices', 'net', 'host'];
  if (isObject(net) && net['backend'] === 'udp' && typeof net['host'] === 'string' && !p.has(udpHost)) {
    const why = hostProblem(net['host'], false);
    if (why !== undefined) p.fail(udpHost, `${show(net['host'])} is ${why}`);
  }
  const endpoints = at(root, ['ft', 'arbiter', 'endpoints']);
  if (Array.isArray(endpoints) && at(root, ['ft', 'arbiter', 'backend']) === 'etcd') {
    endpoints.forEach((e: unknown, i) => {
      const m = typeof e === 'string' ? /^https?:\/\/(\[[^\]]*\]|[^:/]+):/.exec(e) : null;
      if (!m || p.has(['ft', 'arbiter', 'endpoints', i])) return;
      const h = m[1]!;
      const why = h.startsWith('[') ? hostProblem(h.slice(1, -1), true) : hostProblem(h, false);
      if (why !== undefined) p.fail(['ft', 'arbiter', 'endpoints', i], `${JSON.stringify(h)} is ${why}, in ${show(e)}`);
    });
  }
  // Relations between fields, with the defaults standing in for absent ones.
  const int = (key: string, fallback: number): number | undefined => {
    const v = at(root, ['ft', key]);
    if (p.has(['ft', key])) return undefined;
    return v === undefined ? fallback : typeof v === 'number' ? v : undefined;
  };
  const given = (key: string) => (at(root, ['ft', key]) !== undefined ? '' : ' (the default)');
  const heartbeatMs = int('heartbeatMs', D.ft.heartbeatMs);
  const timeoutMs = int('timeoutMs', D.ft.timeoutMs);
  if (heartbeatMs !== undefined && timeoutMs !== undefined && timeoutMs < L.timeoutHeartbeats * heartbeatMs) {
    p.fail(
      ['ft', 'timeoutMs'],
      `must be at least ${L.timeoutHeartbeats} × ft.heartbeatMs = ${L.timeoutHeartbeats * heartbeatMs}, got ${timeoutMs}${given('timeoutMs')}: ` +
        'with fewer than three heartbeats per timeout, one late heartbeat is a false failover; raise ft.timeoutMs or lower ft.heartbeatMs',
    );
  }
  const lagTargetMs = int('lagTargetMs', D.ft.lagTargetMs);
  const maxLagMs = int('maxLagMs', D.ft.maxLagMs);
  // The throttle rises from 0 at the target to its maximum at maxLagMs, so the two cannot meet.
  if (lagTargetMs !== undefined && maxLagMs !== undefined && maxLagMs <= lagTargetMs) {
    p.fail(['ft', 'maxLagMs'], `must be greater than ft.lagTargetMs = ${lagTargetMs}, got ${maxLagMs}${given('maxLagMs')}`);
  }
}

/** Where a field stands in the document (keys in the order written, absent ones after): the issues' order. */
function documentOrder(root: unknown, a: FieldPath, b: FieldPath): number {
  let v = root;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) {
      const rank = (seg: string | number) => {
        if (typeof seg === 'number') return seg;
        const keys = isObject(v) ? Object.keys(v) : [];
        const k = keys.indexOf(seg);
        return k < 0 ? keys.length : k;
      };
      return rank(a[i]!) - rank(b[i]!);
    }
    v = at(v, [a[i]!]);
  }
  return a.length - b.length;
}

// After the schema passed: values of the types the schema states, defaults for what is absent.
type Raw = Record<string, any>;

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
}

function build(root: Raw, baseDir: string): LockstepConfig {
  const path = (v: string | undefined) => (v === undefined ? undefined : isAbsolute(v) ? resolve(v) : resolve(baseDir, v));
  const hostPort = (v: string | undefined, fallback: string): HostPort => parseHostPort(v ?? fallback)!;
  const vm: Raw = root['vm'];
  const devices: Raw = vm['devices'] ?? {};
  const rawNet: Raw | null | undefined = devices['net'];
  const mac = (n: Raw) => (n['mac'] === undefined ? undefined : String(n['mac']).toLowerCase());
  let net: NetConfig | undefined;
  if (rawNet?.['backend'] === 'udp') {
    net = { backend: 'udp', host: rawNet['host'] ?? D.vm.devices.udpHost, hostPort: rawNet['hostPort'], guestPort: rawNet['guestPort'] ?? D.vm.devices.guestPort, mac: mac(rawNet) };
  } else if (rawNet?.['backend'] === 'tap') {
    net = { backend: 'tap', name: rawNet['name'], mac: mac(rawNet) };
  }
  const disk: Raw | null | undefined = devices['disk'];
  const kernel = path(vm['kernel']);
  const vmConfig: VmConfig = {
    id: vm['id'],
    guest: path(vm['guest']),
    linux: kernel === undefined ? undefined : { kernel, initrd: path(vm['initrd']), bios: path(vm['bios']), dtb: path(vm['dtb']) },
    ramMiB: vm['ramMiB'] ?? D.vm.ramMiB,
    clock: vm['clock'] ?? D.vm.clock,
    engine: vm['engine'] ?? D.vm.engine,
    append: vm['append'] ?? '',
    devices: {
      rng: devices['rng'] ?? D.vm.devices.rng,
      disk: disk ? { path: path(disk['path'])!, mode: disk['mode'] ?? D.vm.devices.diskMode } : undefined,
      net,
    },
  };
  const ft: Raw = root['ft'];
  const key: FtKeyConfig | undefined =
    ft['keyFile'] !== undefined ? { source: 'file', path: path(ft['keyFile'])! }
    : ft['keyHex'] !== undefined ? { source: 'hex', hex: String(ft['keyHex']).toLowerCase() }
    : ft['keyEnv'] !== undefined ? { source: 'env', name: ft['keyEnv'] }
    : undefined;
  const a: Raw | null | undefined = ft['arbiter'];
  const arbiter: ArbiterConfig | undefined =
    a?.['backend'] === 'file' ? { backend: 'file', dir: path(a['dir'])! }
    : a?.['backend'] === 'etcd' ? { backend: 'etcd', endpoints: [...(a['endpoints'] as string[])], prefix: a['prefix'] ?? D.ft.etcdPrefix, timeoutMs: a['timeoutMs'] ?? D.ft.etcdTimeoutMs }
    : undefined;
  const tls: Raw | null | undefined = ft['tls'];
  const common = {
    listen: hostPort(ft['listen'], D.ft.listen),
    tls: tls ? { cert: path(tls['cert'])!, key: path(tls['key'])!, ca: path(tls['ca'])! } : undefined,
    heartbeatMs: ft['heartbeatMs'] ?? D.ft.heartbeatMs,
    timeoutMs: ft['timeoutMs'] ?? D.ft.timeoutMs,
    cloneTimeoutMs: ft['cloneTimeoutMs'] ?? D.ft.cloneTimeoutMs,
    lagTargetMs: ft['lagTargetMs'] ?? D.ft.lagTargetMs,
    maxLagMs: ft['maxLagMs'] ?? D.ft.maxLagMs,
    maxUnackedBytes: ft['maxUnackedBytes'] ?? D.ft.maxUnackedBytes,
    outputRule: ft['outputRule'] ?? D.ft.outputRule,
    hashIntervalInstructions: ft['hashIntervalInstructions'] ?? D.ft.hashIntervalInstructions,
    dataPath: ft['dataPath'] ?? D.ft.dataPath,
  };
  // The schema requires the key and the arbiter unless enabled is false.
  const ftConfig = (ft['enabled'] ?? D.ft.enabled) ? { enabled: true as const, ...common, key: key!, arbiter: arbiter! } : { enabled: false as const, ...common, key, arbiter };
  const metrics: Raw | null | undefined = root['metrics'];
  return { vm: vmConfig, ft: ftConfig, metrics: metrics ? { listen: hostPort(metrics['listen'], D.metrics.listen) } : undefined };
}

/** The warnings a valid configuration carries (each names the source and the field). */
function warningsOf(config: LockstepConfig, source: string): string[] {
  const out: string[] = [];
  if (!config.ft.outputRule) {
    out.push(
      `${source}: ft.outputRule is false: outputs leave before the secondary has the log that produced them, so a ` +
        'failover can lose or contradict what clients were told. Use this only to measure the cost of the output rule.',
    );
  }
  return out;
}

/** Shared by {@link validateConfig} and `parseConfig`, which also passes where each field is in the text. */
export function validateWithPositions(obj: unknown, sourceName: string, baseDir: string, locate: Locate | undefined): ValidatedConfig {
  if (obj === undefined || obj === null) {
    throw new ConfigError(sourceName, [
      { field: '', message: 'the configuration is empty; it needs at least vm.id and vm.guest or vm.kernel (and ft.arbiter and a key unless ft.enabled is false)' },
    ]);
  }
  const p = new Problems();
  if (!check(obj)) schemaProblems(obj, check.errors ?? [], p);
  semanticProblems(obj, p);
  if (p.list.length > 0) {
    const issues = [...p.list]
      .sort((a, b) => documentOrder(obj, a.path, b.path))
      .map(({ path, message }): ConfigIssue => {
        const pos = locate?.(path);
        return pos ? { field: fieldName(path), message: `${message} (line ${pos.line}, column ${pos.column})`, line: pos.line, column: pos.column } : { field: fieldName(path), message };
      });
    throw new ConfigError(sourceName, issues);
  }
  const config = deepFreeze(build(obj as Raw, resolve(baseDir)));
  return Object.freeze({ config, warnings: Object.freeze(warningsOf(config, sourceName)) });
}

/**
 * Checks a configuration already parsed into plain values (e.g. from JSON.parse) against
 * lockstep.schema.json and the rules between fields, and returns it frozen, with every default filled
 * in and every path made absolute against `baseDir`. Files and environment variables are not looked at
 * (see `loadConfig`).
 *
 * @param sourceName how messages name the configuration (a file name, `--config`, …)
 * @throws {ConfigError} listing every problem, each as `<sourceName>: <field.path>: <what is wrong>`
 */
export function validateConfig(obj: unknown, sourceName: string, baseDir: string): ValidatedConfig {
  return validateWithPositions(obj, sourceName, baseDir, undefined);
}
