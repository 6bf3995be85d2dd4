// A real single-member etcd for tests: spawned from /usr/bin/etcd (Debian etcd-server) on free
// loopback ports with a temporary data directory; stopped and removed by the test that started it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The etcd binary; override with LOCKSTEP_ETCD. */
export const ETCD = process.env.LOCKSTEP_ETCD ?? '/usr/bin/etcd';

let availability: { ok: true } | { ok: false; why: string } | undefined;

/** Whether etcd can be started here, and if not why (checked once per process). */
export function etcdAvailability(): { ok: true } | { ok: false; why: string } {
  if (availability === undefined) {
    const r = spawnSync(ETCD, ['--version'], { stdio: 'pipe', timeout: 10_000 });
    // Slow to answer on a loaded machine is not absent: that skipped every etcd test silently.
    const slow = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
    availability =
      slow || (r.error === undefined && r.status === 0)
        ? { ok: true }
        : { ok: false, why: `${ETCD} cannot be run (${r.error?.message ?? `exit ${r.status}`}); install the Debian package etcd-server` };
  }
  return availability;
}

/** A free TCP port on 127.0.0.1 (bound and released; etcd binds it right after). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** A running etcd. */
export interface EtcdServer {
  /** Client URL, `http://127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** The data directory (kept across {@link EtcdServer.restart}). */
  readonly dataDir: string;
  /** Stop etcd (SIGTERM, SIGKILL after 5 s); the data directory stays. */
  stop(): Promise<void>;
  /** Stop and start again on the same ports and data. */
  restart(): Promise<void>;
  /** Stop and remove the data directory. */
  dispose(): Promise<void>;
  /** The last lines etcd wrote, for failure messages. */
  log(): string;
}

/**
 * Start etcd with short heartbeat and election timings, so that leases as short as 1 s are
 * honoured (etcd's minimum lease TTL is 1.5 election timeouts), and wait until /health is true.
 */
export async function startEtcd(): Promise<EtcdServer> {
  const dataDir = await mkdtemp(join(tmpdir(), 'lockstep-etcd-'));
  const clientPort = await freePort();
  const peerPort = await freePort();
  const endpoint = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const args = [
    '--name', 'lockstep-test',
    '--data-dir', dataDir,
    '--listen-client-urls', endpoint,
    '--advertise-client-urls', endpoint,
    '--listen-peer-urls', peer,
    '--initial-advertise-peer-urls', peer,
    '--initial-cluster', `lockstep-test=${peer}`,
    '--initial-cluster-state', 'new',
    '--initial-cluster-token', 'lockstep-test',
    '--heartbeat-interval', '50',
    '--election-timeout', '500',
    '--logger', 'zap',
    '--log-level', 'warn',
  ];
  let child: ChildProcess | undefined;
  let tail = '';
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString('utf8')).slice(-8_000);
  };

  async function start(): Promise<void> {
    const c = spawn(ETCD, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    c.stdout!.on('data', keep);
    c.stderr!.on('data', keep);
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    // Bounded: 200 × 50 ms.
    for (let i = 0; i < 200; i++) {
      if (c.exitCode !== null || c.signalCode !== null) break;
      if (await healthy(endpoint)) return;
      await Promise.race([exited, new Promise((r) => setTimeout(r, 50))]);
    }
    await stop();
    throw new Error(`etcd did not become healthy on ${endpoint}:\n${tail}`);
  }

  async function stop(): Promise<void> {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }

  await start();
  return {
    endpoint,
    dataDir,
    stop,
    async restart() {
      await stop();
      await start();
    },
    async dispose() {
      await stop();
      await rm(dataDir, { recursive: true, force: true });
    },
    log: () => tail,
  };
}

async function healthy(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/health`, { signal: AbortSignal.timeout(1_000) });
    const body = (await res.json()) as { health?: unknown };
    return res.ok && body.health === 'true';
  } catch {
    return false;
  }
}
