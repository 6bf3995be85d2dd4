// A VM's desired-state record (`desired/<vm>`) from its configuration file: the configuration written
// back in its file form with absolute paths (agents on other hosts write it to their own directory), the
// demand placement works with, and its VM-host rules.
import { formatHostPort, type LockstepConfig } from '../../config/index.js';
import { OptionError } from '../../errors.js';
import type { VmHostRuleType } from '../placement/index.js';
import type { JsonValue } from '../store/store.js';
import type { DesiredVm, VmHostRuleSpec } from './layout.js';
import { RESTART_PRIORITIES, type RestartPriority } from './priority.js';

/** Default CPU demand of a VM, MIPS. */
export const DEFAULT_VM_MIPS = 100;
/** Default FT logging bandwidth of a VM, bytes/s. */
export const DEFAULT_VM_LOG_BANDWIDTH = 1_000_000;

/** What the VM boots: `guest`, or `kernel` with its companions. */
function vmImages(c: LockstepConfig): Record<string, JsonValue> {
  const l = c.vm.linux;
  if (!l) return { guest: c.vm.guest ?? '' };
  const out: Record<string, JsonValue> = { kernel: l.kernel };
  if (l.initrd !== undefined) out.initrd = l.initrd;
  if (l.bios !== undefined) out.bios = l.bios;
  if (l.dtb !== undefined) out.dtb = l.dtb;
  return out;
}

/** The file form (JSON) of a validated configuration: every field explicit, every path absolute. */
export function configToJson(c: LockstepConfig): JsonValue {
  const devices: Record<string, JsonValue> = { rng: c.vm.devices.rng };
  const disk = c.vm.devices.disk;
  if (disk) devices.disk = { path: disk.path, mode: disk.mode };
  const net = c.vm.devices.net;
  if (net) {
    devices.net =
      net.backend === 'udp'
        ? { backend: 'udp', host: net.host, hostPort: net.hostPort, guestPort: net.guestPort, ...(net.mac !== undefined ? { mac: net.mac } : {}) }
        : { backend: 'tap', name: net.name, ...(net.mac !== undefined ? { mac: net.mac } : {}) };
  }
  const f = c.ft;
  const ft: Record<string, JsonValue> = {
    enabled: f.enabled,
    listen: formatHostPort(f.listen),
    heartbeatMs: f.heartbeatMs,
    timeoutMs: f.timeoutMs,
    cloneTimeoutMs: f.cloneTimeoutMs,
    lagTargetMs: f.lagTargetMs,
    maxLagMs: f.maxLagMs,
    maxUnackedBytes: f.maxUnackedBytes,
    outputRule: f.outputRule,
    hashIntervalInstructions: f.hashIntervalInstructions,
  };
  if (f.key !== undefined) {
    if (f.key.source === 'file') ft.keyFile = f.key.path;
    else if (f.key.source === 'hex') ft.keyHex = f.key.hex;
    else ft.keyEnv = f.key.name;
  }
  if (f.tls !== undefined) ft.tls = { cert: f.tls.cert, key: f.tls.key, ca: f.tls.ca };
  if (f.arbiter !== undefined) {
    ft.arbiter = f.arbiter.backend === 'file' ? { backend: 'file', dir: f.arbiter.dir } : { backend: 'etcd', endpoints: [...f.arbiter.endpoints], prefix: f.arbiter.prefix, timeoutMs: f.arbiter.timeoutMs };
  }
  const out: Record<string, JsonValue> = {
    vm: { id: c.vm.id, ...vmImages(c), ramMiB: c.vm.ramMiB, clock: c.vm.clock, ...(c.vm.append === '' ? {} : { append: c.vm.append }), devices },
    ft,
  };
  if (c.metrics !== undefined) out.metrics = { listen: formatHostPort(c.metrics.listen) };
  return out;
}

const RULE_TYPES: readonly VmHostRuleType[] = ['must', 'must-not', 'should', 'should-not'];

/**
 * Parse `type:group` (`must:rack-1`, `should-not:old`).
 * @throws OptionError (field `rule`).
 */
export function parseHostRule(text: string): VmHostRuleSpec {
  const m = /^([a-z-]+):(.+)$/.exec(text);
  if (m === null || !RULE_TYPES.includes(m[1] as VmHostRuleType)) throw new OptionError('rule', `'${text}' must be <type>:<host group> with type one of ${RULE_TYPES.join(', ')}`);
  return { type: m[1] as VmHostRuleType, hostGroup: m[2]! };
}

/** What {@link desiredVm} takes besides the configuration. */
export interface DesiredVmOptions {
  /** CPU demand, MIPS (default 100). */
  mips?: number;
  /** Memory demand, bytes (default: the guest's RAM). */
  memoryBytes?: number;
  /** FT logging bandwidth, bytes/s (default 1 MB/s). */
  logBandwidth?: number;
  vcpus?: number;
  rules?: VmHostRuleSpec[];
  registeredHost?: string;
  /** HA restart priority (default medium). */
  restartPriority?: RestartPriority;
}

/** The desired-state record of a VM with configuration `c`. */
export function desiredVm(c: LockstepConfig, o: DesiredVmOptions = {}): DesiredVm {
  const num = (field: string, v: number | undefined, d: number, integer: boolean): number => {
    const x = v ?? d;
    if (!Number.isFinite(x) || x < 0 || (integer && !Number.isSafeInteger(x))) throw new OptionError(field, `must be a non-negative ${integer ? 'integer' : 'number'}, got ${String(v)}`);
    return x;
  };
  const d: DesiredVm = {
    id: c.vm.id,
    config: configToJson(c),
    ft: c.ft.enabled,
    demand: {
      mips: num('mips', o.mips, DEFAULT_VM_MIPS, false),
      memoryBytes: num('memoryBytes', o.memoryBytes, c.vm.ramMiB * 1024 * 1024, true),
      logBandwidth: num('logBandwidth', o.logBandwidth, DEFAULT_VM_LOG_BANDWIDTH, true),
    },
    vcpus: num('vcpus', o.vcpus, 1, true) || 1,
    rules: [...(o.rules ?? [])],
    createdAt: Date.now(),
  };
  if (o.registeredHost !== undefined) d.registeredHost = o.registeredHost;
  if (o.restartPriority !== undefined) {
    if (!RESTART_PRIORITIES.includes(o.restartPriority)) throw new OptionError('restartPriority', `must be one of ${RESTART_PRIORITIES.join(', ')}, got ${JSON.stringify(o.restartPriority)}`);
    d.restartPriority = o.restartPriority;
  }
  return d;
}
