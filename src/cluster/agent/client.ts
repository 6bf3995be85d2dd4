// Client of an agent's control API (HTTP or HTTPS + JSON, bearer token): what the manager and `lockstep
// cluster` use to start, stop and signal VM halves. The wire shapes are defined here, once, for both ends.
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { LockstepError, OptionError } from '../../errors.js';
import type { JsonValue } from '../store/store.js';
import type { HostRecord, InstanceRole } from '../manager/layout.js';
import type { InstanceView } from './vm-process.js';

/** Version prefix of every API path. */
export const API_PREFIX = '/v1';

/** Header carrying the manager's fencing token (a decimal integer). */
export const FENCE_HEADER = 'x-lockstep-fence';
/** Header naming the manager that sends a request. */
export const MANAGER_HEADER = 'x-lockstep-manager';

/** Body of `POST /v1/vms`: start one half of a VM. */
export interface StartRequest {
  vmId: string;
  role: InstanceRole;
  /** The VM's configuration (the JSON form of a configuration file, absolute paths). */
  config: JsonValue;
  /** Secondary: the primary's logging channel, `host:port`. */
  join?: string;
  /** Answer only once the half is ready (a primary listening, a secondary joined), waiting at most this long. Default 0: at once. */
  waitMs?: number;
  /**
   * A VM without FT, role `secondary`: the instance is a live migration's target, and this is the key
   * made for that one migration (hex, at least 16 bytes) — the same one given to the source's agent with
   * {@link AgentClient.migrate}. It reaches the process in a file only it can read, never its argv, and
   * is never stored.
   */
  migrationKey?: string;
}

/** Body of `POST /v1/vms/<vm>/migrate`. */
export interface ArmMigrationRequest {
  /** A VM without FT: the key made for this one migration (hex, at least 16 bytes); required for such a VM, refused for an FT VM. */
  migrationKey?: string;
}

/** `GET /v1/host`: the host's registration (as in `hosts/<id>`), what runs on it, and its fence. */
export type HostInfo = Pick<HostRecord, 'id' | 'api' | 'ftHost' | 'capacity' | 'groups' | 'compatId' | 'maxFtVms' | 'pid'> & {
  /** vCPUs of FT halves the host takes at most (0: no limit). */
  maxFtVcpus: number;
  /** VMs running on the host now. */
  running: number;
  /** The highest fencing token the agent has accepted, and from whom. */
  fence: { token: number; manager: string | null };
  /** The agent read the store just now, while answering (false: this host is cut off from it, or the store is down). */
  storeReachable: boolean;
};

/** Error codes of {@link AgentApiError} (`apiCode`), as the API sends them. */
export type AgentApiCode =
  | 'unauthorized'
  | 'not-found'
  | 'bad-request'
  | 'already-running'
  | 'not-running'
  | 'wrong-role'
  | 'stale-fence'
  | 'not-ready'
  | 'unsupported'
  | 'shutting-down'
  | 'isolated'
  | 'internal'
  | 'unreachable';

/** A request to an agent failed: refused (with the API's code) or the agent could not be reached. */
export class AgentApiError extends LockstepError {
  /** HTTP status (0 when unreachable). */
  readonly status: number;
  readonly apiCode: AgentApiCode;
  /** The agent's URL. */
  readonly agent: string;
  constructor(agent: string, status: number, apiCode: AgentApiCode, message: string, options?: { cause?: unknown }) {
    super(status === 0 ? 'ERR_LOCKSTEP_AGENT_UNREACHABLE' : 'ERR_LOCKSTEP_AGENT_REFUSED', `agent ${agent}: ${message}`, options);
    this.status = status;
    this.apiCode = apiCode;
    this.agent = agent;
  }
}

/** Options of {@link AgentClient}. */
export interface AgentClientOptions {
  /** The agent's API, `http://host:port` or `https://host:port`. */
  url: string;
  /**
   * HTTPS: the certificate authorities (PEM) that may sign an agent's certificate, instead of the
   * system's. The agent's certificate must name the host of `url` (DNS name or IP address).
   */
  ca?: string | Buffer;
  /** The bearer token. */
  token: string;
  /** The fencing token and manager id to send with every request (a manager's). */
  fence?: () => { token: number; manager: string } | undefined;
  /** Time limit of a request without a `waitMs`, ms (default 10 000). */
  timeoutMs?: number;
}

/** A client of one agent's control API. */
export class AgentClient {
  readonly url: string;
  readonly #token: string;
  readonly #fence: AgentClientOptions['fence'];
  readonly #timeoutMs: number;
  readonly #ca: string | Buffer | undefined;

  constructor(o: AgentClientOptions) {
    this.url = o.url.replace(/\/+$/, '');
    if (!/^https?:\/\//.test(this.url)) throw new OptionError('url', `${JSON.stringify(o.url)} is not an http:// or https:// URL`);
    this.#token = o.token;
    this.#fence = o.fence;
    this.#timeoutMs = o.timeoutMs ?? 10_000;
    this.#ca = o.ca;
  }

  /** The host: capacity, groups, compat id, VMs running, the fence. */
  host(): Promise<HostInfo> {
    return this.#call('GET', '/host');
  }

  /** Every instance, running or recently ended. */
  async list(): Promise<InstanceView[]> {
    return (await this.#call<{ vms: InstanceView[] }>('GET', '/vms')).vms;
  }

  /** One VM's instance on this host. */
  get(vmId: string): Promise<InstanceView> {
    return this.#call('GET', `/vms/${encodeURIComponent(vmId)}`);
  }

  /** Start a half; with `waitMs`, resolves once it is ready. */
  start(req: StartRequest): Promise<InstanceView> {
    return this.#call('POST', '/vms', req, (req.waitMs ?? 0) + this.#timeoutMs);
  }

  /** Stop a VM's instance (SIGTERM, then SIGKILL); resolves once it has exited. */
  stop(vmId: string): Promise<InstanceView> {
    return this.#call('DELETE', `/vms/${encodeURIComponent(vmId)}`, undefined, this.#timeoutMs + 10_000);
  }

  /**
   * Test failover of a protected primary: it hands over to its secondary (`operation: 'test-failover'`);
   * resolves once it did. Only if the primary serves no operations API and was started as a secondary
   * is it killed instead, its secondary going live by itself (`operation: 'kill'`).
   */
  failover(vmId: string): Promise<InstanceView & { operation: 'test-failover' | 'kill' }> {
    // The agent answers once the handover is done (the primary waits up to 10 s for the last acks).
    return this.#call('POST', `/vms/${encodeURIComponent(vmId)}/failover`, {}, this.#timeoutMs + 15_000);
  }

  /**
   * Migrate the secondary of a protected primary without a protection gap: the next secondary to join
   * (start it on the target host) is cloned while the current one protects the VM, then replaces it.
   * Resolves once the primary is armed.
   */
  migrateSecondary(vmId: string): Promise<InstanceView & { operation: 'migrate-secondary' }> {
    return this.#call('POST', `/vms/${encodeURIComponent(vmId)}/migrate-secondary`, {}, this.#timeoutMs + 15_000);
  }

  /**
   * Live migration of the primary of `vmId` running here: the next secondary to join it (start one on
   * the target host with {@link start}, role `secondary`) becomes the primary; a protected VM's
   * secondary follows the target without a clone. A VM without FT needs `migrationKey` (the target's
   * start gets the same). Resolves once the primary is armed.
   */
  migrate(vmId: string, req: ArmMigrationRequest = {}): Promise<InstanceView & { operation: 'migrate' }> {
    return this.#call('POST', `/vms/${encodeURIComponent(vmId)}/migrate`, req, this.#timeoutMs + 15_000);
  }

  /** Test restart secondary: the primary's secondary is cloned again. */
  restartSecondary(vmId: string): Promise<InstanceView & { operation: 'restart-secondary' }> {
    return this.#call('POST', `/vms/${encodeURIComponent(vmId)}/restart-secondary`, {}, this.#timeoutMs + 15_000);
  }

  /** Suspend FT (vSphere's "Suspend Fault Tolerance"): the primary dismisses its secondary and runs on unprotected, saying so. */
  suspendFt(vmId: string): Promise<InstanceView & { operation: 'suspend' }> {
    return this.#call('POST', `/vms/${encodeURIComponent(vmId)}/suspend-ft`, {}, this.#timeoutMs + 15_000);
  }

  /** Resume FT: a suspended primary takes a secondary again (the manager starts one). */
  resumeFt(vmId: string): Promise<InstanceView & { operation: 'enable' }> {
    return this.#call('POST', `/vms/${encodeURIComponent(vmId)}/resume-ft`, {}, this.#timeoutMs + 15_000);
  }

  async #call<T>(method: string, path: string, body?: unknown, timeoutMs = this.#timeoutMs): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.#token}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const fence = this.#fence?.();
    if (fence !== undefined) {
      headers[FENCE_HEADER] = String(fence.token);
      headers[MANAGER_HEADER] = fence.manager;
    }
    const payload = body !== undefined ? Buffer.from(JSON.stringify(body)) : undefined;
    if (payload !== undefined) headers['content-length'] = String(payload.length);
    let res: { status: number; text: string };
    try {
      res = await this.#send(method, `${this.url}${API_PREFIX}${path}`, headers, payload, timeoutMs);
    } catch (err) {
      throw new AgentApiError(this.url, 0, 'unreachable', `${method} ${path}: ${describeRequestError(err, timeoutMs)}`, { cause: err });
    }
    const text = res.text;
    let json: unknown;
    try {
      json = text === '' ? {} : JSON.parse(text);
    } catch {
      throw new AgentApiError(this.url, res.status, 'internal', `${method} ${path}: the answer is not JSON (HTTP ${res.status})`);
    }
    if (res.status < 200 || res.status > 299) {
      const e = (json as { error?: { code?: AgentApiCode; message?: string } }).error;
      throw new AgentApiError(this.url, res.status, e?.code ?? 'internal', `${method} ${path}: ${e?.message ?? `HTTP ${res.status}`}`);
    }
    return json as T;
  }

  /** One request and its whole answer, within `timeoutMs` (connecting, the TLS handshake and the body included). */
  #send(method: string, url: string, headers: Record<string, string>, payload: Buffer | undefined, timeoutMs: number): Promise<{ status: number; text: string }> {
    const tls = url.startsWith('https:');
    return new Promise((resolve, reject) => {
      const options = { method, headers, signal: AbortSignal.timeout(timeoutMs), ...(tls && this.#ca !== undefined ? { ca: this.#ca } : {}) };
      const req = (tls ? httpsRequest : httpRequest)(url, options, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
        res.on('close', () => {
          if (!res.complete) reject(new Error('the connection closed before the answer was complete'));
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  }
}

/** TLS verification failures, by OpenSSL's code, in words an operator can act on. */
const TLS_TRUST_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);

function describeRequestError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; code?: string; message?: string; cause?: { name?: string } };
  if (e.name === 'TimeoutError' || e.cause?.name === 'TimeoutError' || (e.name === 'AbortError' && e.code === 'ABORT_ERR')) return `no answer within ${timeoutMs} ms`;
  if (e.code !== undefined && TLS_TRUST_CODES.has(e.code)) return `its TLS certificate is not signed by a trusted authority (${e.code}): give the CA that signed it (--tls-ca)`;
  if (e.code === 'CERT_HAS_EXPIRED' || e.code === 'CERT_NOT_YET_VALID') return `its TLS certificate is not valid now (${e.code})`;
  if (e.code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `its TLS certificate does not name the host it was reached at (${e.message ?? e.code})`;
  if (e.code === 'EPROTO' || e.code === 'ECONNRESET') return `${e.code}${/wrong version number|packet length too long|http request/i.test(e.message ?? '') ? ' (TLS against a plain HTTP endpoint, or the reverse?)' : ''}`;
  return e.code ?? e.message ?? String(err);
}
