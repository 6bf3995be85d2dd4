// Loads prom-client, lockstep's optional peer dependency for metrics, on first use: importing lockstep
// and every command without metrics work without it, and asking for metrics without it is a coded error.
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';
import { MissingPackageError } from '../errors.js';

let loaded: typeof PromClient | undefined;

/**
 * The prom-client module (the copy the application resolves, so that its registries and lockstep's
 * metrics are of one kind).
 *
 * @throws {MissingPackageError} `ERR_LOCKSTEP_PACKAGE_MISSING` when prom-client is not installed
 */
export function promClient(): typeof PromClient {
  if (loaded) return loaded;
  try {
    // prom-client is CommonJS: require keeps this synchronous, so the metric set is created in one call.
    loaded = createRequire(import.meta.url)('prom-client') as typeof PromClient;
  } catch (err) {
    // Only prom-client itself missing; a broken installation of it (a dependency gone) is said as it is.
    if ((err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' && (err as Error).message.includes("'prom-client'")) {
      throw new MissingPackageError('prom-client', 'Prometheus metrics', { cause: err });
    }
    throw err;
  }
  return loaded;
}
