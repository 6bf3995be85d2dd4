// Live migration of an idle FT VM (no requests: the guest sleeps in WFI at the hand-over point): the
// secondary drains to exactly the target's go-live state and follows it, as it does under load.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { callControl } from '../../src/ft/control-client.js';
import { loadConfig } from '../../src/config/index.js';
import { exited, kvConfig, processScope } from '../helpers/ft-pair.js';

const { tmp, start } = processScope('migrate-idle');

describe('live migration of an idle guest (processes)', () => {
  it("an idle FT VM's primary moves to a target and its secondary follows it: no halt, the pair protected again at the target", async () => {
    const dir = join(tmp, 'idle');
    mkdirSync(dir);
    const cfg = await kvConfig(dir, { ramMiB: 64 });
    const { key } = await loadConfig(cfg.path);
    const source = start('source', ['primary', cfg.path, '--control', '127.0.0.1:0']);
    const port = Number((await source.wait('listening')).port);
    const control = String((await source.wait('control')).url);
    const joinArgs = ['--join', `127.0.0.1:${port}`];
    const secondary = start('secondary', ['secondary', cfg.path, ...joinArgs]);
    await source.wait('status', (e) => e.protected === true);
    expect((await callControl(control, key!, 'POST', '/ft/migrate')).status).toBe(200);
    const target = start('target', ['secondary', cfg.path, ...joinArgs, '--control', '127.0.0.1:0']);
    const migrated = await source.wait('migrated');
    expect(migrated.follower).toBe(true);
    expect(await exited(source)).toBe(0);
    const live = await target.wait('go-live');
    // Before the fix the secondary halted here: an idle guest's recording never sealed its first batch,
    // so the secondary kept the clone's clock and its state hash differed at the same instret.
    const following = await secondary.wait('following').catch((e: Error) => {
      throw new Error(`${e.message}; the secondary said ${JSON.stringify(secondary.events.filter((x) => x.event === 'halted'))}`);
    });
    expect(String(following.instret)).toBe(String(live.instret));
    const rejoined = await Promise.race([secondary.wait('rejoined'), secondary.wait('halted').then((h) => ({ halted: h }))]);
    expect(rejoined).not.toHaveProperty('halted');
    await target.wait('followed');
  }, 300_000);
});
