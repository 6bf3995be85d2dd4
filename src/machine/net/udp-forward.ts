// The `udp` network back-end: host UDP ports forwarded to guest UDP ports, like QEMU's
// `-netdev user,hostfwd=udp:...`, with QEMU's addresses (guest 10.0.2.15, gateway 10.0.2.2). No
// privileges; it answers the guest's ARP and carries UDP only. It keeps no per-client state. The datagrams
// move natively (native/machine/net/udp.cc); this class binds, counts and closes.
import { lookup } from 'node:dns/promises';
import { isIPv4 } from 'node:net';
import { MachineStateError } from '../../errors.js';
import { internal, type Machine } from '../machine.js';

export const GUEST_IP = [10, 0, 2, 15] as const;
export const GATEWAY_IP = [10, 0, 2, 2] as const;
/** The gateway's MAC, as QEMU's user network uses. */
export const GATEWAY_MAC = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02] as const;
const GUEST_MAC_DEFAULT = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/** Largest UDP payload in one 1500-byte Ethernet frame (the guest does not reassemble fragments). */
export const MAX_GUEST_PAYLOAD = 1472;

export interface UdpForward {
  /** Host address and port to listen on (port 0: any free port). */
  host?: string;
  hostPort: number;
  /** The guest UDP port datagrams go to. */
  guestPort: number;
}

/** Counters of a {@link UdpForwarder}; every field only grows. */
export interface UdpForwarderStats {
  /** Datagrams handed to the guest (queued on its virtio-net; see {@link Machine.netStats} for drops there). */
  toGuest: number;
  /** Datagrams too large for one frame, of which the guest got the first fragment only. */
  truncated: number;
  /** Datagrams from a client whose address the guest could not tell from its own (10.0.2.15) or from the host's (a loopback address other than 127.0.0.1), dropped. */
  refused: number;
  /** Guest datagrams sent on to their destination. */
  toClients: number;
  /** Guest frames that were neither ARP nor UDP to an IPv4 destination, or malformed. */
  ignoredFrames: number;
}

/**
 * Connects a machine's virtio-net to host UDP sockets, as a router would: the guest sees each client's
 * own IPv4 address and port as the datagram's source (reached through the gateway, whose ARP it
 * answers, as it answers ARP for any other address), and a datagram the guest sends leaves for the
 * address and port in its own header, from the forward whose guest port it came from. A client on the
 * host's loopback, 127.0.0.1, appears as 10.0.2.2, the host's address on QEMU's user network. The forwarder
 * keeps no table of clients: its memory does not grow with their number, and a forwarder that never
 * saw a client (a new primary after a failover, re-emitting replies) routes the guest's replies to
 * it all the same.
 */
export class UdpForwarder {
  readonly #machine: Machine;
  readonly #id: number;
  #last: UdpForwarderStats = { toGuest: 0, truncated: 0, refused: 0, toClients: 0, ignoredFrames: 0 };
  #closed = false;

  private constructor(machine: Machine, id: number) {
    this.#machine = machine;
    this.#id = id;
  }

  /**
   * Listens on every forward; resolves with the bound host ports, in order. `guestMac` is the MAC of
   * the guest's virtio-net (default QEMU's 52:54:00:12:34:56): until
   * the guest sends a frame, frames for it go there. The datagrams travel natively, between the
   * sockets and virtio-net (native/machine/net/udp.cc): the machine emits no 'frame' events for them.
   * One forwarder per machine at a time; it may be created while the machine runs.
   *
   * @throws {ListenError} a forward's address cannot be bound (`ERR_LOCKSTEP_LISTEN_IN_USE` when another
   *   socket holds it), naming the address
   * @throws {OptionError} the machine's network has a back-end already (`devices.net`: a TAP device, or
   *   a forwarder not yet closed)
   */
  static async create(machine: Machine, forwards: UdpForward[], options: { guestMac?: string } = {}): Promise<{ forwarder: UdpForwarder; ports: number[] }> {
    const resolved = await Promise.all(
      forwards.map(async (fw) => {
        const host = fw.host ?? '127.0.0.1';
        // dgram resolved names for 'udp4'; the native side takes literals only.
        return { host: isIPv4(host) ? host : (await lookup(host, { family: 4 })).address, hostPort: fw.hostPort, guestPort: fw.guestPort };
      }),
    );
    if (machine.closed) throw new MachineStateError('ERR_LOCKSTEP_MACHINE_CLOSED', 'UdpForwarder.create: the machine is closed');
    const mac = options.guestMac === undefined ? GUEST_MAC_DEFAULT : options.guestMac.split(':').map((x) => parseInt(x, 16));
    const { id, ports } = machine[internal].native.udpAttach(resolved, Uint8Array.from(mac));
    return { forwarder: new UdpForwarder(machine, id), ports };
  }

  /** Datagrams forwarded to the guest and back (a snapshot; the last counts once closed). */
  get stats(): UdpForwarderStats {
    if (!this.#closed && !this.#machine.closed) {
      const s = this.#machine[internal].native.udpStats(this.#id);
      if (s) this.#last = s;
    }
    return { ...this.#last };
  }

  close(): void {
    if (this.#closed) return;
    this.#last = this.stats;
    this.#closed = true;
    if (!this.#machine.closed) this.#machine[internal].native.udpDetach(this.#id);
  }
}
