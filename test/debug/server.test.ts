// The GDB server over TCP with a live machine: Ctrl-C stops a running guest, hostile bytes get `-` or
// error replies and never wedge the server, one debugger at a time, and it binds only where told.
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { GdbServer, LiveTarget, Machine } from '../../src/index.js';
import { encodePacket, MAX_PACKET } from '../../src/debug/packet.js';
import { Asm } from '../helpers/asm.js';
import { until } from '../helpers/wait.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

/** An endless loop at 0x8000_0000. */
function spinning(): Machine {
  const m = new Machine({ memory: 1 << 20 });
  const a = new Asm();
  a.label('top');
  a.addi(5, 5, 1);
  a.jal(0, 'top');
  m.writeMemory(0x8000_0000, a.bytes());
  m.pc = 0x8000_0000;
  cleanups.push(() => m.close());
  return m;
}

async function serve(m: Machine): Promise<{ server: GdbServer; port: number }> {
  const server = new GdbServer(new LiveTarget(m));
  const port = await server.listen('127.0.0.1', 0);
  cleanups.push(() => server.close());
  return { server, port };
}

/** A raw protocol client: sends bytes, collects everything the server sends. */
async function client(port: number): Promise<{ socket: Socket; received: () => string; send: (b: string | Uint8Array) => void }> {
  const socket = connect({ host: '127.0.0.1', port });
  cleanups.push(() => socket.destroy());
  let got = '';
  socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return { socket, received: () => got, send: (b) => socket.write(typeof b === 'string' ? Buffer.from(b, 'latin1') : b) };
}

const pkt = (s: string) => Buffer.from(encodePacket(s)).toString('latin1');

describe('GdbServer', () => {
  it('stops a running guest on Ctrl-C with a SIGINT stop reply', async () => {
    const m = spinning();
    const { port } = await serve(m);
    const c = await client(port);
    c.send(pkt('c'));
    await until('the server acknowledged the continue', () => c.received().includes('+'));
    // Running is not yet having run: on a loaded machine the vCPU may not have retired an instruction.
    await until('the guest ran', () => m.running && m.progress > 0n);
    c.send('\x03');
    await until('a stop reply', () => c.received().includes(pkt('T02thread:1;')));
    expect(m.running).toBe(false);
    expect(m.counters.instret).toBeGreaterThan(0n);
  });

  it('answers hostile input with - or error replies and goes on serving', async () => {
    const m = spinning();
    const { port } = await serve(m);
    const c = await client(port);
    c.send('$g#00'); // bad checksum
    c.send('garbage\xff\x00+++---');
    c.send(`$${'A'.repeat(MAX_PACKET * 2)}#00`); // longer than the limit
    c.send(pkt('m0,4')); // outside RAM
    c.send(pkt('m80000000,zz'));
    c.send(pkt('Z2,80000000,ffffffff'));
    c.send(pkt('m80000000,4'));
    await until('four replies', () => (c.received().match(/\$[^#]*#[0-9a-f]{2}/g) ?? []).length >= 4);
    const r = c.received();
    expect(r.startsWith('-')).toBe(true);
    expect(r).toContain(pkt('E02'));
    expect(r).toContain(pkt('E01'));
    // `addi t0, t0, 1` (0x00128293) in memory, little-endian.
    expect(r).toContain(pkt('93821200'));
    expect(m.counters.instret).toBe(0n);
  });

  it('takes one debugger at a time and binds only the address it was given', async () => {
    const m = spinning();
    const { port } = await serve(m);
    const first = await client(port);
    const second = connect({ host: '127.0.0.1', port });
    cleanups.push(() => second.destroy());
    await new Promise<void>((resolve) => second.once('close', () => resolve()));
    first.send(pkt('?'));
    await until('the first debugger is answered', () => first.received().includes(pkt('T05thread:1;')));
    // Nothing listens on another local address for that port.
    const other = connect({ host: '127.0.0.2', port });
    const refused = await new Promise<boolean>((resolve) => {
      other.once('error', () => resolve(true));
      other.once('connect', () => resolve(false));
    });
    other.destroy();
    expect(refused).toBe(true);
  });
});
