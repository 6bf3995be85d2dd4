// The GDB remote protocol's framing (checksums, escapes, run-length encoding, the stream reader) and
// the session's answers to malformed and hostile packets, without sockets or a machine.
import { describe, expect, it } from 'vitest';
import {
  MAX_PACKET,
  PacketReader,
  checksum,
  decodeRunLength,
  encodePacket,
  encodeRunLength,
  escapeBinary,
  unescapeBinary,
} from '../../src/debug/packet.js';
import { GdbSession, MAX_WATCHPOINTS } from '../../src/debug/session.js';
import { targetXml } from '../../src/debug/target-description.js';
import type { DebugPoints, DebugTarget, ResumeAction, TargetStop } from '../../src/debug/target.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => Buffer.from(b).toString('latin1');

/** A target with 64 KiB of "RAM" at 0x8000_0000 that records what it was asked. */
class FakeTarget implements DebugTarget {
  reversible = false;
  regs = new Uint32Array(33);
  ram = new Uint8Array(0x1_0000);
  resumes: { action: ResumeAction; points: DebugPoints }[] = [];
  interrupted = 0;
  registers(): Uint32Array {
    return this.regs.slice();
  }
  setRegister(i: number, v: number): boolean {
    if (this.reversible) return false;
    this.regs[i] = v;
    return true;
  }
  readCsr(csr: number): number | undefined {
    return csr === 0x301 ? 0x40141105 : undefined;
  }
  writeCsr(): boolean {
    return false;
  }
  privilege(): number {
    return 3;
  }
  readMemory(address: number, length: number): Uint8Array | undefined {
    const off = address - 0x8000_0000;
    return off < 0 || off + length > this.ram.length ? undefined : this.ram.slice(off, off + length);
  }
  writeMemory(address: number, data: Uint8Array): boolean {
    const off = address - 0x8000_0000;
    if (this.reversible || off < 0 || off + data.length > this.ram.length) return false;
    this.ram.set(data, off);
    return true;
  }
  resume(action: ResumeAction, points: DebugPoints): Promise<TargetStop> {
    this.resumes.push({ action, points });
    return Promise.resolve({ kind: 'signal', signal: 5, watch: points.watchpoints[0] ? { kind: points.watchpoints[0].kind, address: points.watchpoints[0].address } : undefined });
  }
  interrupt(): void {
    this.interrupted++;
  }
  monitor(c: string): string | undefined {
    return c === 'instret' ? 'instret=7\n' : undefined;
  }
}

async function ask(s: GdbSession, packet: string | Uint8Array): Promise<string> {
  const r = await s.handle(typeof packet === 'string' ? enc(packet) : packet);
  return r === undefined ? '<none>' : typeof r === 'string' ? r : dec(r);
}

describe('GDB packet framing', () => {
  it('computes the modulo-256 checksum and frames a packet with it', () => {
    expect(checksum(enc('OK'))).toBe(0x9a);
    expect(dec(encodePacket('OK'))).toBe('$OK#9a');
    expect(dec(encodePacket(''))).toBe('$#00');
    expect(checksum(new Uint8Array(300).fill(0xff))).toBe((300 * 0xff) % 256);
  });

  it('escapes #, $, } and * in binary data and reads them back', () => {
    const raw = Uint8Array.from([0x23, 0x24, 0x7d, 0x2a, 0x00, 0x41]);
    const esc = escapeBinary(raw);
    expect([...esc]).toEqual([0x7d, 0x03, 0x7d, 0x04, 0x7d, 0x5d, 0x7d, 0x0a, 0x00, 0x41]);
    expect([...unescapeBinary(esc)!]).toEqual([...raw]);
    expect(unescapeBinary(Uint8Array.from([0x41, 0x7d]))).toBeUndefined();
  });

  it('run-length encodes replies without # or $ as a count, and decodes them', () => {
    expect(dec(encodeRunLength(enc('0000000000')))).toBe('0*&'); // 1 + 9 more: '&' is 9 + 29
    for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 9, 50, 97, 98, 99, 200, 1000]) {
      const text = 'a' + '0'.repeat(n) + 'b';
      const rle = encodeRunLength(enc(text));
      expect(dec(rle)).not.toMatch(/\*[#$}]/);
      expect(dec(decodeRunLength(rle)!)).toBe(text);
    }
    expect(decodeRunLength(enc('*5'))).toBeUndefined();
    expect(decodeRunLength(enc('0*'))).toBeUndefined();
  });

  it('reads packets, acks, nacks and interrupts from a stream cut anywhere', () => {
    const stream = enc('+$g#67-\x03$m80000000,4#' + checksum(enc('m80000000,4')).toString(16).padStart(2, '0'));
    const events = [];
    const reader = new PacketReader();
    for (const b of stream) events.push(...reader.push(Uint8Array.of(b)));
    expect(events.map((e) => (e.kind === 'packet' ? dec(e.data) : e.kind))).toEqual(['ack', 'g', 'nack', 'interrupt', 'm80000000,4']);
  });

  it('refuses a bad checksum, a non-hex checksum, and a packet longer than the limit, then reads on', () => {
    const reader = new PacketReader();
    expect(reader.push(enc('$g#00'))).toEqual([{ kind: 'bad', reason: 'checksum' }]);
    expect(reader.push(enc('$g#zz'))).toEqual([{ kind: 'bad', reason: 'checksum' }]);
    const huge = 'A'.repeat(MAX_PACKET + 100);
    expect(reader.push(enc(`$${huge}#00`))).toEqual([{ kind: 'bad', reason: 'too-long' }]);
    const next = reader.push(encodePacket('?'));
    expect(next.map((e) => e.kind)).toEqual(['packet']);
  });

  it('starts over when a packet begins inside another (a cut-off packet)', () => {
    const reader = new PacketReader();
    const ev = reader.push(enc('$m8000$?#3f'));
    expect(ev.map((e) => (e.kind === 'packet' ? dec(e.data) : e.kind))).toEqual(['?']);
  });
});

describe('GDB session', () => {
  it('answers qSupported with the packet size and target description, and reverse only for a recording', async () => {
    const t = new FakeTarget();
    expect(await ask(new GdbSession(t), 'qSupported:multiprocess+;swbreak+')).toMatch(/^PacketSize=4000;qXfer:features:read\+;.*/);
    expect(await ask(new GdbSession(t), 'qSupported')).not.toMatch(/Reverse/);
    t.reversible = true;
    expect(await ask(new GdbSession(t), 'qSupported')).toMatch(/ReverseStep\+;ReverseContinue\+/);
  });

  it('serves target.xml in chunks that add up to the whole description', async () => {
    const s = new GdbSession(new FakeTarget());
    let xml = '';
    for (let off = 0; ; ) {
      const r = await ask(s, `qXfer:features:read:target.xml:${off.toString(16)},100`);
      expect(r[0]).toMatch(/[ml]/);
      const body = dec(unescapeBinary(enc(r.slice(1)))!);
      xml += body;
      off += body.length;
      if (r[0] === 'l') break;
    }
    expect(xml).toBe(targetXml());
    expect(xml).toContain('<architecture>riscv:rv32</architecture>');
    expect(xml).toContain('name="mstatus"');
    expect(await ask(s, 'qXfer:features:read:other.xml:0,100')).toBe('E01');
    expect(await ask(s, 'qXfer:features:read:target.xml:zz,100')).toBe('E01');
  });

  it('reads and writes registers and memory, with errors for bad arguments and addresses outside RAM', async () => {
    const t = new FakeTarget();
    const s = new GdbSession(t);
    t.regs[1] = 0x11223344;
    expect((await ask(s, 'g')).slice(8, 16)).toBe('44332211');
    expect(await ask(s, 'p1')).toBe('44332211');
    expect(await ask(s, `p${(65 + 0x301).toString(16)}`)).toBe('05111440');
    expect(await ask(s, `p${(65 + 0x7c0).toString(16)}`)).toBe('xxxxxxxx');
    expect(await ask(s, 'P2=efbeadde')).toBe('OK');
    expect(t.regs[2]).toBe(0xdeadbeef);
    expect(await ask(s, 'P2=xyz')).toBe('E01');
    expect(await ask(s, 'M80000010,3:a1b2c3')).toBe('OK');
    expect(await ask(s, 'm80000010,3')).toBe('a1b2c3');
    expect(await ask(s, enc('X80000020,2:\x7d\x03A'))).toBe('OK');
    expect(await ask(s, 'm80000020,2')).toBe('2341');
    expect(await ask(s, 'm0,4')).toBe('E02');
    expect(await ask(s, 'mffffffff,10')).toBe('E01');
    expect(await ask(s, 'm80000000')).toBe('E01');
    expect(await ask(s, 'mzz,4')).toBe('E01');
    expect(await ask(s, 'M80000010,4:a1b2')).toBe('E01');
    expect(await ask(s, 'M10,2:a1b2')).toBe('E02');
    // A huge length is cut to what one reply can carry, never allocated whole.
    expect((await ask(s, 'm80000000,ffffffffffff')).length).toBeLessThanOrEqual(MAX_PACKET);
  });

  it('refuses writes to a recording with E03 and reverse execution on a live machine', async () => {
    const t = new FakeTarget();
    expect(await ask(new GdbSession(t), 'bc')).toBe('E03');
    t.reversible = true;
    const s = new GdbSession(t);
    expect(await ask(s, 'M80000010,1:00')).toBe('E03');
    expect(await ask(s, 'P1=00000000')).toBe('E03');
    expect(await ask(s, 'bs')).toBe('T05thread:1;');
    expect(t.resumes.map((r) => r.action)).toEqual(['reverse-step']);
  });

  it('keeps breakpoints and watchpoints, passes them to each resume, and reports the watch address', async () => {
    const t = new FakeTarget();
    const s = new GdbSession(t);
    expect(await ask(s, 'Z0,80000100,2')).toBe('OK');
    expect(await ask(s, 'Z0,80000100,2')).toBe('OK');
    expect(await ask(s, 'Z2,80001000,4')).toBe('OK');
    expect(await ask(s, 'c')).toBe('T05watch:80001000;thread:1;');
    expect(t.resumes[0]!.points).toEqual({ breakpoints: [0x80000100], watchpoints: [{ kind: 'watch', address: 0x80001000, length: 4 }] });
    expect(await ask(s, 'z2,80001000,4')).toBe('OK');
    expect(await ask(s, 'z0,80000100,2')).toBe('OK');
    expect(await ask(s, 'vCont;s:1')).toBe('T05thread:1;');
    expect(t.resumes[1]).toEqual({ action: 'step', points: { breakpoints: [], watchpoints: [] } });
    expect(await ask(s, 'Z9,0,0')).toBe('');
    expect(await ask(s, 'Z2,80001000,0')).toBe('E01');
    expect(await ask(s, 'Z0,zz,2')).toBe('E01');
    expect(await ask(s, 'Z0')).toBe('E01');
    for (let i = 0; i < MAX_WATCHPOINTS; i++) expect(await ask(s, `Z3,${(0x80000000 + i * 4).toString(16)},4`)).toBe('OK');
    expect(await ask(s, 'Z3,90000000,4')).toBe('E04');
  });

  it('answers unknown and empty packets with the empty reply, and monitor commands in hex', async () => {
    const s = new GdbSession(new FakeTarget());
    expect(await ask(s, '')).toBe('');
    expect(await ask(s, 'qNotAThing')).toBe('');
    expect(await ask(s, '\xff\xfe')).toBe('');
    expect(await ask(s, `qRcmd,${Buffer.from('instret').toString('hex')}`)).toBe(Buffer.from('instret=7\n').toString('hex'));
    expect(await ask(s, `qRcmd,${Buffer.from('nope').toString('hex')}`)).toBe('E01');
    expect(await ask(s, 'qRcmd,xyz')).toBe('E01');
    expect(await ask(s, '?')).toBe('T05thread:1;');
    expect(await ask(s, 'k')).toBe('<none>');
    expect(s.end).toBe('kill');
  });
});
