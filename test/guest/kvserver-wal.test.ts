// kvserver's write-ahead log under damage, on lockstep's own machine: a damaged record is reported with
// what was lost and nothing written later ever brings old records back; a disk that cannot hold a log
// refuses writes (no STORED that a restart would lose) unless the command line asks for memory only.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { bootKvserver, type KvMachine } from '../helpers/kvserver.js';
import { KvUdpClient } from './kv-script.js';

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-kvwal-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const running: KvMachine[] = [];
const clients: KvUdpClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const k of running.splice(0)) await k.stop();
});

function image(name: string, bytes: number): string {
  const path = join(tmp, name);
  writeFileSync(path, Buffer.alloc(bytes));
  return path;
}

async function boot(options: Parameters<typeof bootKvserver>[0]): Promise<{ k: KvMachine; c: KvUdpClient }> {
  const k = await bootKvserver(options);
  running.push(k);
  const c = new KvUdpClient(k.port, '127.0.0.1', { timeoutMs: 1000, attempts: 10 });
  clients.push(c);
  return { k, c };
}

async function halt(k: KvMachine): Promise<void> {
  running.splice(running.indexOf(k), 1);
  await k.stop();
}

async function ask(c: KvUdpClient, text: string): Promise<string | null> {
  return (await c.request(text)).text;
}

const value = (i: number) => `value-${i}-${'v'.repeat(90)}`;

/** The sector holding the record of generation `gen` with sequence number `seq` (format 1 or 2). */
function recordSector(disk: Buffer, gen: number, seq: number): number {
  for (let s = 2; s < disk.length / 512; s++) {
    const m = disk.readUInt32LE(s * 512);
    if ((m === 0x3152564b || m === 0x3252564b) && disk.readUInt32LE(s * 512 + 4) === gen && disk.readUInt32LE(s * 512 + 8) === seq) return s;
  }
  throw new Error(`no record ${seq} of generation ${gen} on the disk`);
}

/** Flips one bit of a record's value (byte 100 of its first sector: past the header and the key). */
function flipBitInRecord(path: string, gen: number, seq: number): number {
  const disk = readFileSync(path);
  const s = recordSector(disk, gen, seq);
  disk[s * 512 + 100]! ^= 0x10;
  writeFileSync(path, disk);
  return s;
}

describe('kvserver write-ahead log', () => {
  it('a flipped bit in record 10 is reported with every write it lost, and later writes never bring old records back', async () => {
    const img = image('flip.img', 1 << 20);
    let { k, c } = await boot({ image: img });
    for (let i = 0; i < 30; i++) expect(await ask(c, `set k${i} 0 0 ${value(i).length}\r\n${value(i)}\r\n`)).toBe('STORED\r\n');
    await halt(k);
    const sector = flipBitInRecord(img, 1, 10);

    ({ k, c } = await boot({ image: img }));
    const lost = Array.from({ length: 8 }, (_, i) => `kvserver:   lost: set k${11 + i}\n`).join('');
    expect(k.output()).toBe(
      `kvserver: WAL CORRUPTION: record 10 (sector ${sector}) is damaged; the log is replayed up to it, and every later acknowledged write is lost:\n` +
        'kvserver:   damaged: set k10\n' +
        lost +
        'kvserver:   ... and 11 more\n' +
        'kvserver: listening on 10.0.2.15:11211, 10 items recovered\n',
    );
    expect(await ask(c, 'stats\r\n')).toMatch(/STAT wal_lost_records 20\r\n/);
    // New writes land after the damage, where the old records 10, 11, ... were: none of those may return.
    expect(await ask(c, 'set k10 0 0 3\r\nnew\r\n')).toBe('STORED\r\n');
    expect(await ask(c, 'set k11 0 0 5\r\nnewer\r\n')).toBe('STORED\r\n');
    expect(await ask(c, 'delete k3\r\n')).toBe('DELETED\r\n');
    await halt(k);

    ({ k, c } = await boot({ image: img }));
    expect(k.output()).toBe('kvserver: listening on 10.0.2.15:11211, 11 items recovered\n');
    expect(await ask(c, 'get k10 k11\r\n')).toBe('VALUE k10 0 3\r\nnew\r\nVALUE k11 0 5\r\nnewer\r\nEND\r\n');
    expect(await ask(c, 'get k3 k12 k20 k29\r\n')).toBe('END\r\n');
    expect(await ask(c, `get k9\r\n`)).toBe(`VALUE k9 0 ${value(9).length}\r\n${value(9)}\r\nEND\r\n`);
  });

  it('a damaged last record is reported, not dropped silently', async () => {
    const img = image('last.img', 1 << 20);
    let { k, c } = await boot({ image: img });
    for (let i = 0; i < 5; i++) expect(await ask(c, `set k${i} 0 0 ${value(i).length}\r\n${value(i)}\r\n`)).toBe('STORED\r\n');
    await halt(k);
    const sector = flipBitInRecord(img, 1, 4);
    ({ k, c } = await boot({ image: img }));
    expect(k.output()).toBe(
      `kvserver: WAL: the last record (4, sector ${sector}) is incomplete or damaged and was dropped: a write cut short by a crash (never acknowledged), or a damaged acknowledged write: set k4\n` +
        'kvserver: listening on 10.0.2.15:11211, 4 items recovered\n',
    );
  });

  it('a damaged superblock is reported; the log falls back to the other one', async () => {
    const img = image('sb.img', 1 << 20);
    let { k, c } = await boot({ image: img });
    expect(await ask(c, 'set a 0 0 1\r\n1\r\n')).toBe('STORED\r\n');
    await halt(k);
    ({ k, c } = await boot({ image: img })); // generation 2, in slot 0
    await halt(k);
    const disk = readFileSync(img);
    disk[20]! ^= 1; // next_cas: the checksum no longer matches
    writeFileSync(img, disk);
    ({ k, c } = await boot({ image: img }));
    expect(k.output()).toMatch(/^kvserver: WAL: superblock slot 0 is damaged \(bad checksum or fields\); using generation 1 from slot 1 /);
    expect(await ask(c, 'get a\r\n')).toBe('VALUE a 0 1\r\n1\r\nEND\r\n');
  });

  it('never formats a disk that is not blank: without a log on it, every write is refused and the disk is left alone', async () => {
    const img = image('foreign.img', 1 << 20);
    const disk = readFileSync(img);
    disk.write('somebody else\'s data', 0);
    writeFileSync(img, disk);
    const { k, c } = await boot({ image: img });
    expect(k.output()).toBe(
      'kvserver: no usable disk (it is neither blank nor a kvserver log (zero sectors 0 and 1 to use it)): every write will be refused; boot with kvserver.storage=memory to serve from memory only\n' +
        'kvserver: listening on 10.0.2.15:11211, 0 items recovered\n',
    );
    expect(await ask(c, 'set a 0 0 1\r\n1\r\n')).toBe('SERVER_ERROR writes refused: no usable disk\r\n');
    expect(await ask(c, 'get a\r\n')).toBe('END\r\n');
    await halt(k);
    expect(readFileSync(img).equals(disk)).toBe(true);
  });

  for (const bytes of [2048, 4096]) {
    it(`a ${bytes / 1024} KiB disk is too small for a log: writes are refused, never acknowledged and then lost`, async () => {
      const { k, c } = await boot({ image: image(`small-${bytes}.img`, bytes) });
      expect(k.output()).toMatch(/^kvserver: no usable disk \(the disk is too small: a log needs at least 14 sectors \(7 KiB\)\): every write will be refused/);
      for (const cmd of ['set a 0 0 1\r\n1\r\n', 'add b 0 0 1\r\n1\r\n', 'flush_all\r\n']) {
        expect(await ask(c, cmd)).toBe('SERVER_ERROR writes refused: no usable disk\r\n');
      }
      expect(await ask(c, 'get a b\r\n')).toBe('END\r\n');
      expect(await ask(c, 'stats\r\n')).toMatch(/STAT storage none\r\n[^]*STAT wal_refused 3\r\n/);
    });
  }

  it('kvserver.storage=memory on the command line serves from memory, touching no disk', async () => {
    const img = image('memory.img', 1 << 20);
    const { k, c } = await boot({ image: img, cmdline: 'console=x kvserver.storage=memory' });
    expect(k.output()).toBe(
      'kvserver: memory-only (kvserver.storage=memory): writes are acknowledged without a disk and lost at a restart\n' +
        'kvserver: listening on 10.0.2.15:11211, 0 items recovered\n',
    );
    expect(await ask(c, 'set a 0 0 1\r\n1\r\n')).toBe('STORED\r\n');
    expect(await ask(c, 'incr a 4\r\n')).toBe('5\r\n');
    expect(await ask(c, 'stats\r\n')).toMatch(/STAT storage memory\r\n/);
    await halt(k);
    expect(readFileSync(img).every((b) => b === 0)).toBe(true);
  });

  it('an unknown kvserver.storage value is named, and the default (disk) used', async () => {
    const { k, c } = await boot({ image: image('unknown.img', 1 << 20), cmdline: 'kvserver.storage=tape' });
    expect(k.output()).toBe('kvserver: kvserver.storage must be disk or memory; using disk\nkvserver: listening on 10.0.2.15:11211, 0 items recovered\n');
    expect(await ask(c, 'stats\r\n')).toMatch(/STAT storage disk\r\n/);
  });

  it('a full log refuses a write as "disk full" (not "out of memory"), and a delete still goes through', async () => {
    // 14 sectors: two superblocks and halves of 6 sectors; a 1000-byte value takes 3.
    const img = image('full.img', 14 * 512);
    let { k, c } = await boot({ image: img });
    const v = 'x'.repeat(1000);
    expect(await ask(c, `set a 0 0 1000\r\n${v}\r\n`)).toBe('STORED\r\n');
    expect(await ask(c, `set b 0 0 1000\r\n${v}\r\n`)).toBe('STORED\r\n');
    expect(await ask(c, `set c 0 0 1000\r\n${v}\r\n`)).toBe('SERVER_ERROR disk full\r\n');
    expect(await ask(c, 'delete a\r\n')).toBe('DELETED\r\n');
    expect(await ask(c, `set c 0 0 1000\r\n${v}\r\n`)).toBe('STORED\r\n');
    await halt(k);
    ({ k, c } = await boot({ image: img }));
    expect(k.output()).toBe('kvserver: listening on 10.0.2.15:11211, 2 items recovered\n');
    expect(await ask(c, 'get a\r\n')).toBe('END\r\n');
    expect(await ask(c, 'get b\r\n')).toBe(`VALUE b 0 1000\r\n${v}\r\nEND\r\n`);
    expect(await ask(c, 'get c\r\n')).toBe(`VALUE c 0 1000\r\n${v}\r\nEND\r\n`);
  });
});
