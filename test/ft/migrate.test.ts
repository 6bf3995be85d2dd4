// Live migration end to end (processes of the built CLI, kvserver under a verifying load): a VM with FT
// off moves to a target that joins, catches up in lockstep and takes over by a hand-over; an FT VM's
// primary moves the same way after its secondary was moved in without a gap. No acknowledged write is
// lost, none applied twice.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { callControl } from '../../src/ft/control-client.js';
import { loadConfig } from '../../src/config/index.js';
import { exited, killAll, kvConfig, launch, type Proc } from '../helpers/ft-pair.js';
import { until } from '../helpers/wait.js';
import { verifyingLoads } from '../helpers/verifying-load.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-migrate-'));
const procs: Proc[] = [];
afterEach(() => killAll(procs.splice(0)));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function start(name: string, args: string[]): Proc {
  const p = launch(name, args);
  procs.push(p);
  return p;
}

describe('live migration (processes)', () => {
  it('a VM with FT off moves to a target under a verifying load: the target takes over with FT off, nothing acknowledged lost, nothing applied twice', async () => {
    const dir = join(tmp, 'solo');
    mkdirSync(dir);
    const cfg = await kvConfig(dir, { ramMiB: 64 });
    const json = JSON.parse(readFileSync(cfg.path, 'utf8')) as { ft: Record<string, unknown> };
    json.ft.enabled = false;
    writeFileSync(cfg.path, JSON.stringify(json));
    const { key } = await loadConfig(cfg.path);
    const source = start('source', ['primary', cfg.path, '--control', '127.0.0.1:0']);
    const port = Number((await source.wait('listening')).port);
    const control = String((await source.wait('control')).url);
    expect(String((await callControl(control, key!, 'GET', '/ft/status')).body.status)).toBe('Not Protected (disabled)');
    const l = verifyingLoads(cfg.udpPort, 80);
    await until('the load to run', () => l.progress() >= 20);
    expect((await callControl(control, key!, 'POST', '/ft/migrate')).status).toBe(200);
    const target = start('target', ['secondary', cfg.path, '--join', `127.0.0.1:${port}`]);
    const migrated = await source.wait('migrated');
    expect(Number(migrated.totalMs)).toBeGreaterThan(0);
    expect(await exited(source)).toBe(0);
    const live = await target.wait('go-live');
    expect(String(live.reason)).toMatch(/live migration/);
    expect(Number(live.reemittedFrames)).toBe(0); // everything was released before the hand-over: nothing to repeat
    await target.wait('stats', (e) => e.status === 'Not Protected (disabled)'); // FT stays off on the target
    const at = l.progress();
    await until('the target to serve the load', () => l.progress() > at + 20);
    await l.verify();
  }, 300_000);

  it("an FT VM's primary moves to a target: its secondary is moved in without a gap, then handed over to; nothing acknowledged lost, nothing applied twice", async () => {
    const dir = join(tmp, 'ft');
    mkdirSync(dir);
    const cfg = await kvConfig(dir, { ramMiB: 64 });
    const { key } = await loadConfig(cfg.path);
    const source = start('source', ['primary', cfg.path, '--control', '127.0.0.1:0']);
    const port = Number((await source.wait('listening')).port);
    const control = String((await source.wait('control')).url);
    const joinArgs = ['--join', `127.0.0.1:${port}`];
    const secondary = start('secondary', ['secondary', cfg.path, ...joinArgs]);
    await source.wait('status', (e) => e.protected === true);
    const l = verifyingLoads(cfg.udpPort, 80);
    await until('the load to run', () => l.progress() >= 20);
    const before = source.events.length;
    expect((await callControl(control, key!, 'POST', '/ft/migrate')).status).toBe(200);
    const target = start('target', ['secondary', cfg.path, ...joinArgs]);
    await source.wait('moved');
    expect(String((await secondary.wait('left')).reason)).toMatch(/moved/);
    await source.wait('migrated');
    // Protected until the hand-over: no status change before it.
    const handOver = source.events.findIndex((e) => e.event === 'handed-over');
    expect(source.events.slice(before, handOver).filter((e) => e.event === 'status')).toEqual([]);
    expect(await exited(source)).toBe(0);
    const live = await target.wait('go-live');
    expect(Number(live.epoch)).toBe(3); // 1, the move's fence 2, the hand-over 3
    expect(Number(live.reemittedFrames)).toBe(0);
    await target.wait('listening');
    const at = l.progress();
    await until('the target to serve the load', () => l.progress() > at + 20);
    await l.verify();
  }, 300_000);
});
