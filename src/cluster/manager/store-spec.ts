// `--store dir:<path>` or `--store etcd:<url>[,<url>…]`: the one way agents, managers and `lockstep
// cluster` name the cluster's store.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { OptionError } from '../../errors.js';
import { DIR_STORE_MARKER, DirStore } from '../store/dir-store.js';
import { EtcdStore } from '../store/etcd-store.js';
import type { ClusterStore } from '../store/store.js';

/** A parsed store specification. */
export type StoreSpec = { kind: 'dir'; dir: string } | { kind: 'etcd'; endpoints: string[] };

/**
 * Parse `dir:<path>` or `etcd:<url>[,<url>…]` (`http://` or `https://` URLs).
 * @throws OptionError (field `store`) otherwise.
 */
export function parseStoreSpec(text: string): StoreSpec {
  const m = /^(dir|etcd):(.+)$/.exec(text);
  if (m === null) throw new OptionError('store', `'${text}' must be dir:<path> or etcd:<url>[,<url>...]`);
  if (m[1] === 'dir') return { kind: 'dir', dir: m[2]! };
  const endpoints = m[2]!.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const e of endpoints) {
    if (!/^https?:\/\/[^/\s]+\/?$/.test(e)) throw new OptionError('store', `'${e}' is not an etcd endpoint: use http://host:port or https://host:port`);
  }
  if (endpoints.length === 0) throw new OptionError('store', 'etcd: needs at least one endpoint');
  return { kind: 'etcd', endpoints };
}

/** Options of {@link openStore}. */
export interface OpenStoreOptions {
  timeoutMs?: number;
  /** etcd: the key prefix. */
  prefix?: string;
  /**
   * dir: create the store when the directory is not one yet (`lockstep cluster init`). Without it a
   * directory that is not already a lockstep store is refused: a mistyped path must not silently
   * become an empty cluster.
   */
  create?: boolean;
}

/**
 * Open the store a specification names (etcd: checks that it answers).
 * @throws OptionError (field `store`) for a `dir:` path that is not a lockstep store, unless `create`.
 */
export async function openStore(spec: StoreSpec | string, options: OpenStoreOptions = {}): Promise<ClusterStore> {
  const s = typeof spec === 'string' ? parseStoreSpec(spec) : spec;
  if (s.kind === 'dir') {
    if (options.create !== true && !existsSync(join(s.dir, DIR_STORE_MARKER))) {
      const why = existsSync(s.dir) ? `${s.dir} is not a lockstep store (no ${DIR_STORE_MARKER} in it)` : `${s.dir} does not exist`;
      throw new OptionError('store', `dir:${s.dir}: ${why}; check the path, or create the store with: lockstep cluster init --store dir:${s.dir}`);
    }
    return DirStore.open({ dir: s.dir, ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}) });
  }
  return EtcdStore.open({
    endpoints: s.endpoints,
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    ...(options.prefix !== undefined ? { prefix: options.prefix } : {}),
  });
}
