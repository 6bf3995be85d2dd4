// Child of test/dispatch/run.mjs: runs every example guest in guest/bin in uneven slices (stops fall
// inside blocks, not only at their ends) and prints one line per stop: guest, stop kind, instret,
// branches, pc and state hash. Run once per addon build; the outputs must be identical.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Machine } from '../../dist/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = join(root, 'guest', 'bin');
// Coprime slice lengths, so successive stops land at different offsets into the guests' loops.
const SLICES = [1, 7, 1_009, 65_537, 999_983, 3_000_017];
const MAX_INSTRET = 12_000_000n;

for (const file of readdirSync(bin).filter((f) => f.endsWith('.elf')).sort()) {
  const m = new Machine({ memory: 64 << 20, clock: 'virtual' });
  try {
    m.load(readFileSync(join(bin, file)));
    for (let i = 0; ; i++) {
      const r = await m.run({ maxInstructions: SLICES[i % SLICES.length] });
      const { instret, branches } = m.counters;
      console.log(`${file} ${r.kind} instret=${instret} branches=${branches} pc=${m.pc.toString(16)} hash=${m.stateHash().toString(16)}`);
      if (r.kind !== 'budget' || instret >= MAX_INSTRET) break;
    }
  } finally {
    m.close();
  }
}
