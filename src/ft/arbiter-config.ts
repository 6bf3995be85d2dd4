// Builds the arbiter a VM configuration names (`ft.arbiter`), for the commands and the cluster manager.
import { EtcdArbiter } from './arbiter-etcd.js';
import { FileArbiter } from './arbiter-file.js';
import type { Arbiter } from './arbiter.js';

/** The `ft.arbiter` section of a configuration (validated, or its JSON form). */
export type ArbiterSpec = { backend: 'file'; dir: string } | { backend: 'etcd'; endpoints: readonly string[]; prefix?: string; timeoutMs?: number };

/** The arbiter for `spec`. */
export function arbiterFor(spec: ArbiterSpec): Arbiter {
  if (spec.backend === 'file') return new FileArbiter({ dir: spec.dir });
  return new EtcdArbiter({ endpoints: [...spec.endpoints], ...(spec.prefix !== undefined ? { prefix: spec.prefix } : {}), ...(spec.timeoutMs !== undefined ? { timeoutMs: spec.timeoutMs } : {}) });
}

/** The arbiter of a configuration in its JSON form (`{ ft: { arbiter } }`), or undefined if it names none. */
export function arbiterOfConfigJson(config: unknown): Arbiter | undefined {
  const a = (config as { ft?: { arbiter?: Record<string, unknown> } } | null)?.ft?.arbiter;
  if (!a) return undefined;
  if (a.backend === 'file' && typeof a.dir === 'string') return arbiterFor({ backend: 'file', dir: a.dir });
  if (a.backend === 'etcd' && Array.isArray(a.endpoints) && a.endpoints.every((e) => typeof e === 'string')) {
    return arbiterFor({
      backend: 'etcd',
      endpoints: a.endpoints as string[],
      ...(typeof a.prefix === 'string' ? { prefix: a.prefix } : {}),
      ...(typeof a.timeoutMs === 'number' ? { timeoutMs: a.timeoutMs } : {}),
    });
  }
  return undefined;
}
