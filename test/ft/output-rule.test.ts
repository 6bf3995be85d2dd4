// The native half of the output rule and of go-live, without a channel: outputs of a recording
// machine are held per log batch until released; a replaying machine in shadow mode keeps what it
// suppressed and re-emits, at go-live, exactly what the primary had not released.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Machine, Recorder, Replayer } from '../../src/index.js';
import { replicationPort } from '../../src/machine/replication-port.js';
import { batchLsn } from '../../src/log/format.js';
import { until } from '../helpers/wait.js';

const echo = readFileSync(new URL('../../guest/bin/echo.elf', import.meta.url));
const machines: Machine[] = [];
afterEach(() => {
  for (const m of machines.splice(0)) m.close();
});
function make(): Machine {
  const m = new Machine({ clock: 'real' });
  m.load(echo);
  machines.push(m);
  return m;
}
const text = (chunks: Uint8Array[]) => Buffer.concat(chunks).toString('latin1');

/**
 * A recording primary with the gate closed that releases each batch's outputs as soon as the batch is
 * sealed (as if acknowledged at once), keeping the batches and what each released.
 */
function gatedPrimary() {
  const p = make();
  const pn = replicationPort(p);
  const batches: Uint8Array[] = [];
  const perLsn = new Map<bigint, string>();
  const rec = new Recorder(p);
  rec.on('batch', (b) => {
    batches.push(b.slice());
    const lsn = batchLsn(b);
    perLsn.set(lsn, Buffer.from(pn.release(lsn).console).toString('latin1'));
  });
  pn.closeGate();
  return { p, pn, batches, perLsn, rec };
}

describe('output rule (native gate)', () => {
  it('holds console output until the batch behind it is released, in order', async () => {
    const p = make();
    const native = replicationPort(p);
    const batches: Uint8Array[] = [];
    const rec = new Recorder(p);
    rec.on('batch', (b) => batches.push(b.slice()));
    native.closeGate();
    const seen: Uint8Array[] = [];
    p.on('console', (c) => seen.push(c));
    const run = p.run();
    setTimeout(() => p.input('abc\n'), 30);
    const r = await run;
    expect(r.kind).toBe('exit');
    // The guest echoed and printed its summary, but none of it left: nothing was acknowledged.
    expect(text(seen)).toBe('');
    expect(native.held()).toBeGreaterThan(0);
    // Releasing up to an early batch lets out only what that batch covers; the rest stays held.
    const last = batchLsn(batches[batches.length - 1]!);
    native.release(0n); // the port emits what it releases as 'console' events
    const after0 = text(seen);
    expect(after0).not.toContain('echo:');
    native.release(last);
    expect(native.held()).toBe(0);
    const out = text(seen);
    expect(out).toContain('ABC');
    expect(out).toMatch(/echo: 4 bytes, 1 lines/);
    rec.finish(r);
  });

  it('a shadow secondary re-emits at go-live exactly what the primary had not released', async () => {
    const { p, batches, perLsn, rec } = gatedPrimary();
    const run = p.run();
    // The second line only once the first one's echo was released: their outputs are in two batches.
    p.input('xy\n');
    await until('the echo of xy released', () => [...perLsn.values()].join('').includes('XY'));
    p.input('zw\n');
    const r = await run;
    expect(r.kind).toBe('exit');
    const live = batches.length; // the log up to the guest's exit, without the end record
    rec.finish(r);
    const all = [...perLsn.values()].join('');
    expect(all).toContain('XY');
    expect(all).toContain('ZW');
    // The secondary holds the whole log but heard "released through cut" for an lsn in the middle.
    const lsns = [...perLsn.keys()].filter((l) => perLsn.get(l) !== '');
    expect(lsns.length).toBeGreaterThanOrEqual(2);
    const cut = lsns[0]!;
    const s = make();
    const sn = replicationPort(s);
    sn.setShadow(true);
    const rep = new Replayer(s);
    sn.shadowRelease(cut);
    for (const b of batches.slice(0, live)) rep.feed(b);
    const shown: Uint8Array[] = [];
    s.on('console', (c) => shown.push(c));
    rep.end();
    const sr = await s.run();
    expect(sr.kind).toBe('exit'); // the guest exits at the same point; the log ends there
    expect(text(shown)).toBe(''); // a secondary shows nothing while replaying
    expect(s.stateHash()).toBe(p.stateHash());
  });

  it('go-live re-emits the suppressed outputs after the released lsn, and the machine then runs live', async () => {
    const { p, batches, perLsn, rec } = gatedPrimary();
    const run = p.run();
    // Each line once the one before was echoed and released (outputs in two batches); the primary
    // "dies" after the second: the log stops mid-run.
    p.input('ab\n');
    await until('the echo of ab released', () => [...perLsn.values()].join('').includes('AB'));
    p.input('cd\n');
    await until('the echo of cd released', () => [...perLsn.values()].join('').includes('CD'));
    p.stop();
    const r = await run;
    expect(r.kind).toBe('stopped');
    const withOutput = [...perLsn.keys()].filter((l) => perLsn.get(l) !== '');
    expect(withOutput.length).toBeGreaterThanOrEqual(2);
    const cut = withOutput[0]!;
    const expected = [...perLsn.entries()].filter(([l]) => l > cut).map(([, t]) => t).join('');
    const s = make();
    const sn = replicationPort(s);
    sn.setShadow(true);
    const rep = new Replayer(s);
    sn.shadowRelease(cut);
    for (const b of batches) rep.feed(b);
    rep.end();
    const sr = await s.run();
    expect(sr.kind).toBe('end-of-log');
    expect(s.stateHash()).toBe(p.stateHash());
    const out = sn.goLive(cut);
    expect(Buffer.from(out.console).toString('latin1')).toBe(expected);
    // Live now: input reaches the guest and its echo leaves at once (no gate on a lone primary).
    const seen: Uint8Array[] = [];
    s.on('console', (c) => seen.push(c));
    const liveRun = s.run();
    setTimeout(() => s.input('q'), 20);
    const end = await liveRun;
    expect(end.kind).toBe('exit');
    expect(text(seen)).toContain('echo:');
    rec.finish(r);
  });
});
