// Device options shared by `run` and `record`: --disk, --net udp:HOSTPORT:GUESTPORT, --rng.
import { ListenError } from '../errors.js';
import type { Machine } from '../machine/machine.js';
import type { MachineOptions } from '../machine/types.js';
import type { UdpForward, UdpForwarder } from '../machine/net/udp-forward.js';
import { UsageError } from './args.js';

export const DEVICE_OPTIONS = {
  disk: { type: 'string' },
  net: { type: 'string', multiple: true },
  rng: { type: 'boolean' },
} as const;

export const DEVICE_HELP = `  --disk <image>             a raw disk image for virtio-blk (a multiple of 512 bytes), locked while it
                             runs: a second machine writing it is refused (exit 64)
  --net udp:<host-port>:<guest-port>
                             virtio-net with host UDP port forwarding (guest 10.0.2.15, as QEMU's user
                             network); repeatable; host port 0 picks a free one (printed on stderr)
  --net tap:<name>           virtio-net on Linux TAP device <name> (real layer 2; needs CAP_NET_ADMIN)
  --rng                      virtio-rng
`;

export interface DeviceValues {
  disk?: string | undefined;
  net?: string[] | undefined;
  rng?: boolean | undefined;
}

/** The Machine's `devices` option and the UDP forwards the values ask for. */
export function parseDevices(v: DeviceValues): { devices: NonNullable<MachineOptions['devices']>; forwards: UdpForward[] } {
  const devices: NonNullable<MachineOptions['devices']> = {};
  const forwards: UdpForward[] = [];
  if (v.disk !== undefined) devices.disk = { path: v.disk, lock: true }; // this machine writes it: a second writer is refused
  if (v.rng) devices.rng = true;
  for (const spec of v.net ?? []) {
    const tap = /^tap:([\w.-]{1,15})$/.exec(spec);
    if (tap) {
      devices.net = { tap: tap[1]! };
      continue;
    }
    const m = /^udp:(\d{1,5}):(\d{1,5})$/.exec(spec);
    if (!m || Number(m[1]) > 65535 || Number(m[2]) > 65535 || Number(m[2]) === 0) {
      throw new UsageError(`--net: '${spec}' must be udp:<host-port>:<guest-port> (e.g. udp:11211:11211) or tap:<name>`);
    }
    if (typeof devices.net === 'object') throw new UsageError('--net: a tap device and udp forwarding cannot be combined');
    devices.net = true;
    forwards.push({ hostPort: Number(m[1]), guestPort: Number(m[2]) });
  }
  return { devices, forwards };
}

/** Starts the forwards (if any); returns a function that stops them. */
export async function startForwards(machine: Machine, forwards: UdpForward[], log: (line: string) => void): Promise<() => void> {
  if (forwards.length === 0) return () => {};
  let created: Awaited<ReturnType<typeof UdpForwarder.create>>;
  try {
    // Loaded only with --net udp: node:net and node:dns are a few ms of every start otherwise.
    const { UdpForwarder } = await import('../machine/net/udp-forward.js');
    created = await UdpForwarder.create(machine, forwards);
  } catch (err) {
    // Which forward failed is not said; name them all (usually one).
    const ports = forwards.map((f) => f.hostPort).join(', ');
    throw ListenError.from(err, `--net udp (host port ${ports})`, '127.0.0.1', forwards.length === 1 ? forwards[0]!.hostPort : 0);
  }
  const { forwarder, ports } = created;
  forwards.forEach((f, i) => log(`lockstep: udp 127.0.0.1:${ports[i]} -> guest 10.0.2.15:${f.guestPort}\n`));
  return () => forwarder.close();
}
