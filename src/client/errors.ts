// The client's error class. Kept beside the client until it moves into src/errors.ts with the rest;
// callers branch on `code`, never on the message.
import { LockstepError } from '../errors.js';

/** Stable codes of {@link ClientError}. */
export type ClientErrorCode =
  /** No valid reply within the time-out after every retry, on every endpoint tried. */
  | 'ERR_LOCKSTEP_CLIENT_TIMEOUT'
  /** Replies arrived for the request but none was valid protocol for it (after every retry). */
  | 'ERR_LOCKSTEP_CLIENT_PROTOCOL'
  /** The server answered `ERROR`, `CLIENT_ERROR …` or `SERVER_ERROR …`. */
  | 'ERR_LOCKSTEP_CLIENT_SERVER'
  /** A key, value or option of one request is not acceptable; `field` names it. */
  | 'ERR_LOCKSTEP_CLIENT_REQUEST_INVALID'
  /** The socket could not be bound, or a `noreply` datagram could not be sent. */
  | 'ERR_LOCKSTEP_CLIENT_SOCKET'
  /** The client was closed before or while the request was outstanding. */
  | 'ERR_LOCKSTEP_CLIENT_CLOSED';

/** An error from the memcached-UDP client (`KvClient`) or the load generator. */
export class ClientError extends LockstepError {
  declare readonly code: ClientErrorCode;
  /** The request field at fault (`key`, `value`, `flags`, …) for `ERR_LOCKSTEP_CLIENT_REQUEST_INVALID`. */
  readonly field: string | undefined;
  /** The server's own words for `ERR_LOCKSTEP_CLIENT_SERVER` (`CLIENT_ERROR bad data chunk`). */
  readonly serverReply: string | undefined;
  constructor(
    code: ClientErrorCode,
    message: string,
    options?: { cause?: unknown; field?: string; serverReply?: string },
  ) {
    super(code, options?.field === undefined ? message : `${options.field}: ${message}`, options);
    this.field = options?.field;
    this.serverReply = options?.serverReply;
  }
}
