// The logging channel's error class and its stable codes. Kept beside the protocol (as the client keeps
// ClientError); callers branch on `code`, never on the message.
import { LockstepError } from '../errors.js';

/** Stable codes of {@link ProtocolError}. */
export type ProtocolErrorCode =
  /** A frame or message does not parse: bad magic, unknown type, wrong length, value out of range. */
  | 'ERR_LOCKSTEP_PROTOCOL_MALFORMED'
  /** Authentication failed: wrong pre-shared key, bad proof, bad frame HMAC, or a message before auth. */
  | 'ERR_LOCKSTEP_PROTOCOL_AUTH'
  /** The two sides have no protocol version in common. */
  | 'ERR_LOCKSTEP_PROTOCOL_VERSION'
  /** A frame header announces a payload longer than the receiver's maximum. */
  | 'ERR_LOCKSTEP_PROTOCOL_OVERSIZED'
  /** A frame's sequence number is not the previous one plus one (replayed, dropped or reordered). */
  | 'ERR_LOCKSTEP_PROTOCOL_SEQUENCE'
  /** The peer authenticated but is not the peer wanted: another VM id, or the same role as this side. */
  | 'ERR_LOCKSTEP_PROTOCOL_PEER'
  /** The handshake did not complete within `handshakeTimeoutMs`. */
  | 'ERR_LOCKSTEP_PROTOCOL_TIMEOUT'
  /** TLS failed: certificate missing, from an unknown CA, or the TLS handshake itself failed. */
  | 'ERR_LOCKSTEP_PROTOCOL_TLS'
  /** The connection closed or failed (reset, refused, closed by the peer without BYE), or the channel is closed. */
  | 'ERR_LOCKSTEP_PROTOCOL_CLOSED';

/** An error of the logging channel: a hostile or broken peer, a failed handshake, or a closed channel. */
export class ProtocolError extends LockstepError {
  declare readonly code: ProtocolErrorCode;
  constructor(code: ProtocolErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}
