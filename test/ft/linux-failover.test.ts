// A fault-tolerant pair running Linux (the committed guest, FT config vm.kernel/vm.initrd/vm.append),
// primary and secondary as processes of the built CLI, the guest powered on only once the pair is in
// lockstep (--await-secondary). SIGKILL of the primary during the boot, during disk I/O (/bin/disk) and
// during network I/O (/bin/udpecho): the secondary goes live and finishes the run, and the console
// (the primary's up to the go-live's console position, then the survivor's) has no gap and no
// duplicate: it has a plain run's lines, each as often (for udpecho, whose input a plain run lacks:
// each number once, in order). And a secondary that joins a guest already running (no
// --await-secondary): the clone carries the primary's console position, so the same holds.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Machine, readLinuxBoot } from '../../src/index.js';
import { exited, freeUdpPort, killAll, launch, root, type Proc } from '../helpers/ft-pair.js';
import { until } from '../helpers/wait.js';
import { MARKER, MachineConsole } from '../guest/linux.js';

/** Bounds for a loaded two-core machine; a passing test never waits them out. */
const STEP_MS = 120_000;
const UDPECHO_PORT = 7777;
const RAM_MIB = 64;
const DISK_BYTES = 4 << 20;

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-ft-linux-'));
const procs: Proc[] = [];
afterEach(() => killAll(procs.splice(0)));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The kernel's console writes line ends as CR LF. */
const lines = (bytes: Buffer): string => bytes.toString('latin1').replaceAll('\r\n', '\n');
/**
 * A console's lines, sorted: a real-clock boot orders a few lines by timer ticks (the initramfs is
 * unpacked asynchronously) where a virtual-clock one has its own order, so two consoles are compared as
 * multisets of lines: a gap misses a line, a duplicate has one twice.
 */
const sortedLines = (console: string): string[] => console.split('\n').sort();

const KERNEL = join(root, 'guest', 'linux', 'bin', 'Image.gz');
const INITRD = join(root, 'guest', 'linux', 'bin', 'rootfs.cpio.gz');

interface Scenario {
  dir: string;
  config: string;
  udpPort: number;
  append: string;
}

/** A config booting the committed guest (Image.gz and the gzip'd initramfs as they are committed). */
async function scenario(name: string, run: string): Promise<Scenario> {
  const dir = join(tmp, name);
  mkdirSync(join(dir, 'arbiter'), { recursive: true });
  const udpPort = await freeUdpPort();
  const append = `console=ttyS0 lockstep.run=${run}`;
  writeFileSync(join(dir, 'disk.img'), Buffer.alloc(DISK_BYTES));
  const config = {
    vm: {
      id: 'linux-ft',
      kernel: KERNEL,
      initrd: INITRD,
      append,
      ramMiB: RAM_MIB,
      clock: 'real',
      devices: { disk: { path: join(dir, 'disk.img') }, net: { backend: 'udp', hostPort: udpPort, guestPort: UDPECHO_PORT } },
    },
    // A SIGKILL closes the logging channel, which the secondary takes as the primary's death at once:
    // no test here waits for a silence. 600 ms of it (the default) happened beside stress-ng while the
    // primary copied 64 MiB of a running guest: the secondary gave up on it before the clone finished
    // ("nothing to go live with"), or the primary dismissed its secondary, which then exited 0.
    ft: { listen: '127.0.0.1:0', keyHex: randomBytes(32).toString('hex'), arbiter: { backend: 'file', dir: join(dir, 'arbiter') }, timeoutMs: 10_000, heartbeatMs: 100 },
  };
  const path = join(dir, 'vm.json');
  writeFileSync(path, JSON.stringify(config, null, 2));
  return { dir, config: path, udpPort, append };
}

/** The console of the same boot without FT (virtual clock; the guest's text does not depend on time). */
async function plainConsole(s: Scenario, drive?: (c: MachineConsole) => Promise<void>): Promise<string> {
  const image = join(s.dir, 'plain.img');
  writeFileSync(image, Buffer.alloc(DISK_BYTES));
  const m = new Machine({ memory: RAM_MIB << 20, clock: 'virtual', devices: { disk: { path: image }, net: true } });
  try {
    const c = new MachineConsole(m);
    m.loadLinux(readLinuxBoot({ kernel: KERNEL, initrd: INITRD, append: s.append }));
    const running = c.run();
    await drive?.(c);
    expect(await running).toMatchObject({ kind: 'exit', code: 0 });
    return c.output;
  } finally {
    m.close();
  }
}

type Half = { proc: Proc; out: Buffer[]; ended: Promise<void> };

/**
 * A half of the pair as a CLI process, its stdout (the console) collected. `ended` settles once the
 * pipe is read to its end: a process's 'exit' can come before the last bytes it wrote have been read.
 */
function startHalf(name: string, args: string[]): Half {
  const proc = launch(name, args, () => {}, { stdout: true });
  procs.push(proc);
  const out: Buffer[] = [];
  proc.child.stdout!.on('data', (b: Buffer) => out.push(b));
  const ended = new Promise<void>((r) => proc.child.stdout!.once('close', () => r()));
  return { proc, out, ended };
}

/** A primary with its console piped; `awaitSecondary`: the guest starts only once protected. */
async function startPrimary(s: Scenario, awaitSecondary: boolean): Promise<{ primary: Half; port: number }> {
  const primary = startHalf('primary', ['primary', s.config, '--console', ...(awaitSecondary ? ['--await-secondary'] : [])]);
  const l = await primary.proc.wait('listening', undefined, STEP_MS);
  return { primary, port: Number(l.port) };
}

/** A secondary (console once live) joining the primary at `port`; resolves once the pair is protected. */
async function joinSecondary(s: Scenario, primary: Half, port: number): Promise<Half> {
  const secondary = startHalf('secondary', ['secondary', s.config, '--join', `127.0.0.1:${String(port)}`, '--console']);
  await primary.proc.wait('status', (e) => e.protected === true, STEP_MS);
  return secondary;
}

/** A primary (its console piped) and a secondary (console once live), the guest started once protected. */
async function pair(s: Scenario): Promise<{ primary: Half; secondary: Half }> {
  const { primary, port } = await startPrimary(s, true);
  return { primary, secondary: await joinSecondary(s, primary, port) };
}

/**
 * SIGKILLs the primary the moment its console shows `pattern` (in the stdout handler, so the guest has
 * not gone far past it), waits for the secondary to go live and the guest to end, and returns the
 * console as a sink that keeps positions has it: the primary's bytes before the go-live's console
 * position, then the survivor's. The overlap (bytes both printed) must be the same bytes.
 */
async function killDuring(
  s: Scenario,
  pattern: string,
  afterKill?: () => Promise<void>,
  halves?: { primary: Half; secondary: Half },
): Promise<{ console: string; primaryAtKill: string }> {
  const { primary, secondary } = halves ?? (await pair(s));
  let primaryAtKill = '';
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      const text = lines(Buffer.concat(primary.out));
      if (!text.includes(pattern)) return;
      primary.proc.child.kill('SIGKILL');
      primaryAtKill = text;
      primary.proc.child.stdout!.off('data', check);
      resolve();
    };
    primary.proc.child.stdout!.on('data', check);
    primary.proc.child.once('exit', () => reject(new Error(`the primary exited before its console showed ${JSON.stringify(pattern)}: ${lines(Buffer.concat(primary.out)).slice(-500)}`)));
  });
  await exited(primary.proc);
  await primary.ended;
  const live = await secondary.proc.wait('go-live', undefined, STEP_MS);
  expect(Number(live.epoch)).toBe(2);
  await afterKill?.();
  await secondary.proc.wait('ended', undefined, STEP_MS);
  await exited(secondary.proc);
  await secondary.ended;
  const before = Buffer.concat(primary.out);
  const after = Buffer.concat(secondary.out);
  const position = BigInt(String(live.consolePosition));
  // No gap: the survivor's console starts at or before the last byte the primary printed.
  expect(position <= BigInt(before.length), `go-live console position ${position}, the primary printed ${before.length} bytes`).toBe(true);
  const overlap = before.length - Number(position);
  console.log(`linux-failover: killed at ${JSON.stringify(pattern)}; go-live at console position ${position}, the primary had printed ${before.length} bytes (${overlap} printed twice, dropped by position)`);
  expect(after.subarray(0, overlap).equals(before.subarray(Number(position))), 'the bytes both printed are the same bytes').toBe(true);
  return { console: lines(Buffer.concat([before.subarray(0, Number(position)), after])), primaryAtKill };
}

/** The numbers a udpecho client sends: the last one is "quit N" (udpecho exits, the guest powers off). */
const LAST = 16;

/**
 * A client of /bin/udpecho: `send(from, to)` sends "seq N" for each N in turn, each until answered
 * (retries are answered again, printed once), "quit N" for N = LAST.
 */
async function udpechoClient(udpPort: number): Promise<{ send(from: number, to: number): Promise<void>; close(): void }> {
  const socket = createSocket('udp4');
  const acked = new Set<number>();
  let closed = false;
  socket.on('message', (m) => {
    const match = /^(ack|bye) (\d+)$/.exec(m.toString());
    if (match) acked.add(Number(match[2]));
  });
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  return {
    async send(from, to) {
      for (let n = from; n <= to && !closed; n++) {
        const msg = n === LAST ? `quit ${n}` : `seq ${n}`;
        await until(`an answer to ${msg}`, () => {
          if (!acked.has(n) && !closed) socket.send(msg, udpPort, '127.0.0.1');
          return acked.has(n) || closed;
        }, { timeoutMs: 2 * STEP_MS, everyMs: 50 });
      }
    },
    close() {
      closed = true;
      socket.close();
    },
  };
}

/** A console of udpecho's run to LAST: each number once and in order, the run's milestones once. */
function expectUdpechoConsole(console: string): void {
  const printed = [...console.matchAll(/^udpecho: (\d+)$/gm)].map((m) => Number(m[1]));
  expect(printed).toEqual(Array.from({ length: LAST - 1 }, (_, i) => i + 1));
  expect(console).toContain(`lockstep-linux: run udpecho ${UDPECHO_PORT}\n`);
  expect(console).toContain('lockstep-linux: udpecho exited 0\n');
  for (const once of [MARKER, 'lockstep-linux: run udpecho', 'lockstep-linux: powering off']) expect(console.split(once), once).toHaveLength(2);
}

describe('fault-tolerant pair running Linux', () => {
  it(
    'SIGKILL of the primary during the boot: the secondary finishes it, the console has no gap and no duplicate',
    async () => {
      const s = await scenario('boot', '');
      const { console, primaryAtKill } = await killDuring(s, 'Linux version');
      expect(primaryAtKill, 'killed during the boot').not.toContain(MARKER);
      expect(sortedLines(console)).toEqual(sortedLines(await plainConsole(s)));
      expect(console.split(MARKER)).toHaveLength(2);
    },
    6 * STEP_MS,
  );

  it(
    'SIGKILL of the primary during disk I/O: /bin/disk goes on on the secondary, every pass printed once',
    async () => {
      const s = await scenario('disk', 'disk:24');
      const { console, primaryAtKill } = await killDuring(s, 'disk: pass 4:');
      expect(primaryAtKill).not.toContain('disk: ok');
      expect(sortedLines(console)).toEqual(sortedLines(await plainConsole(s)));
      const passes = [...console.matchAll(/^disk: pass (\d+): /gm)].map((m) => Number(m[1]));
      expect(passes).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
      expect(console).toContain('lockstep-linux: disk exited 0\n');
    },
    6 * STEP_MS,
  );

  it(
    'SIGKILL of the primary during network I/O: /bin/udpecho answers on the secondary, every number printed once',
    async () => {
      const s = await scenario('net', `udpecho:${UDPECHO_PORT}`);
      const client = await udpechoClient(s.udpPort);
      try {
        const sending = client.send(1, LAST);
        const { console } = await killDuring(s, 'udpecho: 5\n', () => sending);
        expectUdpechoConsole(console);
      } finally {
        client.close();
      }
    },
    6 * STEP_MS,
  );

  it(
    'a secondary that joins a running Linux guest continues its console numbering: SIGKILL of the primary, the console has no gap and no duplicate',
    async () => {
      const s = await scenario('join', `udpecho:${UDPECHO_PORT}`);
      const client = await udpechoClient(s.udpPort);
      try {
        const { primary, port } = await startPrimary(s, false);
        // The whole boot and the first numbers happen on the primary alone: its console is well past 0
        // when the secondary is cloned.
        await client.send(1, 3);
        const secondary = await joinSecondary(s, primary, port);
        const cloned = Buffer.concat(primary.out).length;
        const sending = client.send(4, LAST);
        const { console } = await killDuring(s, 'udpecho: 6\n', () => sending, { primary, secondary });
        expectUdpechoConsole(console);
        expect(console.split('Linux version'), 'the boot banner').toHaveLength(2);
        expect(console.length, `more than the ${cloned} bytes printed before the clone`).toBeGreaterThan(cloned);
      } finally {
        client.close();
      }
    },
    6 * STEP_MS,
  );
});
