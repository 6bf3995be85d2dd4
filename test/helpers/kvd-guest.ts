// The committed Linux guest running its memcached-compatible service (kvd) under `lockstep run --linux`
// on a TAP device in a network namespace the helper makes (and removes), with a client address
// 10.0.2.2/24 on the TAP device's host side, so that programs run with `inNs` reach the guest at
// 10.0.2.15:11211. Waits by events: the service's console line, then a reply over TCP. Root needed.
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { until } from './wait.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
/** Debian's python (pymemcache is a Debian package; a python on PATH may be another one). */
export const PYTHON = '/usr/bin/python3';
export const DRIVER = join(ROOT, 'test', 'guest', 'memcached-driver.py');
/** kvd's readiness line (guest/linux/user/kvd.c). */
export const KVD_READY = 'kvd: listening on tcp 11211';

export const sh = (cmd: string, args: string[], input?: string, timeout = 120_000): SpawnSyncReturns<string> =>
  spawnSync(cmd, args, { encoding: 'utf8', timeout, input, maxBuffer: 256 << 20 });

/** Why the namespace tests cannot run here, or undefined. */
export function kvdUnavailable(tools: string[] = []): string | undefined {
  if (process.platform !== 'linux') return 'TAP devices are Linux only';
  if (process.getuid?.() !== 0) return 'creating network namespaces needs root';
  if (sh('ip', ['-V']).status !== 0) return "'ip' (iproute2) is not installed";
  if (!existsSync(PYTHON)) return `${PYTHON} is not installed`;
  if (!existsSync(CLI)) return `${CLI} is missing: build with npx tsc -p tsconfig.build.json`;
  for (const t of tools) if (sh('sh', ['-c', `command -v ${t}`]).status !== 0) return `'${t}' is not installed`;
  return undefined;
}

export interface KvdGuest {
  ns: string;
  /** The guest's console so far. */
  console(): string;
  inNs(cmd: string, args: string[], input?: string, timeout?: number): SpawnSyncReturns<string>;
  /** Kills lockstep (SIGKILL) and waits for it to be gone; the namespace stays. */
  kill(): Promise<void>;
  /** Stops lockstep with SIGINT (a recording then ends cleanly); resolves with its exit status. */
  interrupt(): Promise<number | null>;
  /** Boots the guest again in the same namespace (same disk): for durability checks. */
  restart(): Promise<void>;
  remove(): Promise<void>;
}

/** Creates the namespace and boots the guest with kvd; `disk` is a raw image for the write-ahead log. */
export async function startKvdGuest(
  tag: string,
  options: {
    disk?: string;
    append?: string;
    memory?: string;
    /** kvd's own arguments (`['-m', '16']`: 16 MiB for items instead of a quarter of the RAM) */
    kvdArgs?: string[];
    /** `lockstep record -o <file>` instead of `run` */
    record?: string;
    /** 'real' by default; under 'virtual' guest time (and so kvd's CPU time) counts instructions */
    clock?: 'real' | 'virtual';
  } = {},
): Promise<KvdGuest> {
  const ns = `lskv${tag}`;
  sh('ip', ['netns', 'del', ns]);
  const made = sh('ip', ['netns', 'add', ns]);
  if (made.status !== 0) throw new Error(`ip netns add ${ns}: ${made.stderr}`);
  sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
  let child: ChildProcess | undefined;
  let out = '';
  let err = '';
  const boot = async () => {
    out = '';
    err = '';
    const now = Math.floor(Date.now() / 1000);
    const append = `console=ttyS0 quiet lockstep.service=${['kvd', ...(options.kvdArgs ?? [])].join(':')} lockstep.time=${now}${options.append ? ' ' + options.append : ''}`;
    const verb = options.record ? ['record', '-o', options.record] : ['run'];
    const args = ['netns', 'exec', ns, process.execPath, CLI, ...verb, '--linux', '--clock', options.clock ?? 'real', '--net', 'tap:tap0', '--append', append];
    if (options.disk) args.push('--disk', options.disk);
    if (options.memory) args.push('--memory', options.memory);
    const c = spawn('ip', args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    child = c;
    c.stdout!.on('data', (d: Buffer) => (out += d.toString('latin1')));
    c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await until(`the guest prints '${KVD_READY}' (console tail: ${JSON.stringify(out.slice(-600))}, stderr: ${err.slice(-400)})`, () => out.includes(KVD_READY) || c.exitCode !== null, { timeoutMs: 180_000, everyMs: 20 });
    if (!out.includes(KVD_READY)) throw new Error(`the guest stopped before kvd was ready: ${out.slice(-1500)}\n${err}`);
    // lockstep made tap0 when it opened it; the host side gets the client address.
    for (const a of [['ip', 'addr', 'replace', '10.0.2.2/24', 'dev', 'tap0'], ['ip', 'link', 'set', 'tap0', 'up']]) {
      const r = sh('ip', ['netns', 'exec', ns, ...a]);
      if (r.status !== 0) throw new Error(`${a.join(' ')}: ${r.stderr}`);
    }
    const probe = sh('ip', ['netns', 'exec', ns, PYTHON, DRIVER], JSON.stringify({ host: '10.0.2.15', port: 11211, probe: 120 }));
    if (!probe.stdout.includes('"ready": true')) throw new Error(`kvd does not answer over TCP: ${probe.stdout} ${probe.stderr}\nconsole: ${out.slice(-1500)}`);
  };
  const kill = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  };
  await boot();
  return {
    ns,
    interrupt: async () => {
      const c = child!;
      if (c.exitCode !== null) return c.exitCode;
      const gone = new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
      c.kill('SIGINT');
      return gone;
    },
    console: () => out,
    inNs: (cmd, args, input, timeout) => sh('ip', ['netns', 'exec', ns, cmd, ...args], input, timeout),
    kill,
    restart: async () => {
      await kill();
      await boot();
    },
    remove: async () => {
      await kill();
      sh('ip', ['netns', 'del', ns]);
    },
  };
}
