// One record/replay trial in its own process, run by bench/src/record.ts:
//   node record-trial.js plain|record|replay <elf> <log-file> [maxInstructions]
// plain: runs the guest; record: the same with a Recorder on, writing the log to <log-file>; replay:
// replays <log-file>. Prints one JSON line. Only the run() call is timed.
import { readFileSync, writeFileSync } from 'node:fs';
import { Machine, Recorder, Replayer } from 'lockstep';
import { interpreterUnlessAsked } from './engine.js';

interpreterUnlessAsked();

export interface RecordTrial {
  mode: 'plain' | 'record' | 'replay';
  kind: string;
  instret: string;
  seconds: number;
  mips: number;
  logBytes: number;
  batches: number;
  hash: string;
}

const [mode, elfPath, logPath, maxArg] = process.argv.slice(2) as [RecordTrial['mode'], string, string, string | undefined];
const elf = readFileSync(elfPath);
const m = new Machine({ memory: 64 << 20, clock: 'real' });
m.load(elf);
let recorder: Recorder | undefined;
const chunks: Uint8Array[] = [];
if (mode === 'record') {
  recorder = new Recorder(m);
  recorder.on('batch', (b) => chunks.push(b.slice()));
}
if (mode === 'replay') {
  const bytes = readFileSync(logPath);
  const rep = new Replayer(m);
  for (let at = 0; at < bytes.length; ) {
    const len = bytes.readUInt32LE(at) + 48;
    rep.feed(bytes.subarray(at, at + len));
    at += len;
  }
  rep.end();
}
const start = process.hrtime.bigint();
const r = await m.run(maxArg === undefined ? {} : { maxInstructions: BigInt(maxArg) });
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
recorder?.finish(r);
if (mode === 'record') writeFileSync(logPath, Buffer.concat(chunks));
const out: RecordTrial = {
  mode,
  kind: r.kind,
  instret: r.instret.toString(),
  seconds,
  mips: Number(r.instret) / seconds / 1e6,
  logBytes: recorder?.bytes ?? 0,
  batches: recorder?.batches ?? 0,
  hash: m.stateHash().toString(16),
};
m.close();
process.stdout.write(JSON.stringify(out) + '\n');
