// Re-emission at go-live after a SIGKILL: a reply the primary produced and held (its log at the secondary,
// the acknowledgement not yet back) is sent by the survivor, and the client gets it without resending its
// request. The moment is made deterministic by a proxy on the logging channel that lets the primary's
// log through but swallows everything of the secondary from the LOG frame that carries the client's
// request on (test/helpers/ack-gate-proxy.ts): the primary holds the reply for as long as the test likes.
import { createSocket } from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { KvClient } from '../../src/index.js';
import { ackGateProxy } from '../helpers/ack-gate-proxy.js';
import { kvConfig, processScope } from '../helpers/ft-pair.js';
import { until } from '../helpers/wait.js';

const { tmp, start } = processScope('reemit');

/** A memcached UDP request: the 8-byte frame header (request id, sequence 0, 1 datagram, reserved 0), then the text. */
function udpRequest(id: number, text: string): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(1, 4);
  return Buffer.concat([h, Buffer.from(text)]);
}

describe('re-emission at go-live', () => {
  it('a reply held at the moment of a SIGKILL is re-emitted by the survivor (counted in reemittedFrames); the client sends once', async () => {
    // The primary must not give its silent secondary up while the test holds the reply.
    const cfg = await kvConfig(tmp, { timeoutMs: 60_000 });
    const primary = start('primary', ['primary', cfg.path]);
    const l = await primary.wait('listening');
    const marker = Buffer.from('get reemit-probe');
    const proxy = await ackGateProxy({ host: '127.0.0.1', port: Number(l.port) }, marker);
    try {
      const secondary = start('secondary', ['secondary', cfg.path, '--join', `127.0.0.1:${String(proxy.port)}`]);
      await primary.wait('status', (e) => e.protected === true);
      // kvserver answers (a request of another text: the proxy still passes everything).
      const warm = new KvClient({ endpoints: [{ host: '127.0.0.1', port: cfg.udpPort }], timeoutMs: 200, retries: 100 });
      await warm.set('warm', 'up');
      await warm.close();
      expect(proxy.gated()).toBe(false);

      const client = createSocket('udp4');
      const replies: Buffer[] = [];
      client.on('message', (m) => replies.push(m));
      await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
      try {
        // Sent once, never again.
        client.send(udpRequest(0x4242, `${marker.toString()}\r\n`), cfg.udpPort, '127.0.0.1');
        await until('the secondary acknowledges the log with the request (its ACK swallowed)', () => proxy.acknowledgedPast());
        // The reply is made (the guest runs on) but held: the primary never hears the acknowledgement.
        expect(replies).toHaveLength(0);
        primary.child.kill('SIGKILL');
        const live = await secondary.wait('go-live', undefined, 60_000);
        await until('the held reply from the survivor', () => replies.length > 0);
        expect(replies[0]!.readUInt16BE(0)).toBe(0x4242);
        expect(replies[0]!.subarray(8).toString()).toBe('END\r\n');
        // Re-emitted, not produced anew: the survivor's replay had it in its shadow outputs.
        expect(Number(live.reemittedFrames)).toBeGreaterThanOrEqual(1);
      } finally {
        client.close();
      }
    } finally {
      proxy.close();
    }
  }, 180_000);
});
