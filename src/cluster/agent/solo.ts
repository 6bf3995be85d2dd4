// A VM without fault tolerance (`ft.enabled: false`) as an agent runs it: the configuration's machine,
// devices and network, the guest run alone — no arbiter, no epoch, no secondary. The process behind
// `lockstep agent run-vm`; reports what happens through a callback and never prints anything itself.
import { loadConfig, type LoadedConfig } from '../../config/index.js';
import { OptionError } from '../../errors.js';
import { vmSpecOf } from '../../ft/settings.js';
import { attachVmNetwork, loadVm, type VmNetwork } from '../../ft/vm.js';
import type { Machine } from '../../machine/machine.js';
import type { RunResult } from '../../machine/types.js';

/** What a solo VM reports: `{event, …fields}` as the agent's event lines carry them. */
export type SoloReport = (event: string, fields: Record<string, unknown>, text: string) => void;

/** The status text of a VM that runs without FT (what `cluster status` shows for it). */
export const SOLO_STATUS = 'Running (FT off)';

/** A solo VM being run: `stop()` ends it; `done` settles with how it ended. */
export interface SoloVm {
  readonly machine: Machine;
  readonly done: Promise<RunResult>;
  stop(): void;
}

/**
 * Starts the VM of `configPath` alone. Rejects (nothing left running) when the configuration asks for
 * FT, or cannot be loaded, or the VM's UDP port is taken: the agent reports the reason and the manager
 * backs off before the next attempt, so a port is tried once here, not retried.
 */
export async function startSoloVm(configPath: string, report: SoloReport): Promise<SoloVm> {
  const loaded = await loadConfig(configPath);
  for (const w of loaded.warnings) report('warning', { message: w }, `WARNING: ${w}`);
  if (loaded.config.ft.enabled) throw new OptionError('ft.enabled', `${loaded.source}: is true: an FT VM runs as a primary and a secondary, not alone`);
  const spec = vmSpecOf(loaded);
  const machine = loadVm(spec);
  let net: VmNetwork;
  try {
    net = await attachVmNetwork(machine, spec, 0);
  } catch (err) {
    machine.close();
    throw err;
  }
  if (net.port !== undefined) report('net', { port: net.port }, `udp ${spec.net?.backend === 'udp' ? (spec.net.host ?? '127.0.0.1') : ''}:${net.port} -> guest ${spec.net?.backend === 'udp' ? spec.net.guestPort : 0}`);
  const done = machine.run().finally(() => {
    net.close();
    machine.close();
  });
  report('running', { vm: spec.id, ft: false }, `${spec.id} runs without FT`);
  return { machine, done, stop: () => machine.stop() };
}
