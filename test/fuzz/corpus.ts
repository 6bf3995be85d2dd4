// Writes the fuzz targets' seed corpora under test/fuzz/corpus/ (`npm run fuzz -- --write-seeds`): logs
// recorded from the example guests, snapshots of machines in varied device states, frame streams and a
// small ELF. Run it again when a format changes (the smoke test refuses stale seeds). Config seeds are
// written by hand.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Machine, Recorder, type MachineOptions } from '../../src/index.js';
import { LogWriter } from '../../src/log/format.js';
import { prng } from '../cpu/prng.js';
import { Asm } from '../helpers/asm.js';
import { deviceProgram, DEVICE_DISK_BYTES, DEVICE_MEMORY } from './targets/device.js';
import { frameCorpus } from './targets/frame.js';
import type { LogSeed } from './targets/log.js';
import type { SnapshotSeed } from './targets/snapshot.js';
import { createHash } from 'node:crypto';

const root = fileURLToPath(new URL('./corpus/', import.meta.url));
const guest = (name: string) => readFileSync(new URL(`../../guest/bin/${name}.elf`, import.meta.url));

function options(seed: { memory: number; clock: 'virtual' | 'real'; devices: { rng?: boolean; net?: boolean; diskBytes?: number } }, scratch: string, name: string): MachineOptions {
  const devices: MachineOptions['devices'] = { ...(seed.devices.rng ? { rng: true } : {}), ...(seed.devices.net ? { net: true } : {}) };
  if (seed.devices.diskBytes) {
    const path = join(scratch, `${name}.img`);
    writeFileSync(path, Buffer.alloc(seed.devices.diskBytes));
    devices.disk = { path };
  }
  return { memory: seed.memory, clock: seed.clock, devices };
}

async function writeLogs(scratch: string): Promise<void> {
  const dir = join(root, 'log');
  mkdirSync(dir, { recursive: true });
  const plans: { file: string; guest: string; devices: LogSeed['devices']; input?: string; hashInterval: number }[] = [
    { file: 'echo.log', guest: 'echo', devices: {}, input: 'fuzz me\nand me\nq', hashInterval: 2000 },
    { file: 'timer.log', guest: 'timer', devices: {}, hashInterval: 50_000 },
    { file: 'rng.log', guest: 'rng', devices: { rng: true }, hashInterval: 5000 },
    { file: 'disk.log', guest: 'disk', devices: { diskBytes: 1 << 20 }, hashInterval: 20_000 },
  ];
  const manifest: LogSeed[] = [];
  for (const plan of plans) {
    const elf = guest(plan.guest);
    const m = new Machine(options({ memory: 1 << 20, clock: 'real', devices: plan.devices }, scratch, plan.file));
    try {
      m.load(elf);
      const writer = LogWriter.create(join(dir, plan.file), {
        lockstep: 'fuzz-corpus',
        memory: 1 << 20,
        clock: 'real',
        elfSha256: createHash('sha256').update(elf).digest('hex'),
        hashInterval: plan.hashInterval,
      });
      const rec = new Recorder(m, { hashInterval: plan.hashInterval });
      rec.on('batch', (b) => writer.write(b));
      if (plan.input) m.input(plan.input);
      const r = await m.run({ maxInstructions: 20_000_000 });
      rec.finish(r);
      writer.close();
      manifest.push({ file: plan.file, guest: plan.guest, devices: plan.devices, finalHash: `0x${m.stateHash().toString(16).padStart(16, '0')}`, finalInstret: String(r.instret) });
    } finally {
      m.close();
    }
  }
  writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
}

async function writeSnapshots(scratch: string): Promise<void> {
  const dir = join(root, 'snapshot');
  mkdirSync(dir, { recursive: true });
  const manifest: SnapshotSeed[] = [];
  const take = async (file: string, seed: Omit<SnapshotSeed, 'file'>, prepare: (m: Machine) => Promise<void>) => {
    const m = new Machine(options(seed, scratch, file));
    try {
      await prepare(m);
      writeFileSync(join(dir, file), m.snapshot());
      manifest.push({ file, ...seed });
    } finally {
      m.close();
    }
  };
  const small = { memory: 1 << 20, clock: 'virtual' as const };
  await take('hello-mid.snap', { ...small, devices: {} }, async (m) => {
    m.load(guest('hello'));
    await m.run({ maxInstructions: 300 });
  });
  await take('timer-armed.snap', { ...small, devices: {} }, async (m) => {
    m.load(guest('timer'));
    await m.run({ maxInstructions: 2_000 });
  });
  await take('echo-rx.snap', { ...small, devices: {} }, async (m) => {
    m.load(guest('echo'));
    m.input('bytes waiting in the FIFO');
    await m.run({ maxInstructions: 3_000 });
  });
  await take('rng-queue.snap', { ...small, devices: { rng: true } }, async (m) => {
    m.load(guest('rng'));
    await m.run({ maxInstructions: 20_000 });
  });
  await take('disk-mid.snap', { ...small, devices: { diskBytes: 1 << 20 } }, async (m) => {
    m.load(guest('disk'));
    await m.run({ maxInstructions: 6_000 });
  });
  await take('umode.snap', { ...small, devices: {} }, async (m) => {
    m.load(guest('umode'));
    await m.run({ maxInstructions: 400 });
  });
  await take('real-clock.snap', { memory: 1 << 20, clock: 'real', devices: { rng: true } }, async (m) => {
    m.load(guest('rng'));
    await m.run({ maxInstructions: 20_000 });
  });
  // Devices left in whatever state a device-fuzz program drove them to.
  for (const s of [1, 2]) {
    await take(`device-chaos-${s}.snap`, { memory: DEVICE_MEMORY, clock: 'virtual', devices: { net: true, rng: true, diskBytes: DEVICE_DISK_BYTES } }, async (m) => {
      const rnd = prng(s);
      m.writeMemory(0x80000000, deviceProgram(rnd, 80));
      await m.run({ maxInstructions: 400_000 });
    });
  }
  writeFileSync(join(dir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
}

function writeFrames(): void {
  const dir = join(root, 'frame');
  mkdirSync(dir, { recursive: true });
  for (const [file, bytes] of frameCorpus()) writeFileSync(join(dir, file), bytes);
}

/** An ELF with two segments, a symbol table with `tohost`, and code that prints through HTIF-free paths. */
function writeElf(): void {
  const dir = join(root, 'elf');
  mkdirSync(dir, { recursive: true });
  const code = new Asm().li(10, 0x100000).li(11, 0x5555).sw(11, 0, 10).j(0).bytes();
  const names = Buffer.from('\0tohost\0_start\0data\0');
  const phoff = 52, text = 0x100, data = 0x200, sym = 0x240, str = sym + 4 * 16, sh = (str + names.length + 3) & ~3;
  const b = Buffer.alloc(sh + 4 * 40);
  b.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1], 0);
  b.writeUInt16LE(2, 16);
  b.writeUInt16LE(243, 18);
  b.writeUInt32LE(1, 20);
  b.writeUInt32LE(0x80000000, 24);
  b.writeUInt32LE(phoff, 28);
  b.writeUInt32LE(sh, 32);
  b.writeUInt16LE(52, 40);
  b.writeUInt16LE(32, 42);
  b.writeUInt16LE(2, 44);
  b.writeUInt16LE(40, 46);
  b.writeUInt16LE(4, 48);
  const ph = (i: number, offset: number, addr: number, filesz: number, memsz: number, flags: number) => {
    const at = phoff + i * 32;
    b.writeUInt32LE(1, at);
    b.writeUInt32LE(offset, at + 4);
    b.writeUInt32LE(addr, at + 8);
    b.writeUInt32LE(addr, at + 12);
    b.writeUInt32LE(filesz, at + 16);
    b.writeUInt32LE(memsz, at + 20);
    b.writeUInt32LE(flags, at + 24);
  };
  ph(0, text, 0x80000000, code.length, code.length, 5);
  ph(1, data, 0x80001000, 16, 64, 6);
  b.set(code, text);
  b.fill(0xab, data, data + 16);
  const symbol = (i: number, name: number, value: number) => {
    b.writeUInt32LE(name, sym + i * 16);
    b.writeUInt32LE(value, sym + i * 16 + 4);
  };
  symbol(1, 1, 0x80001000); // tohost
  symbol(2, 8, 0x80000000); // _start
  symbol(3, 15, 0x80001010); // data
  b.set(names, str);
  const section = (i: number, type: number, offset: number, size: number, link: number) => {
    b.writeUInt32LE(type, sh + i * 40 + 4);
    b.writeUInt32LE(offset, sh + i * 40 + 16);
    b.writeUInt32LE(size, sh + i * 40 + 20);
    b.writeUInt32LE(link, sh + i * 40 + 24);
  };
  section(1, 1, text, code.length, 0); // PROGBITS
  section(2, 2, sym, 4 * 16, 3); // SYMTAB -> 3
  section(3, 3, str, names.length, 0); // STRTAB
  writeFileSync(join(dir, 'tohost-symtab.elf'), b);
}

/** Regenerates every generated seed file. */
export async function writeSeeds(): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'lockstep-fuzz-seeds-'));
  try {
    writeElf();
    writeFrames();
    await writeLogs(scratch);
    await writeSnapshots(scratch);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
