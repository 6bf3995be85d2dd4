// Transparent to the network: the primary and the secondary run in two network namespaces acting as two
// hosts, each with a TAP device bridged onto one layer-2 segment (a third namespace is the switch), and
// a client in a fourth pings the guest's IP. The primary is killed with SIGKILL; the secondary goes live,
// announces the guest's MAC (RARP), and the same IP keeps answering: ping loses only the outage's packets.
// Skips, saying why, without root or iproute2/ping (CI has them).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { killAll, kvConfig, launch, type Proc } from '../helpers/ft-pair.js';
import { setUpL2Hosts } from '../helpers/l2-hosts.js';
import { until } from '../helpers/wait.js';

const hosts = setUpL2Hosts(`${process.pid % 100000}`, ['ping']);
const reason = typeof hosts === 'string' ? hosts : undefined;
if (reason) console.log(`test/ft/tap-failover.test.ts skipped: ${reason}`);
const ns = typeof hosts === 'string' ? { a: '', b: '', c: '', s: '' } : hosts.ns;
const inNs = (n: string, ...args: string[]) => (hosts as Exclude<typeof hosts, string>).inNs(n, ...args);
const procs: Proc[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-tapft-'));
afterAll(() => {
  killAll(procs);
  if (typeof hosts !== 'string') hosts.remove();
  rmSync(tmp, { recursive: true, force: true });
});

describe.skipIf(reason !== undefined)('failover on a layer-2 network', () => {
  it('the client keeps reaching the same guest IP through a SIGKILL of the primary; ping loses only the outage', async () => {
    const cfg = await kvConfig(tmp);
    // Same VM on both hosts, on each host's own TAP device (same name in its namespace), same MAC.
    const json = JSON.parse(readFileSync(cfg.path, 'utf8')) as { vm: { devices: Record<string, unknown> } };
    json.vm.devices = { disk: json.vm.devices.disk, net: { backend: 'tap', name: 'tap0', mac: '52:54:00:12:34:56' } };
    writeFileSync(cfg.path, JSON.stringify(json));
    const primary = launch('primary', ['primary', cfg.path, '--listen', '192.168.77.1:0'], undefined, { prefix: ['ip', 'netns', 'exec', ns.a] });
    procs.push(primary);
    const l = await primary.wait('listening');
    const secondary = launch('secondary', ['secondary', cfg.path, '--join', `192.168.77.1:${String(l.port)}`, '--listen', '192.168.77.2:0'], undefined, {
      prefix: ['ip', 'netns', 'exec', ns.b],
    });
    procs.push(secondary);
    await primary.wait('status', (e) => e.protected === true);
    const before = inNs(ns.c, 'ping', '-c', '3', '-i', '0.2', '-W', '2', '10.0.2.15');
    expect(before.stdout).toMatch(/3 packets transmitted, 3 received/);
    // A steady ping (every 20 ms) across the failover.
    const ping = spawn('ip', ['netns', 'exec', ns.c, 'ping', '-c', '150', '-i', '0.02', '-W', '1', '10.0.2.15'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    ping.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const pinged = new Promise<void>((r) => ping.on('exit', () => r()));
    await until('a steady ping to be answered', () => (out.match(/bytes from 10\.0\.2\.15/g) ?? []).length >= 10);
    const killAt = Date.now();
    primary.child.kill('SIGKILL');
    const live = await secondary.wait('go-live', undefined, 20_000);
    const outageMs = Number(live.t) - killAt;
    await pinged;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    expect(m, out).not.toBeNull();
    const lost = Number(m![1]) - Number(m![2]);
    console.log(`tap failover: go-live ${outageMs} ms after the kill; ping lost ${lost} of ${m![1]} (one every 20 ms)`);
    // At one ping per 20 ms, the outage accounts for outage/20 packets; allow for ping's own timing.
    expect(lost).toBeLessThanOrEqual(Math.ceil(outageMs / 20) + 10);
    const after = inNs(ns.c, 'ping', '-c', '3', '-i', '0.2', '-W', '2', '10.0.2.15');
    expect(after.stdout, `${after.stdout}${after.stderr}`).toMatch(/3 packets transmitted, 3 received/);
  });
});
