// A VM as the FT commands run it: the machine built from a spec (memory, clock, devices), the guest
// loaded, and the host side of its network. Both halves of a pair build theirs from the same spec.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { ListenError, OptionError } from '../errors.js';
import { Machine } from '../machine/machine.js';
import { readLinuxBoot } from '../machine/linux.js';
import { UdpForwarder } from '../machine/net/udp-forward.js';
import type { Engine, MachineOptions } from '../machine/types.js';

/** What a VM is made of (the `vm` section of a config file, resolved). */
export interface VmSpec {
  id: string;
  /** Path of the guest ELF (unless the VM boots Linux). */
  guest?: string;
  /** Linux instead of an ELF guest: paths of the kernel Image, initrd, firmware and device tree (QEMU's -kernel, -initrd, -bios, -dtb). */
  linux?: { kernel: string; initrd?: string; bios?: string; dtb?: string };
  /** Bytes of RAM. */
  memory: number;
  clock: 'real' | 'virtual';
  /** The execution engine (default: the Machine's, `jit` unless LOCKSTEP_ENGINE says otherwise). Not guest-visible. */
  engine?: Engine;
  /** The guest's command line: Linux's bootargs, or an ELF guest's semihosting `cmdline`. */
  append?: string;
  rng?: boolean;
  disk?: { path: string; mode?: 'shared' | 'separate' };
  net?: { backend: 'udp'; host?: string; hostPort: number; guestPort: number; mac?: string } | { backend: 'tap'; name: string; mac?: string };
}

/**
 * A fresh machine for `spec` (nothing loaded: a secondary's clone fills it). A separate disk image is
 * locked (each half's own); a shared one is not: the arbiter decides which half writes it, and a lock
 * held by a frozen old primary must not keep the VM from going live or being restarted elsewhere.
 */
export function createVmMachine(spec: VmSpec): Machine {
  const devices: NonNullable<MachineOptions['devices']> = {};
  if (spec.rng) devices.rng = true;
  if (spec.disk) devices.disk = { path: spec.disk.path, ...(spec.disk.mode ? { mode: spec.disk.mode } : {}) };
  if (spec.net) {
    const net: { mac?: string; tap?: string } = {};
    if (spec.net.mac) net.mac = spec.net.mac;
    if (spec.net.backend === 'tap') net.tap = spec.net.name;
    devices.net = Object.keys(net).length > 0 ? net : true;
  }
  return new Machine({ memory: spec.memory, clock: spec.clock, devices, ...(spec.engine ? { engine: spec.engine } : {}), ...(spec.append && !spec.linux ? { cmdline: spec.append } : {}) });
}

/** A machine for `spec` with its guest loaded (a primary's first start). */
export function loadVm(spec: VmSpec): Machine {
  const machine = createVmMachine(spec);
  try {
    const l = spec.linux;
    if (l) {
      machine.loadLinux(readLinuxBoot({ ...l, append: spec.append }));
    } else {
      if (spec.guest === undefined) throw new OptionError('guest', 'a VM needs a guest ELF or a Linux kernel');
      machine.load(readFileSync(spec.guest));
    }
  } catch (err) {
    machine.close();
    throw err;
  }
  return machine;
}

/** The host side of a VM's network. */
export interface VmNetwork {
  /** The host UDP port (udp back-end) once bound; undefined before, and for tap or no network. */
  readonly port: number | undefined;
  /** False while a bind is still being retried ({@link keepAttachingVmNetwork}). */
  readonly bound: boolean;
  /** Disconnects it (and stops retrying). */
  close(): void;
}

function what(spec: VmSpec): string {
  return `the UDP port of VM ${spec.id} (vm.devices.net.hostPort)`;
}

async function bindOnce(machine: Machine, spec: VmSpec): Promise<{ close: () => void; port: number }> {
  const net = spec.net as Extract<VmSpec['net'], { backend: 'udp' }>;
  const host = net.host ?? '127.0.0.1';
  try {
    const { forwarder, ports } = await UdpForwarder.create(machine, [{ host, hostPort: net.hostPort, guestPort: net.guestPort }], net.mac ? { guestMac: net.mac } : {});
    return { close: () => forwarder.close(), port: ports[0]! };
  } catch (err) {
    throw ListenError.from(err, what(spec), host, net.hostPort);
  }
}

/**
 * Connects the VM's network to the host (the udp back-end binds its port; tap needs nothing here).
 * A port in use is retried for up to `retryMs` (default 5000; 0: not at all).
 *
 * @throws {ListenError} when the port cannot be bound in that time (`ERR_LOCKSTEP_LISTEN_IN_USE` when
 *   another process holds it), naming the VM and the address
 */
export async function attachVmNetwork(machine: Machine, spec: VmSpec, retryMs = 5000): Promise<VmNetwork> {
  const net = spec.net;
  if (!net || net.backend !== 'udp') return { port: undefined, bound: true, close: () => {} };
  const end = performance.now() + retryMs;
  for (;;) {
    try {
      const b = await bindOnce(machine, spec);
      return { port: b.port, bound: true, close: b.close };
    } catch (err) {
      if ((err as ListenError).code !== 'ERR_LOCKSTEP_LISTEN_IN_USE' || performance.now() >= end) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

/** Callbacks of {@link keepAttachingVmNetwork}. */
export interface KeepAttachingEvents {
  /** The port is bound (at last). */
  onBound?: (port: number) => void;
  /** A bind failed; the next try comes in `nextDelayMs`. */
  onRetry?: (err: ListenError, attempt: number, nextDelayMs: number) => void;
}

/**
 * Connects the VM's network as {@link attachVmNetwork} does, but never gives up and never throws: the
 * bind is retried with backoff (50 ms doubling to 2 s) until it succeeds or the handle is closed. For a
 * secondary that went live while its old primary — frozen, not dead — still holds the port on the same
 * host: the VM serves everything else meanwhile, and its network comes up when the port is free.
 * `firstAttempt` settles after the first try (bound or not): await it so that, when the port is free,
 * the network is up before the go-live's re-emitted outputs leave.
 */
export function keepAttachingVmNetwork(
  machine: Machine,
  spec: VmSpec,
  events: KeepAttachingEvents = {},
  backoff: { firstMs?: number; maxMs?: number } = {},
): VmNetwork & { readonly firstAttempt: Promise<void> } {
  const net = spec.net;
  if (!net || net.backend !== 'udp') return { port: undefined, bound: true, close: () => {}, firstAttempt: Promise.resolve() };
  let firstDone: () => void = () => {};
  const firstAttempt = new Promise<void>((r) => (firstDone = r));
  const firstMs = backoff.firstMs ?? 50;
  const maxMs = backoff.maxMs ?? 2000;
  let closed = false;
  let bound: { close: () => void; port: number } | undefined;
  let timer: NodeJS.Timeout | undefined;
  const attempt = (n: number): void => {
    bindOnce(machine, spec).then(
      (b) => {
        firstDone();
        if (closed) return b.close();
        bound = b;
        events.onBound?.(b.port);
      },
      (err: unknown) => {
        firstDone();
        if (closed) return;
        const delay = Math.min(maxMs, firstMs * 2 ** Math.min(n, 20));
        const e = err instanceof ListenError ? err : ListenError.from(err, what(spec), net.host ?? '127.0.0.1', net.hostPort);
        events.onRetry?.(e, n + 1, delay);
        timer = setTimeout(() => attempt(n + 1), delay);
        timer.unref();
      },
    );
  };
  attempt(0);
  return {
    firstAttempt,
    get port() {
      return bound?.port;
    },
    get bound() {
      return bound !== undefined;
    },
    close() {
      closed = true;
      clearTimeout(timer);
      bound?.close();
      bound = undefined;
    },
  };
}
