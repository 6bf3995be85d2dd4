// A silence in the middle of a clone: with the clone's grace (ft.cloneTimeoutMs, the default 10 s) the pair
// still forms and is protected; without it (cloneTimeoutMs 0) a silence as long ends the clone (the
// detector has no history yet then, so its timeout is the configured one). The silence is a proxy that stops forwarding both
// ways at the first CLONE_PAGES frame; the pair with the grace is held there until the pair without it
// has given up, so its silence is the longer of the two.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileArbiter, FtPrimary, FtSecondary, Machine } from '../../src/index.js';
import { CRC_TRAILER_BYTES, HEADER_BYTES, HMAC_TRAILER_BYTES, OFF_LENGTH, OFF_TYPE } from '../../src/protocol/frame.js';
import { MessageType } from '../../src/protocol/messages.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-clone-grace-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const kv = readFileSync(new URL('../../guest/bin/kvserver.elf', import.meta.url));
const TIMEOUT_MS = 300;
const HEARTBEAT_MS = 50;

interface PausingProxy {
  port: number;
  /** Resolves once the source's first CLONE_PAGES frame arrived: from then on nothing is forwarded. */
  paused: Promise<void>;
  /** Forwards what was held back, and everything after it. */
  resume: () => void;
  close: () => void;
}

/** Forwards a logging channel, and holds both directions from the source's first CLONE_PAGES frame on. */
async function pausingProxy(source: { host: string; port: number }): Promise<PausingProxy> {
  const sockets = new Set<Socket>();
  let holding = false;
  let scanning = true; // until the first CLONE_PAGES frame; then bytes pass (or are held) as they come
  const held: Array<() => void> = [];
  let onPause!: () => void;
  const paused = new Promise<void>((r) => (onPause = r));
  const forward = (to: Socket, d: Buffer) => {
    if (holding) held.push(() => to.write(d));
    else to.write(d);
  };
  const server = createServer((fromTarget) => {
    const toSource = connect(source.port, source.host);
    sockets.add(fromTarget).add(toSource);
    for (const s of [fromTarget, toSource]) s.on('error', () => undefined);
    fromTarget.on('data', (d: Buffer) => forward(toSource, d));
    fromTarget.on('close', () => toSource.destroy());
    toSource.on('close', () => fromTarget.destroy());
    // The source's frames one by one (src/protocol/frame.ts), to find the first CLONE_PAGES.
    let pending = Buffer.alloc(0);
    toSource.on('data', (d: Buffer) => {
      if (!scanning) return forward(fromTarget, d);
      pending = Buffer.concat([pending, d]);
      while (pending.length >= HEADER_BYTES && scanning) {
        const type = pending[OFF_TYPE]!;
        const trailer = type === MessageType.HELLO || type === MessageType.AUTH ? CRC_TRAILER_BYTES : HMAC_TRAILER_BYTES;
        const size = HEADER_BYTES + pending.readUInt32BE(OFF_LENGTH) + trailer;
        if (pending.length < size) return;
        if (type === MessageType.CLONE_PAGES) {
          scanning = false;
          holding = true;
          onPause();
          forward(fromTarget, pending);
          pending = Buffer.alloc(0);
          return;
        }
        fromTarget.write(pending.subarray(0, size));
        pending = pending.subarray(size);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    paused,
    resume: () => {
      holding = false;
      for (const f of held.splice(0)) f();
    },
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

/** `p`, or a failure naming what did not happen within a generous bound (a loaded machine is slow). */
function within<T>(p: Promise<T>, what: string, ms = 120_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`not within ${ms} ms: ${what}`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

interface Pair {
  primary: FtPrimary;
  secondary: FtSecondary;
  proxy: PausingProxy;
  machine: Machine;
  /** The clone ended without a pair: why, from the side that noticed first. */
  gaveUp: Promise<string>;
  /** Why each side gave up (both do, once one has: the other sees the connection close). */
  reasons: Promise<string[]>;
  cloned: Promise<unknown>;
}

async function pair(name: string, cloneTimeoutMs: number | undefined): Promise<Pair> {
  const key = randomBytes(32);
  const dir = mkdtempSync(join(tmp, `${name}-`));
  const machine = new Machine({ clock: 'real', devices: { net: true } });
  machine.load(kv);
  const timing = { timeoutMs: TIMEOUT_MS, heartbeatMs: HEARTBEAT_MS, ...(cloneTimeoutMs === undefined ? {} : { cloneTimeoutMs }) };
  const primary = new FtPrimary({ machine, vmId: name, key, arbiter: new FileArbiter({ dir }), ...timing });
  const cloned = new Promise((r) => primary.once('cloned', r));
  const addr = await primary.start();
  const proxy = await pausingProxy(addr);
  const secondary = new FtSecondary({ vmId: name, key, arbiter: new FileArbiter({ dir }), join: { host: '127.0.0.1', port: proxy.port }, ...timing, createMachine: () => new Machine({ clock: 'real', devices: { net: true } }) });
  const sides = [
    new Promise<string>((r) => primary.on('warning', (w: string) => w.startsWith('secondary lost: ') && r(`primary: ${w}`))),
    new Promise<string>((r) => secondary.once('halted', (why: string) => r(`secondary: ${why}`))),
  ];
  const gaveUp = Promise.race(sides);
  const reasons = Promise.all(sides);
  await secondary.start();
  return { primary, secondary, proxy, machine, gaveUp, reasons, cloned };
}

async function close(p: Pair, name: string): Promise<void> {
  p.proxy.close();
  await within(p.secondary.stop(), `the ${name} pair's secondary to stop`);
  await within(p.primary.stop(), `the ${name} pair's primary to stop`);
  p.machine.close();
  p.secondary.machine?.close();
}

describe('a silence during the clone', () => {
  it('one that ends a pair without the grace is tolerated within ft.cloneTimeoutMs: the pair forms and is protected', async () => {
    const graced = await pair('graced', undefined);
    await within(graced.proxy.paused, "the first pair's clone to send pages");
    // The same silence without the grace, started after the first one's: once this pair has given up,
    // the first one has been silent longer than that.
    const bare = await pair('bare', 0);
    await within(bare.proxy.paused, "the second pair's clone to send pages");
    // One side declared the other dead on the silence; the other then saw the connection close.
    const why = await within(bare.reasons, 'both halves of the pair without the grace to give up');
    expect(why.some((w) => /no word from the (primary|secondary)/.test(w)), why.join('; ')).toBe(true);
    graced.proxy.resume();
    const first = await within(Promise.race([graced.cloned.then(() => 'cloned'), graced.gaveUp]), 'the pair with the grace to finish its clone or give up');
    expect(first).toBe('cloned');
    expect(graced.primary.status).toEqual({ protected: true });
    await close(bare, 'bare');
    await close(graced, 'graced');
  });

  it('a cloneTimeoutMs that is not a number of ms is refused by both halves', () => {
    const arbiter = new FileArbiter({ dir: tmp });
    const key = randomBytes(32);
    const machine = new Machine({ clock: 'virtual' });
    expect(() => new FtPrimary({ machine, vmId: 'bad', key, arbiter, cloneTimeoutMs: -1 })).toThrow(/cloneTimeoutMs/);
    expect(() => new FtSecondary({ vmId: 'bad', key, arbiter, join: { host: '127.0.0.1', port: 1 }, cloneTimeoutMs: Number.NaN, createMachine: () => new Machine() })).toThrow(/cloneTimeoutMs/);
    machine.close();
  });
});
