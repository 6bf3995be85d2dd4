// Calling a primary's operations API (what `lockstep ft` and a host agent do): one signed request, and
// errors that name the address when nothing answers there.
import { LockstepError } from '../errors.js';
import { signControlRequest } from './control-auth.js';

/** Nothing answered at the operations API's address (refused, timed out, not resolvable). */
export class ControlUnreachableError extends LockstepError {
  /** The base URL that was called. */
  readonly url: string;
  constructor(url: string, message: string, options?: { cause?: unknown }) {
    super('ERR_LOCKSTEP_CONTROL_UNREACHABLE', message, options);
    this.url = url;
  }
}

/** An answer of the API: its HTTP status and JSON body (`{}` when the body was not JSON). */
export interface ControlAnswer {
  status: number;
  body: Record<string, unknown>;
  /** The body as received. */
  text: string;
}

function describeFetchError(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code ?? (err as { code?: string }).code;
  if ((err as Error).name === 'TimeoutError') return 'no answer in time';
  if (code === 'ECONNREFUSED') return 'connection refused (nothing listens there)';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'the host name does not resolve';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'the connection was closed before an answer';
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return 'the host is unreachable';
  return cause?.message ?? (err as Error).message;
}

/**
 * Sends one signed request to the operations API at `baseUrl` (`http://127.0.0.1:7401`); `body` is sent as
 * JSON, signed with the rest.
 *
 * @throws {ControlUnreachableError} when nothing answers (the message names the address)
 */
export async function callControl(
  baseUrl: string,
  pairKey: Uint8Array,
  method: 'GET' | 'POST',
  path: string,
  options: { timeoutMs?: number; body?: unknown } = {},
): Promise<ControlAnswer> {
  const url = new URL(path, baseUrl);
  const payload = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
  const authorization = signControlRequest(pairKey, { method, host: url.host, path: `${url.pathname}${url.search}`, ...(payload !== undefined ? { body: payload } : {}) });
  let res: Response;
  let text: string;
  try {
    res = await fetch(url, {
      method,
      headers: { authorization, ...(payload !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(payload !== undefined ? { body: payload } : {}),
      signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
    });
    text = await res.text();
  } catch (err) {
    throw new ControlUnreachableError(baseUrl, `the operations API at ${url.host} did not answer: ${describeFetchError(err)}`, { cause: err });
  }
  let body: Record<string, unknown> = {};
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) body = v as Record<string, unknown>;
  } catch {
    // not JSON: the caller has the text
  }
  return { status: res.status, body, text };
}
