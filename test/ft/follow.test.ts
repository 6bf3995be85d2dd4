// A live migration's target waiting for the secondary that follows it, in one process: it takes only a
// RESUME at exactly the state it went live with (anything else is refused with a reason, and it keeps
// waiting), answers RESUMED with its epoch and sends its log from lsn 0; with no follower within the
// timeout it wins the next epoch and runs alone.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { FileArbiter, FtPrimary, Machine } from '../../src/index.js';
import { connectChannel, type Channel, type Message } from '../../src/protocol/channel.js';
import { batchLsn } from '../../src/log/format.js';
import { until } from '../helpers/wait.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-follow-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const kv = readFileSync(new URL('../../guest/bin/kvserver.elf', import.meta.url));
const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A target that went live at epoch 2 from the machine's current state and waits for its follower. */
async function target(name: string, timeoutMs = 30_000) {
  const dir = mkdtempSync(join(tmp, `${name}-`));
  const key = randomBytes(32);
  const arbiter = new FileArbiter({ dir });
  expect((await arbiter.claim(name, 2, 'target@test')).won).toBe(true);
  const machine = new Machine({ clock: 'real', devices: { net: true } });
  machine.load(kv);
  const at = { instret: machine.counters.instret, stateHash: machine.stateHash() };
  const primary = new FtPrimary({ machine, vmId: name, key, arbiter, epoch: 2, owner: 'target@test', timeoutMs, follower: at });
  const warnings: string[] = [];
  primary.on('warning', (w) => warnings.push(w));
  const addr = await primary.start();
  cleanup.push(async () => {
    await primary.stop();
    machine.close();
  });
  /** Joins as a secondary and sends `first`; resolves with what came back (messages, and the close). */
  const joinWith = async (first: Message) => {
    const ch: Channel = await connectChannel({ host: addr.host, port: addr.port, key, vmId: name, role: 'secondary' });
    cleanup.push(() => ch.close('test over'));
    const got: Message[] = [];
    let closed: string | undefined;
    ch.on('message', (m: Message) => got.push(m));
    ch.on('close', (why: string) => (closed = why));
    ch.send(first);
    return { ch, got, closed: () => closed };
  };
  return { primary, at, joinWith, warnings, arbiter };
}

describe('a migration’s target and its follower', () => {
  it('takes only a RESUME at its go-live state: a clone-style join and a RESUME elsewhere are refused with a reason, the right one gets RESUMED and the log from lsn 0', async () => {
    const { primary, at, joinWith } = await target('resume');
    expect(primary.status).toEqual({ protected: true }); // the follower holds this state; nothing has left
    const hello = await joinWith({ type: 'control', op: 'hello', listen: '127.0.0.1:1' });
    await until('the plain join to be refused', () => hello.closed() !== undefined);
    expect(hello.got.find((m) => m.type === 'bye')).toMatchObject({ reason: expect.stringMatching(/waits for the secondary that follows/) });
    const wrong = await joinWith({ type: 'control', op: 'resume', instret: String(at.instret), stateHash: String(at.stateHash ^ 1n), epoch: 2 });
    await until('the wrong resume to be refused', () => wrong.closed() !== undefined);
    expect(wrong.got.find((m) => m.type === 'bye')).toMatchObject({ reason: expect.stringMatching(new RegExp(`took over at ${at.instret} \\(${at.stateHash}, epoch 2\\)`)) });
    const stale = await joinWith({ type: 'control', op: 'resume', instret: String(at.instret), stateHash: String(at.stateHash), epoch: 1 });
    await until('the resume for another epoch to be refused', () => stale.closed() !== undefined);
    expect(primary.status).toEqual({ protected: true });
    expect(primary.epoch).toBe(2);
    const right = await joinWith({ type: 'control', op: 'resume', instret: String(at.instret), stateHash: String(at.stateHash), epoch: 2 });
    const followed = new Promise((r) => primary.once('followed', r));
    await until('RESUMED and the first log batch', () => right.got.some((m) => m.type === 'control' && m.op === 'resumed') && right.got.some((m) => m.type === 'log'));
    await followed;
    expect(right.got.find((m) => m.type === 'control')).toMatchObject({ op: 'resumed', epoch: 2 });
    const log = right.got.find((m) => m.type === 'log') as Extract<Message, { type: 'log' }>;
    expect(batchLsn(log.batches)).toBe(0n);
    expect(right.closed()).toBeUndefined();
  });

  it('no follower within the timeout: it wins the next epoch, releases what it held and runs alone', async () => {
    const { primary, arbiter } = await target('alone', 1_000);
    const lost = new Promise<string>((r) => primary.once('secondary-lost', r));
    expect(await lost).toMatch(/did not follow the migration within 1000 ms/);
    expect(primary.epoch).toBe(3);
    expect((await arbiter.current('alone'))?.owner).toBe('target@test');
    expect(primary.status).toEqual({ protected: false, reason: 'needs-secondary' });
  });
});
