// Snapshot target: snapshots of machines in many device states, mutated raw (the checksum must refuse
// every change) and behind a resealed checksum (the field checks must refuse what no machine could be in).
// An accepted snapshot must run without harming the host and round-trip to the same state hash.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Machine, SnapshotError, type MachineOptions } from '../../../src/index.js';
import { resealSnapshot, SNAPSHOT_CHECKSUM } from '../../helpers/snapshot.js';
import { check, runWithPatience, type FuzzTarget } from '../harness.js';
import { havoc, int, interesting32, pick, type Rnd } from '../mutate.js';

/** A corpus snapshot and the machine it belongs to (corpus/snapshot/manifest.json). */
export interface SnapshotSeed {
  file: string;
  memory: number;
  clock: 'virtual' | 'real';
  devices: { rng?: boolean; net?: boolean; diskBytes?: number };
}

const corpus = new URL('../corpus/snapshot/', import.meta.url);
const PATIENCE_MS = 2_000;
let seeds: { seed: SnapshotSeed; bytes: Uint8Array }[] = [];
let scratch = '';
let n = 0;

function machine(seed: SnapshotSeed): Machine {
  const devices: MachineOptions['devices'] = { ...(seed.devices.rng ? { rng: true } : {}), ...(seed.devices.net ? { net: true } : {}) };
  if (seed.devices.diskBytes) {
    const path = join(scratch, `d${n++}.img`);
    writeFileSync(path, Buffer.alloc(seed.devices.diskBytes));
    devices.disk = { path };
  }
  return new Machine({ memory: seed.memory, clock: seed.clock, devices });
}

/** Field-sized overwrites (u8/u16/u32/u64 at any offset) with boundary values, then a resealed checksum. */
function fieldMutation(s: Uint8Array, rnd: Rnd): Uint8Array {
  const c = s.slice();
  const dv = new DataView(c.buffer);
  const body = c.length - SNAPSHOT_CHECKSUM;
  for (let k = 1 + int(rnd, 3); k > 0; k--) {
    const size = pick(rnd, [1, 2, 4, 8]);
    if (body < 8 + size) break;
    // Mostly the state before RAM (hart, devices): that is where the meaning is.
    const span = Math.min(body - size, rnd() < 0.8 ? 1200 : body - size);
    const at = 8 + int(rnd, span - 8);
    const v = interesting32(rnd);
    if (size === 1) c[at] = v & 0xff;
    else if (size === 2) dv.setUint16(at, v & 0xffff, true);
    else if (size === 4) dv.setUint32(at, v, true);
    else dv.setBigUint64(at, (BigInt(v) << 32n) | BigInt(interesting32(rnd)), true);
  }
  return resealSnapshot(c);
}

export const snapshotTarget: FuzzTarget = {
  name: 'snapshot',
  about: 'Machine.restore on raw and resealed mutations of snapshots: every raw change refused, accepted ones run and round-trip',
  setup() {
    scratch = mkdtempSync(join(tmpdir(), 'lockstep-fuzz-snapshot-'));
    const manifest = JSON.parse(readFileSync(new URL('manifest.json', corpus), 'utf8')) as SnapshotSeed[];
    seeds = manifest.map((seed) => ({ seed, bytes: Uint8Array.from(readFileSync(new URL(seed.file, corpus))) }));
  },
  teardown() {
    rmSync(scratch, { recursive: true, force: true });
  },
  async iterate(rnd) {
    const { seed, bytes } = pick(rnd, seeds);
    const raw = rnd() < 0.4;
    let input: Uint8Array;
    if (raw) input = havoc(bytes, rnd, 3);
    else if (rnd() < 0.5) input = fieldMutation(bytes, rnd);
    else {
      input = havoc(bytes, rnd, 2);
      if (input.length > 32) resealSnapshot(input);
    }
    const open: Machine[] = [];
    try {
      const m = machine(seed);
      open.push(m);
      try {
        m.restore(input);
      } catch (err) {
        if (err instanceof SnapshotError) return;
        throw err;
      }
      check(!raw || Buffer.from(input).equals(bytes), 'the checksum refuses every raw change of a snapshot');
      // Accepted: the state is one a machine can be in. It runs, and it survives another round trip.
      // The state may wait in WFI for input or a real-clock timer set far ahead (the guest's right): then
      // it is stopped, and stop() must work.
      const r = await runWithPatience(m, { maxInstructions: 200_000 }, PATIENCE_MS);
      check(['exit', 'trap', 'halted', 'budget', 'stopped'].includes(r.kind), `a run from the restored state ends in a known way (got ${r.kind})`);
      const again = machine(seed);
      open.push(again);
      again.restore(m.snapshot());
      check(again.stateHash() === m.stateHash(), 'a snapshot of the restored machine restores to the same state hash');
    } finally {
      for (const x of open) x.close();
    }
  },
};
