// The logging channel between a primary and a secondary: TCP (optionally TLS with client certificates),
// the PSK handshake of auth.ts, then HMAC-sealed frames. Anything malformed, oversized, out of sequence,
// forged or unauthenticated closes the connection with a reason; it never reaches a 'message' listener.
import diagnostics from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { OptionError } from '../errors.js';
import { Handshake, TLS_BINDING_BYTES, TLS_BINDING_LABEL, importKey, type HandshakeResult, type HandshakeSide, type Outgoing } from './auth.js';
import { ProtocolError } from './errors.js';
import {
  CRC32C_TRAILER,
  DEFAULT_MAX_FRAME_BYTES,
  FrameDecoder,
  FrameEncoder,
  PREAUTH_MAX_PAYLOAD_BYTES,
} from './frame.js';
import {
  MESSAGE_NAMES,
  MessageType,
  decodeMessage,
  encodeMessage,
  isApplicationType,
  validVmId,
  type Message,
  type Role,
} from './messages.js';

export type { Message, Role, ControlMessage, ClonePage, JsonObject, MessageName } from './messages.js';

/** Default time a connection has to complete the handshake (TCP/TLS connect included). */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5000;
/** How long a closing channel waits for the peer to close its side before it resets the connection. */
export const CLOSE_LINGER_MS = 1000;
/** Smallest `maxFrameBytes` accepted (a CLONE_PAGES of one 64 KiB page must fit). */
export const MIN_MAX_FRAME_BYTES = 64 * 1024 + 16;

/** TLS material for a channel: both sides present a certificate signed by `ca` and verify the other's. */
export interface ChannelTlsOptions {
  /** This side's certificate chain (PEM). */
  cert: string | Buffer;
  /** This side's private key (PEM). */
  key: string | Buffer;
  /** The CA (PEM) that must have signed the peer's certificate; the only one trusted. */
  ca: string | Buffer;
}

/** Options common to both ends of a channel. */
export interface ChannelOptions {
  /** Pre-shared key, at least 16 bytes (32 random bytes recommended). Copied; the caller may wipe it. */
  key: Uint8Array;
  /** The VM this pair protects; the peer must announce the same one. 1–255 UTF-8 bytes, no control characters. */
  vmId: string;
  /** This side's role; the peer must have the other one. */
  role: Role;
  /** Free-form number announced in the HELLO and reported as `peer.epoch` (the arbiter epoch, typically). Default 0. */
  epoch?: number;
  /** Largest frame payload accepted and sent, in bytes. Default 16 MiB; at most 2^32 − 1. */
  maxFrameBytes?: number;
  /** Time allowed from connection to authenticated channel. Default 5000. */
  handshakeTimeoutMs?: number;
  /** Run over TLS with client certificates required and verified on both sides. The PSK handshake still runs inside. */
  tls?: ChannelTlsOptions;
}

/** The other end of an established channel, as it authenticated itself. */
export interface ChannelPeer {
  role: Role;
  vmId: string;
  /** The negotiated protocol version. */
  version: number;
  /** The epoch the peer announced in its HELLO. */
  epoch: number;
  /** `address:port` of the peer. */
  remote: string;
}

/** Events of {@link Channel}. It never emits 'error'. */
export interface ChannelEvents {
  /** A verified, decoded message. */
  message: [message: Message];
  /** The socket's write buffer drained below its high-water mark after `send` returned false. */
  drain: [];
  /** The channel closed; `error` is set when it was not an orderly close (local `close`, or the peer's BYE). */
  close: [reason: string, error?: Error];
}

/** Events of {@link ChannelServer}. */
export interface ChannelServerEvents {
  /** A peer completed the handshake. Attach 'message' listeners before returning. */
  channel: [channel: Channel];
  /** A connection was refused or closed for something the peer did (or did not do). */
  rejected: [reason: string, remote: string, error: ProtocolError];
}

/** Message of the `lockstep:protocol:rejected` diagnostics channel. */
export interface RejectedDiagnostic {
  /** The side that rejected. */
  side: 'server' | 'client';
  /** Whether the handshake had completed. */
  stage: 'handshake' | 'established';
  remote: string;
  reason: string;
  error: ProtocolError;
}

/** Message of the `lockstep:protocol:closed` diagnostics channel. */
export interface ClosedDiagnostic {
  remote: string;
  peer: ChannelPeer;
  reason: string;
  error: Error | undefined;
  bytesSent: number;
  bytesReceived: number;
}

/**
 * Diagnostics channels (subscribe with `diagnostics_channel.subscribe(name, fn)`); nothing is logged
 * otherwise.
 */
export const protocolDiagnostics = Object.freeze({
  /** `lockstep:protocol:rejected` — a {@link RejectedDiagnostic} per connection refused for a protocol reason. */
  rejected: diagnostics.channel('lockstep:protocol:rejected'),
  /** `lockstep:protocol:closed` — a {@link ClosedDiagnostic} per established channel that closed. */
  closed: diagnostics.channel('lockstep:protocol:closed'),
});

interface ResolvedOptions {
  key: ReturnType<typeof importKey>;
  vmId: string;
  role: Role;
  epoch: number;
  maxFrameBytes: number;
  handshakeTimeoutMs: number;
  tls: ChannelTlsOptions | undefined;
}

function resolveOptions(options: ChannelOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) throw new OptionError('options', 'channel options must be an object');
  const key = importKey(options.key);
  if (!validVmId(options.vmId)) throw new OptionError('vmId', `${JSON.stringify(options.vmId)} is not 1–255 UTF-8 bytes without control characters`);
  if (options.role !== 'primary' && options.role !== 'secondary') throw new OptionError('role', `must be 'primary' or 'secondary', got ${JSON.stringify(options.role)}`);
  const epoch = options.epoch ?? 0;
  if (typeof epoch !== 'number' || !Number.isFinite(epoch)) throw new OptionError('epoch', `must be a finite number, got ${String(epoch)}`);
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < MIN_MAX_FRAME_BYTES || maxFrameBytes > 0xffffffff) {
    throw new OptionError('maxFrameBytes', `must be an integer in [${MIN_MAX_FRAME_BYTES}, 2^32 − 1], got ${String(maxFrameBytes)}`);
  }
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  if (typeof handshakeTimeoutMs !== 'number' || !(handshakeTimeoutMs > 0) || !Number.isFinite(handshakeTimeoutMs)) {
    throw new OptionError('handshakeTimeoutMs', `must be a positive number of milliseconds, got ${String(handshakeTimeoutMs)}`);
  }
  const t = options.tls;
  if (t !== undefined) {
    for (const f of ['cert', 'key', 'ca'] as const) {
      if (typeof t[f] !== 'string' && !Buffer.isBuffer(t[f])) throw new OptionError(`tls.${f}`, 'must be PEM text (a string or Buffer)');
    }
  }
  return { key, vmId: options.vmId, role: options.role, epoch, maxFrameBytes, handshakeTimeoutMs, tls: t };
}

function remoteOf(socket: net.Socket): string {
  const a = socket.remoteAddress;
  if (a === undefined) return 'unknown';
  return `${a.includes(':') ? `[${a}]` : a}:${socket.remotePort}`;
}

const TLS_ERROR = /^(ERR_SSL_|ERR_TLS_|ERR_OSSL_)|CERT|UNABLE_TO_|SELF_SIGNED|DEPTH_ZERO|HOSTNAME/;

/** A socket error as a ProtocolError: TLS for certificate and TLS failures, CLOSED for the rest. */
function socketError(err: Error & { code?: string; library?: string }, where: string): ProtocolError {
  if (err instanceof ProtocolError) return err;
  const code = typeof err.code === 'string' ? err.code : '';
  if (TLS_ERROR.test(code) || err.library === 'SSL routines') {
    return new ProtocolError('ERR_LOCKSTEP_PROTOCOL_TLS', `TLS failed ${where}: ${err.message}${code ? ` (${code})` : ''}`, { cause: err });
  }
  return new ProtocolError('ERR_LOCKSTEP_PROTOCOL_CLOSED', `connection failed ${where}: ${err.message}${code ? ` (${code})` : ''}`, { cause: err });
}

/** Judges header types once authenticated: application messages only. */
function applicationTypeCheck(type: number): ProtocolError | undefined {
  if (isApplicationType(type)) return undefined;
  if (type === MessageType.HELLO || type === MessageType.AUTH) {
    return new ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED', `${MESSAGE_NAMES.get(type)} frame after the handshake completed`);
  }
  return new ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED', `unknown message type 0x${type.toString(16)}`);
}

/** Judges header types during the handshake: HELLO and AUTH only; application messages are unauthenticated. */
function handshakeTypeCheck(type: number): ProtocolError | undefined {
  if (type === MessageType.HELLO || type === MessageType.AUTH) return undefined;
  if (isApplicationType(type)) {
    return new ProtocolError('ERR_LOCKSTEP_PROTOCOL_AUTH', `${MESSAGE_NAMES.get(type)} frame before authentication completed`);
  }
  return new ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED', `unknown message type 0x${type.toString(16)} during the handshake`);
}

interface Established {
  result: HandshakeResult;
  decoder: FrameDecoder;
  encoder: FrameEncoder;
  bytesSent: number;
  bytesReceived: number;
}

/**
 * Runs the PSK handshake on a connected socket. Resolves with the authenticated peer and the frame codec
 * (its decoder may already hold frames that followed the handshake); the socket is then paused with no
 * 'data' listener. Rejects with a ProtocolError after closing the socket.
 */
function runHandshake(socket: net.Socket, o: ResolvedOptions, side: HandshakeSide, deadline: number): Promise<Established> {
  return new Promise((resolve, reject) => {
    const decoder = new FrameDecoder({ maxPayloadBytes: PREAUTH_MAX_PAYLOAD_BYTES, trailer: CRC32C_TRAILER, checkType: handshakeTypeCheck });
    const encoder = new FrameEncoder({ maxPayloadBytes: PREAUTH_MAX_PAYLOAD_BYTES, trailer: CRC32C_TRAILER });
    let bytesSent = 0;
    let bytesReceived = 0;
    let done = false;
    let tlsBinding: Buffer | undefined;
    if (socket instanceof tls.TLSSocket) {
      try {
        tlsBinding = socket.exportKeyingMaterial(TLS_BINDING_BYTES, TLS_BINDING_LABEL, Buffer.alloc(0));
      } catch (err) {
        socket.destroy();
        reject(socketError(err as Error, 'exporting the TLS channel binding'));
        return;
      }
    }
    const hs = new Handshake({ side, key: o.key, local: { role: o.role, vmId: o.vmId, epoch: o.epoch }, ...(tlsBinding ? { tlsBinding } : {}) });

    const cleanup = () => {
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
    };
    const fail = (err: ProtocolError, flush: boolean) => {
      if (done) return;
      cleanup();
      // Errors that arrive while the socket winds down are expected and must not crash the process.
      socket.on('error', () => undefined);
      if (flush) {
        // Something is queued for the peer (our HELLO, naming our version range and identity): let it out.
        socket.end();
        setTimeout(() => socket.destroy(), CLOSE_LINGER_MS).unref();
      } else {
        socket.destroy();
      }
      reject(err);
    };
    const write = (out: Outgoing[]) => {
      for (const o of out) {
        const f = encoder.encode(o.code, o.payload);
        const frame = Buffer.concat([f.header, f.payload, f.trailer]);
        bytesSent += frame.length;
        socket.write(frame);
      }
    };
    const onData = (chunk: Buffer) => {
      bytesReceived += chunk.length;
      decoder.push(chunk);
      try {
        while (!done) {
          const frame = decoder.next();
          if (!frame) return;
          const step = hs.receive(frame);
          write(step.send);
          if (step.error) return fail(step.error, step.send.length > 0);
          if (step.result) {
            cleanup();
            socket.pause();
            decoder.setTrailer({ kind: 'hmac', key: step.result.receiveKey });
            decoder.setMaxPayloadBytes(o.maxFrameBytes);
            decoder.setCheckType(applicationTypeCheck);
            encoder.setTrailer({ kind: 'hmac', key: step.result.sendKey });
            encoder.setMaxPayloadBytes(o.maxFrameBytes);
            resolve({ result: step.result, decoder, encoder, bytesSent, bytesReceived });
            return;
          }
        }
      } catch (err) {
        fail(err instanceof ProtocolError ? err : new ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED', String(err), { cause: err }), false);
      }
    };
    const onError = (err: Error) => fail(socketError(err, 'during the handshake'), false);
    const onEnd = () => {
      if (side === 'initiator' && hs.state === 'await-auth') {
        fail(new ProtocolError(
          'ERR_LOCKSTEP_PROTOCOL_AUTH',
          'the peer closed the connection after receiving this side\'s proof: it rejected it (a different pre-shared key?); its \'rejected\' event has the reason',
        ), false);
      } else if (side === 'initiator' && hs.state === 'await-hello' && socket instanceof tls.TLSSocket) {
        // TLS 1.3 completes on the client before the server has judged the client's certificate; a
        // server that refuses it simply closes, before answering the HELLO.
        fail(new ProtocolError(
          'ERR_LOCKSTEP_PROTOCOL_TLS',
          'the server closed the TLS connection before answering the HELLO: it most likely refused this side\'s certificate (not signed by its CA?); its \'rejected\' event has the reason',
        ), false);
      } else {
        fail(new ProtocolError('ERR_LOCKSTEP_PROTOCOL_CLOSED', `the peer closed the connection during the handshake (${hs.state})`), false);
      }
    };
    const timer = setTimeout(() => {
      fail(new ProtocolError(
        'ERR_LOCKSTEP_PROTOCOL_TIMEOUT',
        `handshake not complete after ${o.handshakeTimeoutMs} ms (${hs.state}): the peer is silent, slow, or not a lockstep channel`,
      ), false);
    }, Math.max(0, deadline - performance.now()));
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    write(hs.start());
  });
}

/**
 * What a native data path needs to take an established channel over (see {@link Channel.handOver}):
 * the connection, both direction keys, the next sequence number each way, and the bytes already read
 * past the last frame delivered.
 */
export interface ChannelHandOver {
  fd: number;
  sendKey: Uint8Array;
  recvKey: Uint8Array;
  sendSequence: bigint;
  recvSequence: bigint;
  maxPayload: number;
  leftover: Uint8Array;
}

/**
 * Internal state handed to a {@link Channel} when its handshake completes.
 * @internal
 */
export interface ChannelInit {
  socket: net.Socket;
  established: Established;
  remote: string;
  side: 'server' | 'client';
  onViolation?: (reason: string, error: ProtocolError) => void;
}

/**
 * An authenticated logging channel. Created by {@link connectChannel} or a {@link ChannelServer}; not
 * constructed directly. Messages received before the caller attached a 'message' listener are not
 * lost: delivery starts on the next turn of the event loop after the channel is handed over, so attach
 * listeners synchronously.
 *
 * ```ts
 * const ch = await connectChannel({ host, port, key, vmId: 'vm1', role: 'secondary' });
 * ch.on('message', (m) => { if (m.type === 'log') replay(m.batches); });
 * ch.on('close', (reason, error) => console.log('channel closed:', reason, error?.code));
 * ch.send({ type: 'ack', lsn: 7n, instret: 123456n, bytes: 65536n });
 * ```
 */
export class Channel extends EventEmitter<ChannelEvents> {
  /** The authenticated peer. */
  readonly peer: ChannelPeer;
  #socket: net.Socket;
  #decoder: FrameDecoder;
  #encoder: FrameEncoder;
  #bytesSent: number;
  #bytesReceived: number;
  #closed = false;
  #started = false;
  #pendingClose: [string, Error | undefined] | undefined;
  #linger: NodeJS.Timeout | undefined;
  #side: 'server' | 'client';
  #handingOver = false;
  #onViolation: ((reason: string, error: ProtocolError) => void) | undefined;

  /** @internal */
  constructor(init: ChannelInit) {
    super();
    const { socket, established, remote } = init;
    this.#socket = socket;
    this.#decoder = established.decoder;
    this.#encoder = established.encoder;
    this.#bytesSent = established.bytesSent;
    this.#bytesReceived = established.bytesReceived;
    this.#side = init.side;
    this.#onViolation = init.onViolation;
    this.peer = Object.freeze({ ...established.result.peer, remote });
    socket.on('error', (err) => this.#terminate(`connection error: ${err.message}`, socketError(err, `with ${remote}`)));
    socket.on('end', () => this.#onPeerGone());
    socket.on('close', () => {
      clearTimeout(this.#linger);
      this.#onPeerGone();
    });
    socket.on('drain', () => {
      if (!this.#closed) this.emit('drain');
    });
    // Delivery starts after the caller has had this turn to attach listeners (see the class comment).
    setImmediate(() => this.#start());
  }

  /** Bytes written to the connection by this side, handshake included (before TLS). */
  get bytesSent(): number {
    return this.#bytesSent;
  }

  /** Bytes read from the connection, handshake included (after TLS). */
  get bytesReceived(): number {
    return this.#bytesReceived;
  }

  /** True while the socket's write buffer is above its high-water mark: wait for 'drain' before sending more. */
  get congested(): boolean {
    return !this.#closed && this.#socket.writableNeedDrain;
  }

  /** True once the channel is closed or closing; `send` then does nothing. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sends one message. Returns false when the socket's write buffer is above its high-water mark
   * (the message is still queued: wait for 'drain' before sending more), and false without sending
   * when the channel is closed. Sending a BYE closes the channel, as {@link close} does.
   * Throws ProtocolError (MALFORMED, OVERSIZED) for a message that cannot be encoded.
   */
  send(message: Message): boolean {
    if (this.#closed) return false;
    if (message.type === 'bye') {
      this.close(message.reason);
      return false;
    }
    const { code, payload } = encodeMessage(message);
    return this.#write(code, payload);
  }

  /**
   * Sends log batches as one LOG frame without copying them: header, `batches` and trailer go to the
   * socket as three writes in one cork. The bytes are referenced until the socket has written them, so
   * they must not be overwritten before then (before 'drain' when this returned false).
   */
  sendLog(batches: Uint8Array): boolean {
    if (this.#closed) return false;
    if (!(batches instanceof Uint8Array) || batches.length === 0) {
      throw new ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED', 'cannot encode LOG: batches must be a non-empty Uint8Array');
    }
    return this.#write(MessageType.LOG, batches);
  }

  /**
   * Whether the connection can be handed to native code: an open channel over plain TCP (TLS keeps the
   * JavaScript path) on a platform that exposes the socket's descriptor.
   */
  get canHandOver(): boolean {
    return !this.#closed && !(this.#socket instanceof tls.TLSSocket) && typeof socketFd(this.#socket) === 'number' &&
      this.#decoder.trailer.kind === 'hmac' && this.#encoder.trailer.kind === 'hmac';
  }

  /**
   * Hands the connection over to native code once everything sent so far has left (the socket's write
   * buffer is empty): `take` gets the state and must duplicate the descriptor before it returns. The
   * channel is then closed without a BYE and without a 'close' event; the connection lives on in the
   * duplicate. Resolves false (nothing handed over) when {@link canHandOver} is false or the channel
   * closed meanwhile. If `take` throws, the channel closes with that error and the promise rejects.
   */
  async handOver(take: (state: ChannelHandOver) => void): Promise<boolean> {
    // Also before delivery started (#start): frames the handshake's decoder already holds go along.
    if (!this.canHandOver || this.#handingOver) return false;
    const dec = this.#decoder.trailer;
    const enc = this.#encoder.trailer;
    if (dec.kind !== 'hmac' || enc.kind !== 'hmac') return false;
    const s = this.#socket;
    // JavaScript reads no further frame from here on (a 'message' listener calling this may be inside
    // #pump): what the decoder holds in part goes over, and so does whatever the socket reads meanwhile.
    this.#handingOver = true;
    s.pause();
    s.removeAllListeners('data');
    const parts: Uint8Array[] = [this.#decoder.takeUnread()];
    while (s.writableLength > 0 && !this.#closed) {
      await new Promise<void>((resolve) => {
        const done = () => {
          s.off('drain', done);
          s.off('close', done);
          resolve();
        };
        s.on('drain', done);
        s.on('close', done);
      });
    }
    if (this.#closed || s.destroyed) return false;
    // read() emits 'data' too; nobody listens any more.
    for (let chunk = s.read() as Buffer | null; chunk !== null; chunk = s.read() as Buffer | null) {
      this.#bytesReceived += chunk.length;
      parts.push(chunk);
    }
    const state: ChannelHandOver = {
      fd: socketFd(s)!,
      sendKey: enc.key.export(),
      recvKey: dec.key.export(),
      sendSequence: BigInt(this.#encoder.nextSequence),
      recvSequence: BigInt(this.#decoder.expectedSequence),
      maxPayload: this.#decoder.maxPayloadBytes,
      leftover: Buffer.concat(parts),
    };
    try {
      take(state);
    } catch (err) {
      this.#terminate(`the hand-over to native code failed: ${(err as Error).message}`, err as Error);
      throw err;
    } finally {
      state.sendKey.fill(0);
      state.recvKey.fill(0);
    }
    // The connection lives on in take's duplicate: closing this descriptor sends nothing to the peer.
    this.#closed = true;
    for (const ev of ['error', 'end', 'close', 'drain'] as const) s.removeAllListeners(ev);
    s.on('error', () => {});
    s.destroy();
    return true;
  }

  /** Closes the channel: sends a BYE with `reason`, ends the connection, and emits 'close' (reason). Idempotent. */
  close(reason: string): void {
    if (this.#closed) return;
    this.#finish(String(reason), undefined, true);
  }

  #write(code: number, payload: Uint8Array): boolean {
    const f = this.#encoder.encode(code, payload);
    const s = this.#socket;
    this.#bytesSent += f.header.length + f.payload.length + f.trailer.length;
    // One cork: the three pieces leave in one writev, and the payload is never joined to the header.
    s.cork();
    s.write(f.header);
    s.write(f.payload);
    const ok = s.write(f.trailer);
    s.uncork();
    return ok;
  }

  #start(): void {
    this.#started = true;
    if (this.#pendingClose) {
      const [reason, error] = this.#pendingClose;
      this.#pendingClose = undefined;
      this.#emitClose(reason, error);
      return;
    }
    if (this.#closed) return;
    this.#socket.on('data', (chunk: Buffer) => {
      this.#bytesReceived += chunk.length;
      if (this.#closed) return;
      this.#decoder.push(chunk);
      this.#pump();
    });
    this.#pump(); // frames that arrived with the end of the handshake
    this.#socket.resume();
  }

  #pump(): void {
    while (!this.#closed && !this.#handingOver) {
      let message: Message;
      try {
        const frame = this.#decoder.next();
        if (!frame) return;
        message = decodeMessage(frame.type, frame.payload);
      } catch (err) {
        const error = err instanceof ProtocolError ? err : new ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED', String(err), { cause: err });
        this.#terminate(error.message, error);
        this.#onViolation?.(error.message, error);
        protocolDiagnostics.rejected.publish({ side: this.#side, stage: 'established', remote: this.peer.remote, reason: error.message, error } satisfies RejectedDiagnostic);
        return;
      }
      this.emit('message', message);
      if (message.type === 'bye') {
        this.#finish(`the peer closed the channel: ${message.reason}`, undefined, false);
        return;
      }
    }
  }

  #onPeerGone(): void {
    if (this.#closed) return;
    this.#finish(
      'the peer closed the connection without BYE',
      new ProtocolError('ERR_LOCKSTEP_PROTOCOL_CLOSED', `${this.peer.role} ${this.peer.remote} closed the connection without BYE`),
      false,
    );
  }

  /** Closes for a failure: tells an authenticated peer why (BYE), then ends the connection. */
  #terminate(reason: string, error: Error): void {
    if (this.#closed) return;
    this.#finish(reason, error, true);
  }

  #finish(reason: string, error: Error | undefined, sayBye: boolean): void {
    this.#closed = true;
    const s = this.#socket;
    if (sayBye && s.writable) {
      try {
        const bytes = Buffer.from(reason, 'utf8');
        // A reason over the BYE limit is cut at a character boundary, not refused.
        const text = bytes.length > 1024 ? new TextDecoder().decode(bytes.subarray(0, 1021)).replace(/\uFFFD$/, '') + '…' : reason;
        const { code, payload } = encodeMessage({ type: 'bye', reason: text });
        this.#write(code, payload);
      } catch {
        // Nothing more to tell the peer; the connection ends anyway.
      }
    }
    if (!s.destroyed) {
      s.end();
      this.#linger = setTimeout(() => s.destroy(), CLOSE_LINGER_MS);
    }
    if (this.#started) this.#emitClose(reason, error);
    else this.#pendingClose = [reason, error];
  }

  #emitClose(reason: string, error: Error | undefined): void {
    protocolDiagnostics.closed.publish({
      remote: this.peer.remote,
      peer: this.peer,
      reason,
      error,
      bytesSent: this.#bytesSent,
      bytesReceived: this.#bytesReceived,
    } satisfies ClosedDiagnostic);
    // Deferred: close() is often called from inside a 'message' listener.
    process.nextTick(() => this.emit('close', reason, error));
  }
}

/** The descriptor under a plain TCP socket (undefined where the platform does not expose it). */
function socketFd(s: net.Socket): number | undefined {
  const fd = (s as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * Connects to a {@link ChannelServer} and authenticates both ways. Resolves with the established
 * channel; rejects with a ProtocolError (`ERR_LOCKSTEP_PROTOCOL_*`: TIMEOUT, AUTH, VERSION, PEER, TLS,
 * CLOSED, MALFORMED…), with an OptionError for bad options, or with `signal.reason` when aborted.
 * The whole connect (TCP, TLS, PSK handshake) is bounded by `handshakeTimeoutMs`.
 */
export function connectChannel(options: ChannelOptions & { host: string; port: number; signal?: AbortSignal }): Promise<Channel> {
  let o: ResolvedOptions;
  try {
    o = resolveOptions(options);
    if (typeof options.host !== 'string' || options.host === '') throw new OptionError('host', 'must be a non-empty string');
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) throw new OptionError('port', `must be an integer in [1, 65535], got ${String(options.port)}`);
  } catch (err) {
    return Promise.reject(err);
  }
  const { host, port, signal } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  const deadline = performance.now() + o.handshakeTimeoutMs;
  const target = `${host}:${port}`;
  return new Promise<Channel>((resolve, reject) => {
    let settled = false;
    const raw = net.connect({ host, port, noDelay: true });
    raw.setNoDelay(true);
    let socket: net.Socket = raw;
    if (o.tls) {
      socket = tls.connect({
        socket: raw,
        host,
        ...(net.isIP(host) === 0 ? { servername: host } : {}),
        cert: o.tls.cert,
        key: o.tls.key,
        ca: o.tls.ca,
        rejectUnauthorized: true,
      });
    }
    const settle = (err: unknown, channel?: Channel) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', onConnectError);
      if (channel) return resolve(channel);
      socket.on('error', () => undefined);
      socket.destroy();
      raw.destroy();
      publishClientRejection(target, err);
      reject(err);
    };
    const onAbort = () => settle(signal!.reason);
    const onConnectError = (err: Error) => settle(socketError(err, `connecting to ${target}`));
    const timer = setTimeout(() => {
      settle(new ProtocolError('ERR_LOCKSTEP_PROTOCOL_TIMEOUT', `could not connect${o.tls ? ' (TLS)' : ''} to ${target} within ${o.handshakeTimeoutMs} ms`));
    }, o.handshakeTimeoutMs);
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('error', onConnectError);
    socket.once(o.tls ? 'secureConnect' : 'connect', () => {
      if (settled) return;
      clearTimeout(timer);
      socket.off('error', onConnectError);
      runHandshake(socket, o, 'initiator', deadline).then(
        (established) => {
          if (settled) {
            socket.destroy();
            return;
          }
          settle(undefined, new Channel({ socket, established, remote: socket.remoteAddress === undefined ? target : remoteOf(socket), side: 'client' }));
        },
        (err: unknown) => settle(err),
      );
    });
  });
}

function publishClientRejection(remote: string, err: unknown): void {
  if (err instanceof ProtocolError && protocolDiagnostics.rejected.hasSubscribers) {
    protocolDiagnostics.rejected.publish({ side: 'client', stage: 'handshake', remote, reason: err.message, error: err } satisfies RejectedDiagnostic);
  }
}

/**
 * Accepts logging channels: authenticates each connection and emits 'channel' for the good ones and
 * 'rejected' (reason, remote, error) for the rest, and for established channels it closes because the
 * peer broke the protocol. Over TLS the server requires and verifies client certificates.
 *
 * ```ts
 * const server = new ChannelServer({ key, vmId: 'vm1', role: 'primary' });
 * server.on('channel', (ch) => ch.on('message', (m) => handle(ch, m)));
 * server.on('rejected', (reason, remote) => log.warn({ remote }, reason));
 * const { port } = await server.listen(7000);
 * ```
 */
export class ChannelServer extends EventEmitter<ChannelServerEvents> {
  #o: ResolvedOptions;
  #server: net.Server;
  #sockets = new Set<net.Socket>();
  #channels = new Set<Channel>();
  /** Connection start times by remote address, so the TLS handshake counts against the deadline. */
  #started = new Map<string, number>();
  #closing = false;
  /** Rejects a listen() still under way (set while one is). */
  #abortListen: (() => void) | undefined;

  /** Validates the options (throws OptionError); does not listen yet. */
  constructor(options: ChannelOptions) {
    super();
    this.#o = resolveOptions(options);
    const o = this.#o;
    if (o.tls) {
      const server = tls.createServer({
        cert: o.tls.cert,
        key: o.tls.key,
        ca: o.tls.ca,
        requestCert: true,
        rejectUnauthorized: true,
        handshakeTimeout: o.handshakeTimeoutMs,
      });
      server.on('secureConnection', (socket: tls.TLSSocket) => this.#accept(socket));
      server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
        if (this.#closing) return;
        // A refused client certificate is destroyed quietly by node:tls (the error is a bare "socket
        // hang up"); the verification failure itself is in authorizationError.
        const why = socket.authorizationError;
        const error = why
          ? new ProtocolError('ERR_LOCKSTEP_PROTOCOL_TLS', `TLS client certificate refused: ${String(why)}`, { cause: err })
          : socketError(err, 'with a client');
        this.#reject(error.message, remoteOf(socket), error);
      });
      this.#server = server;
    } else {
      this.#server = net.createServer((socket) => this.#accept(socket));
    }
    this.#server.on('connection', (raw: net.Socket) => {
      raw.setNoDelay(true);
      if (this.#closing) {
        raw.destroy();
        return;
      }
      const key = remoteOf(raw);
      this.#started.set(key, performance.now());
      this.#sockets.add(raw);
      raw.on('close', () => {
        this.#sockets.delete(raw);
        this.#started.delete(key);
      });
    });
  }

  /**
   * Starts listening (port 0: any free port; host default: all interfaces). Resolves with the bound
   * address; rejects (ERR_LOCKSTEP_PROTOCOL_CLOSED) when the server is closed first — before or while
   * the listen is under way — so a caller never waits on a server that will not listen.
   */
  listen(port = 0, host?: string): Promise<{ port: number; host: string }> {
    const where = `${host ?? '*'}:${port}`;
    return new Promise((resolve, reject) => {
      if (this.#closing) return reject(new ProtocolError('ERR_LOCKSTEP_PROTOCOL_CLOSED', `cannot listen on ${where}: the server is closed`));
      const onError = (err: Error) => {
        this.#abortListen = undefined;
        reject(new ProtocolError('ERR_LOCKSTEP_PROTOCOL_CLOSED', `cannot listen on ${where}: ${err.message}`, { cause: err }));
      };
      this.#server.once('error', onError);
      this.#abortListen = () => {
        this.#server.off('error', onError);
        reject(new ProtocolError('ERR_LOCKSTEP_PROTOCOL_CLOSED', `cannot listen on ${where}: the server was closed while it started listening`));
      };
      this.#server.listen(port, host, () => {
        this.#server.off('error', onError);
        // A close() that came first has rejected already: the port it got now is given back at once.
        if (this.#closing) return void this.#server.close();
        this.#abortListen = undefined;
        const a = this.#server.address() as net.AddressInfo;
        resolve({ port: a.port, host: a.address });
      });
    });
  }

  /**
   * Authenticates connections that begin their handshake from now on with `key` (at least 16 bytes;
   * copied) instead of the key this server was made with; established channels keep theirs. A primary
   * with FT off takes a key made for one live migration this way (FtPrimary.migrate).
   */
  rekey(key: Uint8Array): void {
    this.#o = { ...this.#o, key: importKey(key) };
  }

  /** The established channels that are still open. */
  get channels(): ReadonlySet<Channel> {
    return this.#channels;
  }

  /**
   * Stops accepting, closes every channel (BYE 'server closing') and drops every connection still in its
   * handshake. Resolves when every connection is closed.
   */
  async close(): Promise<void> {
    this.#closing = true;
    this.#abortListen?.();
    this.#abortListen = undefined;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const ch of this.#channels) ch.close('server closing');
    const all = [...this.#sockets];
    const pending = all.filter((s) => !s.destroyed);
    const linger = setTimeout(() => {
      for (const s of this.#sockets) s.destroy();
    }, CLOSE_LINGER_MS);
    // Connections without an established channel have nobody to say goodbye to.
    for (const s of pending) if (![...this.#channels].some((c) => c.peer.remote === remoteOf(s))) s.destroy();
    await closed;
    clearTimeout(linger);
  }

  #accept(socket: net.Socket): void {
    const remote = remoteOf(socket);
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const start = this.#started.get(remote) ?? performance.now();
    runHandshake(socket, this.#o, 'responder', start + this.#o.handshakeTimeoutMs).then(
      (established) => {
        if (this.#closing) {
          socket.destroy();
          return;
        }
        const ch = new Channel({
          socket,
          established,
          remote,
          side: 'server',
          onViolation: (reason, error) => this.emit('rejected', reason, remote, error),
        });
        this.#channels.add(ch);
        ch.once('close', () => this.#channels.delete(ch));
        this.emit('channel', ch);
      },
      (err: unknown) => {
        if (this.#closing) return;
        const error = err instanceof ProtocolError ? err : new ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED', String(err), { cause: err });
        this.#reject(error.message, remote, error);
      },
    );
  }

  #reject(reason: string, remote: string, error: ProtocolError): void {
    protocolDiagnostics.rejected.publish({ side: 'server', stage: 'handshake', remote, reason, error } satisfies RejectedDiagnostic);
    this.emit('rejected', reason, remote, error);
  }
}

export { ProtocolError } from './errors.js';
export type { ProtocolErrorCode } from './errors.js';
