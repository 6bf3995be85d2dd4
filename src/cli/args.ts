// Shared argument parsing for the CLI verbs: sizes, counts, addresses and the usage error they throw.
import { parseHostPort } from '../config/address.js';

/** A command-line usage error: printed with the verb's help hint, exit status 64 (EX_USAGE). */
export class UsageError extends Error {}

/** `host:port` (`[v6]:port` for IPv6) of option `name`, or a usage error. */
export function hostPortOption(name: string, text: string): { host: string; port: number } {
  const a = parseHostPort(text);
  if (!a) throw new UsageError(`${name}: '${text}' must be <host>:<port> ([v6]:<port> for IPv6)`);
  return a;
}

/** Parses a byte size: `65536`, `64K`, `64M`, `1G` (binary units; an optional `iB`/`B` suffix). */
export function parseSize(name: string, text: string): number {
  const m = /^(\d+)\s*([KMG]?)(i?B)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`--${name}: '${text}' is not a size (examples: 65536, 64M, 1G)`);
  const unit = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2]!.toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Number(m[1]) * unit;
}

/** Parses a non-negative integer count; `_` separators and `e` notation (`5e9`) are accepted. */
export function parseCount(name: string, text: string): bigint {
  const t = text.replace(/_/g, '');
  if (/^\d+$/.test(t)) return BigInt(t);
  const m = /^(\d+)e(\d+)$/i.exec(t);
  if (m) return BigInt(m[1]!) * 10n ** BigInt(m[2]!);
  throw new UsageError(`--${name}: '${text}' is not a whole number`);
}
