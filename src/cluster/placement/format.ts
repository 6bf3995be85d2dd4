// Number formatting for placement explanations: bytes, MIPS, bandwidth, load. Pure string helpers;
// nothing here decides anything.

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

/** `3.5 GiB`, `512.0 MiB`, `12 B` (binary units, one decimal). */
export function formatBytes(n: number): string {
  const a = Math.abs(n);
  if (a >= GIB) return `${(n / GIB).toFixed(1)} GiB`;
  if (a >= MIB) return `${(n / MIB).toFixed(1)} MiB`;
  if (a >= KIB) return `${(n / KIB).toFixed(1)} KiB`;
  return `${Math.round(n)} B`;
}

/** `1200 MIPS` (one decimal below 10). */
export function formatMips(n: number): string {
  return Math.abs(n) < 10 && n !== Math.round(n) ? `${n.toFixed(1)} MIPS` : `${Math.round(n)} MIPS`;
}

/** Log bandwidth: `12.0 MB/s` (decimal megabytes, as the 1 Gbit/s = 125 MB/s budget is stated). */
export function formatRate(bytesPerSecond: number): string {
  return `${(bytesPerSecond / 1e6).toFixed(1)} MB/s`;
}

/** A load fraction as a percentage: `45.2%`. */
export function formatLoad(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

/** A small figure such as a spread or an imbalance change, with enough digits to compare. */
export function formatFigure(x: number): string {
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 1e-4 ? x.toFixed(4) : x.toExponential(2);
}

/** Bytes to GiB as a number (migration cost is priced per GiB). */
export function gib(bytes: number): number {
  return bytes / GIB;
}
