// Small order statistics for benchmark samples.

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Geometric mean of positive samples (NaN when there are none). */
export function geomean(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  return Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length);
}

export function min(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : Math.min(...xs);
}

export function max(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : Math.max(...xs);
}

/** Formats a number with a fixed number of decimals, or "n/a" when it is not finite. */
export function fmt(x: number | undefined, decimals = 0): string {
  return x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(decimals);
}
