// Datastore heartbeats (vSphere HA's second channel): each agent rewrites a small file on the storage
// every host reaches, saying it is alive and which VM halves it runs; the manager judges the file's
// freshness by its own monotonic clock. File format, parser, writer and judge; never the store.
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, readdir, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HOST_ID } from '../manager/layout.js';
import type { InstanceRole } from '../manager/layout.js';

/**
 * The directory under the datastore that holds the heartbeat files:
 *
 * ```
 *   <datastore>/lockstep-heartbeats/<host>.json       one per agent, replaced whole (tmp + rename)
 *   <datastore>/lockstep-heartbeats/.<host>.<rand>.tmp  a write in progress (never read)
 * ```
 */
export const HEARTBEAT_DIR = 'lockstep-heartbeats';
/** `format` of a heartbeat file. */
export const HEARTBEAT_FORMAT = 'lockstep-datastore-heartbeat';
/** `version` of a heartbeat file this build writes and reads. */
export const HEARTBEAT_VERSION = 1;
/** An agent rewrites its heartbeat this often by default, ms. */
export const DEFAULT_HEARTBEAT_MS = 1_000;
/**
 * The manager judges a heartbeat alive while it saw it change within this window, ms (default three
 * periods of the default writer: one write lost or late is no death).
 */
export const DEFAULT_HEARTBEAT_WINDOW_MS = 3 * DEFAULT_HEARTBEAT_MS;
/** Larger files are not read (a heartbeat of 4096 halves is about 200 KiB less than this). */
export const MAX_HEARTBEAT_BYTES = 256 * 1024;
/** Halves (and powered-off halves) a heartbeat may list. */
export const MAX_HEARTBEAT_HALVES = 4096;
/** A VM id, as the agent's API takes it. */
const VM_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const INCARNATION = /^[0-9a-f]{8,64}$/;

/** A VM half an agent runs now. */
export interface HeartbeatHalf {
  vm: string;
  role: InstanceRole;
}

/** A VM half the agent killed by its isolation response (its store record may still be there). */
export interface PoweredOffHalf extends HeartbeatHalf {
  /** The instance record's incarnation: only that record is a left-over. */
  incarnation: string;
}

/** What `<datastore>/lockstep-heartbeats/<host>.json` holds. */
export interface DatastoreHeartbeat {
  format: typeof HEARTBEAT_FORMAT;
  version: typeof HEARTBEAT_VERSION;
  host: string;
  /** Random per agent start: a restarted agent counts from 1 again. */
  incarnation: string;
  /** Rises with every write of this incarnation. */
  seq: number;
  /** The writer's period, ms (informational: the manager judges by its own window). */
  periodMs: number;
  /** The halves running on the host now (processes alive), whatever the store says. */
  halves: HeartbeatHalf[];
  /** Halves this agent powered off by its isolation response since it last started that VM. */
  poweredOff: PoweredOffHalf[];
}

/** The heartbeat file of `host` under `datastore`. */
export function heartbeatPath(datastore: string, host: string): string {
  return join(datastore, HEARTBEAT_DIR, `${host}.json`);
}

/** What {@link parseHeartbeat} makes of a file: a heartbeat, or what is wrong with it. */
export type ParsedHeartbeat = { ok: true; beat: DatastoreHeartbeat } | { ok: false; problem: string };

/**
 * Parse and check a heartbeat file's text. `file` names it in the problem; `host` is the host its name
 * says (the file must claim the same). Never throws: anything malformed is a problem, which the manager
 * treats as no heartbeat.
 */
export function parseHeartbeat(text: string, file: string, host: string): ParsedHeartbeat {
  const bad = (why: string): ParsedHeartbeat => ({ ok: false, problem: `datastore heartbeat ${file}: ${why}; treated as no heartbeat` });
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    return bad(text.length === 0 ? 'empty file' : `not JSON (${(err as Error).message}; truncated?)`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad('not a JSON object');
  const o = v as Record<string, unknown>;
  if (o.format !== HEARTBEAT_FORMAT) return bad(`format: expected ${JSON.stringify(HEARTBEAT_FORMAT)}, got ${short(o.format)}`);
  if (o.version !== HEARTBEAT_VERSION) return bad(`version: this build reads version ${HEARTBEAT_VERSION}, got ${short(o.version)}`);
  if (o.host !== host) return bad(`host: the file is named for ${host} but says ${short(o.host)}`);
  if (typeof o.incarnation !== 'string' || !INCARNATION.test(o.incarnation)) return bad(`incarnation: expected 8-64 hex digits, got ${short(o.incarnation)}`);
  if (typeof o.seq !== 'number' || !Number.isSafeInteger(o.seq) || o.seq < 1) return bad(`seq: expected a positive integer, got ${short(o.seq)}`);
  if (typeof o.periodMs !== 'number' || !Number.isFinite(o.periodMs) || o.periodMs <= 0) return bad(`periodMs: expected a positive number, got ${short(o.periodMs)}`);
  const halves = halvesOf(o.halves, 'halves', false);
  if (typeof halves === 'string') return bad(halves);
  const poweredOff = halvesOf(o.poweredOff, 'poweredOff', true);
  if (typeof poweredOff === 'string') return bad(poweredOff);
  return {
    ok: true,
    beat: { format: HEARTBEAT_FORMAT, version: HEARTBEAT_VERSION, host, incarnation: o.incarnation, seq: o.seq, periodMs: o.periodMs, halves, poweredOff: poweredOff as PoweredOffHalf[] },
  };
}

function halvesOf(v: unknown, field: string, withIncarnation: boolean): HeartbeatHalf[] | PoweredOffHalf[] | string {
  if (!Array.isArray(v)) return `${field}: expected an array, got ${short(v)}`;
  if (v.length > MAX_HEARTBEAT_HALVES) return `${field}: ${v.length} entries, more than ${MAX_HEARTBEAT_HALVES}`;
  const out: PoweredOffHalf[] = [];
  for (const [i, e] of v.entries()) {
    const h = e as Record<string, unknown> | null;
    if (typeof h !== 'object' || h === null || Array.isArray(h)) return `${field}[${i}]: expected an object, got ${short(e)}`;
    if (typeof h.vm !== 'string' || !VM_ID.test(h.vm)) return `${field}[${i}].vm: not a VM id: ${short(h.vm)}`;
    if (h.role !== 'primary' && h.role !== 'secondary') return `${field}[${i}].role: expected primary or secondary, got ${short(h.role)}`;
    if (withIncarnation && (typeof h.incarnation !== 'string' || !INCARNATION.test(h.incarnation))) return `${field}[${i}].incarnation: expected 8-64 hex digits, got ${short(h.incarnation)}`;
    out.push(withIncarnation ? { vm: h.vm, role: h.role, incarnation: h.incarnation as string } : ({ vm: h.vm, role: h.role } as PoweredOffHalf));
  }
  return out;
}

/** A value for a message: JSON, cut short (a hostile file may hold anything). */
function short(v: unknown): string {
  let s: string;
  try {
    s = v === undefined ? 'nothing' : JSON.stringify(v);
  } catch {
    s = String(v);
  }
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

/** Every heartbeat file under `datastore`, parsed: heartbeats by host, and the problems of the others. */
export async function readHeartbeats(datastore: string): Promise<{ beats: Map<string, DatastoreHeartbeat>; problems: Map<string, string> }> {
  const dir = join(datastore, HEARTBEAT_DIR);
  const beats = new Map<string, DatastoreHeartbeat>();
  const problems = new Map<string, string>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    // No agent has written yet (or the datastore is not mounted here): no heartbeats at all.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') problems.set('', `datastore heartbeats: cannot list ${dir}: ${(err as Error).message}`);
    return { beats, problems };
  }
  for (const name of names) {
    if (!name.endsWith('.json')) continue; // writes in progress (`.<host>.<rand>.tmp`), anything else
    const host = name.slice(0, -'.json'.length);
    const file = join(dir, name);
    if (!HOST_ID.test(host)) {
      problems.set(host, `datastore heartbeat ${file}: the name is not a host id; ignored`);
      continue;
    }
    const text = await readLimited(file);
    if (typeof text !== 'string') {
      problems.set(host, `datastore heartbeat ${file}: ${text.problem}; treated as no heartbeat`);
      continue;
    }
    const p = parseHeartbeat(text, file, host);
    if (p.ok) beats.set(host, p.beat);
    else problems.set(host, p.problem);
  }
  return { beats, problems };
}

/** A file's text, at most {@link MAX_HEARTBEAT_BYTES}; never follows a FIFO or reads a device forever. */
async function readLimited(file: string): Promise<string | { problem: string }> {
  let f;
  try {
    // O_NONBLOCK: opening a FIFO put there for reading would otherwise wait for a writer, for ever.
    f = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    return { problem: `cannot open: ${(err as Error).message}` };
  }
  try {
    const st = await f.stat();
    if (!st.isFile()) return { problem: 'not a regular file' };
    if (st.size > MAX_HEARTBEAT_BYTES) return { problem: `${st.size} bytes, more than ${MAX_HEARTBEAT_BYTES}` };
    const buf = Buffer.alloc(MAX_HEARTBEAT_BYTES + 1);
    const { bytesRead } = await f.read(buf, 0, buf.length, 0);
    if (bytesRead > MAX_HEARTBEAT_BYTES) return { problem: `more than ${MAX_HEARTBEAT_BYTES} bytes` };
    return buf.subarray(0, bytesRead).toString('utf8');
  } catch (err) {
    return { problem: `cannot read: ${(err as Error).message}` };
  } finally {
    await f.close().catch(() => undefined);
  }
}

// ---- the agent's side ---------------------------------------------------------------------------------

/** Options of {@link HeartbeatWriter}. */
export interface HeartbeatWriterOptions {
  datastore: string;
  host: string;
  periodMs: number;
  /** What the host runs now and what it powered off (asked at every write). */
  contents: () => { halves: HeartbeatHalf[]; poweredOff: PoweredOffHalf[] };
  /** A write failed (`ok` false) or worked again after failing (`ok` true). */
  onTrouble: (message: string, ok: boolean) => void;
}

/**
 * Rewrites one host's heartbeat file every period and at once when {@link HeartbeatWriter.changed} is
 * called. Writes never overlap; a failed one is reported (once until one works again) and retried at the
 * next period. It never throws.
 */
export class HeartbeatWriter {
  readonly path: string;
  readonly incarnation = randomBytes(8).toString('hex');
  readonly #o: HeartbeatWriterOptions;
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #writing: Promise<void> | undefined;
  #again = false;
  #failing = false;
  #stopped = false;

  constructor(o: HeartbeatWriterOptions) {
    this.#o = o;
    this.path = heartbeatPath(o.datastore, o.host);
  }

  /** The sequence number of the last write attempted. */
  get seq(): number {
    return this.#seq;
  }

  /** Write now and then every period. Resolves after the first attempt (which may have failed). */
  async start(): Promise<void> {
    this.#timer = setInterval(() => this.changed(), this.#o.periodMs);
    this.#timer.unref();
    this.changed();
    await this.#writing;
  }

  /** Something listed changed: write as soon as the write in flight (if any) is done. */
  changed(): void {
    if (this.#stopped) return;
    if (this.#writing !== undefined) {
      this.#again = true;
      return;
    }
    this.#writing = (async () => {
      do {
        this.#again = false;
        await this.#write();
      } while (this.#again && !this.#stopped);
    })().finally(() => (this.#writing = undefined));
  }

  /** Stop writing and remove the file (an agent leaving on purpose is not partitioned). */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#writing;
    await unlink(this.path).catch(() => undefined);
  }

  async #write(): Promise<void> {
    const { halves, poweredOff } = this.#o.contents();
    const beat: DatastoreHeartbeat = {
      format: HEARTBEAT_FORMAT,
      version: HEARTBEAT_VERSION,
      host: this.#o.host,
      incarnation: this.incarnation,
      seq: ++this.#seq,
      periodMs: this.#o.periodMs,
      halves: halves.slice(0, MAX_HEARTBEAT_HALVES),
      poweredOff: poweredOff.slice(0, MAX_HEARTBEAT_HALVES),
    };
    const dir = join(this.#o.datastore, HEARTBEAT_DIR);
    const tmp = join(dir, `.${this.#o.host}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      await mkdir(dir, { recursive: true });
      await writeFile(tmp, `${JSON.stringify(beat)}\n`);
      // rename() replaces the file in one step: a reader sees the old heartbeat or the new, never half.
      await rename(tmp, this.path);
      if (this.#failing) this.#o.onTrouble(`datastore heartbeat ${this.path}: written again (seq ${beat.seq})`, true);
      this.#failing = false;
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      if (!this.#failing) this.#o.onTrouble(`datastore heartbeat ${this.path}: cannot write (${(err as Error).message}); retried every ${this.#o.periodMs} ms — the manager will take this host for dead if it is also cut off from the store`, false);
      this.#failing = true;
    }
  }
}

// ---- the manager's side -------------------------------------------------------------------------------

/** What the manager makes of a host's heartbeat. */
export type HeartbeatState =
  /** It changed within the window, by the manager's clock: the agent is alive and reaches the datastore. */
  | 'alive'
  /** Read at least a window after its last change with no change since: the agent is dead, or cut off from the datastore too. */
  | 'stale'
  /** Not judged yet: first seen less than a window ago, or not read since the window passed. */
  | 'unknown'
  /** No file (never written, or removed by an agent that left). */
  | 'missing';

/** One read of a host's file: its heartbeat, no file, or a file that could not be read or parsed. */
export type HeartbeatObservation = DatastoreHeartbeat | 'missing' | 'unreadable';

/** A host's heartbeat as judged: its state and the latest valid contents read (none when missing). */
export interface HeartbeatVerdict {
  state: HeartbeatState;
  beat: DatastoreHeartbeat | undefined;
  /** Ms (the judge's clock) since the judge last saw it change; undefined if it never did. */
  sinceChangeMs: number | undefined;
}

/**
 * Judges freshness: a heartbeat is alive while the judge saw its (incarnation, seq) change within the
 * window, by the judge's own monotonic clock — the writer's clock is never compared with it (the file
 * carries no time at all). An unreadable or malformed read is no sign of life and no news either: after
 * a window without a valid change the host is stale. Pure: the caller passes the time of each
 * observation and of each question.
 */
export class HeartbeatJudge {
  readonly windowMs: number;
  readonly #hosts = new Map<string, { beat: DatastoreHeartbeat; firstSeen: number; changedAt: number | undefined; observedAt: number }>();

  constructor(windowMs = DEFAULT_HEARTBEAT_WINDOW_MS) {
    if (!(Number.isFinite(windowMs) && windowMs > 0)) throw new RangeError(`HeartbeatJudge: windowMs must be a positive number, got ${windowMs}`);
    this.windowMs = windowMs;
  }

  /** One read of `host`'s file at `now`. */
  observe(host: string, seen: HeartbeatObservation, now: number): void {
    const h = this.#hosts.get(host);
    if (seen === 'missing') {
      this.#hosts.delete(host); // removed (an agent that left): judged afresh should it come back
      return;
    }
    if (seen === 'unreadable') {
      if (h !== undefined) h.observedAt = now;
      return;
    }
    if (h === undefined) {
      // First sight: no sign of life yet (the file may be years old).
      this.#hosts.set(host, { beat: seen, firstSeen: now, changedAt: undefined, observedAt: now });
      return;
    }
    // A change: a new incarnation (the agent restarted), or a higher sequence number of the same one. A
    // lower one (an old copy of the file put back) is not a sign of life.
    if (seen.incarnation !== h.beat.incarnation || seen.seq > h.beat.seq) {
      h.changedAt = now;
      h.beat = seen;
    }
    h.observedAt = now;
  }

  /** Hosts with a heartbeat file, as last read. */
  hosts(): string[] {
    return [...this.#hosts.keys()];
  }

  /** The verdict on `host` at `now`. */
  verdict(host: string, now: number): HeartbeatVerdict {
    const h = this.#hosts.get(host);
    if (h === undefined) return { state: 'missing', beat: undefined, sinceChangeMs: undefined };
    const since = h.changedAt !== undefined ? now - h.changedAt : undefined;
    if (since !== undefined && since < this.windowMs) return { state: 'alive', beat: h.beat, sinceChangeMs: since };
    // Stale only on evidence: a read at least a window after the last change (or the first sight) that
    // found no change. A judge that did not read for a while (its own process starved) says unknown.
    const from = h.changedAt ?? h.firstSeen;
    if (h.observedAt - from >= this.windowMs) return { state: 'stale', beat: h.beat, sinceChangeMs: since };
    return { state: 'unknown', beat: h.beat, sinceChangeMs: since };
  }
}
