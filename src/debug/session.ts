// One GDB remote protocol conversation over a DebugTarget: each packet's payload in, its reply out. No
// framing and no sockets here (packet.ts, server.ts). Anything malformed gets an error reply (E01..E04)
// or the empty reply ("not supported"); nothing a peer sends can throw out of handle().
import type { Watchpoint } from '../machine/types.js';
import { MAX_PACKET, escapeBinary, fromHex, toHex, u32Hex, parseU32Hex, unescapeBinary } from './packet.js';
import { CSR_REGNUM_BASE, PC_REGNUM, PRIV_REGNUM, targetXml } from './target-description.js';
import type { DebugTarget, ResumeAction, TargetStop } from './target.js';

/** Error replies: E01 bad arguments, E02 memory not accessible, E03 refused (a recording cannot be changed), E04 too many. */
export const ERR_ARGS = 'E01';
export const ERR_MEMORY = 'E02';
export const ERR_REFUSED = 'E03';
export const ERR_LIMIT = 'E04';

/** At most this many breakpoints and watchpoints each: a hostile peer cannot grow them without bound. */
export const MAX_BREAKPOINTS = 4096;
export const MAX_WATCHPOINTS = 64;
/** Largest memory read or write in one packet (hex doubles it; fits {@link MAX_PACKET}). */
export const MAX_MEMORY_CHUNK = (MAX_PACKET - 32) >> 1;

const SIGINT = 2;
const SIGTRAP = 5;

/** What the session asks of whoever runs it after a reply: go on, or end (the peer said kill or detach). */
export type SessionEnd = 'kill' | 'detach';

const WATCH_KINDS: Record<string, Watchpoint['kind']> = { '2': 'watch', '3': 'rwatch', '4': 'awatch' };

/**
 * The protocol state of one debugger connection over a {@link DebugTarget}: breakpoints and watchpoints
 * set, the last stop, ack mode. {@link GdbServer} (server.ts) frames packets around it.
 */
export class GdbSession {
  readonly #target: DebugTarget;
  readonly #breakpoints = new Set<number>();
  readonly #watchpoints: Watchpoint[] = [];
  #lastStop: TargetStop = { kind: 'signal', signal: SIGTRAP };
  #noAck = false;
  #end: SessionEnd | undefined;
  #xml: Uint8Array | undefined;

  constructor(target: DebugTarget) {
    this.#target = target;
  }

  /** QStartNoAckMode was accepted: packets are no longer acknowledged. */
  get noAck(): boolean {
    return this.#noAck;
  }
  /** Set once the peer killed or detached: the server sends the last reply and closes. */
  get end(): SessionEnd | undefined {
    return this.#end;
  }

  /** Ctrl-C from the peer while the target runs. */
  interrupt(): void {
    this.#target.interrupt();
  }

  /** The reply to one packet's payload (as received, escapes in place); undefined: send no reply. */
  async handle(payload: Uint8Array): Promise<string | Uint8Array | undefined> {
    try {
      return await this.#dispatch(payload);
    } catch {
      // A target that fails on a request (a closed machine, a range check) answers like a bad argument.
      return ERR_ARGS;
    }
  }

  async #dispatch(payload: Uint8Array): Promise<string | Uint8Array | undefined> {
    const text = Buffer.from(payload).toString('latin1');
    const head = text[0];
    const rest = text.slice(1);
    switch (head) {
      case '?':
        return this.#stopReply(this.#lastStop);
      case 'g':
        return this.#readAll();
      case 'G':
        return this.#writeAll(rest);
      case 'p':
        return this.#readOne(rest);
      case 'P':
        return this.#writeOne(rest);
      case 'm':
        return this.#readMemory(rest);
      case 'M':
        return this.#writeMemoryHex(rest);
      case 'X':
        return this.#writeMemoryBinary(payload);
      case 'c':
        return this.#resume('continue', rest);
      case 's':
        return this.#resume('step', rest);
      case 'C':
      case 'S':
        // The signal is ignored: the guest has no signals to deliver.
        return this.#resume(head === 'C' ? 'continue' : 'step', rest.includes(';') ? rest.slice(rest.indexOf(';') + 1) : '');
      case 'b':
        if (rest === 'c' || rest === 's') {
          if (!this.#target.reversible) return ERR_REFUSED;
          return this.#resume(rest === 'c' ? 'reverse-continue' : 'reverse-step', '');
        }
        return '';
      case 'Z':
      case 'z':
        return this.#point(head === 'Z', rest);
      case 'H':
        return 'OK';
      case 'T':
        return rest === '1' || rest === 'p1.1' ? 'OK' : ERR_ARGS;
      case 'k':
        this.#end = 'kill';
        return undefined;
      case 'D':
        this.#end = 'detach';
        return 'OK';
      case 'q':
        return this.#query(rest);
      case 'Q':
        if (rest === 'StartNoAckMode') {
          this.#noAck = true;
          return 'OK';
        }
        return '';
      case 'v':
        return this.#v(rest);
      default:
        return '';
    }
  }

  #stopReply(stop: TargetStop): string {
    if (stop.kind === 'exited') return `W${(stop.code & 0xff).toString(16).padStart(2, '0')}`;
    let reply = `T${stop.signal.toString(16).padStart(2, '0')}`;
    if (stop.watch) reply += `${stop.watch.kind}:${stop.watch.address.toString(16)};`;
    if (stop.breakpoint) reply += 'swbreak:;';
    if (stop.replaylog) reply += `replaylog:${stop.replaylog};`;
    return `${reply}thread:1;`;
  }

  #readAll(): string {
    const regs = this.#target.registers();
    let out = '';
    for (let i = 0; i <= PC_REGNUM; i++) out += u32Hex(i === 0 ? 0 : regs[i]!);
    return out;
  }

  #writeAll(hex: string): string {
    if (hex.length !== (PC_REGNUM + 1) * 8) return ERR_ARGS;
    const values: number[] = [];
    for (let i = 0; i <= PC_REGNUM; i++) {
      const v = parseU32Hex(hex.slice(i * 8, i * 8 + 8));
      if (v === undefined) return ERR_ARGS;
      values.push(v);
    }
    for (let i = 1; i <= PC_REGNUM; i++) if (!this.#target.setRegister(i, values[i]!)) return ERR_REFUSED;
    return 'OK';
  }

  #readOne(arg: string): string {
    const n = parseHexNumber(arg);
    if (n === undefined) return ERR_ARGS;
    if (n <= PC_REGNUM) return u32Hex(n === 0 ? 0 : this.#target.registers()[n]!);
    if (n === PRIV_REGNUM) return u32Hex(this.#target.privilege());
    if (n >= CSR_REGNUM_BASE && n < CSR_REGNUM_BASE + 0x1000) {
      const v = this.#target.readCsr(n - CSR_REGNUM_BASE);
      return v === undefined ? 'xxxxxxxx' : u32Hex(v);
    }
    return ERR_ARGS;
  }

  #writeOne(arg: string): string {
    const eq = arg.indexOf('=');
    const n = parseHexNumber(arg.slice(0, eq < 0 ? arg.length : eq));
    const v = eq < 0 ? undefined : parseU32Hex(arg.slice(eq + 1));
    if (n === undefined || v === undefined) return ERR_ARGS;
    if (n === 0) return 'OK';
    if (n <= PC_REGNUM) return this.#target.setRegister(n, v) ? 'OK' : ERR_REFUSED;
    if (n >= CSR_REGNUM_BASE && n < CSR_REGNUM_BASE + 0x1000) return this.#target.writeCsr(n - CSR_REGNUM_BASE, v) ? 'OK' : ERR_REFUSED;
    return ERR_ARGS;
  }

  #readMemory(arg: string): string {
    const r = parseRange(arg);
    if (!r) return ERR_ARGS;
    const length = Math.min(r.length, MAX_MEMORY_CHUNK);
    if (length === 0) return '';
    const bytes = this.#target.readMemory(r.address, length);
    return bytes ? toHex(bytes) : ERR_MEMORY;
  }

  #writeMemoryHex(arg: string): string {
    const colon = arg.indexOf(':');
    const r = colon < 0 ? undefined : parseRange(arg.slice(0, colon));
    const data = colon < 0 ? undefined : fromHex(arg.slice(colon + 1));
    if (!r || !data || data.length !== r.length) return ERR_ARGS;
    return this.#write(r.address, data);
  }

  #writeMemoryBinary(payload: Uint8Array): string {
    const colon = payload.indexOf(0x3a);
    const r = colon < 0 ? undefined : parseRange(Buffer.from(payload.subarray(1, colon)).toString('latin1'));
    const data = colon < 0 ? undefined : unescapeBinary(payload.subarray(colon + 1));
    if (!r || !data || data.length !== r.length) return ERR_ARGS;
    return this.#write(r.address, data);
  }

  #write(address: number, data: Uint8Array): string {
    if (data.length === 0) return 'OK';
    if (!this.#target.reversible && this.#target.readMemory(address, data.length) === undefined) return ERR_MEMORY;
    return this.#target.writeMemory(address, data) ? 'OK' : this.#target.reversible ? ERR_REFUSED : ERR_MEMORY;
  }

  async #resume(action: ResumeAction, addr: string): Promise<string> {
    if (addr !== '') {
      // `c addr` / `s addr`: resume at addr (a live machine only).
      const pc = parseHexNumber(addr);
      if (pc === undefined || pc > 0xffff_ffff) return ERR_ARGS;
      if (!this.#target.setRegister(PC_REGNUM, pc)) return ERR_REFUSED;
    }
    const stop = await this.#target.resume(action, { breakpoints: [...this.#breakpoints], watchpoints: [...this.#watchpoints] });
    this.#lastStop = stop;
    return this.#stopReply(stop);
  }

  #point(insert: boolean, arg: string): string {
    const [type, addrText, kindText] = arg.split(',');
    const address = addrText === undefined ? undefined : parseHexNumber(addrText);
    const length = kindText === undefined ? undefined : parseHexNumber(kindText.split(';')[0]!);
    if (address === undefined || address > 0xffff_ffff || length === undefined) return ERR_ARGS;
    if (type === '0' || type === '1') {
      if (insert) {
        if (!this.#breakpoints.has(address) && this.#breakpoints.size >= MAX_BREAKPOINTS) return ERR_LIMIT;
        this.#breakpoints.add(address);
      } else {
        this.#breakpoints.delete(address);
      }
      return 'OK';
    }
    const kind = type === undefined ? undefined : WATCH_KINDS[type];
    if (kind === undefined) return '';
    if (length < 1 || length > 0x1_0000) return ERR_ARGS;
    const i = this.#watchpoints.findIndex((w) => w.kind === kind && w.address === address && w.length === length);
    if (insert) {
      if (i >= 0) return 'OK';
      if (this.#watchpoints.length >= MAX_WATCHPOINTS) return ERR_LIMIT;
      this.#watchpoints.push({ kind, address, length });
    } else if (i >= 0) {
      this.#watchpoints.splice(i, 1);
    }
    return 'OK';
  }

  #query(q: string): string | Uint8Array {
    if (q.startsWith('Supported')) {
      const features = [`PacketSize=${MAX_PACKET.toString(16)}`, 'qXfer:features:read+', 'swbreak+', 'hwbreak+', 'QStartNoAckMode+', 'vContSupported+'];
      if (this.#target.reversible) features.push('ReverseStep+', 'ReverseContinue+');
      return features.join(';');
    }
    if (q === 'Attached') return '1';
    if (q === 'C') return 'QC1';
    if (q === 'fThreadInfo') return 'm1';
    if (q === 'sThreadInfo') return 'l';
    if (q === 'Symbol::') return 'OK';
    if (q.startsWith('Xfer:features:read:')) return this.#features(q.slice('Xfer:features:read:'.length));
    if (q.startsWith('Rcmd,')) {
      const cmd = fromHex(q.slice(5));
      if (!cmd) return ERR_ARGS;
      const out = this.#target.monitor(Buffer.from(cmd).toString('latin1').trim());
      // The output goes back as the reply's hex text (gdb prints it); an unknown command is an error.
      return out === undefined ? ERR_ARGS : toHex(new TextEncoder().encode(out));
    }
    return '';
  }

  #features(arg: string): string | Uint8Array {
    const m = /^([^:]+):([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(arg);
    if (!m) return ERR_ARGS;
    if (m[1] !== 'target.xml') return ERR_ARGS;
    this.#xml ??= new TextEncoder().encode(targetXml());
    const offset = parseHexNumber(m[2]!)!;
    const length = Math.min(parseHexNumber(m[3]!)!, MAX_MEMORY_CHUNK);
    if (offset > this.#xml.length) return ERR_ARGS;
    const chunk = this.#xml.subarray(offset, offset + length);
    const more = offset + chunk.length < this.#xml.length;
    const body = escapeBinary(chunk);
    const out = new Uint8Array(body.length + 1);
    out[0] = more ? 0x6d : 0x6c; // 'm' more follows, 'l' last
    out.set(body, 1);
    return out;
  }

  async #v(v: string): Promise<string> {
    if (v === 'Cont?') return 'vCont;c;C;s;S';
    if (v.startsWith('Cont;')) {
      // The first action decides (one hart): s / S step, c / C continue.
      const action = v.slice(5).split(';')[0]!.split(':')[0]!;
      if (action === 's' || action.startsWith('S')) return this.#resume('step', '');
      if (action === 'c' || action.startsWith('C')) return this.#resume('continue', '');
      return ERR_ARGS;
    }
    if (v.startsWith('Kill')) {
      this.#end = 'kill';
      return 'OK';
    }
    if (v === 'MustReplyEmpty') return '';
    return '';
  }
}

/** A hex number of at most 16 digits; undefined otherwise. */
function parseHexNumber(text: string): number | undefined {
  if (!/^[0-9a-fA-F]{1,16}$/.test(text)) return undefined;
  const n = parseInt(text, 16);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** `addr,length` in hex, the address within 32 bits and the range not wrapping past 2^32. */
function parseRange(text: string): { address: number; length: number } | undefined {
  const [a, l, extra] = text.split(',');
  if (extra !== undefined || a === undefined || l === undefined) return undefined;
  const address = parseHexNumber(a);
  const length = parseHexNumber(l);
  if (address === undefined || length === undefined || address > 0xffff_ffff) return undefined;
  if (address + Math.min(length, MAX_MEMORY_CHUNK) > 0x1_0000_0000) return undefined;
  return { address, length };
}

export { SIGINT, SIGTRAP };
