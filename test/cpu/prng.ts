// Seeded PRNG (mulberry32) for reproducible random operands and fuzz inputs in the CPU tests.

/** Returns a function yielding floats in [0, 1) from a 32-bit seed; same seed, same sequence. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random unsigned 32-bit integer from a {@link prng}. */
export function u32(rnd: () => number): number {
  return Math.floor(rnd() * 4294967296) >>> 0;
}
