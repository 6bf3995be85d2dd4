// Addresses that are taken or dead, as an operator meets them: a clear message naming the address and
// a meaningful exit status (69) instead of an internal error with a stack, no epoch burned by a primary
// that could not have served, and a survivor that goes live although its old primary — frozen, on the
// same host — still holds the guest's UDP port: it keeps retrying, reports it, and never dies.
import { createSocket } from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { KvClient } from '../../src/index.js';
import { exited, killAll, kvConfig, launch, root, type Proc } from '../helpers/ft-pair.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-ports-'));
const procs: Proc[] = [];
const cleanups: (() => void)[] = [];
afterEach(() => {
  killAll(procs.splice(0));
  for (const c of cleanups.splice(0)) c();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function start(name: string, args: string[]): Proc {
  const p = launch(name, args);
  procs.push(p);
  return p;
}

/** The text a process printed that was not an event (its error message). */
const said = (p: Proc) => p.log.join('\n');

async function tcpBlocker(): Promise<{ port: number; close: () => Promise<void> }> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => s.close());
  return { port: (s.address() as { port: number }).port, close: () => new Promise((r) => s.close(() => r())) };
}

/** `lockstep ft …` (no --events: it has none): exit status and stderr. */
function ft(args: string[]): Promise<{ status: number | null; stderr: string; stdout: string }> {
  const child = spawn(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'ft', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  return new Promise((resolve) => child.once('close', (status) => resolve({ status, stderr, stdout })));
}

describe('taken and dead addresses', () => {
  it("primary: the guest's UDP port in use — exit 69 naming it, no stack, no epoch claimed", async () => {
    const dir = join(tmp, 'udp-busy');
    mkdirSync(dir);
    const cfg = await kvConfig(dir);
    const blocker = createSocket('udp4');
    await new Promise<void>((r) => blocker.bind(cfg.udpPort, '127.0.0.1', () => r()));
    cleanups.push(() => blocker.close());
    const p = start('primary', ['primary', cfg.path]);
    expect(await exited(p)).toBe(69);
    expect(said(p)).toContain(`127.0.0.1:${cfg.udpPort} is in use by another process`);
    expect(said(p)).toContain('vm.devices.net.hostPort');
    expect(said(p)).not.toMatch(/internal error|\n\s+at /);
    expect(existsSync(join(dir, 'arbiter', 'kv-test'))).toBe(false);
  });

  it('run --net with a taken host port: exit 69 naming it, no stack', async () => {
    const blocker = createSocket('udp4');
    await new Promise<void>((r) => blocker.bind(0, '127.0.0.1', () => r()));
    cleanups.push(() => blocker.close());
    const port = blocker.address().port;
    const child = spawn(process.execPath, [join(root, 'dist', 'cli', 'main.js'), 'run', 'guest/bin/kvserver.elf', '--net', `udp:${port}:11211`], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const status = await new Promise((r) => child.once('close', (code) => r(code)));
    expect(status).toBe(69);
    expect(stderr).toBe(`lockstep run: --net udp (host port ${port}): 127.0.0.1:${port} is in use by another process: stop it, or choose another port\n`);
  });

  it('primary: the logging-channel port in use — exit 69 naming it, and no epoch burned', async () => {
    const dir = join(tmp, 'listen-busy');
    mkdirSync(dir);
    const cfg = await kvConfig(dir);
    const { port } = await tcpBlocker();
    const p = start('primary', ['primary', cfg.path, '--listen', `127.0.0.1:${port}`]);
    expect(await exited(p)).toBe(69);
    expect(said(p)).toContain(`the logging channel (ft.listen, --listen): 127.0.0.1:${port} is in use`);
    expect(existsSync(join(dir, 'arbiter', 'kv-test'))).toBe(false);
    // The next start is the first: epoch 1.
    const ok = start('primary 2', ['primary', cfg.path]);
    expect(Number((await ok.wait('listening')).epoch)).toBe(1);
  });

  it('primary: the operations API port in use — exit 69 naming it', async () => {
    const dir = join(tmp, 'control-busy');
    mkdirSync(dir);
    const cfg = await kvConfig(dir);
    const { port } = await tcpBlocker();
    const p = start('primary', ['primary', cfg.path, '--control', `127.0.0.1:${port}`]);
    expect(await exited(p)).toBe(69);
    expect(said(p)).toContain(`the operations API (--control): 127.0.0.1:${port} is in use`);
  });

  it('ft against a port where nothing answers: exit 69 naming the address; a wrong key: 77; the right one: 0; an operation refused in the present state: 75', async () => {
    const dir = join(tmp, 'ft-client');
    mkdirSync(dir);
    const cfg = await kvConfig(dir);
    const blocker = await tcpBlocker();
    await blocker.close(); // a port that was free a moment ago: nothing listens there
    const none = await ft(['status', cfg.path, '--control', `127.0.0.1:${blocker.port}`]);
    expect(none.status).toBe(69);
    expect(none.stderr).toContain(`the operations API at 127.0.0.1:${blocker.port} did not answer: connection refused`);
    expect(none.stderr).not.toMatch(/internal error|TypeError|fetch failed/);
    const primary = start('primary', ['primary', cfg.path, '--control', '127.0.0.1:0']);
    const control = new URL(String((await primary.wait('control')).url)).host;
    await primary.wait('listening');
    const other = JSON.parse(readFileSync(cfg.path, 'utf8')) as { ft: { keyHex: string } };
    other.ft.keyHex = 'ab'.repeat(32);
    const otherPath = join(dir, 'other-key.json');
    writeFileSync(otherPath, JSON.stringify(other));
    const wrong = await ft(['status', otherPath, '--control', control]);
    expect(wrong.status).toBe(77);
    expect(wrong.stderr).toMatch(/signature does not match/);
    await primary.wait('warning', (e) => /operations API: refused/.test(String(e.message)));
    const right = await ft(['status', cfg.path, '--control', control]);
    expect(right.status).toBe(0);
    expect(JSON.parse(right.stdout)).toMatchObject({ vm: 'kv-test', epoch: 1 });
    // Refused in the present state (no secondary to hand over to): 75, try again; not 76 (halted).
    const refused = await ft(['test-failover', cfg.path, '--control', control]);
    expect(refused.status, refused.stderr).toBe(75);
    expect(refused.stderr).toMatch(/lockstep ft: test-failover: /);
  });

  it('a secondary that finds nothing at --join exits 69; one whose key is not the pair\'s exits 77 (not 64, usage)', async () => {
    const dir = join(tmp, 'join-errors');
    mkdirSync(dir);
    const cfg = await kvConfig(dir);
    const closed = await tcpBlocker();
    await closed.close(); // free a moment ago: nothing listens there
    const none = start('secondary', ['secondary', cfg.path, '--join', `127.0.0.1:${closed.port}`]);
    expect(await exited(none)).toBe(69);
    expect(said(none)).toMatch(/ECONNREFUSED/);
    const primary = start('primary', ['primary', cfg.path]);
    const l = await primary.wait('listening');
    const other = JSON.parse(readFileSync(cfg.path, 'utf8')) as { ft: { keyHex: string } };
    other.ft.keyHex = 'cd'.repeat(32);
    const otherPath = join(dir, 'other-key.json');
    writeFileSync(otherPath, JSON.stringify(other));
    const wrong = start('secondary', ['secondary', otherPath, '--join', `127.0.0.1:${String(l.port)}`]);
    expect(await exited(wrong)).toBe(77);
  });

  it('a survivor that cannot bind its UDP port (the frozen old primary holds it) goes live, retries, reports it, and binds once the port is free', async () => {
    const dir = join(tmp, 'survivor');
    mkdirSync(dir);
    const cfg = await kvConfig(dir, { timeoutMs: 2_000, heartbeatMs: 100 });
    const primary = start('primary', ['primary', cfg.path]);
    const l = await primary.wait('listening');
    const secondary = start('secondary', ['secondary', cfg.path, '--join', `127.0.0.1:${String(l.port)}`]);
    await primary.wait('status', (e) => e.protected === true);
    const c = new KvClient({ endpoints: [{ host: '127.0.0.1', port: cfg.udpPort }], timeoutMs: 200, retries: 100 });
    cleanups.push(() => void c.close());
    expect(await c.set('before', 'freeze')).toBe('stored');
    primary.child.kill('SIGSTOP');
    cleanups.push(() => primary.child.kill('SIGKILL'));
    await secondary.wait('go-live', undefined, 120_000);
    const unavailable = await secondary.wait('net-unavailable', undefined, 120_000);
    expect(String(unavailable.message)).toContain(`127.0.0.1:${cfg.udpPort} is in use`);
    // It went on: promoted, listening for a new secondary, though the network is not up yet.
    await secondary.wait('listening', (e) => Number(e.epoch) === 2);
    expect(secondary.events.some((e) => e.event === 'net')).toBe(false);
    // Still trying well past the 5 s the old code gave up after (reports come every 10 s).
    await secondary.wait('net-unavailable', (e) => Number(e.attempts) > Number(unavailable.attempts), 120_000);
    expect(secondary.child.exitCode).toBeNull();
    primary.child.kill('SIGKILL');
    await exited(primary);
    const net = await secondary.wait('net', undefined, 120_000);
    expect(Number(net.port)).toBe(cfg.udpPort);
    expect((await c.get('before'))?.value.toString()).toBe('freeze');
  });
});
