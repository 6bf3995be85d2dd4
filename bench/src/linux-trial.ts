// One Linux trial in its own process, run by bench/src/linux.ts:
//   node linux-trial.js cpu <workload>   the workload as a process of the committed guest (real clock):
//                                        wall seconds from its 'run' line to its 'exited' line
//   node linux-trial.js idle <seconds>   boot to the shell while recording (real clock), then idle:
//                                        log bytes and timer ticks (clock samples) over the idle window
//   node linux-trial.js count [workload] boot (virtual clock: the same instructions every time), run the
//                                        workload (none: power off at the marker): instructions retired
// Prints one JSON line on stdout.
import { COMMITTED_LINUX_APPEND, EventKind, Machine, Recorder, committedLinux, decodeRecords, parseBatch } from 'lockstep';

export interface LinuxCpuTrial {
  workload: string;
  /** Wall seconds from 'lockstep-linux: run <w>' to '<w> exited 0' on the console. */
  seconds: number;
  /** Wall seconds from run() to the user-space marker. */
  bootSeconds: number;
  /** The engine that ran it (LOCKSTEP_ENGINE chooses). */
  engine: string;
}

export interface LinuxIdleTrial {
  /** Wall seconds of the idle window (the shell waiting for input). */
  seconds: number;
  logBytes: number;
  /** Timer interrupts in the window: the recorder's clock samples (each makes the timer due). */
  ticks: number;
  clockReads: number;
  instret: string;
}

export interface LinuxCountTrial {
  workload: string;
  /** Instructions retired by the whole run, boot and power-off included. */
  instret: string;
}

const MARKER = 'lockstep-linux: init ready\n';
const [mode, arg] = process.argv.slice(2);

/** Resolves when the console (CR LF as LF) contains `text`, with the wall time it was seen. */
function consoleWatch(m: Machine) {
  let out = '';
  const waiters: { text: string; resolve: (t: bigint) => void }[] = [];
  m.on('console', (c) => {
    out += Buffer.from(c).toString('latin1').replaceAll('\r\n', '\n');
    const now = process.hrtime.bigint();
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (out.includes(waiters[i]!.text)) waiters.splice(i, 1)[0]!.resolve(now);
    }
  });
  return {
    seen: (text: string): Promise<bigint> => new Promise((resolve) => (out.includes(text) ? resolve(process.hrtime.bigint()) : waiters.push({ text, resolve }))),
    get text() {
      return out;
    },
  };
}

if (mode === 'cpu' && arg !== undefined) {
  const m = new Machine({ memory: 64 << 20, clock: 'real' });
  m.loadLinux({ ...committedLinux(), append: `${COMMITTED_LINUX_APPEND} quiet lockstep.run=${arg}` });
  const c = consoleWatch(m);
  const t0 = process.hrtime.bigint();
  const running = m.run();
  const marker = await c.seen(MARKER);
  const begin = await c.seen(`lockstep-linux: run ${arg}\n`);
  const end = await c.seen(`lockstep-linux: ${arg} exited 0\n`);
  const r = await running;
  const engine = m.engine;
  m.close();
  if (r.kind !== 'exit' || r.code !== 0) throw new Error(`linux cpu ${arg}: ${r.kind}; console: ${c.text.slice(-500)}`);
  const result: LinuxCpuTrial = { workload: arg, seconds: Number(end - begin) / 1e9, bootSeconds: Number(marker - t0) / 1e9, engine };
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else if (mode === 'idle' && arg !== undefined) {
  const m = new Machine({ memory: 64 << 20, clock: 'real' });
  m.loadLinux({ ...committedLinux(), append: COMMITTED_LINUX_APPEND });
  const c = consoleWatch(m);
  const recorder = new Recorder(m, { hashInterval: 0 });
  let window = false;
  const acc = { logBytes: 0, ticks: 0, clockReads: 0 };
  recorder.on('batch', (b) => {
    if (!window) return;
    acc.logBytes += b.length;
    const lsn = new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(8, true);
    for (const e of decodeRecords(parseBatch(b, 0, lsn).batch)) {
      if (e.kind === EventKind.ClockSample) acc.ticks++;
      if (e.kind === EventKind.ClockRead) acc.clockReads++;
    }
  });
  const running = m.run();
  await c.seen(MARKER);
  await c.seen('\n# ');
  // Let the boot's deferred work settle (the shell is already waiting), then measure.
  await new Promise((r) => setTimeout(r, 1000));
  window = true;
  const t0 = process.hrtime.bigint();
  await new Promise((r) => setTimeout(r, Number(arg) * 1000));
  window = false;
  const t1 = process.hrtime.bigint();
  m.stop();
  const r = await running;
  recorder.finish(r);
  m.close();
  const result: LinuxIdleTrial = { seconds: Number(t1 - t0) / 1e9, ...acc, instret: r.instret.toString() };
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else if (mode === 'count') {
  // Under callgrind (bench/src/linux.ts, section callgrind): a virtual clock keeps the kernel's timer
  // ticks per instruction as they are at full speed, however slow the host runs.
  const workload = arg ?? '';
  const m = new Machine({ memory: 64 << 20, clock: 'virtual' });
  m.loadLinux({ ...committedLinux(), append: `${COMMITTED_LINUX_APPEND} quiet lockstep.run=${workload}` });
  const c = consoleWatch(m);
  const r = await m.run();
  m.close();
  const done = workload === '' ? MARKER : `lockstep-linux: ${workload} exited 0\n`;
  if (r.kind !== 'exit' || r.code !== 0 || !c.text.includes(done)) throw new Error(`linux count ${workload}: ${r.kind}; console: ${c.text.slice(-500)}`);
  const result: LinuxCountTrial = { workload, instret: r.instret.toString() };
  process.stdout.write(`${JSON.stringify(result)}\n`);
} else {
  process.stderr.write('usage: linux-trial.js cpu <workload> | idle <seconds> | count [workload]\n');
  process.exit(2);
}
