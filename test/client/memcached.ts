// Starts a real memcached (UDP only, 127.0.0.1, a free port) for the client tests, when installed.
// Every start is bounded in time; the test that starts one stops it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { userInfo } from 'node:os';
import { KvClient } from '../../src/client/index.js';

/** The memcached binary; override with LOCKSTEP_MEMCACHED. */
export const MEMCACHED = process.env.LOCKSTEP_MEMCACHED ?? 'memcached';

/** Why memcached cannot be used here, or `undefined` when it can. */
export function memcachedMissing(): string | undefined {
  const r = spawnSync(MEMCACHED, ['-V'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error !== undefined) return `${MEMCACHED} is not installed (${r.error.message}); install the Debian package memcached to run these tests`;
  if (r.status !== 0) return `${MEMCACHED} -V exited with ${r.status}`;
  return undefined;
}

export interface RunningMemcached {
  port: number;
  version: string;
  stop(): Promise<void>;
}

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', () => resolve()));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Starts memcached on a free UDP port (TCP off) and waits until it answers `version`. */
export async function startMemcached(): Promise<RunningMemcached> {
  let lastError = '';
  // The free port can be taken between probing and memcached binding it: try a few.
  for (let tries = 0; tries < 3; tries++) {
    const port = await freeUdpPort();
    const args = ['-U', String(port), '-p', '0', '-l', '127.0.0.1', '-t', '1', '-m', '16'];
    if (process.getuid?.() === 0) args.push('-u', userInfo().username === 'root' ? 'nobody' : userInfo().username);
    const child = spawn(MEMCACHED, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const client = new KvClient({ endpoints: [{ host: '127.0.0.1', port }], timeoutMs: 100, retries: 30, backoff: { initialMs: 20, maxMs: 100 } });
    try {
      const exited = new Promise<never>((_, reject) => child.once('exit', (code) => reject(new Error(`memcached exited with ${code}: ${stderr.trim()}`))));
      exited.catch(() => {}); // only the race observes it; a later exit (our own stop) is expected
      const version = await Promise.race([client.version(), exited]);
      return { port, version, stop: () => stopProcess(child) };
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
      await stopProcess(child);
    } finally {
      await client.close();
    }
  }
  throw new Error(`memcached did not start: ${lastError}`);
}
