// kvserver on lockstep's own Machine with the `udp` back-end: boot it on a disk image (or none), talk
// to it over a host UDP port, stop it, boot it again on the same image. For tests of the guest itself.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Machine, UdpForwarder, type RunResult } from '../../src/index.js';

export const KVSERVER_ELF = fileURLToPath(new URL('../../guest/bin/kvserver.elf', import.meta.url));

export interface KvMachine {
  machine: Machine;
  forwarder: UdpForwarder;
  /** The host UDP port forwarded to the guest's 11211. */
  port: number;
  /** Everything the guest printed so far. */
  output(): string;
  /** Stops the guest (as a crash would: nothing is flushed that kvserver had not flushed) and frees it. */
  stop(): Promise<RunResult>;
}

/**
 * Boots kvserver (the committed ELF unless `elf` is given) and resolves once its boot line is out.
 * Rejects, with the console so far, if it does not come or the guest ends first.
 */
export async function bootKvserver(options: { image?: string; cmdline?: string; memory?: number; elf?: string } = {}): Promise<KvMachine> {
  const machine = new Machine({
    memory: options.memory ?? 16 << 20,
    clock: 'real',
    devices: { net: true, ...(options.image === undefined ? {} : { disk: { path: options.image } }) },
    ...(options.cmdline === undefined ? {} : { cmdline: options.cmdline }),
  });
  let text = '';
  machine.on('console', (c) => (text += Buffer.from(c).toString('latin1')));
  machine.load(readFileSync(options.elf ?? KVSERVER_ELF));
  const { forwarder, ports } = await UdpForwarder.create(machine, [{ hostPort: 0, guestPort: 11211 }]);
  let ended: RunResult | undefined;
  const running = machine.run().then((r) => (ended = r));
  for (let i = 0; !text.includes('items recovered\n'); i++) {
    if (ended !== undefined || i > 2000) {
      forwarder.close();
      if (ended === undefined) machine.stop();
      await running;
      machine.close();
      throw new Error(`kvserver did not come up (${ended === undefined ? 'no boot line after 20 s' : `it ended: ${ended.kind}`}); console: ${JSON.stringify(text)}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    machine,
    forwarder,
    port: ports[0]!,
    output: () => text,
    stop: async () => {
      forwarder.close();
      machine.stop();
      const r = await running;
      machine.close();
      return r;
    },
  };
}
