// The `tap` back-end: kvserver under `lockstep run --net tap:...` inside a network namespace the test
// makes (and removes) owns 10.0.2.15 on a real layer-2 link, and answers ping. Skips, saying why, where
// namespaces or the tools cannot be had (CI has them).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const bin = join(root, 'dist', 'cli', 'main.js');
const ns = `lockstep-tap-${process.pid}`;

function sh(cmd: string, args: string[]) {
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: 20_000 });
}

function unavailable(): string | undefined {
  if (process.platform !== 'linux') return 'TAP devices are Linux only';
  if (process.getuid?.() !== 0) return 'creating network namespaces needs root';
  if (sh('ip', ['-V']).status !== 0) return "'ip' (iproute2) is not installed";
  if (sh('ping', ['-V']).status !== 0) return "'ping' (iputils-ping) is not installed";
  const made = sh('ip', ['netns', 'add', ns]);
  if (made.status !== 0) return `cannot create a network namespace: ${made.stderr.trim()}`;
  return undefined;
}

const reason = unavailable();
if (reason) console.log(`test/cli/tap.test.ts skipped: ${reason}`);
let child: ChildProcess | undefined;
afterAll(() => {
  if (child && child.exitCode === null) child.kill('SIGKILL');
  if (!reason) sh('ip', ['netns', 'del', ns]);
});

describe.skipIf(reason !== undefined)('tap back-end', () => {
  it('a guest on a TAP device in a namespace answers ping at its own IP', async () => {
    child = spawn('ip', ['netns', 'exec', ns, process.execPath, bin, 'run', 'guest/bin/kvserver.elf', '--clock', 'real', '--net', 'tap:tap0'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const deadline = Date.now() + 120_000;
    while (!out.includes('listening') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    expect(out, err).toContain('listening');
    for (const args of [['ip', 'link', 'set', 'lo', 'up'], ['ip', 'addr', 'add', '10.0.2.2/24', 'dev', 'tap0'], ['ip', 'link', 'set', 'tap0', 'up']]) {
      const r = sh('ip', ['netns', 'exec', ns, ...args]);
      expect(r.status, r.stderr).toBe(0);
    }
    const ping = sh('ip', ['netns', 'exec', ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', '10.0.2.15']);
    expect(ping.stdout).toMatch(/3 packets transmitted, 3 received/);
    child.kill('SIGKILL');
  });
});
