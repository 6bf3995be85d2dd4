// The configuration's checks: every problem collected with the field's dotted path, defaults filled in,
// relative paths resolved, the result frozen. lockstep.schema.json describes the same for editors
// (test/config/schema.test.ts keeps the two agreeing). Reads no files and no environment (see load.ts).
import { isIPv4, isIPv6 } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { parseHostPort } from './address.js';
import { ConfigError, type ConfigIssue } from './errors.js';
import { suggest } from './suggest.js';
import {
  CONFIG_DEFAULTS as D,
  CONFIG_LIMITS as L,
  type ArbiterConfig,
  type DevicesConfig,
  type DiskConfig,
  type FtConfig,
  type FtKeyConfig,
  type HostPort,
  type LockstepConfig,
  type MetricsConfig,
  type NetConfig,
  type TlsConfig,
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

const VM_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const MAC = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;
const TAP_NAME = /^[\w.-]{1,15}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const HEX = /^[0-9a-fA-F]+$/;
const HOST = /^(?:\[([0-9a-fA-F:.]+(?:%[\w.-]+)?)\]|([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?))$/;
const ETCD_ENDPOINT = /^https?:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):(\d{1,5})\/?$/;
const HOST_LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * Why `host` (as the HOST pattern split it: an IPv6 address without brackets, or anything else) is not
 * an address or a host name; undefined when it is one. Dotted numbers must be an IPv4 address (no
 * `999.1.1.1`, no `10.1`), names follow RFC 1123 (labels of 1..63, 253 in all).
 */
function hostProblem(host: string, v6: boolean): string | undefined {
  if (v6) return isIPv6(host.replace(/%.*$/, '')) ? undefined : 'not an IPv6 address';
  if (/^[\d.]+$/.test(host)) return isIPv4(host) ? undefined : 'not an IPv4 address (four numbers 0..255, as 10.0.0.1)';
  if (host.length > 253 || !host.split('.').every((l) => HOST_LABEL.test(l))) {
    return 'not a host name (labels of 1 to 63 letters, digits and "-", separated by dots)';
  }
  return undefined;
}

const TOP_FIELDS = ['vm', 'ft', 'metrics'] as const;
/** The top-level field through which a JSON file names its schema for editors (`"$schema": "…/lockstep.schema.json"`). */
const SCHEMA_FIELD = '$schema';
const VM_FIELDS = ['id', 'guest', 'kernel', 'initrd', 'bios', 'dtb', 'ramMiB', 'clock', 'append', 'devices'] as const;
const DEVICE_FIELDS = ['rng', 'disk', 'net'] as const;
const DISK_FIELDS = ['path', 'mode'] as const;
const UDP_FIELDS = ['backend', 'host', 'hostPort', 'guestPort', 'mac'] as const;
const TAP_FIELDS = ['backend', 'name', 'mac'] as const;
const FT_FIELDS = [
  'enabled', 'listen', 'keyFile', 'keyHex', 'keyEnv', 'tls', 'heartbeatMs', 'timeoutMs', 'lagTargetMs', 'maxLagMs',
  'maxUnackedBytes', 'outputRule', 'arbiter', 'hashIntervalInstructions', 'dataPath',
] as const;
const TLS_FIELDS = ['cert', 'key', 'ca'] as const;
const FILE_ARBITER_FIELDS = ['backend', 'dir'] as const;
const ETCD_ARBITER_FIELDS = ['backend', 'endpoints', 'prefix', 'timeoutMs'] as const;
const METRICS_FIELDS = ['listen'] as const;

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

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function oneOf(values: readonly string[]): string {
  const q = values.map((v) => JSON.stringify(v));
  return q.length === 1 ? q[0]! : `${q.slice(0, -1).join(', ')} or ${q[q.length - 1]}`;
}

/** A section that passed the object check: its fields and where it is. */
interface Section {
  readonly path: FieldPath;
  readonly fields: Record<string, unknown>;
}

class Checker {
  readonly issues: ConfigIssue[] = [];
  constructor(
    readonly baseDir: string,
    readonly locate: Locate | undefined,
  ) {}

  /** Records a problem with the field at `path`; `text` follows the field's name. */
  fail(path: FieldPath, text: string): undefined {
    this.#add(path, `${fieldName(path)}: ${text}`);
    return undefined;
  }

  #add(path: FieldPath, message: string): void {
    const pos = this.locate?.(path);
    this.issues.push(
      pos
        ? { field: fieldName(path), message: `${message} (line ${pos.line}, column ${pos.column})`, line: pos.line, column: pos.column }
        : { field: fieldName(path), message },
    );
  }

  /**
   * The object at `path` with its field names checked against `known`; undefined (with an issue) when it
   * is not an object. Unknown fields are reported with the closest known name.
   */
  section(value: unknown, path: FieldPath, known: readonly string[]): Section | undefined {
    if (!isPlainObject(value)) return this.fail(path, `must be an object with the fields ${known.join(', ')}, got ${show(value)}`);
    for (const key of Object.keys(value)) {
      // `$schema` at the top names lockstep.schema.json for editors; it means nothing here.
      if (known.includes(key) || (path.length === 0 && key === SCHEMA_FIELD)) continue;
      const childPath = [...path, key];
      const s = suggest(key, known);
      const where = path.length === 0 ? 'the top level' : fieldName(path);
      this.#add(
        childPath,
        s !== undefined
          ? `unknown field ${fieldName(childPath)} — did you mean ${fieldName([...path, s])}?`
          : `unknown field ${fieldName(childPath)} (${where} accepts ${known.join(', ')})`,
      );
    }
    return { path, fields: value };
  }

  /** An optional sub-section: undefined when absent or null. */
  optionalSection(s: Section, key: string, known: readonly string[]): Section | null | undefined {
    const v = get(s, key);
    if (v === undefined || v === null) return null;
    return this.section(v, [...s.path, key], known);
  }

  required(s: Section, key: string, what: string): unknown {
    const v = get(s, key);
    if (v === undefined) this.fail([...s.path, key], `is required (${what})`);
    return v;
  }

  int(s: Section, key: string, range: { min: number; max: number }, fallback: number, unit = ''): number | undefined {
    const v = get(s, key);
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < range.min || v > range.max) {
      return this.fail([...s.path, key], `must be an integer between ${range.min} and ${range.max}${unit}, got ${show(v)}`);
    }
    return v;
  }

  bool(s: Section, key: string, fallback: boolean): boolean | undefined {
    const v = get(s, key);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') return this.fail([...s.path, key], `must be true or false, got ${show(v)}`);
    return v;
  }

  choice<T extends string>(s: Section, key: string, values: readonly T[], fallback: T | undefined, what = ''): T | undefined {
    const v = get(s, key);
    if (v === undefined) {
      if (fallback === undefined) this.fail([...s.path, key], `is required: ${oneOf(values)}${what}`);
      return fallback;
    }
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
      return this.fail([...s.path, key], `must be ${oneOf(values)}, got ${show(v)}`);
    }
    return v as T;
  }

  /** A non-empty string matching `pattern`; `expected` says what it should look like. */
  string(s: Section, key: string, pattern: RegExp, expected: string, fallback?: string): string | undefined {
    const v = get(s, key);
    if (v === undefined) {
      if (fallback === undefined) this.fail([...s.path, key], `is required (${expected})`);
      return fallback;
    }
    if (typeof v !== 'string' || !pattern.test(v)) return this.fail([...s.path, key], `must be ${expected}, got ${show(v)}`);
    return v;
  }

  /** A file or directory path, resolved against the configuration's directory. */
  path(s: Section, key: string, what: string, required: boolean): string | undefined {
    const v = get(s, key);
    if (v === undefined) {
      if (required) this.fail([...s.path, key], `is required (${what})`);
      return undefined;
    }
    if (typeof v !== 'string' || v === '' || v.includes('\0')) {
      return this.fail([...s.path, key], `must be ${what} (relative paths are taken from the configuration file's directory), got ${show(v)}`);
    }
    return isAbsolute(v) ? resolve(v) : resolve(this.baseDir, v);
  }

  /** A `host:port` address (`[::1]:7400` for IPv6). */
  hostPort(s: Section, key: string, fallback: string): HostPort | undefined {
    const v = get(s, key) ?? fallback;
    const bad = () =>
      this.fail([...s.path, key], `must be an address as host:port (e.g. 127.0.0.1:7400, [::1]:7400), port 0..65535, got ${show(v)}`);
    if (typeof v !== 'string') return bad();
    const a = parseHostPort(v);
    if (!a || a.port > L.port.max) return bad();
    const colon = v.lastIndexOf(':');
    const host = HOST.exec(v.slice(0, colon));
    if (!host) return bad();
    const why = hostProblem(a.host, host[1] !== undefined);
    if (why !== undefined) return this.fail([...s.path, key], `${JSON.stringify(v.slice(0, colon))} is ${why}, in ${show(v)}`);
    return a;
  }
}

function get(s: Section, key: string): unknown {
  return Object.prototype.hasOwnProperty.call(s.fields, key) ? s.fields[key] : undefined;
}

function checkMac(c: Checker, s: Section): string | undefined {
  const v = get(s, 'mac');
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !MAC.test(v)) return c.fail([...s.path, 'mac'], `must be a MAC address as xx:xx:xx:xx:xx:xx (e.g. 52:54:00:12:34:56), got ${show(v)}`);
  if (parseInt(v.slice(0, 2), 16) & 1) return c.fail([...s.path, 'mac'], `must be a unicast address (the first byte even; odd is multicast or broadcast), got ${show(v)}`);
  if (/^0{2}(?::0{2}){5}$/.test(v)) return c.fail([...s.path, 'mac'], 'must not be 00:00:00:00:00:00 (no station has it; e.g. 52:54:00:12:34:56)');
  return v.toLowerCase();
}

function checkNet(c: Checker, devices: Section): NetConfig | undefined {
  const raw = get(devices, 'net');
  if (raw === undefined || raw === null) return undefined;
  const path = [...devices.path, 'net'];
  const backendValue = isPlainObject(raw) ? raw['backend'] : undefined;
  const known = backendValue === 'udp' ? UDP_FIELDS : backendValue === 'tap' ? TAP_FIELDS : [...new Set([...UDP_FIELDS, ...TAP_FIELDS])];
  const s = c.section(raw, path, known);
  if (!s) return undefined;
  const backend = c.choice(s, 'backend', ['udp', 'tap'] as const, undefined, ' (udp: host port forwarding; tap: a Linux TAP device)');
  const mac = checkMac(c, s);
  if (backend === 'udp') {
    const hostPort =
      get(s, 'hostPort') === undefined
        ? c.fail([...path, 'hostPort'], 'is required (the host UDP port forwarded to the guest; 0 for any free port)')
        : c.int(s, 'hostPort', L.port, 0);
    const guestPort = c.int(s, 'guestPort', L.guestPort, D.vm.devices.guestPort);
    let host = c.string(s, 'host', /^\S+$/, 'an IPv4 address or a host name (e.g. 127.0.0.1)', D.vm.devices.udpHost);
    if (host !== undefined) {
      // The forwarder's sockets are IPv4 (udp4).
      const why = isIPv6(host) ? 'an IPv6 address; the udp back-end binds IPv4 only' : hostProblem(host, false);
      if (why !== undefined) host = c.fail([...path, 'host'], `${show(host)} is ${why}`);
    }
    return { backend, host: host ?? '', hostPort: hostPort ?? 0, guestPort: guestPort ?? 0, mac };
  }
  if (backend === 'tap') {
    const name = c.string(s, 'name', TAP_NAME, 'a network interface name of 1 to 15 letters, digits, ".", "-" or "_"');
    return { backend, name: name ?? '', mac };
  }
  return undefined;
}

function checkVm(c: Checker, raw: unknown): VmConfig | undefined {
  const s = c.section(raw, ['vm'], VM_FIELDS);
  if (!s) return undefined;
  const id = c.string(s, 'id', VM_ID, 'a VM name: 1 to 63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit');
  // A bare-metal ELF (`guest`) or Linux (`kernel`, with QEMU's companions), never both.
  const hasKernel = get(s, 'kernel') !== undefined;
  const guest = c.path(s, 'guest', 'the path of the guest ELF file, or vm.kernel to boot Linux', !hasKernel);
  const kernel = c.path(s, 'kernel', 'the path of a Linux kernel Image (raw or gzip)', false);
  const initrd = c.path(s, 'initrd', 'the path of an initrd (a cpio archive, raw or gzip)', false);
  const bios = c.path(s, 'bios', 'the path of an M-mode firmware ELF', false);
  const dtb = c.path(s, 'dtb', 'the path of a flattened device tree (.dtb)', false);
  if (hasKernel && get(s, 'guest') !== undefined) c.fail([...s.path, 'guest'], 'and vm.kernel are exclusive: a VM boots either a bare-metal ELF (guest) or Linux (kernel)');
  for (const [key, value] of [['initrd', initrd], ['bios', bios], ['dtb', dtb]] as const) {
    if (value !== undefined && !hasKernel) c.fail([...s.path, key], 'needs vm.kernel (it is part of a Linux boot)');
  }
  const linux = kernel === undefined ? undefined : { kernel, initrd, bios, dtb };
  const ramMiB = c.int(s, 'ramMiB', L.ramMiB, D.vm.ramMiB);
  const clock = c.choice(s, 'clock', ['real', 'virtual'] as const, D.vm.clock);
  const append = c.string(s, 'append', /^[^\0]{0,4096}$/, 'the guest command line: at most 4096 characters, no NUL', '');
  let devices: DevicesConfig = { rng: D.vm.devices.rng, disk: undefined, net: undefined };
  const rawDevices = get(s, 'devices');
  if (rawDevices !== undefined && rawDevices !== null) {
    const ds = c.section(rawDevices, ['vm', 'devices'], DEVICE_FIELDS);
    if (ds) {
      const rng = c.bool(ds, 'rng', D.vm.devices.rng);
      let disk: DiskConfig | undefined;
      const dk = c.optionalSection(ds, 'disk', DISK_FIELDS);
      if (dk) {
        const path = c.path(dk, 'path', 'the path of a raw disk image (a multiple of 512 bytes)', true);
        const mode = c.choice(dk, 'mode', ['shared', 'separate'] as const, D.vm.devices.diskMode);
        disk = { path: path ?? '', mode: mode ?? 'shared' };
      }
      devices = { rng: rng ?? false, disk, net: checkNet(c, ds) };
    }
  }
  return { id: id ?? '', guest, linux, ramMiB: ramMiB ?? 0, clock: clock ?? 'real', append: append ?? '', devices };
}

function checkKey(c: Checker, s: Section, enabled: boolean): FtKeyConfig | undefined {
  // In the order the file gives them, so that the second one is the one reported.
  const given = Object.keys(s.fields).filter((k): k is 'keyFile' | 'keyHex' | 'keyEnv' => ['keyFile', 'keyHex', 'keyEnv'].includes(k));
  if (given.length === 0) {
    if (enabled) c.fail(s.path, 'needs one of keyFile, keyHex or keyEnv (the logging channel\'s pre-shared key) when ft.enabled is true');
    return undefined;
  }
  if (given.length > 1) {
    return c.fail([...s.path, given[1]!], `only one of keyFile, keyHex or keyEnv may be given, but ${given.join(' and ')} are`);
  }
  const which = given[0]!;
  if (which === 'keyFile') {
    const path = c.path(s, 'keyFile', `the path of a file holding the pre-shared key (at least ${L.keyBytes} bytes)`, true);
    return path === undefined ? undefined : { source: 'file', path };
  }
  if (which === 'keyHex') {
    const v = get(s, 'keyHex');
    // The value is a secret: messages describe it, never repeat it.
    if (typeof v !== 'string') return c.fail([...s.path, 'keyHex'], `must be a string of hex digits, got ${typeof v === 'object' ? show(v) : `a ${typeof v}`}`);
    if (!HEX.test(v) || v.length % 2 !== 0 || v.length < 2 * L.keyBytes) {
      return c.fail(
        [...s.path, 'keyHex'],
        `must be an even number of hex digits, at least ${2 * L.keyBytes} (${L.keyBytes} bytes), got ${v.length} characters${HEX.test(v) || v === '' ? '' : ' that are not all hex digits'}`,
      );
    }
    return { source: 'hex', hex: v.toLowerCase() };
  }
  const name = c.string(s, 'keyEnv', ENV_NAME, 'the name of an environment variable (letters, digits and "_", not starting with a digit)');
  return name === undefined ? undefined : { source: 'env', name };
}

function checkTls(c: Checker, s: Section): TlsConfig | undefined {
  const t = c.optionalSection(s, 'tls', TLS_FIELDS);
  if (!t) return undefined;
  const cert = c.path(t, 'cert', "the path of this side's certificate (PEM)", true);
  const key = c.path(t, 'key', "the path of this side's private key (PEM)", true);
  const ca = c.path(t, 'ca', 'the path of the CA certificate both sides are signed by (PEM)', true);
  return { cert: cert ?? '', key: key ?? '', ca: ca ?? '' };
}

function checkArbiter(c: Checker, s: Section, enabled: boolean): ArbiterConfig | undefined {
  const raw = get(s, 'arbiter');
  const path = [...s.path, 'arbiter'];
  if (raw === undefined || raw === null) {
    if (enabled) c.fail(path, 'is required when ft.enabled is true: { backend: file, dir } or { backend: etcd, endpoints }');
    return undefined;
  }
  const backendValue = isPlainObject(raw) ? raw['backend'] : undefined;
  const known =
    backendValue === 'file' ? FILE_ARBITER_FIELDS : backendValue === 'etcd' ? ETCD_ARBITER_FIELDS : [...new Set([...FILE_ARBITER_FIELDS, ...ETCD_ARBITER_FIELDS])];
  const a = c.section(raw, path, known);
  if (!a) return undefined;
  const backend = c.choice(a, 'backend', ['file', 'etcd'] as const, undefined, ' (file: a directory both halves share; etcd: an etcd cluster)');
  if (backend === 'file') {
    const dir = c.path(a, 'dir', 'the path of a directory both halves share (e.g. on NFS)', true);
    return { backend, dir: dir ?? '' };
  }
  if (backend !== 'etcd') return undefined;
  const endpoints: string[] = [];
  const rawEndpoints = get(a, 'endpoints');
  const epPath = [...path, 'endpoints'];
  if (rawEndpoints === undefined) c.fail(epPath, 'is required (a list of etcd URLs such as http://127.0.0.1:2379)');
  else if (!Array.isArray(rawEndpoints) || rawEndpoints.length === 0) {
    c.fail(epPath, `must be a non-empty list of etcd URLs such as http://127.0.0.1:2379, got ${Array.isArray(rawEndpoints) ? 'an empty list' : show(rawEndpoints)}`);
  } else {
    rawEndpoints.forEach((e: unknown, i) => {
      const m = typeof e === 'string' ? ETCD_ENDPOINT.exec(e) : null;
      if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) c.fail([...epPath, i], `must be an etcd URL as http(s)://host:port (e.g. http://127.0.0.1:2379), got ${show(e)}`);
      else {
        const h = m[1]!;
        const why = h.startsWith('[') ? hostProblem(h.slice(1, -1), true) : hostProblem(h, false);
        if (why !== undefined) c.fail([...epPath, i], `${JSON.stringify(h)} is ${why}, in ${show(e)}`);
        else endpoints.push(e as string);
      }
    });
  }
  const prefix = c.string(a, 'prefix', /^[\x21-\x7e]{1,256}$/, 'a key prefix of 1 to 256 printable characters without spaces', D.ft.etcdPrefix);
  const timeoutMs = c.int(a, 'timeoutMs', L.etcdTimeoutMs, D.ft.etcdTimeoutMs);
  return { backend, endpoints, prefix: prefix ?? '', timeoutMs: timeoutMs ?? 0 };
}

function checkFt(c: Checker, raw: unknown): FtConfig | undefined {
  const s = raw === undefined || raw === null ? { path: ['ft'], fields: {} } : c.section(raw, ['ft'], FT_FIELDS);
  if (!s) return undefined;
  const enabled = c.bool(s, 'enabled', D.ft.enabled);
  const on = enabled ?? true;
  const listen = c.hostPort(s, 'listen', D.ft.listen);
  const key = checkKey(c, s, on);
  const tls = checkTls(c, s);
  const heartbeatMs = c.int(s, 'heartbeatMs', L.heartbeatMs, D.ft.heartbeatMs);
  const timeoutMs = c.int(s, 'timeoutMs', L.timeoutMs, D.ft.timeoutMs);
  if (heartbeatMs !== undefined && timeoutMs !== undefined && timeoutMs < L.timeoutHeartbeats * heartbeatMs) {
    const given = get(s, 'timeoutMs') !== undefined ? '' : ' (the default)';
    c.fail(
      ['ft', 'timeoutMs'],
      `must be at least ${L.timeoutHeartbeats} × ft.heartbeatMs = ${L.timeoutHeartbeats * heartbeatMs}, got ${timeoutMs}${given}: ` +
        'with fewer than three heartbeats per timeout, one late heartbeat is a false failover; raise ft.timeoutMs or lower ft.heartbeatMs',
    );
  }
  const lagTargetMs = c.int(s, 'lagTargetMs', L.lagTargetMs, D.ft.lagTargetMs);
  const maxLagMs = c.int(s, 'maxLagMs', L.maxLagMs, D.ft.maxLagMs);
  if (lagTargetMs !== undefined && maxLagMs !== undefined && maxLagMs <= lagTargetMs) {
    const given = get(s, 'maxLagMs') !== undefined ? '' : ' (the default)';
    // The throttle rises from 0 at the target to its maximum at maxLagMs, so the two cannot meet.
    c.fail(['ft', 'maxLagMs'], `must be greater than ft.lagTargetMs = ${lagTargetMs}, got ${maxLagMs}${given}`);
  }
  const maxUnackedBytes = c.int(s, 'maxUnackedBytes', L.maxUnackedBytes, D.ft.maxUnackedBytes);
  const outputRule = c.bool(s, 'outputRule', D.ft.outputRule);
  const arbiter = checkArbiter(c, s, on);
  const hashIntervalInstructions = c.int(s, 'hashIntervalInstructions', L.hashIntervalInstructions, D.ft.hashIntervalInstructions, ' (0: no hashes)');
  const dataPath = c.choice(s, 'dataPath', ['native', 'js'] as const, D.ft.dataPath);
  const common = {
    listen: listen ?? { host: '', port: 0 },
    tls,
    heartbeatMs: heartbeatMs ?? 0,
    timeoutMs: timeoutMs ?? 0,
    lagTargetMs: lagTargetMs ?? 0,
    maxLagMs: maxLagMs ?? 0,
    maxUnackedBytes: maxUnackedBytes ?? 0,
    outputRule: outputRule ?? true,
    hashIntervalInstructions: hashIntervalInstructions ?? 0,
    dataPath: dataPath ?? D.ft.dataPath,
  };
  if (on) {
    if (key === undefined || arbiter === undefined) return undefined;
    return { enabled: true, ...common, key, arbiter };
  }
  return { enabled: false, ...common, key, arbiter };
}

function checkMetrics(c: Checker, raw: unknown): MetricsConfig | undefined {
  if (raw === undefined || raw === null) return undefined;
  const s = c.section(raw, ['metrics'], METRICS_FIELDS);
  if (!s) return undefined;
  const listen = c.hostPort(s, 'listen', D.metrics.listen);
  return { listen: listen ?? { host: '', port: 0 } };
}

function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    for (const x of Object.values(v)) deepFreeze(x);
    Object.freeze(v);
  }
  return v;
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
  const c = new Checker(resolve(baseDir), locate);
  let vm: VmConfig | undefined;
  let ft: FtConfig | undefined;
  let metrics: MetricsConfig | undefined;
  if (obj === undefined || obj === null) {
    c.issues.push({ field: '', message: 'the configuration is empty; it needs at least vm.id and vm.guest or vm.kernel (and ft.arbiter and a key unless ft.enabled is false)' });
  } else {
    const top = c.section(obj, [], TOP_FIELDS);
    if (top) {
      const schemaRef = get(top, SCHEMA_FIELD);
      if (schemaRef !== undefined && typeof schemaRef !== 'string') c.fail([SCHEMA_FIELD], `must be a string (where editors find lockstep.schema.json), got ${show(schemaRef)}`);
      const rawVm = get(top, 'vm');
      if (rawVm === undefined || rawVm === null) c.fail(['vm'], 'is required (the VM: at least id and guest)');
      else vm = checkVm(c, rawVm);
      ft = checkFt(c, get(top, 'ft'));
      metrics = checkMetrics(c, get(top, 'metrics'));
    }
  }
  if (c.issues.length > 0 || vm === undefined || ft === undefined) {
    // The checks return undefined only after recording an issue; the guard is for the type checker.
    throw new ConfigError(sourceName, c.issues.length > 0 ? c.issues : [{ field: '', message: 'invalid configuration' }]);
  }
  const config = deepFreeze<LockstepConfig>({ vm, ft, metrics });
  return Object.freeze({ config, warnings: Object.freeze(warningsOf(config, sourceName)) });
}

/**
 * Checks a configuration already parsed into plain values (e.g. from JSON.parse) and returns it
 * frozen, with every default filled in and every path made absolute against `baseDir`. Files and
 * environment variables are not looked at (see `loadConfig`).
 *
 * @param sourceName how messages name the configuration (a file name, `--config`, …)
 * @throws {ConfigError} listing every problem, each as `<sourceName>: <field.path>: <what is wrong>`
 */
export function validateConfig(obj: unknown, sourceName: string, baseDir: string): ValidatedConfig {
  return validateWithPositions(obj, sourceName, baseDir, undefined);
}
