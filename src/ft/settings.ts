// A loaded configuration as the FT library takes it, mapped once: the VM spec, the arbiter, the key,
// TLS, and the options of the primary (the same for a primary started as one and a promoted secondary).
import { readFileSync } from 'node:fs';
import type { FtConfig, LoadedConfig } from '../config/index.js';
import { OptionError } from '../errors.js';
import { arbiterFor } from './arbiter-config.js';
import { LocalArbiter } from './arbiter-local.js';
import type { Arbiter } from './arbiter.js';
import type { FtPrimaryOptions } from './primary.js';
import type { VmSpec } from './vm.js';

/** What a fault-tolerant half needs from a configuration. */
export interface FtSettings {
  spec: VmSpec;
  ft: FtConfig;
  arbiter: Arbiter;
  key: Uint8Array;
  tls: { cert: Buffer; key: Buffer; ca: Buffer } | undefined;
}

/** The VM of a loaded configuration as the machine is built from it (with FT or without). */
export function vmSpecOf(loaded: LoadedConfig): VmSpec {
  const vm = loaded.config.vm;
  const spec: VmSpec = { id: vm.id, memory: vm.ramMiB * 1024 * 1024, clock: vm.clock };
  if (vm.guest !== undefined) spec.guest = vm.guest;
  if (vm.linux) {
    const { kernel, initrd, bios, dtb } = vm.linux;
    spec.linux = { kernel, ...(initrd ? { initrd } : {}), ...(bios ? { bios } : {}), ...(dtb ? { dtb } : {}) };
  }
  if (vm.append !== '') spec.append = vm.append;
  // The default (jit) is left to the Machine, so that LOCKSTEP_ENGINE can change it; interp always holds.
  if (vm.engine !== 'jit') spec.engine = vm.engine;
  if (vm.devices.rng) spec.rng = true;
  if (vm.devices.disk) spec.disk = { path: vm.devices.disk.path, mode: vm.devices.disk.mode };
  const net = vm.devices.net;
  if (net) {
    spec.net =
      net.backend === 'tap'
        ? { backend: 'tap', name: net.name, ...(net.mac ? { mac: net.mac } : {}) }
        : { backend: 'udp', host: net.host, hostPort: net.hostPort, guestPort: net.guestPort, ...(net.mac ? { mac: net.mac } : {}) };
  }
  return spec;
}

/**
 * The VM and FT settings of a loaded configuration. `key` (a `--key-file`) stands in for the
 * configuration's key. A VM with FT off (`ft.enabled: false`) needs no arbiter: without one it runs over
 * a {@link LocalArbiter} — it can be live-migrated (the target goes live only on the source's GO_LIVE)
 * but FT cannot be turned on for it.
 * @throws OptionError (`ft.arbiter`) when FT is on and there is no arbiter, or there is no key at all
 */
export function ftSettings(loaded: LoadedConfig, options: { key?: Uint8Array } = {}): FtSettings {
  const { ft } = loaded.config;
  const spec = vmSpecOf(loaded);
  const a = ft.arbiter;
  const key = options.key ?? loaded.key;
  if (!a && ft.enabled) throw new OptionError('ft.arbiter', `${loaded.source}: ft.arbiter and a key are needed to run a fault-tolerant pair`);
  if (!key) {
    throw new OptionError(
      a ? 'ft.arbiter' : 'ft.keyFile',
      a ? `${loaded.source}: ft.arbiter and a key are needed to run a fault-tolerant pair` : `${loaded.source}: a VM with FT off needs a key (ft.keyFile, or --key-file) for its operations API and its live migrations`,
    );
  }
  const tls = ft.tls ? { cert: readFileSync(ft.tls.cert), key: readFileSync(ft.tls.key), ca: readFileSync(ft.tls.ca) } : undefined;
  return { spec, ft, arbiter: a ? arbiterFor(a) : new LocalArbiter(), key, tls };
}

/**
 * The primary's options from the settings (timing, lag control, output rule, hash interval, FT on or
 * off, separate disk): what `lockstep primary` runs with, and what a secondary promotes itself with.
 */
export function primaryOptions(s: FtSettings): Omit<FtPrimaryOptions, 'machine' | 'vmId' | 'key' | 'arbiter' | 'listen' | 'tls' | 'epoch'> {
  const { ft, spec } = s;
  return {
    heartbeatMs: ft.heartbeatMs,
    timeoutMs: ft.timeoutMs,
    cloneTimeoutMs: ft.cloneTimeoutMs,
    lagTargetMs: ft.lagTargetMs,
    maxLagMs: ft.maxLagMs,
    maxUnackedBytes: ft.maxUnackedBytes,
    outputRule: ft.outputRule,
    hashInterval: ft.hashIntervalInstructions,
    dataPath: ft.dataPath,
    disabled: !ft.enabled,
    meta: { vm: spec.id },
    ...(spec.disk?.mode === 'separate' ? { separateDisk: spec.disk.path } : {}),
  };
}
