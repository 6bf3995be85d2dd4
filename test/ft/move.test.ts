// Moving the secondary without a protection gap, end to end: primary and secondaries as processes of the
// built CLI under a verifying load. The status never leaves Protected during a move; a SIGKILL of the
// primary at any point of a move loses no acknowledged write and applies none twice (exactly one of
// the two secondaries goes live); losing the old or the new secondary mid-move is survived.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { callControl } from '../../src/ft/control-client.js';
import { loadConfig } from '../../src/config/index.js';
import { exited, killAll, kvConfig, replayReceived, type Proc, processScope } from '../helpers/ft-pair.js';
import { until } from '../helpers/wait.js';
import { verifyingLoads } from '../helpers/verifying-load.js';
import type { EventLine } from '../../src/ft/event-lines.js';

const KILLS = Number(process.env.LOCKSTEP_MOVE_KILLS ?? 6);
const { tmp, start } = processScope('move');

/** A protected pair whose primary has an operations API; `call` runs an FT operation on it. */
async function pair(dir: string, secondaryArgs: (name: string) => string[]) {
  const cfg = await kvConfig(dir, { ramMiB: 64 });
  const { key } = await loadConfig(cfg.path);
  const primary = start('primary', ['primary', cfg.path, '--control', '127.0.0.1:0']);
  const port = Number((await primary.wait('listening')).port);
  const control = String((await primary.wait('control')).url);
  const join = ['--join', `127.0.0.1:${port}`];
  const old = start('old', ['secondary', cfg.path, ...join, ...secondaryArgs('old')]);
  await primary.wait('status', (e) => e.protected === true);
  const call = async (op: string) => callControl(control, key!, op === 'status' ? 'GET' : 'POST', `/ft/${op}`);
  /** Starts the move: the operation, then the new secondary's process. */
  const move = async () => {
    const r = await call('migrate-secondary');
    expect(r.status).toBe(200);
    return start('new', ['secondary', cfg.path, ...join, ...secondaryArgs('new')]);
  };
  return { cfg, primary, old, move, call };
}


/** The first of `procs` to print `event` (another's exit without it is not a failure). */
function first(event: string, ps: Proc[], timeoutMs = 60_000): Promise<{ p: Proc; e: EventLine }> {
  return new Promise((resolve, reject) => {
    let failed = 0;
    for (const p of ps) {
      p.wait(event, undefined, timeoutMs).then(
        (e) => resolve({ p, e }),
        (err: unknown) => {
          if (++failed === ps.length) reject(err as Error);
        },
      );
    }
  });
}

describe('moving the secondary (processes)', () => {
  it('under a verifying load the VM stays protected at every sample of the move, the old secondary is dismissed only after the new one is in lockstep, and nothing is lost', async () => {
    const dir = join(tmp, 'protected');
    mkdirSync(dir);
    // Native data path on every side (no --log-dir).
    const { cfg, primary, old, move, call } = await pair(dir, () => []);
    const l = verifyingLoads(cfg.udpPort, 60);
    await until('the load to run', () => l.progress() >= 20);
    const samples: Array<{ protected: boolean; moving: boolean }> = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const r = await call('status');
        samples.push({ protected: r.body.protected === true, moving: r.body.moving === true });
        await new Promise((res) => setTimeout(res, 10));
      }
    })();
    const statusBefore = primary.events.length;
    const newer = await move();
    const moved = await primary.wait('moved');
    expect(String((await old.wait('left')).reason)).toMatch(/moved/);
    await newer.wait('status', (e) => e.protected === true); // its first acknowledged batch after the switch-over
    const atMove = l.progress();
    await until('the load to go on after the move', () => l.progress() > atMove + 20);
    sampling = false;
    await sampler;
    expect(Number(moved.epoch)).toBe(2); // the fence: epoch 1 → 2 in one claim
    expect(samples.filter((s) => s.moving).length).toBeGreaterThan(0);
    expect(samples.filter((s) => !s.protected)).toEqual([]);
    expect(primary.events.slice(statusBefore).filter((e) => e.event === 'status')).toEqual([]); // never Not Protected
    expect(await exited(old)).toBe(0);
    await l.verify();
  }, 300_000);

  it(`SIGKILL of the primary at a random point of a move under load, ${KILLS} times: exactly one secondary goes live, nothing acknowledged is lost, nothing applied twice`, async () => {
    let seed = 424242;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const winners: string[] = [];
    for (let i = 0; i < KILLS; i++) {
      const dir = join(tmp, `kill-${i}`);
      mkdirSync(dir);
      const { cfg, primary, old, move } = await pair(dir, (name) => ['--log-dir', join(dir, name)]);
      const l = verifyingLoads(cfg.udpPort, 60);
      await until('the load to run', () => l.progress() >= 10);
      const newer = await move();
      // A point in each stage in turn — during the pre-copy, right after the new secondary restored the
      // final state (the switch-over), after the move — a random amount of load later.
      const stage = i % 3;
      const more = Math.floor(rnd() * 30);
      if (stage === 0) await newer.wait('joined');
      else if (stage === 1) await newer.wait('cloned');
      else await primary.wait('moved');
      const at = l.progress();
      if (more > 0) await until(`${more} more writes`, () => l.progress() >= at + more || primary.events.some((e) => e.event === 'moved'), { timeoutMs: 60_000 });
      const clonedAtKill = newer.events.some((x) => x.event === 'cloned');
      const movedAtKill = primary.events.some((x) => x.event === 'moved');
      primary.child.kill('SIGKILL');
      const { p: live, e } = await first('go-live', [old, newer]);
      winners.push(`${stage}:${live.name}@${String(e.epoch)}`);
      // Before the new secondary held the final state only the old one can take over; after the move only the new one.
      if (!clonedAtKill) expect(live).toBe(old);
      if (movedAtKill) expect(live).toBe(newer);
      expect(Number(e.epoch)).toBe(live === old ? 2 : movedAtKill ? 3 : Number(e.epoch));
      const loser = live === old ? newer : old;
      // The other one never serves: it halts, or it had been dismissed.
      const code = await exited(loser);
      expect(loser.events.some((x) => x.event === 'go-live')).toBe(false);
      expect(code).not.toBeNull();
      await live.wait('listening', undefined, 60_000);
      const atLive = l.progress();
      await until('the survivor to serve the load', () => l.progress() > atLive + 5, { timeoutMs: 60_000 });
      await l.verify();
      const { replayed, survivor } = await replayReceived(join(dir, live.name), cfg.ramMiB, cfg.image);
      expect(replayed).toBe(survivor);
      killAll([live]);
      await exited(live);
    }
    expect(winners.length).toBe(KILLS);
  }, 1_800_000);

  it('losing the old secondary mid-move: the primary wins the next epoch and the new one is cloned and protects the VM', async () => {
    const dir = join(tmp, 'old-lost');
    mkdirSync(dir);
    const { cfg, primary, old, move } = await pair(dir, () => []);
    const l = verifyingLoads(cfg.udpPort, 60);
    await until('the load to run', () => l.progress() >= 10);
    const newer = await move();
    await newer.wait('joined');
    old.child.kill('SIGKILL');
    const lost = await primary.wait('secondary-lost');
    expect(Number(lost.epoch)).toBe(2);
    await newer.wait('status', (e) => e.protected === true);
    await primary.wait('status', (e) => e.protected === true && primary.events.indexOf(e) > primary.events.indexOf(lost));
    const at = l.progress();
    await until('the load to go on', () => l.progress() > at + 10);
    // The new secondary protects: kill the primary, it goes live with everything acknowledged.
    primary.child.kill('SIGKILL');
    expect(Number((await newer.wait('go-live')).epoch)).toBe(3);
    await newer.wait('listening');
    const atLive = l.progress();
    await until('the new primary to serve', () => l.progress() > atLive + 5);
    await l.verify();
  }, 300_000);

  it('losing the new secondary mid-move: the move fails with a reason, the old secondary protects the VM throughout and takes over when the primary dies', async () => {
    const dir = join(tmp, 'new-lost');
    mkdirSync(dir);
    const { cfg, primary, old, move } = await pair(dir, () => []);
    const l = verifyingLoads(cfg.udpPort, 60);
    await until('the load to run', () => l.progress() >= 10);
    const statusBefore = primary.events.length;
    const newer = await move();
    await newer.wait('joined');
    newer.child.kill('SIGKILL');
    const failed = await primary.wait('move-failed');
    expect(String(failed.reason)).toMatch(/closed|no word/);
    expect(primary.events.slice(statusBefore).filter((e) => e.event === 'status')).toEqual([]); // Protected throughout
    expect(primary.events.some((e) => e.event === 'secondary-lost')).toBe(false);
    const at = l.progress();
    await until('the load to go on', () => l.progress() > at + 10);
    primary.child.kill('SIGKILL');
    expect(Number((await old.wait('go-live')).epoch)).toBe(2);
    await old.wait('listening');
    const atLive = l.progress();
    await until('the old secondary, now primary, to serve', () => l.progress() > atLive + 5);
    await l.verify();
  }, 300_000);
});
