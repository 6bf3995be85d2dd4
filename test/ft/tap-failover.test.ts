// Transparent to the network: the primary and the secondary run in two network namespaces acting as two
// hosts, each with a TAP device bridged onto one layer-2 segment (a third namespace is the switch), and
// a client in a fourth pings the guest's IP. The primary is killed with SIGKILL; the secondary goes live,
// announces the guest's MAC (RARP), and the same IP keeps answering: ping loses only the outage's packets.
// Skips, saying why, without root or iproute2/ping (CI has them).
import { spawnSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { killAll, kvConfig, launch, type Proc } from '../helpers/ft-pair.js';
import { until } from '../helpers/wait.js';

const tag = `${process.pid % 100000}`;
const ns = { a: `lsA${tag}`, b: `lsB${tag}`, c: `lsC${tag}`, s: `lsS${tag}` };
const sh = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });
const inNs = (n: string, ...args: string[]) => sh('ip', ['netns', 'exec', n, ...args]);

function setUp(): string | undefined {
  if (process.platform !== 'linux') return 'TAP devices are Linux only';
  if (process.getuid?.() !== 0) return 'creating network namespaces needs root';
  if (sh('ip', ['-V']).status !== 0) return "'ip' (iproute2) is not installed";
  if (sh('ping', ['-V']).status !== 0) return "'ping' (iputils-ping) is not installed";
  for (const n of Object.values(ns)) {
    const r = sh('ip', ['netns', 'add', n]);
    if (r.status !== 0) return `cannot create a network namespace: ${r.stderr.trim()}`;
  }
  const steps: string[][] = [
    ['ip', 'netns', 'exec', ns.s, 'ip', 'link', 'add', 'br0', 'type', 'bridge'],
    ['ip', 'netns', 'exec', ns.s, 'ip', 'link', 'set', 'br0', 'up'],
  ];
  for (const [host, name] of [[ns.a, 'A'], [ns.b, 'B'], [ns.c, 'C']] as const) {
    steps.push(['ip', 'link', 'add', `v${name}${tag}`, 'netns', host, 'type', 'veth', 'peer', 'name', `s${name}${tag}`, 'netns', ns.s]);
    steps.push(['ip', 'netns', 'exec', ns.s, 'ip', 'link', 'set', `s${name}${tag}`, 'master', 'br0', 'up']);
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'link', 'set', 'lo', 'up']);
  }
  steps.push(['ip', 'netns', 'exec', ns.c, 'ip', 'addr', 'add', '10.0.2.2/24', 'dev', `vC${tag}`]);
  steps.push(['ip', 'netns', 'exec', ns.c, 'ip', 'link', 'set', `vC${tag}`, 'up']);
  // Each host: a bridge joining its uplink and its TAP device; the bridge also carries the host's own
  // address for the logging channel.
  for (const [host, name, ip] of [[ns.a, 'A', '192.168.77.1/24'], [ns.b, 'B', '192.168.77.2/24']] as const) {
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'link', 'add', 'brh', 'type', 'bridge']);
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'link', 'set', `v${name}${tag}`, 'master', 'brh', 'up']);
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap']);
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'link', 'set', 'tap0', 'master', 'brh', 'up']);
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'addr', 'add', ip, 'dev', 'brh']);
    steps.push(['ip', 'netns', 'exec', host, 'ip', 'link', 'set', 'brh', 'up']);
  }
  for (const s of steps) {
    const r = sh(s[0]!, s.slice(1));
    if (r.status !== 0) return `network set-up failed at '${s.join(' ')}': ${r.stderr.trim()}`;
  }
  return undefined;
}

const reason = setUp();
if (reason) console.log(`test/ft/tap-failover.test.ts skipped: ${reason}`);
const procs: Proc[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'lockstep-tapft-'));
afterAll(() => {
  killAll(procs);
  for (const n of Object.values(ns)) sh('ip', ['netns', 'del', n]);
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
