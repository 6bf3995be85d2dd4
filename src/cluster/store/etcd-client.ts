// Connecting to etcd with the etcd3 client, shared by the etcd store and the etcd arbiter: option
// checks, auth/TLS pass-through, and sorting the client's errors into "denied" and "unavailable".
// etcd3 (and its gRPC stack, most of a CLI start's import time) is loaded on first use, so a command or
// a program that never talks to etcd does not pay for it.
import { createRequire } from 'node:module';
import type { Etcd3, IOptions } from 'etcd3';
import { OptionError } from '../../errors.js';

type Etcd3Module = typeof import('etcd3');
let etcd3: Etcd3Module | undefined;
/** The etcd3 module, loaded now if it was not yet (a CommonJS package: a synchronous require). */
function loadEtcd3(): Etcd3Module {
  etcd3 ??= createRequire(import.meta.url)('etcd3') as Etcd3Module;
  return etcd3;
}

/** How to reach an etcd cluster. */
export interface EtcdConnectionOptions {
  /** Client URLs, `http://host:port` or `https://host:port`; at least one. */
  endpoints: readonly string[];
  /** Password authentication, when the cluster has auth enabled. */
  auth?: { username: string; password: string };
  /** TLS: the CA that signed the servers' certificates, and a client certificate and key for mutual TLS. */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
  /** How long to wait for a connection, ms (default 5000). */
  dialTimeoutMs?: number;
  /** Anything else for the etcd3 client (`grpcOptions`, `faultHandling`, …); merged last. */
  etcd3?: Partial<IOptions>;
}

/**
 * The client a store or an arbiter uses: the caller's own (`client`, not closed by us), or one made from
 * the connection options, dialling for at most `timeoutMs` unless `dialTimeoutMs` says otherwise.
 * @throws OptionError naming the bad field.
 */
export function etcdClientFor(options: Partial<EtcdConnectionOptions> & { client?: Etcd3 | undefined }, timeoutMs: number): { client: Etcd3; owned: boolean } {
  if (options.client !== undefined) return { client: options.client, owned: false };
  return { client: createEtcdClient({ ...options, endpoints: options.endpoints ?? [], dialTimeoutMs: options.dialTimeoutMs ?? timeoutMs }), owned: true };
}

/**
 * Make an etcd3 client from checked options.
 * @throws OptionError naming the bad field.
 */
export function createEtcdClient(options: EtcdConnectionOptions): Etcd3 {
  const endpoints = options.endpoints;
  if (!Array.isArray(endpoints) || endpoints.length === 0) {
    throw new OptionError('endpoints', 'give at least one etcd client URL, e.g. http://127.0.0.1:2379');
  }
  endpoints.forEach((e, i) => {
    if (typeof e !== 'string' || !/^https?:\/\/[^/\s]+\/?$/.test(e)) {
      throw new OptionError(`endpoints[${i}]`, `${JSON.stringify(e)} is not an etcd client URL (http://host:port or https://host:port)`);
    }
  });
  if (options.tls !== undefined && !Buffer.isBuffer(options.tls.ca)) {
    throw new OptionError('tls.ca', 'must be the PEM contents (a Buffer) of the CA certificate');
  }
  const dialTimeout = options.dialTimeoutMs ?? 5_000;
  if (!Number.isFinite(dialTimeout) || dialTimeout <= 0) throw new OptionError('dialTimeoutMs', 'must be a positive number of milliseconds');
  const o: IOptions = { hosts: [...endpoints], dialTimeout };
  if (options.auth !== undefined) o.auth = { username: options.auth.username, password: options.auth.password };
  if (options.tls !== undefined) {
    o.credentials = {
      rootCertificate: options.tls.ca,
      ...(options.tls.key === undefined ? {} : { privateKey: options.tls.key }),
      ...(options.tls.cert === undefined ? {} : { certChain: options.tls.cert }),
    };
  }
  // No circuit breaker per host (etcd3's default opens for 5 s after three failures): callers here
  // carry their own deadlines, and an arbiter or store must use etcd the moment it is back.
  o.faultHandling = { host: () => PASS_THROUGH };
  // Nor gRPC's reconnection backoff, which grows to 120 s while etcd is unreachable: after a long
  // partition the client would sit out up to two minutes of a healed link. Retry at most every 2 s.
  o.grpcOptions = { 'grpc.initial_reconnect_backoff_ms': 250, 'grpc.max_reconnect_backoff_ms': 2_000 };
  return new (loadEtcd3().Etcd3)({ ...o, ...options.etcd3 });
}

type HostPolicy = ReturnType<NonNullable<NonNullable<IOptions['faultHandling']>['host']>>;

/** A cockatiel-compatible policy that just runs the call (cockatiel's `noop`, without importing it). */
const PASS_THROUGH = {
  execute: <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> =>
    Promise.resolve().then(() => fn({ signal: signal ?? new AbortController().signal })),
} as unknown as HostPolicy;

/** Whether an etcd3 error means "not allowed" (auth or permissions) rather than "not reachable". */
export function isEtcdDenied(err: unknown): boolean {
  // Before etcd3 is loaded no error can come from it.
  if (etcd3 === undefined) return false;
  const e = etcd3;
  return (
    err instanceof e.EtcdPermissionDeniedError ||
    err instanceof e.EtcdAuthenticationFailedError ||
    err instanceof e.EtcdInvalidAuthTokenError ||
    err instanceof e.EtcdRoleNotGrantedError ||
    err instanceof e.GRPCUnauthenticatedError
  );
}

/** A short description of an etcd3 error for messages. */
export function describeEtcdError(err: unknown): string {
  if (err instanceof Error) return `${err.constructor.name}: ${err.message}`;
  return String(err);
}
