// Mutation primitives shared by the fuzz targets: byte-level havoc (bit flips, interesting values,
// deletions, duplications, insertions, truncation) driven by a seeded PRNG, so every input repeats.
export type Rnd = () => number;

/** An integer in [0, n). */
export function int(rnd: Rnd, n: number): number {
  return Math.floor(rnd() * n);
}

/** One element of `items`. */
export function pick<T>(rnd: Rnd, items: readonly T[]): T {
  return items[int(rnd, items.length)]!;
}

/** A u32 that is often a boundary value rather than uniformly random. */
export function interesting32(rnd: Rnd): number {
  const r = rnd();
  if (r < 0.5) {
    return pick(rnd, [0, 1, 2, 3, 4, 7, 8, 15, 16, 255, 256, 511, 512, 4095, 4096, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0x80000001, 0xfffffffe, 0xffffffff]);
  }
  if (r < 0.75) return int(rnd, 0x10000);
  return Math.floor(rnd() * 2 ** 32) >>> 0;
}

/** Mixes a run's seed, a target's name and an iteration number into one 32-bit PRNG seed. */
export function iterationSeed(seed: number, target: string, iteration: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (const c of `${target}#${iteration}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return h;
}

/** Applies 1..maxOps random byte-level mutations to a copy of `input`. */
export function havoc(input: Uint8Array, rnd: Rnd, maxOps = 4): Uint8Array {
  let b: Uint8Array = Uint8Array.from(input);
  const ops = 1 + int(rnd, maxOps);
  for (let k = 0; k < ops; k++) {
    const n = b.length;
    const at = n === 0 ? 0 : int(rnd, n);
    switch (int(rnd, 9)) {
      case 0:
        if (n) b[at]! ^= 1 << int(rnd, 8);
        break;
      case 1:
        if (n) b[at] = int(rnd, 256);
        break;
      case 2:
        if (n) b[at] = pick(rnd, [0, 1, 0x7f, 0x80, 0xff]);
        break;
      case 3: {
        if (n < 4) break;
        const o = int(rnd, n - 3);
        new DataView(b.buffer, b.byteOffset).setUint32(o, interesting32(rnd), rnd() < 0.8);
        break;
      }
      case 4: {
        if (n < 2) break;
        const o = int(rnd, n - 1);
        new DataView(b.buffer, b.byteOffset).setUint16(o, interesting32(rnd) & 0xffff, rnd() < 0.8);
        break;
      }
      case 5: {
        const len = Math.min(n - at, 1 + int(rnd, 64));
        b = concat(b.subarray(0, at), b.subarray(at + len));
        break;
      }
      case 6: {
        const len = Math.min(n - at, 1 + int(rnd, 64));
        b = concat(b.subarray(0, at + len), b.subarray(at, at + len), b.subarray(at + len));
        break;
      }
      case 7: {
        const extra = Uint8Array.from({ length: 1 + int(rnd, 16) }, () => int(rnd, 256));
        b = concat(b.subarray(0, at), extra, b.subarray(at));
        break;
      }
      default:
        b = b.subarray(0, at).slice();
        break;
    }
  }
  return b;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
