// virtio-blk as a Linux driver uses it: size_max bounds each data segment and seg_max their number
// (virtio 1.2 §5.2.4), so one request may carry many 64 KiB segments; Linux merges writes of up to
// seg_max pages. A request over 64 KiB in total must be served, not failed.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Machine, OptionError } from '../../src/index.js';
import { Asm } from '../helpers/asm.js';
import { descriptor, setUpQueue0 } from '../helpers/virtio.js';

const BLK = 0x10002000; // slot 1
const DESC = 0x80010000, AVAIL = 0x80011000, USED = 0x80012000;
const WRITE_BUF = 0x80020000, READ_BUF = 0x80040000, HEADERS = 0x80060000, STATUS = 0x80060100;
const SEG = 64 * 1024;

const tmp = mkdtempSync(join(tmpdir(), 'lockstep-blk-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const live: Machine[] = [];
afterEach(() => {
  while (live.length) live.pop()!.close();
});

/** Sets up queue 0 (size 8), submits the request at avail slot 0, waits for it, then the one at slot 1. */
function driver(): Uint8Array {
  const a = new Asm();
  setUpQueue0(a, BLK, 8, { desc: DESC, avail: AVAIL, used: USED });
  a.li(7, AVAIL);
  a.li(8, USED);
  for (const n of [1, 2]) {
    a.li(6, n);
    a.sh(6, 2, 7); // avail idx = n
    a.li(6, 0);
    a.sw(6, 0x50, 5); // notify queue 0
    a.li(9, n);
    a.label(`wait${n}`);
    a.lhu(6, 2, 8); // used idx
    a.bne(6, 9, `wait${n}`);
  }
  a.ebreak();
  return a.bytes();
}

const desc = (i: number, addr: number, len: number, flags: number, next: number) => descriptor(DESC, i, addr, len, flags, next);

function header(type: number, sector: number): Uint8Array {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(sector, 8);
  return b;
}

describe('virtio-blk requests', () => {
  it('a 128 KiB write in two 64 KiB segments and the read back are served (size_max is per segment)', async () => {
    const image = join(tmp, 'disk.img');
    writeFileSync(image, Buffer.alloc(1 << 20));
    const m = new Machine({ memory: 1 << 20, devices: { disk: { path: image } } });
    live.push(m);
    m.writeMemory(0x80000000, driver());
    const data = Buffer.alloc(2 * SEG);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 9)) & 0xff;
    m.writeMemory(WRITE_BUF, data);
    m.writeMemory(HEADERS, header(1, 8)); // OUT at sector 8
    m.writeMemory(HEADERS + 16, header(0, 8)); // IN from sector 8
    m.writeMemory(STATUS, Uint8Array.of(0xff, 0xff));
    const NEXT = 1, WRITE = 2;
    for (const [addr, bytes] of [
      desc(0, HEADERS, 16, NEXT, 1),
      desc(1, WRITE_BUF, SEG, NEXT, 2),
      desc(2, WRITE_BUF + SEG, SEG, NEXT, 3),
      desc(3, STATUS, 1, WRITE, 0),
      desc(4, HEADERS + 16, 16, NEXT, 5),
      desc(5, READ_BUF, SEG, NEXT | WRITE, 6),
      desc(6, READ_BUF + SEG, SEG, NEXT | WRITE, 7),
      desc(7, STATUS + 1, 1, WRITE, 0),
    ] as const) {
      m.writeMemory(addr, bytes);
    }
    const ring = Buffer.alloc(8);
    ring.writeUInt16LE(0, 4);
    ring.writeUInt16LE(4, 6);
    m.writeMemory(AVAIL, ring);
    const r = await m.run({ maxInstructions: 200_000_000 });
    expect(r).toMatchObject({ kind: 'trap', cause: 3 }); // the ebreak after both completions
    expect([...m.readMemory(STATUS, 2)]).toEqual([0, 0]); // VIRTIO_BLK_S_OK twice
    expect(Buffer.from(m.readMemory(READ_BUF, 2 * SEG)).equals(data)).toBe(true);
    m.close();
    expect(readFileSync(image).subarray(8 * 512, 8 * 512 + 2 * SEG).equals(data)).toBe(true);
  });
});

describe('disk image lock', () => {
  const image = (name: string): string => {
    const p = join(tmp, name);
    writeFileSync(p, Buffer.alloc(64 * 1024));
    return p;
  };
  const refused = (open: () => Machine): OptionError => {
    let caught: unknown;
    try {
      live.push(open());
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(OptionError);
    return caught as OptionError;
  };

  it('a second machine locking an image another one holds is refused, naming the image; once the first closes it opens', () => {
    const p = image('locked.img');
    const first = new Machine({ devices: { disk: { path: p, lock: true } } });
    const err = refused(() => new Machine({ devices: { disk: { path: p, lock: true } } }));
    expect(err.field).toBe('devices.disk.path');
    expect(err.message).toContain(`disk image ${p} is in use by another writer`);
    first.close();
    live.push(new Machine({ devices: { disk: { path: p, lock: true } } }));
  });

  it('a separate image is locked by default; a shared one is not, so a pair on one host can share it', () => {
    const s = image('separate.img');
    live.push(new Machine({ devices: { disk: { path: s, mode: 'separate' } } }));
    refused(() => new Machine({ devices: { disk: { path: s, mode: 'separate' } } }));
    const shared = image('shared.img');
    live.push(new Machine({ devices: { disk: { path: shared, lock: true } } })); //     the primary
    live.push(new Machine({ devices: { disk: { path: shared, mode: 'shared' } } })); // its secondary
  });

  it('rejects a lock that is not a boolean', () => {
    const err = refused(() => new Machine({ devices: { disk: { path: image('x.img'), lock: 'yes' as unknown as boolean } } }));
    expect(err.field).toBe('devices.disk.lock');
  });
});
