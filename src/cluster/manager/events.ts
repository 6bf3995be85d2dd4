// The cluster's event log in the store: `events/<ms>-<seq>-<writer>`, each key written once (create-only),
// sorted by time; the leading manager trims it to the newest entries. What `lockstep cluster events`
// and `status` show.
import type { ClusterStore, JsonValue } from '../store/store.js';
import { KEYS, type ClusterEvent } from './layout.js';

/** Events kept by default. */
export const DEFAULT_EVENT_LIMIT = 500;

/** Appends events under one writer's name. */
export class EventWriter {
  readonly #store: ClusterStore;
  readonly #by: string;
  #seq = 0;

  constructor(store: ClusterStore, by: string) {
    this.#store = store;
    this.#by = by;
  }

  /** Append one event; resolves with it as stored. */
  async write(e: Omit<ClusterEvent, 't' | 'by'>): Promise<ClusterEvent> {
    const ev: ClusterEvent = { t: Date.now(), by: this.#by, ...e };
    const key = `${KEYS.eventsPrefix}${String(ev.t).padStart(14, '0')}-${String(++this.#seq).padStart(6, '0')}-${this.#by}`;
    // Create-only: an event is never overwritten, whoever else writes at the same millisecond.
    await this.#store.compareAndSet(key, null, stripUndefined(ev) as JsonValue);
    return ev;
  }
}

/** The newest `limit` events, oldest first. */
export async function readEvents(store: ClusterStore, limit = DEFAULT_EVENT_LIMIT): Promise<ClusterEvent[]> {
  const all = await store.list(KEYS.eventsPrefix);
  return all.slice(-limit).map((e) => e.value as unknown as ClusterEvent);
}

/** Delete all but the newest `keep` events; resolves with how many were deleted. */
export async function trimEvents(store: ClusterStore, keep: number): Promise<number> {
  const all = await store.list(KEYS.eventsPrefix);
  const old = all.slice(0, Math.max(0, all.length - keep));
  for (const e of old) await store.delete(e.key);
  return old.length;
}

function stripUndefined(o: object): object {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}
