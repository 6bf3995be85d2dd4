// Mutual authentication of the logging channel: version negotiation, the pre-shared-key
// challenge/response over fresh nonces, and the session keys. Sans-IO: frames in, payloads out; the
// socket lives in channel.ts. Every secret comparison is constant-time.
import { createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { OptionError } from '../errors.js';
import { ProtocolError } from './errors.js';
import type { Frame } from './frame.js';
import {
  MessageType,
  NONCE_BYTES,
  decodeAuth,
  decodeHello,
  encodeAuth,
  encodeHello,
  isApplicationType,
  type Hello,
  type Role,
} from './messages.js';

/**
 * The protocol version this build speaks best. 2: a recorded clock read may have no record (the clock
 * advances in steps; see MachineOptions.clockStepUs), which a version-1 secondary would take for a
 * divergence. 3: LOG frames carry compact (log format 3) batches, which a version-2 secondary cannot read.
 * 4: records may carry the clock and count it in steps (log format 4), which a version-3 secondary refuses.
 */
export const PROTOCOL_VERSION = 4;
/** The oldest protocol version this build still speaks (the recorder writes only log format 4). */
export const MIN_PROTOCOL_VERSION = 4;
/** Shortest pre-shared key accepted, in bytes. */
export const MIN_KEY_BYTES = 16;

/*
 * Handshake (I = the side that connected, R = the side that accepted). Sequence numbers count per
 * direction; HELLO and AUTH frames carry a CRC32C trailer, everything after them an HMAC.
 *
 *   I                                                        R
 *   │── HELLO #0 {role, vmId, min..max, epoch, nonceI} ────►│  R answers any well-formed HELLO,
 *   │◄──────────── HELLO #0 {role, vmId, min..max, epoch, nonceR} ── so I can name both ranges
 *   │   both: version = highest common; vmIds equal; roles differ; else close with the reason
 *   │── AUTH #1 {HMAC(K, "lockstep proof initiator" ‖ nonceI ‖ nonceR ‖ T)} ──►│
 *   │                                   R verifies; on failure closes without a word
 *   │◄── AUTH #1 {HMAC(K, "lockstep proof responder" ‖ nonceI ‖ nonceR ‖ T)} ──│  R: established
 *   │   I verifies: established
 *   │◄═══════ frames #2, 3, … sealed with HMAC(keyR→I) ════════ / ═══ HMAC(keyI→R) ═══►│
 *
 *   T (transcript) = u32 len ‖ HELLO_I payload ‖ u32 len ‖ HELLO_R payload ‖ u8 len ‖ TLS binding
 *   S (session key) = HMAC(K, "lockstep session" ‖ nonceI ‖ nonceR)
 *   keyI→R = HMAC(S, "lockstep mac initiator"), keyR→I = HMAC(S, "lockstep mac responder")
 *
 * Fresh nonces make every proof and session key single-use, so a captured handshake replayed to R fails
 * at R's check of I's proof. The proofs cover both HELLOs as each side saw them, so a tampered version
 * range (a downgrade) fails too. Direction keys stop a frame from being reflected back to its sender.
 */

/** Which end of the TCP connection a side is. */
export type HandshakeSide = 'initiator' | 'responder';

/** The TLS exporter label whose keying material binds the PSK handshake to the TLS session. */
export const TLS_BINDING_LABEL = 'EXPORTER-lockstep-channel-binding';
/** Bytes of TLS keying material in the transcript. */
export const TLS_BINDING_BYTES = 32;

const LABEL_PROOF = { initiator: 'lockstep proof initiator', responder: 'lockstep proof responder' } as const;
const LABEL_SESSION = 'lockstep session';
const LABEL_MAC = { initiator: 'lockstep mac initiator', responder: 'lockstep mac responder' } as const;

/**
 * Checks a pre-shared key and wraps a private copy of it. Throws OptionError
 * (`ERR_LOCKSTEP_OPTION_INVALID`, field `key`) when it is not a Uint8Array of at least 16 bytes.
 */
export function importKey(key: unknown): KeyObject {
  if (!(key instanceof Uint8Array)) throw new OptionError('key', 'the pre-shared key must be a Uint8Array (e.g. crypto.randomBytes(32))');
  if (key.length < MIN_KEY_BYTES) {
    throw new OptionError('key', `the pre-shared key is ${key.length} bytes; it must be at least ${MIN_KEY_BYTES} (32 random bytes recommended)`);
  }
  return createSecretKey(Buffer.from(key));
}

/** The highest version in both ranges, or null when they do not overlap. */
export function negotiateVersion(a: { minVersion: number; maxVersion: number }, b: { minVersion: number; maxVersion: number }): number | null {
  const hi = Math.min(a.maxVersion, b.maxVersion);
  return hi >= Math.max(a.minVersion, b.minVersion) ? hi : null;
}

/** The transcript both proofs cover (see the diagram above). */
export function transcript(initiatorHello: Uint8Array, responderHello: Uint8Array, tlsBinding?: Uint8Array): Buffer {
  const binding = tlsBinding ?? new Uint8Array(0);
  if (binding.length > 255) throw new RangeError('TLS binding longer than 255 bytes');
  const out = Buffer.allocUnsafe(4 + initiatorHello.length + 4 + responderHello.length + 1 + binding.length);
  let at = out.writeUInt32BE(initiatorHello.length, 0);
  out.set(initiatorHello, at);
  at = out.writeUInt32BE(responderHello.length, at + initiatorHello.length);
  out.set(responderHello, at);
  at = out.writeUInt8(binding.length, at + responderHello.length);
  out.set(binding, at);
  return out;
}

/** The proof `side` sends: HMAC(key, label(side) ‖ nonceI ‖ nonceR ‖ transcript). */
export function computeProof(key: KeyObject, side: HandshakeSide, nonceI: Uint8Array, nonceR: Uint8Array, transcriptBytes: Uint8Array): Buffer {
  return createHmac('sha256', key).update(LABEL_PROOF[side]).update(nonceI).update(nonceR).update(transcriptBytes).digest();
}

/** Session key and per-direction frame keys of one connection. */
export interface SessionKeys {
  /** HMAC(K, "lockstep session" ‖ nonceI ‖ nonceR). */
  session: Buffer;
  /** Seals frames the initiator sends. */
  initiatorToResponder: KeyObject;
  /** Seals frames the responder sends. */
  responderToInitiator: KeyObject;
}

/** Derives the session key and the two direction keys from the pre-shared key and both nonces. */
export function deriveSessionKeys(key: KeyObject, nonceI: Uint8Array, nonceR: Uint8Array): SessionKeys {
  const session = createHmac('sha256', key).update(LABEL_SESSION).update(nonceI).update(nonceR).digest();
  const direction = (side: HandshakeSide) => createSecretKey(createHmac('sha256', session).update(LABEL_MAC[side]).digest());
  return { session, initiatorToResponder: direction('initiator'), responderToInitiator: direction('responder') };
}

/** What this side announces in its HELLO (the nonce is drawn fresh per handshake). */
export interface LocalIdentity {
  role: Role;
  vmId: string;
  epoch: number;
  minVersion?: number;
  maxVersion?: number;
}

/** The peer as authenticated by a completed handshake. */
export interface AuthenticatedPeer {
  role: Role;
  vmId: string;
  /** The negotiated protocol version. */
  version: number;
  /** The epoch the peer announced. */
  epoch: number;
}

/** A completed handshake: who the peer is and the keys for the frames that follow. */
export interface HandshakeResult {
  peer: AuthenticatedPeer;
  /** Seals the frames this side sends. */
  sendKey: KeyObject;
  /** Verifies the frames this side receives. */
  receiveKey: KeyObject;
}

/** A handshake message for the driver to frame (sequence numbers and trailer are the driver's). */
export interface Outgoing {
  code: number;
  payload: Uint8Array;
}

/** What one received frame did to the handshake. */
export interface HandshakeStep {
  /** Frames to send now, in order, before acting on `error` or `result`. */
  send: Outgoing[];
  /** The handshake failed: send `send`, then close with this. */
  error?: ProtocolError;
  /** The handshake completed. */
  result?: HandshakeResult;
}

/**
 * The handshake of one connection as a state machine over frames (no I/O). The driver calls
 * {@link start}, sends what it returns, then feeds each received frame to {@link receive} until it
 * reports an error or a result. It never returns a result without having verified the peer's proof.
 */
export class Handshake {
  readonly side: HandshakeSide;
  #key: KeyObject;
  #local: Required<LocalIdentity>;
  #tlsBinding: Uint8Array | undefined;
  #nonce: Buffer;
  #state: 'new' | 'await-hello' | 'await-auth' | 'done' | 'failed' = 'new';
  #helloI: Uint8Array | undefined;
  #helloR: Uint8Array | undefined;
  #nonceI: Uint8Array | undefined;
  #nonceR: Uint8Array | undefined;
  #peer: AuthenticatedPeer | undefined;

  constructor(options: { side: HandshakeSide; key: KeyObject; local: LocalIdentity; tlsBinding?: Uint8Array; nonce?: Uint8Array }) {
    this.side = options.side;
    this.#key = options.key;
    this.#local = {
      minVersion: MIN_PROTOCOL_VERSION,
      maxVersion: PROTOCOL_VERSION,
      ...options.local,
    };
    this.#tlsBinding = options.tlsBinding;
    this.#nonce = options.nonce ? Buffer.from(options.nonce) : randomBytes(NONCE_BYTES);
  }

  /** Where the handshake stands: waiting for the peer's HELLO, for its AUTH, done, or failed. */
  get state(): 'new' | 'await-hello' | 'await-auth' | 'done' | 'failed' {
    return this.#state;
  }

  /** The frames to send on connect: the initiator's HELLO; nothing for the responder. */
  start(): Outgoing[] {
    if (this.#state !== 'new') throw new Error('Handshake.start() called twice');
    this.#state = 'await-hello';
    if (this.side === 'responder') return [];
    this.#helloI = this.#myHello();
    this.#nonceI = this.#nonce;
    return [{ code: MessageType.HELLO, payload: this.#helloI }];
  }

  /** Feeds one received (CRC-verified) frame. */
  receive(frame: Frame): HandshakeStep {
    try {
      return this.#receive(frame);
    } catch (err) {
      this.#state = 'failed';
      if (err instanceof ProtocolError) return { send: [], error: err };
      throw err;
    }
  }

  #myHello(): Uint8Array {
    return encodeHello({ ...this.#local, nonce: this.#nonce });
  }

  #receive(frame: Frame): HandshakeStep {
    const expected = this.#state === 'await-hello' ? MessageType.HELLO : this.#state === 'await-auth' ? MessageType.AUTH : -1;
    if (expected < 0) throw new ProtocolError('ERR_LOCKSTEP_PROTOCOL_MALFORMED', `handshake frame received in state ${this.#state}`);
    if (frame.type !== expected) {
      if (isApplicationType(frame.type)) {
        throw new ProtocolError(
          'ERR_LOCKSTEP_PROTOCOL_AUTH',
          `message type 0x${frame.type.toString(16)} before authentication completed; expected ${expected === MessageType.HELLO ? 'HELLO' : 'AUTH'}`,
        );
      }
      throw new ProtocolError(
        'ERR_LOCKSTEP_PROTOCOL_MALFORMED',
        `frame type 0x${frame.type.toString(16)} during the handshake; expected ${expected === MessageType.HELLO ? 'HELLO' : 'AUTH'}`,
      );
    }
    return expected === MessageType.HELLO ? this.#onHello(frame.payload) : this.#onAuth(frame.payload);
  }

  #onHello(payload: Uint8Array): HandshakeStep {
    const hello = decodeHello(payload);
    const send: Outgoing[] = [];
    if (this.side === 'responder') {
      this.#helloI = Buffer.from(payload);
      this.#nonceI = Buffer.from(hello.nonce);
      this.#helloR = this.#myHello();
      this.#nonceR = this.#nonce;
      // Answered before judging, so the initiator learns both ranges and both identities.
      send.push({ code: MessageType.HELLO, payload: this.#helloR });
    } else {
      this.#helloR = Buffer.from(payload);
      this.#nonceR = Buffer.from(hello.nonce);
    }
    const error = this.#judge(hello);
    if (error) {
      this.#state = 'failed';
      return { send, error };
    }
    if (this.side === 'initiator') send.push({ code: MessageType.AUTH, payload: encodeAuth(this.#proof('initiator')) });
    this.#state = 'await-auth';
    return { send };
  }

  #judge(hello: Hello): ProtocolError | undefined {
    const mine = `${this.#local.minVersion}..${this.#local.maxVersion}`;
    const theirs = `${hello.minVersion}..${hello.maxVersion}`;
    const version = negotiateVersion(this.#local, hello);
    if (version === null) {
      return new ProtocolError(
        'ERR_LOCKSTEP_PROTOCOL_VERSION',
        `no common protocol version: the peer (${hello.role} ${JSON.stringify(hello.vmId)}) speaks ${theirs}, this side speaks ${mine}; upgrade the older side`,
      );
    }
    if (hello.vmId !== this.#local.vmId) {
      return new ProtocolError(
        'ERR_LOCKSTEP_PROTOCOL_PEER',
        `the peer is for VM ${JSON.stringify(hello.vmId)}, this side is for VM ${JSON.stringify(this.#local.vmId)}; check the address and vmId`,
      );
    }
    if (hello.role === this.#local.role) {
      return new ProtocolError(
        'ERR_LOCKSTEP_PROTOCOL_PEER',
        `both sides are ${hello.role} of VM ${JSON.stringify(hello.vmId)}; a channel joins a primary and a secondary`,
      );
    }
    if (timingSafeEqual(hello.nonce, this.#nonce)) {
      return new ProtocolError('ERR_LOCKSTEP_PROTOCOL_AUTH', 'the peer echoed this side\'s own nonce: a reflected handshake');
    }
    this.#peer = { role: hello.role, vmId: hello.vmId, version, epoch: hello.epoch };
    return undefined;
  }

  #proof(side: HandshakeSide): Buffer {
    const t = transcript(this.#helloI!, this.#helloR!, this.#tlsBinding);
    return computeProof(this.#key, side, this.#nonceI!, this.#nonceR!, t);
  }

  #onAuth(payload: Uint8Array): HandshakeStep {
    const proof = decodeAuth(payload);
    const peerSide: HandshakeSide = this.side === 'initiator' ? 'responder' : 'initiator';
    if (!timingSafeEqual(proof, this.#proof(peerSide))) {
      throw new ProtocolError(
        'ERR_LOCKSTEP_PROTOCOL_AUTH',
        `the ${peerSide}'s proof does not verify: it holds another pre-shared key, replayed an old handshake, or the HELLOs were tampered with`,
      );
    }
    const send: Outgoing[] = this.side === 'responder' ? [{ code: MessageType.AUTH, payload: encodeAuth(this.#proof('responder')) }] : [];
    const keys = deriveSessionKeys(this.#key, this.#nonceI!, this.#nonceR!);
    this.#state = 'done';
    const [sendKey, receiveKey] = this.side === 'initiator'
      ? [keys.initiatorToResponder, keys.responderToInitiator]
      : [keys.responderToInitiator, keys.initiatorToResponder];
    return { send, result: { peer: this.#peer!, sendKey, receiveKey } };
  }
}
