// Fixtures for cluster tests and the cluster benchmark: agents and managers as processes of the built CLI
// (each agent its own process group, so a test can SIGKILL a "host" with everything on it), kvserver VM
// configurations with an etcd arbiter, `lockstep cluster` runs, and a checker that samples the store.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EtcdStore } from '../../src/cluster/store/etcd-store.js';
import { freeUdpPort, launch, type Proc } from './ft-pair.js';
import type { ClusterStore } from '../../src/cluster/store/store.js';
import { pairViews, parseInventory, type Inventory, type PairView } from '../../src/cluster/manager/inventory.js';
import { HOST_TTL_MS, INSTANCE_TTL_MS } from '../../src/cluster/manager/layout.js';
import { KvClient } from '../../src/index.js';

/** The repository root: the directory of the package named lockstep above this file (tests run it from test/helpers, the benchmark from bench/build/test/helpers). */
export const ROOT = ((): string => {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'lockstep') return dir;
    if (dirname(dir) === dir) throw new Error('cannot find the lockstep package root');
  }
})();
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');
export const KVSERVER = join(ROOT, 'guest', 'bin', 'kvserver.elf');

/** A process of the CLI in its own process group, with its `--events` lines collected. */
export interface GroupProc extends Proc {
  /** Signal the whole process group (the process and every child it started). */
  killGroup(signal: NodeJS.Signals): void;
  exited(): Promise<void>;
  alive(): boolean;
}

/** Start `lockstep <args> --events` as the leader of a new process group. */
export function launchGroup(name: string, args: string[], env: NodeJS.ProcessEnv = {}): GroupProc {
  const p = launch(name, args, undefined, { detached: true, env });
  const exit = new Promise<void>((r) => p.child.once('exit', () => r()));
  return Object.assign(p, {
    killGroup(signal: NodeJS.Signals) {
      try {
        process.kill(-p.child.pid!, signal);
      } catch {
        // already gone
      }
    },
    exited: () => exit,
    alive: () => p.child.exitCode === null && p.child.signalCode === null,
  });
}

/** Kill every process group (SIGKILL) and wait for the leaders to exit (bounded: 5 s). */
export async function killGroups(procs: GroupProc[]): Promise<void> {
  for (const p of procs) p.killGroup('SIGKILL');
  await Promise.race([Promise.all(procs.map((p) => p.exited())), new Promise((r) => setTimeout(r, 5_000))]);
}

/** A token file for the agents' API. */
export function tokenFile(dir: string): { path: string; token: string } {
  const token = randomBytes(24).toString('base64url');
  const path = join(dir, 'agent.token');
  writeFileSync(path, `${token}\n`, { mode: 0o600 });
  return { path, token };
}

/** Options of {@link startAgent}. */
export interface AgentProcOptions {
  id: string;
  store: string;
  tokenFile: string;
  dir: string;
  mips?: number;
  memoryMiB?: number;
  maxFtVms?: number;
  maxFtVcpus?: number;
  groups?: string[];
  /** More `lockstep agent` options (`--datastore <dir>`, say). */
  extra?: string[];
}

/** An agent process; resolves once it listens. */
export async function startAgent(o: AgentProcOptions): Promise<GroupProc> {
  const args = ['agent', '--id', o.id, '--store', o.store, '--token-file', o.tokenFile, '--dir', o.dir, '--mips', String(o.mips ?? 1000), '--memory-mib', String(o.memoryMiB ?? 1024)];
  if (o.maxFtVms !== undefined) args.push('--max-ft-vms', String(o.maxFtVms));
  if (o.maxFtVcpus !== undefined) args.push('--max-ft-vcpus', String(o.maxFtVcpus));
  if (o.groups !== undefined && o.groups.length > 0) args.push('--groups', o.groups.join(','));
  if (o.extra !== undefined) args.push(...o.extra);
  const p = launchGroup(`agent ${o.id}`, args);
  await p.wait('listening', undefined, 20_000);
  return p;
}

/** A manager process; resolves once it campaigns. */
export async function startManager(id: string, store: string, tokenFilePath: string, extra: string[] = []): Promise<GroupProc> {
  const p = launchGroup(`manager ${id}`, ['manager', '--id', id, '--store', store, '--token-file', tokenFilePath, ...extra]);
  await p.wait('started', undefined, 20_000);
  return p;
}

/** Runs `lockstep <args>` to completion: exit status, stdout, stderr. */
export function runCli(args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`lockstep ${args.join(' ')}: no exit within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export { freeUdpPort };

/** A kvserver FT VM (own UDP port and disk image) whose arbiter is the cluster's etcd. */
export async function kvVmConfig(dir: string, id: string, etcdEndpoint: string, options: { ramMiB?: number; timeoutMs?: number } = {}): Promise<{ path: string; udpPort: number }> {
  const vmDir = join(dir, id);
  mkdirSync(vmDir, { recursive: true });
  const udpPort = await freeUdpPort();
  const image = join(vmDir, 'kv.img');
  writeFileSync(image, Buffer.alloc(4 << 20));
  const config = {
    vm: { id, guest: KVSERVER, ramMiB: options.ramMiB ?? 16, clock: 'real', devices: { disk: { path: image }, net: { backend: 'udp', hostPort: udpPort, guestPort: 11211 } } },
    ft: {
      listen: '127.0.0.1:0',
      keyHex: randomBytes(32).toString('hex'),
      arbiter: { backend: 'etcd', endpoints: [etcdEndpoint] },
      timeoutMs: options.timeoutMs ?? 5_000, // host deaths close sockets; a loaded machine must not fail over falsely
      heartbeatMs: 100,
    },
  };
  const path = join(vmDir, `${id}.json`);
  writeFileSync(path, JSON.stringify(config, null, 2));
  return { path, udpPort };
}

/** Open the cluster's etcd store (for looking, and for the checker). */
export function openEtcd(endpoint: string): Promise<EtcdStore> {
  return EtcdStore.open({ endpoints: [endpoint], timeoutMs: 3_000 });
}

/** Poll `look` every `everyMs` until it returns a value (not undefined), at most `timeoutMs`. */
export async function until<T>(what: string, timeoutMs: number, look: () => Promise<T | undefined>, everyMs = 100): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  // Bounded by the deadline.
  while (performance.now() < deadline) {
    try {
      const v = await look();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last !== undefined ? ` (last error: ${(last as Error).message})` : ''}`);
}

/** One consistent look at the cluster: the inventory and its pairs. */
export async function look(store: ClusterStore): Promise<{ inv: Inventory; views: PairView[] }> {
  const inv = parseInventory(await store.list(''));
  return { inv, views: pairViews(inv) };
}

/** Every desired VM protected, each pair on two different live hosts, none on `avoid`. */
export function allProtected(inv: Inventory, views: PairView[], avoid: ReadonlySet<string> = new Set()): boolean {
  const desired = views.filter((v) => v.desired !== undefined);
  return (
    desired.length === inv.desired.size &&
    desired.every(
      (v) =>
        v.protected &&
        v.primary !== undefined &&
        v.secondary !== undefined &&
        v.primary.host !== v.secondary.host &&
        inv.hosts.has(v.primary.host) &&
        inv.hosts.has(v.secondary.host) &&
        !avoid.has(v.primary.host) &&
        !avoid.has(v.secondary.host),
    )
  );
}

/**
 * Samples the store every `everyMs` and records every rule violation it sees:
 *
 * - two records of one VM claim the same host, or a pair's primary and secondary share a host;
 * - an instance reported protected on a host the store reports dead (no host record);
 * - a VM reported protected while a half's host is dead, or was killed by the test more than
 *   `deadGraceMs` ago (its records must have expired by then);
 * - any record of a killed host still present `deadGraceMs` after the kill.
 */
export class StoreChecker {
  readonly violations: string[] = [];
  samples = 0;
  errors = 0;
  readonly #store: ClusterStore;
  readonly #killed = new Map<string, number>();
  readonly #deadGraceMs: number;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;

  constructor(store: ClusterStore, options: { everyMs?: number; deadGraceMs?: number } = {}) {
    this.#store = store;
    // A killed agent's instance records live out their TTL (then a margin for the store's own clock).
    this.#deadGraceMs = options.deadGraceMs ?? INSTANCE_TTL_MS + 2_000;
    this.#timer = setInterval(() => void this.#sample(), options.everyMs ?? 100);
  }

  /** The test killed `host` now. */
  killed(host: string): void {
    this.#killed.set(host, performance.now());
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async #sample(): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    const at = performance.now();
    try {
      const { inv, views } = await look(this.#store);
      this.samples++;
      const v = (m: string) => {
        if (this.violations.length < 50) this.violations.push(`${new Date().toISOString()} ${m}`);
      };
      const overdue = (host: string) => {
        const k = this.#killed.get(host);
        return k !== undefined && at - k > this.#deadGraceMs;
      };
      for (const [vm, records] of inv.instances) {
        const hosts = records.map((r) => r.host);
        if (new Set(hosts).size !== hosts.length) v(`${vm}: two records on one host (${hosts.join(', ')})`);
        for (const r of records) {
          if (r.protected && !inv.hosts.has(r.host)) v(`${vm}: the ${r.role} on ${r.host} is reported protected, but host ${r.host} is dead in the store`);
          if (overdue(r.host)) v(`${vm}: a record of the ${r.role} on killed host ${r.host} is still there ${Math.round(at - this.#killed.get(r.host)!)} ms after the kill`);
        }
      }
      for (const view of views) {
        if (view.primary !== undefined && view.secondary !== undefined && view.primary.host === view.secondary.host) v(`${view.vm}: primary and secondary both on ${view.primary.host}`);
        if (view.protected) {
          for (const r of [view.primary!, view.secondary!]) {
            if (!inv.hosts.has(r.host)) v(`${view.vm}: reported protected with its ${r.role} on dead host ${r.host}`);
            if (overdue(r.host)) v(`${view.vm}: reported protected with its ${r.role} on killed host ${r.host}`);
          }
        }
      }
      for (const h of inv.hosts.keys()) if (overdue(h) && at - this.#killed.get(h)! > this.#deadGraceMs + HOST_TTL_MS - INSTANCE_TTL_MS + 3_000) v(`host ${h} still live ${Math.round(at - this.#killed.get(h)!)} ms after it was killed`);
    } catch {
      this.errors++;
    } finally {
      this.#busy = false;
    }
  }
}

/**
 * Writes of `v<n>` values that a client no longer sees: every key must read back its last acknowledged
 * value or a later one that was sent (nothing acknowledged lost, nothing made up). One line per key that fails.
 */
export async function lostWrites(client: { get(key: string): Promise<{ value: Uint8Array } | null> }, acked: ReadonlyMap<string, number>, sent: ReadonlyMap<string, number>): Promise<string[]> {
  const wrong: string[] = [];
  for (const [key, n] of acked) {
    const got = await client.get(key);
    const text = got === null ? undefined : Buffer.from(got.value).toString();
    const m = text === undefined ? -1 : Number(text.slice(1));
    if (!(m >= n && m <= sent.get(key)!)) wrong.push(`${key}: read ${text ?? 'nothing'}, acknowledged v${n}`);
  }
  return wrong;
}

/**
 * A write load on one kvserver VM: `v<n>` values over 50 keys until stopped. `lost()` (after `stop()`)
 * reads every acknowledged key back (see {@link lostWrites}) and closes the client.
 */
export function writeLoad(udpPort: number) {
  const client = new KvClient({ endpoints: [{ host: '127.0.0.1', port: udpPort }], timeoutMs: 150, retries: 80 });
  const acked = new Map<string, number>();
  const sent = new Map<string, number>();
  let writing = true;
  const writer = (async () => {
    for (let n = 0; writing && n < 100_000; n++) {
      const key = `k${n % 50}`;
      sent.set(key, n);
      try {
        if ((await client.set(key, `v${n}`)) === 'stored') acked.set(key, n);
      } catch {
        // unanswered: the read-back check allows it either way
      }
    }
  })();
  return {
    acked,
    stop: async (): Promise<void> => {
      writing = false;
      await writer;
    },
    lost: async (): Promise<string[]> => {
      try {
        return await lostWrites(client, acked, sent);
      } finally {
        await client.close();
      }
    },
  };
}

/** One look at the store: fine (no problems) or what is wrong. */
export interface Sample {
  at: number;
  ok: boolean;
  why: string;
}

/** Looks at the store every 50 ms until stopped; `problems` says what is wrong in a look (none: fine). */
export function sampleStore(store: ClusterStore, problems: (l: Awaited<ReturnType<typeof look>>) => string[]) {
  const samples: Sample[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      try {
        const bad = problems(await look(store));
        samples.push({ at: performance.now(), ok: bad.length === 0, why: bad.join(' | ') });
      } catch (err) {
        samples.push({ at: performance.now(), ok: false, why: `read failed: ${(err as Error).message}` });
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    samples,
    stop: async (): Promise<void> => {
      sampling = false;
      await sampler;
    },
  };
}

/** A {@link sampleStore} judge: `vm` is protected, or its view's status and text (or that it has none). */
export const vmProtected =
  (vm: string) =>
  ({ views }: { views: PairView[] }): string[] => {
    const v = views.find((x) => x.vm === vm);
    return v?.protected === true ? [] : [v === undefined ? 'no view' : `${v.status}: ${v.text}`];
  };
