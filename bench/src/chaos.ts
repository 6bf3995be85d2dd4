// `npm run chaos -- --cycles N`: the chaos harness (test/helpers/chaos.ts) as a command. Real `lockstep
// primary` / `lockstep secondary` processes serve the kvserver guest under a verifying load while a
// seeded schedule kills, freezes and partitions them; prints lost / applied twice / split brain /
// outage figures and writes bench/results/<name>.json. Exit status 0 only when all three are zero.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Machine } from 'lockstep';
import { ChaosRun, CYCLE_KINDS, FAULT_KINDS, pidNamespacesAvailable, planChaos, SOAK, type CycleReport, type FaultKind } from '../../test/helpers/chaos.js';
import { RESULTS_DIR, ROOT } from './paths.js';
import { Progress } from './progress.js';
import { fmt } from './stats.js';

const HELP = `Usage: npm run chaos -- [options]

Runs the kvserver guest as a fault-tolerant pair of lockstep processes (each in its own PID namespace
when run as root) under a verifying load: incr counters that prove exactly-once, and set/get registers
checked against their write history. Each cycle injects one fault picked by a seeded PRNG, waits until
exactly one side is live, and lets a new secondary join if a side was lost.

Faults: ${CYCLE_KINDS.join(', ')}
  kill-*       SIGKILL of that side's process
  stop-*       SIGSTOP, then SIGCONT after 1.2-3 detection timeouts (a hung host)
  partition    the logging channel cut for 0.3-3 timeouts, then healed
  none         nothing for --soak seconds (only when named): a failover then is a false one. The
               summary counts false failovers (a promotion, or a rightful primary dropping its
               secondary, while no fault is injected or settling) per hour of such time, in every run

False failovers under CPU stress, e.g. 30 one-minute soaks beside stress-ng --cpu 2:
  npm run chaos -- --faults none --cycles 30 --soak 60 --stress 2

Options:
  --cycles N        faults to inject (default 20)
  --seed S          seed of the schedule (default: random; printed, so a run can be repeated)
  --faults a,b      kinds to pick from (default: all)
  --clients N       incr clients (default 8); the register load has 2 more
  --timeout MS      the pair's failure-detection timeout (default 600)
  --soak S          seconds of a 'none' cycle (default 60)
  --stress N        run stress-ng --cpu N beside the pair for the whole run (default 0: none)
  --no-pidns        run the halves in this PID namespace
  --name NAME       results file bench/results/NAME.json (default chaos)
  --keep            keep the working directory (configs, arbiter records, disk image)
  --plan            print the schedule of these options and exit (nothing is started)
  -h, --help
`;

const { values: opts } = parseArgs({
  options: {
    cycles: { type: 'string', default: '20' },
    seed: { type: 'string' },
    faults: { type: 'string' },
    clients: { type: 'string', default: '8' },
    timeout: { type: 'string', default: '600' },
    soak: { type: 'string', default: '60' },
    stress: { type: 'string', default: '0' },
    'no-pidns': { type: 'boolean', default: false },
    name: { type: 'string', default: 'chaos' },
    keep: { type: 'boolean', default: false },
    plan: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opts.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
function integer(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max) {
    process.stderr.write(`chaos: --${flag} must be an integer from ${min} to ${max}, got ${text}\n`);
    process.exit(64);
  }
  return n;
}
const cycles = integer('cycles', opts.cycles, 1, 100_000);
const seed = opts.seed === undefined ? Math.floor(Math.random() * 0x1_0000_0000) : integer('seed', opts.seed, 0, 0xffff_ffff);
const clients = integer('clients', opts.clients, 1, 64);
const timeoutMs = integer('timeout', opts.timeout, 50, 60_000);
const soakMs = 1000 * integer('soak', opts.soak, 1, 86_400);
const stress = integer('stress', opts.stress, 0, 256);
const faults = opts.faults?.split(',').map((f) => f.trim()).filter(Boolean) as FaultKind[] | undefined;
for (const f of faults ?? []) {
  if (!(CYCLE_KINDS as readonly string[]).includes(f)) {
    process.stderr.write(`chaos: --faults: unknown fault '${f}' (known: ${CYCLE_KINDS.join(', ')})\n`);
    process.exit(64);
  }
}
if (!/^[\w.-]+$/.test(opts.name)) {
  process.stderr.write(`chaos: --name must be a plain file name, got ${opts.name}\n`);
  process.exit(64);
}
if (opts.plan) {
  for (const p of planChaos({ cycles, seed, timeoutMs, soakMs, ...(faults ? { faults } : {}) })) {
    process.stdout.write(`cycle ${p.cycle}: ${p.waitMs} ms of load, then ${p.fault}${p.faultMs > 0 ? ` for ${p.faultMs} ms` : ''}\n`);
  }
  process.exit(0);
}
let pidNamespaces = !opts['no-pidns'];
if (pidNamespaces) {
  const a = pidNamespacesAvailable();
  if (!a.ok) {
    process.stderr.write(`chaos: ${a.why}; the halves share this PID namespace (owner ids cannot collide)\n`);
    pidNamespaces = false;
  }
}

// The CLI launcher from the built package: the halves are the `lockstep` processes users run.
const { launch } = (await import(pathToFileURL(join(ROOT, 'dist', 'cluster', 'agent', 'cli-process.js')).href)) as typeof import('../../src/cluster/agent/cli-process.js');

const progress = new Progress(cycles);
const out = (line: string) => process.stdout.write(`${line}\n`);
const soaks = faults?.includes(SOAK) === true;
// The halves are lockstep processes: they run the default engine, or LOCKSTEP_ENGINE's from this environment.
const engine = (() => {
  const m = new Machine({ memory: 4096 });
  try {
    return m.engine;
  } finally {
    m.close();
  }
})();
const repeat = `${process.env.LOCKSTEP_ENGINE ? `LOCKSTEP_ENGINE=${process.env.LOCKSTEP_ENGINE} ` : ''}npm run chaos -- --cycles ${cycles} --seed ${seed}${faults ? ` --faults ${faults.join(',')}` : ''}${clients !== 8 ? ` --clients ${clients}` : ''}${timeoutMs !== 600 ? ` --timeout ${timeoutMs}` : ''}${soaks && soakMs !== 60_000 ? ` --soak ${soakMs / 1000}` : ''}${stress > 0 ? ` --stress ${stress}` : ''}${pidNamespaces ? '' : ' --no-pidns'}`;
out(`chaos: ${cycles} cycles, seed ${seed} (repeat: ${repeat})`);
out(`  kvserver (udp back-end) as lockstep primary/secondary processes on the ${engine === 'jit' ? 'block compiler' : 'interpreter'}${pidNamespaces ? ', each in its own PID namespace' : ''}; detection timeout ${timeoutMs} ms; ${clients} incr clients + 2 set/get clients${stress > 0 ? `; stress-ng --cpu ${stress} beside it` : ''}`);

// CPU stress beside the pair for the whole run (the false-failover figure is asked for under it).
let stressor: ChildProcess | undefined;
if (stress > 0) {
  const check = spawnSync('stress-ng', ['--version'], { stdio: 'ignore' });
  if (check.status !== 0) {
    process.stderr.write('chaos: --stress needs stress-ng (Debian package stress-ng)\n');
    process.exit(69);
  }
  stressor = spawn('stress-ng', ['--cpu', String(stress), '--quiet'], { stdio: 'ignore', detached: true });
}
const stopStress = () => {
  if (stressor?.pid === undefined || stressor.exitCode !== null) return;
  try {
    process.kill(-stressor.pid, 'SIGKILL');
  } catch {
    // already gone
  }
};

const describeCycle = (r: CycleReport): string =>
  `cycle ${r.cycle}/${cycles} ${r.fault.padEnd(14)} ${r.fault.startsWith('kill') ? '' : `${r.faultMs} ms `}${r.primary}/${r.secondary}: ${r.outcome}${r.joined ? `, ${r.joined} joined` : ''}; outage ${fmt(r.outageMs)} ms; ${(r.ms / 1000).toFixed(1)} s${
    r.splitBrain.length > 0 ? `; SPLIT BRAIN: ${r.splitBrain.join('; ')}` : ''
  }${r.anomalies.length > 0 ? `; anomalies: ${r.anomalies.join('; ')}` : ''}`;

const run = new ChaosRun({
  cycles,
  seed,
  ...(faults ? { faults } : {}),
  counterClients: clients,
  timeoutMs,
  soakMs,
  pidNamespaces,
  keep: opts.keep,
  launch,
  onCycle: (r) => progress.log(describeCycle(r)),
  onLog: (line) => progress.log(`  ${line}`),
});
const onSignal = (signal: NodeJS.Signals) => {
  run.kill();
  stopStress();
  progress.end();
  process.stderr.write(`chaos: ${signal}: every lockstep process stopped; no result written\n`);
  process.exit(130);
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
process.on('exit', () => {
  run.kill();
  stopStress();
});

let lastCycle = 0;
const ticker = setInterval(() => {
  const s = run.status();
  if (s.cycle !== lastCycle && s.cycle > 0) {
    lastCycle = s.cycle;
    progress.step(`cycle ${s.cycle}: ${s.phase}`);
  }
  progress.update(`${s.cycle > 0 ? `cycle ${s.cycle}: ` : ''}${s.phase} · live ${s.live} · ${s.requests} requests, ${s.acknowledged} acknowledged${s.splitBrainCycles > 0 ? ` · SPLIT BRAIN in ${s.splitBrainCycles} cycles` : ''}`);
}, 250);
const loadStart = loadavg();
const started = new Date();
const result = await run.run();
stopStress();
clearInterval(ticker);
progress.end();

const git = (...args: string[]) => {
  const r = spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
};
const faultLine = CYCLE_KINDS.filter((k) => result.faults[k] > 0).map((k) => `${k} ${result.faults[k]}`).join(', ');
const ok = result.lost === 0 && result.appliedTwice === 0 && result.splitBrain === 0 && result.aborted === undefined && result.verified;
out('');
out(`chaos summary (seed ${seed})`);
out(`  cycles            ${result.cycles} of ${result.cyclesRequested}${result.aborted ? ` — ABORTED: ${result.aborted}` : ''} (${faultLine})`);
out(`  requests          ${result.requests} (${result.counters.sent} incr, ${result.registers.sent} set/get)`);
out(`  acknowledged      ${result.acknowledged}; outcome never learned: ${result.unknown}`);
out(`  lost              ${result.lost}${result.verified ? '' : ' (NOT VERIFIED: the final read failed)'} (counters ${result.counters.lost}, registers ${result.registers.violations}${Object.keys(result.registers.byKind).length > 0 ? ` ${JSON.stringify(result.registers.byKind)}` : ''})`);
out(`  applied twice     ${result.appliedTwice}${result.counters.duplicateAnswers + result.counters.rollbacks > 0 ? ` (answers: ${result.counters.duplicateAnswers} repeated, ${result.counters.rollbacks} went backwards)` : ''}`);
out(`  split brain       ${result.splitBrain} cycles`);
const ff = result.falseFailovers;
out(`  false failovers   ${ff.promotions} promotions, ${ff.secondaryLosses} secondaries dropped in ${fmt(ff.quietMs / 60_000, 1)} min with no fault injected or settling: ${fmt(ff.perHour, 1)} per hour${stress > 0 ? ` (stress-ng --cpu ${stress} beside it)` : ''}`);
for (const e of ff.events) out(`                    ${e}`);
out(`  outage            p50 ${fmt(result.outageMs.p50)} ms, p99 ${fmt(result.outageMs.p99)} ms, max ${fmt(result.outageMs.max)} ms (longest gap between acknowledgements around each fault)`);
out(`  cycle time        mean ${fmt(result.cycleMs.mean / 1000, 1)} s, max ${fmt(result.cycleMs.max / 1000, 1)} s: 200 cycles ≈ ${fmt((200 * result.cycleMs.mean) / 60_000, 1)} min`);
const anomalies = result.perCycle.reduce((n, r) => n + r.anomalies.length, result.anomalies.length);
if (anomalies > 0) out(`  anomalies         ${anomalies} (see the cycle lines above and the JSON)`);
const collisions = new Map<string, number[]>();
for (const e of result.epochs) if (e.owner !== null) collisions.set(e.owner, [...(collisions.get(e.owner) ?? []), e.epoch]);
const shared = [...collisions].filter(([, es]) => es.length > 1 && result.epochs.length > 1);
if (shared.length > 0 && result.splitBrain > 0) out(`  arbiter owners    ${shared.map(([o, es]) => `${o} claimed epochs ${es.join(',')}`).join('; ')}`);

mkdirSync(RESULTS_DIR, { recursive: true });
const path = join(RESULTS_DIR, `${opts.name}.json`);
const json = {
  about: 'lockstep chaos run; written by bench/src/chaos.ts (npm run chaos). See bench/README.md, section Chaos.',
  date: started.toISOString(),
  finished: new Date().toISOString(),
  repeat,
  options: { cycles, seed, faults: faults ?? FAULT_KINDS, counterClients: clients, registerClients: 2, timeoutMs, heartbeatMs: result.heartbeatMs, soakMs, stressCpus: stress, pidNamespaces, engine },
  machine: { cpu: cpus()[0]?.model.trim(), cores: cpus().length, memoryBytes: totalmem(), node: process.version, loadavgStart: loadStart, loadavgEnd: loadavg() },
  git: { commit: git('rev-parse', 'HEAD'), dirty: (git('status', '--porcelain', '--', 'native', 'src', 'guest') ?? '').length > 0 },
  ok,
  result,
};
writeFileSync(path, `${JSON.stringify(json, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
out(`  wrote             ${path.slice(ROOT.length + 1)}`);
process.exit(ok ? 0 : 1);
