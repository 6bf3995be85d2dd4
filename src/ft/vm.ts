// A VM as the FT commands run it: the machine built from a spec (memory, clock, devices), the guest
// loaded, and the host side of its network. Both halves of a pair build theirs from the same spec.
import { readFileSync } from 'node:fs';
import { OptionError } from '../errors.js';
import { Machine } from '../machine/machine.js';
import { readLinuxBoot } from '../machine/linux.js';
import { UdpForwarder } from '../machine/net/udp-forward.js';
import type { MachineOptions } from '../machine/types.js';

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
  /** The guest's command line: Linux's bootargs, or an ELF guest's semihosting `cmdline`. */
  append?: string;
  rng?: boolean;
  disk?: { path: string; mode?: 'shared' | 'separate' };
  net?: { backend: 'udp'; host?: string; hostPort: number; guestPort: number; mac?: string } | { backend: 'tap'; name: string; mac?: string };
}

/** A fresh machine for `spec` (nothing loaded: a secondary's clone fills it). */
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
  return new Machine({ memory: spec.memory, clock: spec.clock, devices, ...(spec.append && !spec.linux ? { cmdline: spec.append } : {}) });
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

/**
 * Connects the VM's network to the host (the udp back-end binds its port; tap needs nothing here).
 * Binding retries for up to `retryMs`: after a failover on one host, the old primary may still hold
 * the port for a moment. Returns a function that disconnects it.
 */
export async function attachVmNetwork(machine: Machine, spec: VmSpec, retryMs = 5000): Promise<{ close: () => void; port?: number }> {
  const net = spec.net;
  if (!net || net.backend !== 'udp') return { close: () => {} };
  const end = Date.now() + retryMs;
  for (;;) {
    try {
      const { forwarder, ports } = await UdpForwarder.create(machine, [{ host: net.host ?? '127.0.0.1', hostPort: net.hostPort, guestPort: net.guestPort }], net.mac ? { guestMac: net.mac } : {});
      return { close: () => forwarder.close(), port: ports[0]! };
    } catch (err) {
      if ((err as { code?: string }).code !== 'EADDRINUSE' || Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
