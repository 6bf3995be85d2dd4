// Public surface of the logging channel, for src/index.ts to re-export. Re-exports only.
export {
  Channel,
  ChannelServer,
  connectChannel,
  protocolDiagnostics,
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  type ChannelOptions,
  type ChannelTlsOptions,
  type ChannelPeer,
  type ChannelEvents,
  type ChannelServerEvents,
  type RejectedDiagnostic,
  type ClosedDiagnostic,
} from './channel.js';
export { ProtocolError, type ProtocolErrorCode } from './errors.js';
export { PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, MIN_KEY_BYTES } from './auth.js';
export { DEFAULT_MAX_FRAME_BYTES } from './frame.js';
export {
  MessageType,
  type Message,
  type MessageName,
  type ControlMessage,
  type ClonePage,
  type JsonObject,
  type Role,
} from './messages.js';
