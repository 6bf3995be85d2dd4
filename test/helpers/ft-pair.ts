// Fixtures for fault-tolerance tests: a kvserver VM config in a temp dir, primary/secondary processes
// of the built CLI, and the offline check that a survivor's state equals a replay of the log it got.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach } from 'vitest';
import { Machine, Replayer } from '../../src/index.js';
import { batchSizeAt } from '../../src/log/format.js';
import { freeUdpPort, launch, type CliProcess as Proc } from '../../src/cluster/agent/cli-process.js';

export { freeUdpPort, launch, type Proc };

export const root = fileURLToPath(new URL('../..', import.meta.url));
export const KVSERVER = join(root, 'guest', 'bin', 'kvserver.elf');


export interface PairConfig {
  path: string;
  udpPort: number;
  image: string;
  ramMiB: number;
}

/** Writes a kvserver FT config (fresh disk image and arbiter directory) into `dir`. */
export async function kvConfig(dir: string, options: { timeoutMs?: number; heartbeatMs?: number; ramMiB?: number; udpPort?: number; name?: string; key?: string; metrics?: boolean } = {}): Promise<PairConfig> {
  const udpPort = options.udpPort ?? (await freeUdpPort());
  const image = join(dir, 'kv.img');
  writeFileSync(image, Buffer.alloc(4 << 20), { flag: 'a' });
  const ramMiB = options.ramMiB ?? 16;
  const config: Record<string, unknown> = {
    vm: { id: 'kv-test', guest: KVSERVER, ramMiB, clock: 'real', devices: { disk: { path: image }, net: { backend: 'udp', hostPort: udpPort, guestPort: 11211 } } },
    ft: {
      listen: '127.0.0.1:0',
      keyHex: options.key ?? randomBytes(32).toString('hex'),
      arbiter: { backend: 'file', dir: join(dir, 'arbiter') },
      // Not the 600 ms default: on a loaded machine a pause that long is a false failover, and these
      // pairs lose their halves by SIGKILL (a closed socket, noticed at once) unless a test asks for less.
      timeoutMs: options.timeoutMs ?? 5_000,
      heartbeatMs: options.heartbeatMs ?? 100,
    },
  };
  if (options.metrics) config.metrics = { listen: '127.0.0.1:0' };
  mkdirSync(join(dir, 'arbiter'), { recursive: true }); // the shared directory must exist
  const path = join(dir, options.name ?? 'vm.json');
  writeFileSync(path, JSON.stringify(config, null, 2));
  return { path, udpPort, image, ramMiB };
}

/**
 * A test file's scratch folder and process launcher (call at the top of the file): every process started
 * is killed after each test, and the folder is removed after the file.
 */
export function processScope(prefix: string): { tmp: string; start: (name: string, args: string[]) => Proc } {
  const tmp = mkdtempSync(join(tmpdir(), `lockstep-${prefix}-`));
  const procs: Proc[] = [];
  afterEach(() => killAll(procs.splice(0)));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));
  const start = (name: string, args: string[]): Proc => {
    const p = launch(name, args);
    procs.push(p);
    return p;
  };
  return { tmp, start };
}

/** Stops every process of a test. */
export function killAll(procs: Proc[]): void {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
}

/** Resolves with the exit code once `p` exits. */
export function exited(p: Proc): Promise<number | null> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return Promise.resolve(p.child.exitCode);
  return new Promise((r) => p.child.once('exit', (code) => r(code)));
}

/**
 * rr's habit: replays the log a secondary received (from the clone's state) on a fresh machine and
 * returns its state hash at the end of the log, and the hash the survivor recorded at go-live.
 */
export async function replayReceived(logDir: string, ramMiB: number, image: string): Promise<{ replayed: bigint; survivor: bigint }> {
  const golive = JSON.parse(readFileSync(join(logDir, 'golive.json'), 'utf8')) as { stateHash: string };
  const m = new Machine({ memory: ramMiB << 20, clock: 'real', devices: { disk: { path: image }, net: true } });
  try {
    m.restore(readFileSync(join(logDir, 'clone.snap')));
    const rep = new Replayer(m);
    const log = readFileSync(join(logDir, 'log.bin'));
    for (let at = 0, size = batchSizeAt(log, 0); size !== undefined && at + size <= log.length; at += size, size = batchSizeAt(log, at)) {
      rep.feed(log.subarray(at, at + size));
    }
    rep.end();
    const r = await m.run();
    if (r.kind !== 'end-of-log') throw new Error(`offline replay ended with ${r.kind}: ${JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
    return { replayed: m.stateHash(), survivor: BigInt(golive.stateHash) };
  } finally {
    m.close();
  }
}
