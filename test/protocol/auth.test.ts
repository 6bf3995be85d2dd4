// The handshake state machine without sockets: both sides agree on keys and peer identity; a wrong key,
// a replayed or tampered handshake, a version, vmId or role mismatch fails with the right code.
import { createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LockstepError } from '../../src/errors.js';
import {
  Handshake,
  MIN_KEY_BYTES,
  MIN_PROTOCOL_VERSION,
  PROTOCOL_VERSION,
  deriveSessionKeys,
  importKey,
  negotiateVersion,
  computeProof,
  transcript,
  type HandshakeResult,
  type LocalIdentity,
  type Outgoing,
} from '../../src/protocol/auth.js';
import type { ProtocolError } from '../../src/protocol/errors.js';
import type { Frame } from '../../src/protocol/frame.js';
import { MessageType, decodeHello, encodeHello } from '../../src/protocol/messages.js';

const KEY = importKey(Buffer.alloc(32, 0xab));
const primary: LocalIdentity = { role: 'primary', vmId: 'vm1', epoch: 3 };
const secondary: LocalIdentity = { role: 'secondary', vmId: 'vm1', epoch: 4 };

function frames(out: Outgoing[], seq: { n: number }): Frame[] {
  return out.map((o) => ({ type: o.code, flags: 0, sequence: seq.n++, payload: o.payload }));
}

interface Outcome {
  initiator?: HandshakeResult;
  responder?: HandshakeResult;
  initiatorError?: ProtocolError;
  responderError?: ProtocolError;
  /** Every frame the initiator sent, in order (for replay tests). */
  fromInitiator: Frame[];
}

/** Runs a handshake to completion by handing each side's frames to the other. */
function run(i: Handshake, r: Handshake, tamper?: (f: Frame, from: 'initiator' | 'responder') => Frame): Outcome {
  const out: Outcome = { fromInitiator: [] };
  const seqI = { n: 0 };
  const seqR = { n: 0 };
  let toR = frames(i.start(), seqI);
  let toI = frames(r.start(), seqR);
  for (let round = 0; round < 10 && (toR.length || toI.length); round++) {
    const nextToI: Frame[] = [];
    const nextToR: Frame[] = [];
    for (const f0 of toR) {
      out.fromInitiator.push(f0);
      const f = tamper ? tamper(f0, 'initiator') : f0;
      const step = r.receive(f);
      nextToI.push(...frames(step.send, seqR));
      if (step.error) out.responderError = step.error;
      if (step.result) out.responder = step.result;
    }
    for (const f0 of toI) {
      const f = tamper ? tamper(f0, 'responder') : f0;
      const step = i.receive(f);
      nextToR.push(...frames(step.send, seqI));
      if (step.error) out.initiatorError = step.error;
      if (step.result) out.initiator = step.result;
    }
    toI = out.initiatorError || out.responderError ? nextToI.filter((f) => f.type === MessageType.HELLO) : nextToI;
    toR = out.initiatorError || out.responderError ? [] : nextToR;
  }
  return out;
}

function sides(opts?: { keyI?: KeyObject; keyR?: KeyObject; i?: Partial<LocalIdentity>; r?: Partial<LocalIdentity>; tlsI?: Uint8Array; tlsR?: Uint8Array }) {
  const i = new Handshake({ side: 'initiator', key: opts?.keyI ?? KEY, local: { ...secondary, ...opts?.i }, ...(opts?.tlsI ? { tlsBinding: opts.tlsI } : {}) });
  const r = new Handshake({ side: 'responder', key: opts?.keyR ?? KEY, local: { ...primary, ...opts?.r }, ...(opts?.tlsR ? { tlsBinding: opts.tlsR } : {}) });
  return { i, r };
}

function keyBytes(k: KeyObject): string {
  return k.export().toString('hex');
}

describe('handshake', () => {
  it('both sides authenticate each other and agree on the version, identities and direction keys', () => {
    const { i, r } = sides();
    const o = run(i, r);
    expect(o.initiatorError).toBeUndefined();
    expect(o.responderError).toBeUndefined();
    expect(o.initiator!.peer).toEqual({ role: 'primary', vmId: 'vm1', version: PROTOCOL_VERSION, epoch: 3 });
    expect(o.responder!.peer).toEqual({ role: 'secondary', vmId: 'vm1', version: PROTOCOL_VERSION, epoch: 4 });
    expect(keyBytes(o.initiator!.sendKey)).toBe(keyBytes(o.responder!.receiveKey));
    expect(keyBytes(o.initiator!.receiveKey)).toBe(keyBytes(o.responder!.sendKey));
    // Direction keys differ, so a frame cannot be reflected back to its sender.
    expect(keyBytes(o.initiator!.sendKey)).not.toBe(keyBytes(o.initiator!.receiveKey));
    expect(o.fromInitiator.map((f) => f.type)).toEqual([MessageType.HELLO, MessageType.AUTH]);
  });

  it('two handshakes with the same key derive different session keys (fresh nonces)', () => {
    const a = run(sides().i, sides().r);
    const b = run(sides().i, sides().r);
    expect(keyBytes(a.initiator!.sendKey)).not.toBe(keyBytes(b.initiator!.sendKey));
  });

  it('a responder with another key refuses the initiator\'s proof, and the initiator never completes', () => {
    const { i, r } = sides({ keyR: importKey(Buffer.alloc(32, 0xcd)) });
    const o = run(i, r);
    expect(o.responderError?.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
    expect(o.responder).toBeUndefined();
    expect(o.initiator).toBeUndefined();
  });

  it('an initiator refuses a responder whose proof was made with another key', () => {
    const i = new Handshake({ side: 'initiator', key: KEY, local: secondary });
    const impostor = new Handshake({ side: 'responder', key: importKey(Buffer.alloc(32, 0xcd)), local: primary });
    const [helloI] = frames(i.start(), { n: 0 });
    impostor.start();
    const [helloR] = frames(impostor.receive(helloI!).send, { n: 0 });
    expect(frames(i.receive(helloR!).send, { n: 1 })[0]!.type).toBe(MessageType.AUTH);
    // The best an impostor can do: the right proof computation with the wrong key.
    const forged = computeProof(importKey(Buffer.alloc(32, 0xcd)), 'responder', helloI!.payload.subarray(14, 46), helloR!.payload.subarray(14, 46), transcript(helloI!.payload, helloR!.payload));
    const step = i.receive({ type: MessageType.AUTH, flags: 0, sequence: 1, payload: forged });
    expect(step.error?.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
    expect(step.error?.message).toMatch(/responder's proof does not verify/);
    expect(step.result).toBeUndefined();
  });

  it('a captured initiator handshake replayed to a new responder fails: the responder\'s nonce is fresh', () => {
    const first = run(sides().i, sides().r);
    expect(first.responder).toBeDefined();
    const r2 = new Handshake({ side: 'responder', key: KEY, local: primary });
    r2.start();
    const [hello, auth] = first.fromInitiator;
    expect(r2.receive(hello!).error).toBeUndefined();
    const step = r2.receive(auth!);
    expect(step.error?.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
    expect(step.result).toBeUndefined();
  });

  it('a HELLO tampered in transit (version range downgraded) fails the proofs', () => {
    const { i, r } = sides();
    const o = run(i, r, (f, from) => {
      if (from !== 'initiator' || f.type !== MessageType.HELLO) return f;
      const h = decodeHello(f.payload);
      return { ...f, payload: encodeHello({ ...h, epoch: 99 }) };
    });
    expect(o.responderError?.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
  });

  it('different TLS channel bindings fail the proofs (a relay between two TLS sessions)', () => {
    const o = run(...Object.values(sides({ tlsI: Buffer.alloc(32, 1), tlsR: Buffer.alloc(32, 2) })) as [Handshake, Handshake]);
    expect(o.responderError?.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
    const ok = run(...Object.values(sides({ tlsI: Buffer.alloc(32, 1), tlsR: Buffer.alloc(32, 1) })) as [Handshake, Handshake]);
    expect(ok.initiator).toBeDefined();
  });

  it('no common version: both sides fail with a reason naming both ranges, the initiator having seen the responder\'s HELLO', () => {
    const [lo, hi] = [PROTOCOL_VERSION + 1, PROTOCOL_VERSION + 2];
    const { i, r } = sides({ i: { minVersion: lo, maxVersion: hi } });
    const o = run(i, r);
    const ours = `${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION}`;
    expect(o.responderError?.code).toBe('ERR_LOCKSTEP_PROTOCOL_VERSION');
    expect(o.responderError?.message).toContain(`${lo}..${hi}`);
    expect(o.responderError?.message).toContain(ours);
    expect(o.initiatorError?.code).toBe('ERR_LOCKSTEP_PROTOCOL_VERSION');
    expect(o.initiatorError?.message.indexOf(ours)).toBeLessThan(o.initiatorError!.message.indexOf(`${lo}..${hi}`));
    expect(negotiateVersion({ minVersion: 1, maxVersion: 4 }, { minVersion: 2, maxVersion: 7 })).toBe(4);
    expect(negotiateVersion({ minVersion: 1, maxVersion: 1 }, { minVersion: 2, maxVersion: 2 })).toBeNull();
  });

  it('negotiates the highest common version', () => {
    const o = run(...Object.values(sides({ i: { minVersion: 1, maxVersion: 5 }, r: { minVersion: 1, maxVersion: 3 } })) as [Handshake, Handshake]);
    expect(o.initiator!.peer.version).toBe(3);
    expect(o.responder!.peer.version).toBe(3);
  });

  it('refuses a peer for another VM, and a peer with the same role', () => {
    const vm = run(...Object.values(sides({ i: { vmId: 'vm2' } })) as [Handshake, Handshake]);
    expect(vm.responderError?.code).toBe('ERR_LOCKSTEP_PROTOCOL_PEER');
    expect(vm.responderError?.message).toContain('"vm2"');
    expect(vm.initiatorError?.code).toBe('ERR_LOCKSTEP_PROTOCOL_PEER');
    const role = run(...Object.values(sides({ i: { role: 'primary' } })) as [Handshake, Handshake]);
    expect(role.responderError?.code).toBe('ERR_LOCKSTEP_PROTOCOL_PEER');
  });

  it('refuses an application message, or AUTH before HELLO, during the handshake', () => {
    const r = new Handshake({ side: 'responder', key: KEY, local: primary });
    r.start();
    expect(r.receive({ type: MessageType.LOG, flags: 0, sequence: 0, payload: Buffer.of(1) }).error?.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
    const r2 = new Handshake({ side: 'responder', key: KEY, local: primary });
    r2.start();
    expect(r2.receive({ type: MessageType.AUTH, flags: 0, sequence: 0, payload: randomBytes(32) }).error?.code).toBe('ERR_LOCKSTEP_PROTOCOL_MALFORMED');
  });

  it('refuses a HELLO that echoes the responder\'s own nonce (reflection)', () => {
    const nonce = randomBytes(32);
    const r = new Handshake({ side: 'responder', key: KEY, local: primary, nonce });
    r.start();
    const hello = encodeHello({ ...secondary, minVersion: PROTOCOL_VERSION, maxVersion: PROTOCOL_VERSION, nonce });
    expect(r.receive({ type: MessageType.HELLO, flags: 0, sequence: 0, payload: hello }).error?.code).toBe('ERR_LOCKSTEP_PROTOCOL_AUTH');
  });

  it('keys: shorter than 16 bytes or not bytes is an option error; session keys depend on both nonces', () => {
    expect(() => importKey(Buffer.alloc(MIN_KEY_BYTES - 1))).toThrow(LockstepError);
    try {
      importKey('secret-secret-secret');
    } catch (err) {
      expect((err as LockstepError).code).toBe('ERR_LOCKSTEP_OPTION_INVALID');
    }
    expect(() => importKey(Buffer.alloc(MIN_KEY_BYTES))).not.toThrow();
    const k = createSecretKey(Buffer.alloc(32, 1));
    const a = deriveSessionKeys(k, Buffer.alloc(32, 1), Buffer.alloc(32, 2));
    const b = deriveSessionKeys(k, Buffer.alloc(32, 1), Buffer.alloc(32, 3));
    expect(a.session.equals(b.session)).toBe(false);
  });
});
