// `host:port` addresses, parsed and printed in one place for the configuration, the CLI, the cluster
// and the FT halves alike: an IPv6 host goes in brackets (`[::1]:7400`), anything else as it is.
import type { HostPort } from './types.js';

const HOST_PORT = /^(?:\[([0-9a-fA-F:.]+(?:%[\w.-]+)?)\]|([^\s[\]:]+)):(\d{1,5})$/;

/**
 * Splits `host:port` (`[v6]:port` for IPv6; the brackets are dropped). Undefined for anything else: a
 * bare IPv6 address without brackets, a port above 65535, no port. Says nothing of whether the host is
 * a valid name; the configuration's checker adds that.
 */
export function parseHostPort(text: string): HostPort | undefined {
  const m = HOST_PORT.exec(text);
  if (!m || Number(m[3]) > 65535) return undefined;
  return { host: (m[1] ?? m[2])!, port: Number(m[3]) };
}

/** `host:port`, with an IPv6 host in brackets: what {@link parseHostPort} reads back. */
export function formatHostPort(a: { host: string; port: number }): string {
  return `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}
