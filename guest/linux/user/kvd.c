/* kvd: a memcached-compatible key-value server for lockstep's Linux guest (text and meta protocol over
   TCP and UDP port 11211, replies and error strings as memcached 1.6.18's), one process, one poll loop,
   no threads. With a virtio-blk disk every change is in a write-ahead log on it, flushed, before its
   reply is sent; the log is replayed at start. Never prints anything that depends on timing. */
#include "lsys.h"

/* ---- limits and constants (memcached's where clients can tell) -------------------------------- */

#define KEY_MAX 250
#define ITEM_SIZE_MAX (1024 * 1024)   /* -I 1m: the largest item memcached accepts */
#define PAGE_SIZE_SLAB (1024 * 1024)  /* slab page */
#define CHUNK_MAX (PAGE_SIZE_SLAB / 2) /* larger items take a page of their own */
#define MC_ITEM_HDR 48                 /* sizeof(item) in 64-bit memcached: sizes and classes match */
#define MAX_TOKENS 24
#define REALTIME_MAXDELTA (60 * 60 * 24 * 30)
#define ITEM_UPDATE_INTERVAL 60
#define LINE_JUNK 2048          /* a line this long without '\n' must be a multi-get, or we close */
#define LINE_MAX_GET (2 << 20)  /* ...and a multi-get line may not grow past this */
#define UDP_MAX_PAYLOAD 1400
#define UDP_HDR 8
#define UDP_DATA (UDP_MAX_PAYLOAD - UDP_HDR)
#define OUT_BACKLOG (4 << 20)   /* stop reading a connection while this much output is queued */
#define GET_MAX_SEGS (256 * 1024) /* one multi-get may queue no more (a 2 MiB line could ask for 2M) */
#define PORT 11211
#define VERSION "1.6.18-kvd"

#define LS_AF_INET 2
#define LS_SOCK_STREAM 1
#define LS_SOCK_DGRAM 2
#define LS_SOCK_NONBLOCK 04000
#define LS_SOL_SOCKET 1
#define LS_SO_REUSEADDR 2
#define LS_IPPROTO_TCP 6
#define LS_TCP_NODELAY 1
#define LS_MSG_DONTWAIT 0x40
#define LS_MSG_NOSIGNAL 0x4000
#define LS_RLIMIT_NOFILE 7

typedef unsigned int rel_time_t;

struct ls_sockaddr_in {
  uint16_t family;
  uint16_t port; /* network byte order */
  uint32_t addr;
  uint8_t zero[8];
};

struct ls_iovec {
  const void *base;
  size_t len;
};

/* ---- output ----------------------------------------------------------------------------------- */

static void say(const char *s) { write(1, s, strlen(s)); }

static void say_num(long v) { say(ltoa(v)); }

/* ---- numbers without libgcc (rv32 here has no 64-bit division routines) ----------------------- */

/* v / 10 and v % 10 by shifts (Hacker's Delight, divu10). */
static uint64_t divu10(uint64_t v, unsigned *rem) {
  uint64_t q = (v >> 1) + (v >> 2);
  q += q >> 4;
  q += q >> 8;
  q += q >> 16;
  q += q >> 32;
  q >>= 3;
  uint64_t r = v - q * 10;
  while (r > 9) {
    q++;
    r -= 10;
  }
  *rem = (unsigned)r;
  return q;
}

/* Decimal digits of v at p; returns the end. */
static char *u64_dec(uint64_t v, char *p) {
  char t[24];
  int n = 0;
  do {
    unsigned r;
    v = divu10(v, &r);
    t[n++] = (char)('0' + r);
  } while (v);
  while (n) *p++ = t[--n];
  *p = 0;
  return p;
}

static char *i64_dec(int64_t v, char *p) {
  if (v < 0) {
    *p++ = '-';
    return u64_dec((uint64_t)0 - (uint64_t)v, p);
  }
  return u64_dec((uint64_t)v, p);
}

static void *find_byte(const void *p, int ch, size_t n) {
  const char *b = p;
  for (; n; n--, b++)
    if (*b == (char)ch) return (void *)b;
  return 0;
}

static int is_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* strtoull/strtoll's grammar (leading white space, a sign, decimal digits); 0 on no digits or
   overflow of 64 bits (ERANGE), else 1 with *end after the digits. */
static int parse_u64(const char *s, uint64_t *mag, int *neg, const char **end) {
  while (is_space(*s)) s++;
  *neg = 0;
  if (*s == '+' || *s == '-') *neg = *s++ == '-';
  if (*s < '0' || *s > '9') return 0;
  uint64_t v = 0;
  int over = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    const unsigned d = (unsigned)(*s - '0');
    if (v > 1844674407370955161ULL || (v == 1844674407370955161ULL && d > 5)) over = 1;
    v = v * 10 + d;
  }
  *mag = v;
  *end = s;
  return !over;
}

/* memcached's safe_strtoull (64-bit host): negative values are refused only when they wrap. */
static int safe_strtoull(const char *s, uint64_t *out) {
  uint64_t m;
  int neg;
  const char *e;
  *out = 0;
  if (!parse_u64(s, &m, &neg, &e)) return 0;
  if (!(is_space(*e) || *e == 0)) return 0;
  const uint64_t v = neg ? (uint64_t)0 - m : m;
  if ((int64_t)v < 0 && neg) return 0;
  *out = v;
  return 1;
}

/* safe_strtoul: strtoul is 64-bit on memcached's host, the result is truncated to 32 bits. */
static int safe_strtoul(const char *s, uint32_t *out) {
  uint64_t v;
  if (!safe_strtoull(s, &v)) {
    *out = 0;
    return 0;
  }
  *out = (uint32_t)v;
  return 1;
}

/* safe_strtol: strtol (64-bit long) truncated to 32 bits, as memcached 1.6.18 does on amd64. */
static int safe_strtol(const char *s, int32_t *out) {
  uint64_t m;
  int neg;
  const char *e;
  *out = 0;
  if (!parse_u64(s, &m, &neg, &e)) return 0;
  if (neg ? m > (1ULL << 63) : m > (1ULL << 63) - 1) return 0;
  if (!(is_space(*e) || *e == 0)) return 0;
  const int64_t v = neg ? -(int64_t)m : (int64_t)m;
  *out = (int32_t)v;
  return 1;
}

/* ---- clock ------------------------------------------------------------------------------------ */

static rel_time_t current_time;
static int64_t process_started; /* realtime seconds, as memcached: start - ITEM_UPDATE_INTERVAL - 2 */
static int64_t mono_start;

static int64_t clock_sec(int clock) {
  struct __kernel_timespec ts = {0, 0};
  my_syscall2(__NR_clock_gettime64, clock, &ts);
  return ts.tv_sec;
}

static void clock_init(void) {
  process_started = clock_sec(CLOCK_REALTIME) - ITEM_UPDATE_INTERVAL - 2;
  mono_start = clock_sec(CLOCK_MONOTONIC) - ITEM_UPDATE_INTERVAL - 2;
  current_time = (rel_time_t)(clock_sec(CLOCK_MONOTONIC) - mono_start);
}

static void clock_tick(void) { current_time = (rel_time_t)(clock_sec(CLOCK_MONOTONIC) - mono_start); }

/* memcached's realtime(): 0 never expires, up to 30 days is relative, beyond is a unix time. */
static rel_time_t realtime(int64_t exptime) {
  if (exptime == 0) return 0;
  if (exptime > REALTIME_MAXDELTA) {
    if (exptime <= process_started) return 1;
    return (rel_time_t)(exptime - process_started);
  }
  return (rel_time_t)(exptime + current_time);
}

static int64_t exptime_positive(int32_t e) { return e < 0 ? REALTIME_MAXDELTA + 1 : e; }

/* ---- a small heap for connections and tables (items have their own slabs below) -------------- */

#define HEAP_CLASSES 13 /* 16 B .. 64 KiB in powers of two; larger blocks are mapped one by one */
static void *heap_free[HEAP_CLASSES];
static char *heap_cur;
static size_t heap_left;

static void *map_pages(size_t n) {
  void *p = mmap(0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? 0 : p;
}

/* Each block carries its size class (or mapped length) in an 8-byte header. */
static void *halloc(size_t n) {
  n += 8;
  int c = 0;
  while (c < HEAP_CLASSES && ((size_t)16 << c) < n) c++;
  uint32_t *h;
  if (c == HEAP_CLASSES) {
    const size_t len = (n + 4095) & ~(size_t)4095;
    h = map_pages(len);
    if (!h) return 0;
    h[0] = (uint32_t)len;
    h[1] = 0xffff;
    return h + 2;
  }
  if (heap_free[c]) {
    h = heap_free[c];
    heap_free[c] = *(void **)h;
  } else {
    const size_t sz = (size_t)16 << c;
    if (heap_left < sz) {
      heap_cur = map_pages(256 * 1024);
      if (!heap_cur) return 0;
      heap_left = 256 * 1024;
    }
    h = (uint32_t *)heap_cur;
    heap_cur += sz;
    heap_left -= sz;
  }
  h[0] = 0;
  h[1] = (uint32_t)c;
  return h + 2;
}

static void hfree(void *p) {
  if (!p) return;
  uint32_t *h = (uint32_t *)p - 2;
  if (h[1] == 0xffff) {
    munmap(h, h[0]);
    return;
  }
  *(void **)h = heap_free[h[1]];
  heap_free[h[1]] = h;
}

static size_t hsize(void *p) {
  const uint32_t *h = (uint32_t *)p - 2;
  return h[1] == 0xffff ? h[0] - 8 : ((size_t)16 << h[1]) - 8;
}

/* Grows *buf to hold at least need bytes, keeping its contents; 0 when out of memory. */
static int hgrow(char **buf, size_t used, size_t need) {
  if (*buf && hsize(*buf) >= need) return 1;
  size_t cap = *buf ? hsize(*buf) * 2 : 256;
  while (cap < need) cap *= 2;
  char *n = halloc(cap);
  if (!n) return 0;
  if (*buf) {
    memcpy(n, *buf, used);
    hfree(*buf);
  }
  *buf = n;
  return 1;
}

/* ---- items, slab classes and LRU -------------------------------------------------------------- */

#define IT_LINKED 1
#define IT_FETCHED 2
#define IT_STALE 4
#define IT_TOKEN_SENT 8
#define IT_LARGE 16

typedef struct item {
  struct item *hnext;       /* hash chain */
  struct item *prev, *next; /* LRU of its class, head = most recent */
  rel_time_t exptime;       /* 0 = never */
  rel_time_t time;          /* last link or bump */
  uint32_t flags;
  uint32_t nbytes; /* value length including the trailing \r\n */
  uint64_t cas;
  uint32_t refcount; /* replies still sending it */
  uint8_t nkey, clsid, iflags, pad;
  char data[]; /* key, then value */
} item;

#define ITEM_key(it) ((it)->data)
#define ITEM_data(it) ((it)->data + (it)->nkey)

#define MAX_CLASSES 64
struct slabclass {
  uint32_t size, perslab;
  void *free_chunks;
  uint32_t nfree, total_chunks, pages;
  char *end_page; /* unallocated rest of the newest page */
  uint32_t end_left;
  item *head, *tail;
  uint32_t items;
  uint64_t requested; /* memcached's mem_requested */
  uint64_t evicted, evicted_nonzero, outofmemory, reclaimed, expired_unfetched, evicted_unfetched;
  uint64_t get_hits, cmd_set, delete_hits, incr_hits, decr_hits, cas_hits, cas_badval, touch_hits;
};
static struct slabclass classes[MAX_CLASSES];
static int largest_class; /* memcached's power_largest: the 512 KiB class */
static uint64_t mem_limit = 0, mem_malloced;
static void *free_pages; /* pages returned by large items, reusable by any class */
static uint32_t large_pages; /* pages held by large items (they belong to the largest class) */

static void slabs_init(void) {
  uint32_t size = MC_ITEM_HDR + 48;
  int i = 0;
  while (++i < MAX_CLASSES - 1) {
    if (size >= (uint32_t)(CHUNK_MAX / 1.25)) break;
    if (size % 8) size += 8 - size % 8;
    classes[i].size = size;
    classes[i].perslab = PAGE_SIZE_SLAB / size;
    size = size * 5 / 4;
  }
  largest_class = i;
  classes[i].size = CHUNK_MAX;
  classes[i].perslab = PAGE_SIZE_SLAB / CHUNK_MAX;
}

/* memcached's ITEM_ntotal for a new item: header, key + NUL, client flags if not 0, value, CAS. */
static uint32_t mc_ntotal(uint32_t nkey, uint32_t flags, uint32_t nbytes) {
  return MC_ITEM_HDR + nkey + 1 + (flags ? 4 : 0) + nbytes + 8;
}

static int slabs_clsid(uint32_t ntotal) {
  if (ntotal == 0 || ntotal > ITEM_SIZE_MAX) return 0;
  if (ntotal > CHUNK_MAX) return largest_class; /* memcached chains chunks; we take a whole page */
  int i = 1;
  while (ntotal > classes[i].size) i++;
  return i;
}

/* A slab page: a returned one, or a new one within -m. A class that holds no page yet gets its first
   one even beyond -m, as memcached's do_slabs_newslab grants it: otherwise, once the classes in use
   have taken all the memory, a value of any other size could never be stored (memcslap's 50-5000 byte
   values span 20 classes, and 14 MiB for items is 14 pages). The excess is one page per class. */
static void *page_get(int first_of_class) {
  if (free_pages) {
    void *p = free_pages;
    free_pages = *(void **)p;
    return p;
  }
  if (mem_malloced + PAGE_SIZE_SLAB > mem_limit && !first_of_class) return 0;
  void *p = map_pages(PAGE_SIZE_SLAB);
  if (p) mem_malloced += PAGE_SIZE_SLAB;
  return p;
}

/* ---- hash table ------------------------------------------------------------------------------- */

static item **htab;
static uint32_t hmask, hcount;

static uint32_t hash(const char *k, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)k[i]) * 16777619u;
  return h;
}

static void htab_grow(void) {
  const uint32_t nsize = (hmask + 1) * 2;
  item **n = halloc(nsize * sizeof(item *));
  if (!n) return; /* chains just get longer */
  memset(n, 0, nsize * sizeof(item *));
  for (uint32_t b = 0; b <= hmask; b++) {
    for (item *it = htab[b], *next; it; it = next) {
      next = it->hnext;
      const uint32_t h = hash(ITEM_key(it), it->nkey) & (nsize - 1);
      it->hnext = n[h];
      n[h] = it;
    }
  }
  hfree(htab);
  htab = n;
  hmask = nsize - 1;
}

static item *hfind(const char *key, size_t nkey) {
  for (item *it = htab[hash(key, nkey) & hmask]; it; it = it->hnext)
    if (it->nkey == nkey && !memcmp(ITEM_key(it), key, nkey)) return it;
  return 0;
}

/* ---- statistics ------------------------------------------------------------------------------- */

static struct {
  uint64_t cmd_get, cmd_set, cmd_flush, cmd_touch, cmd_meta, get_hits, get_misses, get_expired, get_flushed;
  uint64_t delete_misses, delete_hits, incr_misses, incr_hits, decr_misses, decr_hits, cas_misses, cas_hits,
      cas_badval, touch_hits, touch_misses, store_too_large, store_no_memory, bytes_read, bytes_written;
  uint64_t curr_items, total_items, bytes, evictions, reclaimed, expired_unfetched, evicted_unfetched;
  uint64_t curr_conns, total_conns, rejected_conns, wal_writes, wal_syncs, wal_bytes;
  uint64_t wal_compactions, wal_compaction_bytes, wal_evictions;
} st;

static uint64_t cas_id;
static rel_time_t oldest_live;
static uint64_t oldest_cas;
static int verbosity;

static uint64_t next_cas(void) { return ++cas_id; }

/* ---- item life cycle -------------------------------------------------------------------------- */

static void lru_unlink(item *it) {
  struct slabclass *sc = &classes[it->clsid];
  if (it->prev) it->prev->next = it->next;
  else sc->head = it->next;
  if (it->next) it->next->prev = it->prev;
  else sc->tail = it->prev;
  it->prev = it->next = 0;
}

static void lru_link(item *it) {
  struct slabclass *sc = &classes[it->clsid];
  it->prev = 0;
  it->next = sc->head;
  if (sc->head) sc->head->prev = it;
  sc->head = it;
  if (!sc->tail) sc->tail = it;
}

static void item_free(item *it) {
  struct slabclass *sc = &classes[it->clsid];
  if (it->iflags & IT_LARGE) {
    large_pages--;
    *(void **)it = free_pages;
    free_pages = it;
    return;
  }
  *(void **)it = sc->free_chunks;
  sc->free_chunks = it;
  sc->nfree++;
}

/* Drops a reference taken for a reply; frees the item once unlinked and unreferenced. */
static void item_release(item *it) {
  if (--it->refcount == 0 && !(it->iflags & IT_LINKED)) item_free(it);
}

static uint32_t item_ntotal(const item *it) { return mc_ntotal(it->nkey, it->flags, it->nbytes); }

static void item_unlink(item *it) {
  if (!(it->iflags & IT_LINKED)) return;
  it->iflags &= (uint8_t)~IT_LINKED;
  item **pp = &htab[hash(ITEM_key(it), it->nkey) & hmask];
  while (*pp != it) pp = &(*pp)->hnext;
  *pp = it->hnext;
  hcount--;
  lru_unlink(it);
  struct slabclass *sc = &classes[it->clsid];
  sc->items--;
  sc->requested -= item_ntotal(it);
  st.curr_items--;
  st.bytes -= item_ntotal(it);
  if (it->refcount == 0) item_free(it);
}

static void item_link(item *it) {
  it->iflags |= IT_LINKED;
  it->time = current_time;
  it->cas = next_cas();
  const uint32_t h = hash(ITEM_key(it), it->nkey) & hmask;
  it->hnext = htab[h];
  htab[h] = it;
  if (++hcount > (hmask + 1) + (hmask + 1) / 2) htab_grow();
  lru_link(it);
  struct slabclass *sc = &classes[it->clsid];
  sc->items++;
  sc->requested += item_ntotal(it);
  st.curr_items++;
  st.total_items++;
  st.bytes += item_ntotal(it);
}

static void item_replace(item *old, item *it) {
  item_unlink(old);
  item_link(it);
}

static int item_is_flushed(const item *it) {
  if (oldest_live == 0 || oldest_live > current_time) return 0;
  return it->time <= oldest_live || (oldest_cas != 0 && it->cas != 0 && it->cas < oldest_cas);
}

static int item_dead(const item *it) {
  return item_is_flushed(it) || (it->exptime != 0 && it->exptime <= current_time);
}

/* Drops a live item to make room, counted as memcached counts an eviction (evictions, and the class's
   evicted, evicted_nonzero, evicted_unfetched): for memory here, for the log's room in wal_compact. */
static void item_evict(item *it) {
  struct slabclass *sc = &classes[it->clsid];
  if (it->exptime != 0) sc->evicted_nonzero++;
  if (!(it->iflags & IT_FETCHED)) {
    sc->evicted_unfetched++;
    st.evicted_unfetched++;
  }
  sc->evicted++;
  st.evictions++;
  item_unlink(it);
}

/* Allocates an item of class clsid: a free chunk, the tail if it is dead, a new page, or the LRU
   tail evicted (memcached looks at five items from the tail for one nobody is sending). */
static item *slab_alloc(int clsid, int large) {
  struct slabclass *sc = &classes[clsid];
  item *search = sc->tail;
  for (int tries = 5; search && tries > 0; tries--, search = search->prev) {
    if (search->refcount == 0 && item_dead(search)) {
      if (!(search->iflags & IT_FETCHED) && !item_is_flushed(search)) {
        sc->expired_unfetched++;
        st.expired_unfetched++;
      }
      sc->reclaimed++;
      st.reclaimed++;
      item_unlink(search);
      break;
    }
  }
  for (int round = 0; round < 2; round++) {
    if (large) {
      void *p = page_get(sc->pages == 0 && large_pages == 0);
      if (p) {
        large_pages++;
        return p;
      }
    } else {
      if (sc->free_chunks) {
        item *it = sc->free_chunks;
        sc->free_chunks = *(void **)it;
        sc->nfree--;
        return it;
      }
      if (sc->end_left < sc->size) {
        char *p = page_get(sc->pages == 0 && !(clsid == largest_class && large_pages));
        if (p) {
          sc->end_page = p;
          sc->end_left = sc->perslab * sc->size;
          sc->pages++;
          sc->total_chunks += sc->perslab;
        }
      }
      if (sc->end_left >= sc->size) {
        item *it = (item *)sc->end_page;
        sc->end_page += sc->size;
        sc->end_left -= sc->size;
        return it;
      }
    }
    if (round) break;
    /* Evict: the first unreferenced item from the tail that frees what we need. */
    int evicted = 0;
    search = sc->tail;
    for (int tries = 5; search && tries > 0; tries--, search = search->prev) {
      if (search->refcount != 0 || !!(search->iflags & IT_LARGE) != large) continue;
      item_evict(search);
      evicted = 1;
      break;
    }
    if (!evicted) break;
  }
  sc->outofmemory++;
  return 0;
}

/* A new, unlinked item for key with room for nbytes of value (including \r\n); 0 if too large
   (then *too_large is set) or out of memory. */
static item *item_alloc(const char *key, size_t nkey, uint32_t flags, rel_time_t exptime, uint32_t nbytes,
                        int *too_large) {
  const uint32_t ntotal = mc_ntotal((uint32_t)nkey, flags, nbytes);
  const int id = nbytes < 2 ? 0 : slabs_clsid(ntotal);
  if (too_large) *too_large = id == 0;
  if (id == 0) return 0;
  const int large = ntotal > CHUNK_MAX;
  item *it = slab_alloc(id, large);
  if (!it) return 0;
  memset(it, 0, sizeof *it);
  it->clsid = (uint8_t)id;
  it->iflags = large ? IT_LARGE : 0;
  it->nkey = (uint8_t)nkey;
  it->flags = flags;
  it->exptime = exptime;
  it->nbytes = nbytes;
  memcpy(ITEM_key(it), key, nkey);
  return it;
}

/* memcached's do_item_get: a live item or 0 (dead ones are unlinked on the way). */
static item *item_get(const char *key, size_t nkey, int bump) {
  item *it = hfind(key, nkey);
  if (!it) return 0;
  if (item_is_flushed(it)) {
    item_unlink(it);
    st.get_flushed++;
    return 0;
  }
  if (it->exptime != 0 && it->exptime <= current_time) {
    item_unlink(it);
    st.get_expired++;
    return 0;
  }
  if (bump) {
    it->iflags |= IT_FETCHED;
    if (it->time < current_time - ITEM_UPDATE_INTERVAL) it->time = current_time;
    lru_unlink(it);
    lru_link(it);
  }
  return it;
}

/* ---- write-ahead log on the block device ------------------------------------------------------ */

/* Disk layout: sector 0 holds the header; the rest is two halves, one active. Records are appended to
   the active half; when it is full, the live items are written as a snapshot into the other half
   (at most 3/4 of it: the least recently used beyond are evicted, see wal_compact), which then becomes
   active under a new epoch (so older records there no longer count).
     header:  "KVDWAL01" | u32 epoch | u32 half | u32 crc32 of the 16 bytes before
     record:  u32 magic | u32 epoch | u32 length | u32 crc32 of (epoch, length, body) | body
     body:    u8 op, then per op: SET u8 nkey, u32 flags, i64 exptime (unix s, 0 never), u64 cas,
              u32 value length, key, value | DELETE u8 nkey, key | TOUCH u8 nkey, i64 exptime, key |
              FLUSH i64 oldest_live (unix s), u64 oldest_cas */
#define WAL_MAGIC 0x5244564bu /* "KVDR" */
#define WAL_REC_HDR 16
#define WAL_SET 1
#define WAL_DELETE 2
#define WAL_TOUCH 3
#define WAL_FLUSH 4

static int wal_fd = -1;
static uint32_t wal_epoch, wal_half;
static uint32_t wal_half_start[2], wal_half_size;
static uint32_t wal_pos; /* next record's offset inside the active half */
static char *wal_buf;    /* records of this loop iteration, not yet on disk */
static uint32_t wal_len;
static int wal_replaying;
/* A round stops taking TCP commands once its records reach this (1/16 of a half; the command that
   crosses it completes): a client pipelining sets without waiting would otherwise make one round of
   any size, more than a half (which kvd could not log) or enough to make the snapshot beside it evict
   most of the cache. The rest waits in the connection's buffer for the next round. */
static uint32_t wal_round_max;

static int wal_round_full(void) { return wal_fd >= 0 && wal_len >= wal_round_max; }

static uint32_t crc_table[256];

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    crc_table[i] = c;
  }
}

static uint32_t crc32(uint32_t crc, const void *p, size_t n) {
  const uint8_t *b = p;
  crc = ~crc;
  while (n--) crc = crc_table[(crc ^ *b++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

static int64_t abs_time(rel_time_t t) { return t == 0 ? 0 : (int64_t)t + process_started; }

static rel_time_t rel_time(int64_t t) {
  if (t == 0) return 0;
  if (t <= process_started) return 1;
  return (rel_time_t)(t - process_started);
}

static char *wal_reserve(uint32_t body) {
  if (!hgrow(&wal_buf, wal_len, wal_len + WAL_REC_HDR + body)) return 0;
  char *h = wal_buf + wal_len;
  const uint32_t w[3] = {WAL_MAGIC, wal_epoch, body};
  memcpy(h, w, 12);
  wal_len += WAL_REC_HDR + body;
  return h + WAL_REC_HDR;
}

static void wal_seal(char *body, uint32_t n) {
  char *h = body - WAL_REC_HDR;
  uint32_t crc = crc32(0, h + 4, 8);
  crc = crc32(crc, body, n);
  memcpy(h + 12, &crc, 4);
}

static void put(char **p, const void *v, size_t n) {
  memcpy(*p, v, n);
  *p += n;
}

static void wal_set(const item *it) {
  if (wal_fd < 0 || wal_replaying) return;
  const uint32_t vlen = it->nbytes - 2;
  const uint32_t n = 1 + 1 + 4 + 8 + 8 + 4 + it->nkey + vlen;
  char *b = wal_reserve(n), *p = b;
  if (!b) return;
  const uint8_t op = WAL_SET;
  const int64_t e = abs_time(it->exptime);
  put(&p, &op, 1);
  put(&p, &it->nkey, 1);
  put(&p, &it->flags, 4);
  put(&p, &e, 8);
  put(&p, &it->cas, 8);
  put(&p, &vlen, 4);
  put(&p, ITEM_key(it), it->nkey);
  put(&p, ITEM_data(it), vlen);
  wal_seal(b, n);
}

static void wal_key(uint8_t op, const char *key, uint8_t nkey, const int64_t *e) {
  if (wal_fd < 0 || wal_replaying) return;
  const uint32_t n = 2 + (e ? 8 : 0) + nkey;
  char *b = wal_reserve(n), *p = b;
  if (!b) return;
  put(&p, &op, 1);
  put(&p, &nkey, 1);
  if (e) put(&p, e, 8);
  put(&p, key, nkey);
  wal_seal(b, n);
}

static void wal_flush_all(void) {
  if (wal_fd < 0 || wal_replaying) return;
  const uint32_t n = 1 + 8 + 8;
  char *b = wal_reserve(n), *p = b;
  if (!b) return;
  const uint8_t op = WAL_FLUSH;
  const int64_t ol = abs_time(oldest_live);
  put(&p, &op, 1);
  put(&p, &ol, 8);
  put(&p, &oldest_cas, 8);
  wal_seal(b, n);
}

static int write_at(uint32_t off, const void *buf, uint32_t n) {
  if (lseek(wal_fd, (off_t)off, SEEK_SET) != (off_t)off) return -1;
  const char *p = buf;
  while (n) {
    const ssize_t w = write(wal_fd, p, n);
    if (w <= 0) return -1;
    p += w;
    n -= (uint32_t)w;
  }
  return 0;
}

static int sync_disk(void) {
  st.wal_syncs++;
  return my_syscall1(__NR_fdatasync, wal_fd) < 0 ? -1 : 0;
}

static int wal_write_header(void) {
  char h[512];
  memset(h, 0, sizeof h);
  memcpy(h, "KVDWAL01", 8);
  memcpy(h + 8, &wal_epoch, 4);
  memcpy(h + 12, &wal_half, 4);
  const uint32_t crc = crc32(0, h, 16);
  memcpy(h + 16, &crc, 4);
  if (write_at(0, h, sizeof h) < 0) return -1;
  return sync_disk();
}

static void wal_fail(const char *what) {
  say("kvd: write-ahead log: ");
  say(what);
  say(" failed; exiting so that no reply claims a write the disk does not have\n");
  exit(1);
}

/* Compaction leaves room. If a snapshot could fill the whole half, a live set near the half's size
   would be rewritten after every round or two (measured: 8 MiB disk, 46 000 items, then a compaction
   per request, 1 300 -> 4 requests/s). So the snapshot plus the round's pending records take at most
   WAL_KEEP_NUM/WAL_KEEP_DEN = 3/4 of the half H, and the least recently used items beyond are evicted:
   then at least H/4 bytes of records are appended before the next compaction, which writes at most
   3H/4, so the log writes at most 3 snapshot bytes per record byte (4x in all), and n compactions
   need more than (n - 1) * H/4 bytes of records (stats wal: wal_compactions <= wal_bytes / (H/4) + 1).
   3/4 keeps three quarters of today's ceiling on the cached set for a write amplification of 4; 1/2
   would halve the cache for 2, 7/8 would cost 8. (A round whose own records exceed 3H/4 gets what fits
   beside them: the bound holds for rounds up to that size, which wal_round_max makes every round but
   one ending in an item near 1 MiB on the smallest disks.) */
#define WAL_KEEP_NUM 3
#define WAL_KEEP_DEN 4
#define WAL_RUN (64 * 1024) /* snapshot records go to the disk in runs of up to this many bytes */

static uint32_t wal_live; /* bytes of the snapshot the last compaction wrote (0 before the first) */

static uint32_t wal_set_bytes(const item *it) { return WAL_REC_HDR + 26 + it->nkey + (it->nbytes - 2); }

/* Of the items at two classes' LRU cursors, is a the more recently used? By the time of its last link
   or bump (seconds; a bump updates it at most once a minute, as memcached's), then by CAS (the later
   write). Within a class the LRU list's own order stands. */
static int more_recent(const item *a, const item *b) { return a->time != b->time ? a->time > b->time : a->cas > b->cas; }

static void wal_evict(item *it) {
  st.wal_evictions++;
  item_evict(it);
}

/* Rewrites the live items into the other half under a new epoch and switches the header to it. The
   snapshot takes the items most recently used first, across classes (a merge of the classes' LRU
   lists, each read from its head): the budget is one for all classes, and walking class after class
   would spend it on the small classes and evict the larger ones whole, recent items included. The
   first item that does not fit ends the snapshot: it and every less recent item are evicted, so what
   the cache keeps is the most recent part of every class. */
static void wal_compact(void) {
  const uint32_t half = wal_half ^ 1;
  wal_epoch++;
  char *saved = wal_buf;
  uint32_t saved_len = wal_len;
  wal_buf = 0;
  wal_len = 0;
  const uint32_t keep = wal_half_size / WAL_KEEP_DEN * WAL_KEEP_NUM;
  const uint32_t limit = saved_len < keep ? keep - saved_len : saved_len < wal_half_size ? wal_half_size - saved_len : 0;
  item *cur[MAX_CLASSES];
  int ncur = 0;
  for (int c = 1; c <= largest_class; c++)
    if (classes[c].head) cur[ncur++] = classes[c].head;
  uint32_t pos = 0;
  int full = 0;
  while (ncur) {
    int m = 0;
    for (int i = 1; i < ncur; i++)
      if (more_recent(cur[i], cur[m])) m = i;
    item *it = cur[m];
    cur[m] = it->next;
    if (!cur[m]) cur[m] = cur[--ncur];
    if (item_dead(it)) continue;
    const uint32_t n = wal_set_bytes(it);
    if (!full && pos + wal_len + n > limit) full = 1;
    if (full) {
      wal_evict(it);
      continue;
    }
    if (wal_len && wal_len + n > WAL_RUN) {
      if (write_at(wal_half_start[half] + pos, wal_buf, wal_len) < 0) wal_fail("snapshot write");
      pos += wal_len;
      wal_len = 0;
    }
    const uint32_t before = wal_len;
    wal_set(it);
    if (wal_len == before) wal_evict(it); /* no memory for its record: it may not outlive a restart */
  }
  if (wal_len && write_at(wal_half_start[half] + pos, wal_buf, wal_len) < 0) wal_fail("snapshot write");
  pos += wal_len;
  hfree(wal_buf);
  /* The pending records were sealed under the old epoch: reseal them. A set of an item the snapshot
     evicted is left out: replayed, it would bring back what the cache no longer holds. */
  uint32_t out = 0;
  for (uint32_t off = 0; off < saved_len;) {
    uint32_t body;
    memcpy(&body, saved + off + 8, 4);
    const char *b = saved + off + WAL_REC_HDR;
    const uint32_t rec = WAL_REC_HDR + body;
    if (!((uint8_t)b[0] == WAL_SET && !hfind(b + 26, (uint8_t)b[1]))) {
      memmove(saved + out, saved + off, rec);
      memcpy(saved + out + 4, &wal_epoch, 4);
      wal_seal(saved + out + WAL_REC_HDR, body);
      out += rec;
    }
    off += rec;
  }
  wal_buf = saved;
  wal_len = out;
  if (sync_disk() < 0) wal_fail("snapshot sync");
  wal_half = half;
  wal_pos = pos;
  if (wal_write_header() < 0) wal_fail("header write");
  st.wal_compactions++;
  st.wal_compaction_bytes += pos;
  wal_live = pos;
}

/* Puts this iteration's records on the disk and flushes it; replies wait for this. */
static void wal_commit(void) {
  if (wal_fd < 0 || wal_len == 0) return;
  if (wal_pos + wal_len > wal_half_size) wal_compact();
  if (wal_pos + wal_len > wal_half_size) wal_fail("a batch larger than half the disk");
  if (write_at(wal_half_start[wal_half] + wal_pos, wal_buf, wal_len) < 0) wal_fail("write");
  if (sync_disk() < 0) wal_fail("sync");
  wal_pos += wal_len;
  st.wal_writes++;
  st.wal_bytes += wal_len;
  wal_len = 0;
}

static void replay_record(const char *b, uint32_t n) {
  const uint8_t op = (uint8_t)b[0];
  if (op == WAL_SET && n >= 26) {
    uint8_t nkey = (uint8_t)b[1];
    uint32_t flags, vlen;
    int64_t e;
    uint64_t cas;
    memcpy(&flags, b + 2, 4);
    memcpy(&e, b + 6, 8);
    memcpy(&cas, b + 14, 8);
    memcpy(&vlen, b + 22, 4);
    if (26 + nkey + vlen != n) return;
    const char *key = b + 26;
    item *old = hfind(key, nkey);
    if (old) item_unlink(old);
    const rel_time_t exp = rel_time(e);
    if (exp != 0 && exp <= current_time) return;
    item *it = item_alloc(key, nkey, flags, exp, vlen + 2, 0);
    if (!it) return;
    memcpy(ITEM_data(it), key + nkey, vlen);
    memcpy(ITEM_data(it) + vlen, "\r\n", 2);
    item_link(it);
    it->cas = cas;
    if (cas > cas_id) cas_id = cas;
  } else if (op == WAL_DELETE && n >= 2) {
    item *it = hfind(b + 2, (uint8_t)b[1]);
    if (it) item_unlink(it);
  } else if (op == WAL_TOUCH && n >= 10) {
    int64_t e;
    memcpy(&e, b + 2, 8);
    item *it = hfind(b + 10, (uint8_t)b[1]);
    if (it) it->exptime = rel_time(e);
  } else if (op == WAL_FLUSH && n >= 17) {
    int64_t ol;
    memcpy(&ol, b + 1, 8);
    memcpy(&oldest_cas, b + 9, 8);
    /* Everything logged before an immediate flush is gone; a delayed one stays pending. */
    const rel_time_t r = rel_time(ol);
    if (r <= current_time) {
      for (int c = 1; c <= largest_class; c++)
        while (classes[c].head) item_unlink(classes[c].head);
      oldest_live = 0;
    } else {
      oldest_live = r;
    }
  }
}

static void wal_open(const char *dev) {
  const int fd = open(dev, O_RDWR, 0);
  if (fd < 0) {
    say("kvd: no disk (");
    say(dev);
    say("), keeping everything in memory\n");
    return;
  }
  const off_t size = lseek(fd, 0, SEEK_END);
  if (size < 3 * 1024 * 1024) {
    say("kvd: ");
    say(dev);
    say(" is smaller than 3 MiB: no write-ahead log\n");
    close(fd);
    return;
  }
  wal_fd = fd;
  wal_half_size = (((uint32_t)size - 4096) / 2) & ~4095u;
  wal_half_start[0] = 4096;
  wal_half_start[1] = 4096 + wal_half_size;
  wal_round_max = wal_half_size / 16;
  char h[512];
  uint32_t crc = 0;
  int valid = lseek(fd, 0, SEEK_SET) == 0 && read(fd, h, sizeof h) == (ssize_t)sizeof h && !memcmp(h, "KVDWAL01", 8);
  if (valid) {
    memcpy(&crc, h + 16, 4);
    valid = crc == crc32(0, h, 16);
  }
  if (!valid) {
    wal_epoch = 1;
    wal_half = 0;
    wal_pos = 0;
    if (wal_write_header() < 0) wal_fail("formatting the disk");
    say("kvd: write-ahead log on ");
    say(dev);
    say(" (new)\n");
    return;
  }
  memcpy(&wal_epoch, h + 8, 4);
  memcpy(&wal_half, h + 12, 4);
  wal_half &= 1;
  /* Replay: records of this epoch, in order, up to the first that is not whole. */
  wal_replaying = 1;
  uint32_t pos = 0, records = 0;
  char *buf = 0;
  for (;;) {
    uint32_t hdr[4];
    if (pos + WAL_REC_HDR > wal_half_size) break;
    if (lseek(fd, (off_t)(wal_half_start[wal_half] + pos), SEEK_SET) < 0) break;
    if (read(fd, hdr, sizeof hdr) != (ssize_t)sizeof hdr) break;
    if (hdr[0] != WAL_MAGIC || hdr[1] != wal_epoch || hdr[2] == 0 || hdr[2] > ITEM_SIZE_MAX + 64 ||
        pos + WAL_REC_HDR + hdr[2] > wal_half_size)
      break;
    if (!hgrow(&buf, 0, hdr[2])) break;
    if (read(fd, buf, hdr[2]) != (ssize_t)hdr[2]) break;
    if (crc32(crc32(0, &hdr[1], 8), buf, hdr[2]) != hdr[3]) break;
    replay_record(buf, hdr[2]);
    pos += WAL_REC_HDR + hdr[2];
    records++;
  }
  hfree(buf);
  wal_replaying = 0;
  wal_pos = pos;
  say("kvd: write-ahead log on ");
  say(dev);
  say(": replayed ");
  say_num((long)records);
  say(" records, ");
  say_num((long)st.curr_items);
  say(" items\n");
}

/* ---- connections ------------------------------------------------------------------------------ */

/* A reply is a list of segments: text in the connection's buffer (by offset, so the buffer may grow)
   or an item's value (referenced until sent). Segments are grouped into responses as memcached groups
   them, which only UDP can see (each response is its own run of datagrams). */
typedef struct {
  item *it; /* 0: text at off in wbuf */
  uint32_t off, len;
} seg;

typedef struct {
  uint32_t first_seg, bytes;
  uint8_t skip;
} resp;

enum { ST_CMD, ST_NREAD, ST_SWALLOW, ST_CLOSING };

typedef struct conn {
  int fd, udp, state;
  char *rbuf;
  uint32_t rpos, rlen; /* unparsed input is rbuf[rpos, rlen) */
  uint32_t scanned;    /* rbuf[rpos, rpos + scanned) holds no '\n': a long line is searched once */
  /* a value being read (set/add/...): */
  item *nitem;
  uint32_t nleft;
  int ncomm;
  int mset; /* the reply of a meta set is built after the value arrives */
  char mset_ret[160];
  uint32_t mset_len;
  uint64_t swallow;
  int noreply;
  int close_after_write;
  char *wbuf;
  uint32_t wlen;
  seg *segs;
  uint32_t nsegs, segcap, sent_seg, sent_off;
  resp *resps;
  uint32_t nresps, respcap;
  int oom; /* an allocation for the reply failed: close the connection */
  struct ls_sockaddr_in peer;
  uint16_t udp_req_id;
  rel_time_t last_cmd;
} conn;

static conn **conns; /* by fd */
static uint32_t conns_cap;
static int tcp_fd = -1, udp_fd = -1;

static void resp_start(conn *c) {
  if (c->nresps == c->respcap) {
    const uint32_t cap = c->respcap ? c->respcap * 2 : 8;
    char *n = (char *)c->resps;
    if (!hgrow(&n, c->nresps * sizeof(resp), cap * sizeof(resp))) {
      c->oom = 1;
      return;
    }
    c->resps = (resp *)n;
    c->respcap = (uint32_t)(hsize(n) / sizeof(resp));
  }
  resp *r = &c->resps[c->nresps++];
  r->first_seg = c->nsegs;
  r->bytes = 0;
  r->skip = 0;
}

static seg *seg_new(conn *c) {
  if (c->nsegs == c->segcap) {
    char *n = (char *)c->segs;
    if (!hgrow(&n, c->nsegs * sizeof(seg), (c->segcap ? c->segcap * 2 : 8) * sizeof(seg))) {
      c->oom = 1;
      return 0;
    }
    c->segs = (seg *)n;
    c->segcap = (uint32_t)(hsize(n) / sizeof(seg));
  }
  if (c->nresps == 0) resp_start(c);
  return &c->segs[c->nsegs++];
}

static void add_bytes(conn *c, const void *p, uint32_t n) {
  if (n == 0 || c->oom) return;
  if (!hgrow(&c->wbuf, c->wlen, c->wlen + n)) {
    c->oom = 1;
    return;
  }
  memcpy(c->wbuf + c->wlen, p, n);
  if (c->nresps == 0) resp_start(c);
  if (c->oom) return;
  /* Extend the last text segment of this response when it ends where this text starts. */
  seg *last = c->nsegs > c->resps[c->nresps - 1].first_seg ? &c->segs[c->nsegs - 1] : 0;
  if (last && !last->it && last->off + last->len == c->wlen) {
    last->len += n;
  } else {
    seg *s = seg_new(c);
    if (!s) return;
    s->it = 0;
    s->off = c->wlen;
    s->len = n;
  }
  c->wlen += n;
  c->resps[c->nresps - 1].bytes += n;
}

static void add_str(conn *c, const char *s) { add_bytes(c, s, (uint32_t)strlen(s)); }

static void add_item_value(conn *c, item *it) {
  seg *s = seg_new(c);
  if (!s) return;
  s->it = it;
  s->off = 0;
  s->len = it->nbytes;
  it->refcount++;
  c->resps[c->nresps - 1].bytes += it->nbytes;
}

/* memcached's out_string: a line, unless the command said noreply (then the response is skipped). */
static void skip_resp(conn *c) {
  if (c->nresps) c->resps[c->nresps - 1].skip = 1;
}

static int resp_skipped(const conn *c) { return c->nresps && c->resps[c->nresps - 1].skip; }

static void out_string(conn *c, const char *s) {
  if (c->noreply) {
    skip_resp(c);
    c->noreply = 0;
    return;
  }
  add_str(c, s);
  add_bytes(c, "\r\n", 2);
}

static void out_errstring(conn *c, const char *s) {
  c->noreply = 0;
  out_string(c, s);
}

static uint32_t pending_out(const conn *c) {
  uint32_t n = 0;
  for (uint32_t i = c->sent_seg; i < c->nsegs; i++) n += c->segs[i].len;
  return n - c->sent_off;
}

static void out_reset(conn *c) {
  for (uint32_t i = 0; i < c->nsegs; i++)
    if (c->segs[i].it) item_release(c->segs[i].it);
  c->nsegs = c->nresps = c->wlen = c->sent_seg = c->sent_off = 0;
  /* An idle connection holds no buffers: thousands of them must not cost megabytes. */
  hfree(c->wbuf);
  c->wbuf = 0;
}

static conn *conn_new(int fd, int udp) {
  if ((uint32_t)fd >= conns_cap) {
    uint32_t cap = conns_cap ? conns_cap : 64;
    while (cap <= (uint32_t)fd) cap *= 2;
    char *n = (char *)conns;
    if (!hgrow(&n, conns_cap * sizeof(conn *), cap * sizeof(conn *))) return 0;
    conns = (conn **)n;
    memset(conns + conns_cap, 0, (cap - conns_cap) * sizeof(conn *));
    conns_cap = cap;
  }
  conn *c = halloc(sizeof(conn));
  if (!c) return 0;
  memset(c, 0, sizeof *c);
  c->fd = fd;
  c->udp = udp;
  c->state = ST_CMD;
  c->last_cmd = current_time;
  conns[fd] = c;
  return c;
}

static void conn_close(conn *c) {
  out_reset(c);
  if (c->nitem) {
    item_release(c->nitem);
    c->nitem = 0;
  }
  hfree(c->rbuf);
  hfree(c->wbuf);
  hfree(c->segs);
  hfree(c->resps);
  conns[c->fd] = 0;
  close(c->fd);
  if (!c->udp) st.curr_conns--;
  hfree(c);
}

/* ---- commands --------------------------------------------------------------------------------- */

typedef struct {
  char *value;
  size_t length;
} token;

/* memcached's tokenize_command: splits on single spaces; with more than max-1 words the last token
   holds the rest, unsplit; the terminal token (length 0) points at what is left, or is null.
   memcached first takes strlen of the whole command, which a multi-get pays again for the rest of
   its line every 23 keys: quadratic, and a 1.8 MB get of 600 000 keys held the guest's only loop for
   87 s. Stopping at the NUL splits identically in one pass over what is split. */
static size_t tokenize(char *command, token *tokens, size_t max) {
  size_t n = 0;
  char *s = command, *e = command;
  for (; *e; e++) {
    if (*e == ' ') {
      if (s != e) {
        tokens[n].value = s;
        tokens[n].length = (size_t)(e - s);
        n++;
        *e = 0;
        if (n == max - 1) {
          e++;
          s = e;
          break;
        }
      }
      s = e + 1;
    }
  }
  if (s != e) {
    tokens[n].value = s;
    tokens[n].length = (size_t)(e - s);
    n++;
  }
  tokens[n].value = *e == 0 ? 0 : e;
  tokens[n].length = 0;
  return n + 1;
}

static int set_noreply_maybe(conn *c, token *tokens, size_t ntokens) {
  const token *t = &tokens[ntokens - 2];
  if (t->value && !strcmp(t->value, "noreply")) c->noreply = 1;
  return c->noreply;
}

enum { NREAD_ADD = 1, NREAD_SET, NREAD_REPLACE, NREAD_APPEND, NREAD_PREPEND, NREAD_CAS };
enum { STORED, NOT_STORED, EXISTS, NOT_FOUND };

static const char *store_names[] = {"STORED", "NOT_STORED", "EXISTS", "NOT_FOUND"};

/* memcached's do_store_item. it carries the compare value in ->cas; on success it (or the combined
   item for append/prepend) is linked and logged. */
static int store_item(item *it, int comm, uint64_t *cas_out) {
  item *old = item_get(ITEM_key(it), it->nkey, 0);
  int stored = NOT_STORED, do_store = 0;
  item *new_it = 0;
  if (old) {
    const uint64_t it_cas = it->cas, old_cas = old->cas;
    const int cas_none = it_cas == 0, cas_match = it_cas == old_cas;
    switch (comm) {
      case NREAD_ADD:
        lru_unlink(old);
        lru_link(old);
        break;
      case NREAD_CAS:
        if (cas_match) {
          classes[old->clsid].cas_hits++;
          st.cas_hits++;
          do_store = 1;
        } else {
          classes[old->clsid].cas_badval++;
          st.cas_badval++;
          stored = EXISTS;
        }
        break;
      case NREAD_APPEND:
      case NREAD_PREPEND: {
        if (!cas_none && !cas_match) {
          stored = EXISTS;
          break;
        }
        /* Room for both: pin the old item so the allocation cannot evict it. */
        old->refcount++;
        new_it = item_alloc(ITEM_key(it), it->nkey, old->flags, old->exptime, it->nbytes + old->nbytes - 2, 0);
        item_release(old);
        if (!new_it || !(old->iflags & IT_LINKED)) {
          if (new_it) item_free(new_it);
          new_it = 0;
          break;
        }
        if (comm == NREAD_APPEND) {
          memcpy(ITEM_data(new_it), ITEM_data(old), old->nbytes);
          memcpy(ITEM_data(new_it) + old->nbytes - 2, ITEM_data(it), it->nbytes);
        } else {
          memcpy(ITEM_data(new_it), ITEM_data(it), it->nbytes);
          memcpy(ITEM_data(new_it) + it->nbytes - 2, ITEM_data(old), old->nbytes);
        }
        it = new_it;
        do_store = 1;
        break;
      }
      default: /* set, replace */
        do_store = 1;
    }
    if (do_store) {
      item_replace(old, it);
      stored = STORED;
    }
  } else {
    switch (comm) {
      case NREAD_ADD:
      case NREAD_SET:
        do_store = 1;
        break;
      case NREAD_CAS:
        stored = NOT_FOUND;
        st.cas_misses++;
        break;
      default:
        break;
    }
    if (do_store) {
      item_link(it);
      stored = STORED;
    }
  }
  if (stored == STORED) {
    wal_set(it);
    if (cas_out) *cas_out = it->cas;
  }
  return stored;
}

/* ---- meta protocol helpers -------------------------------------------------------------------- */

struct meta_flags {
  int has_error, no_update, locked, vivify, la, value, set_stale, no_reply, has_cas, new_ttl, base64;
  char mode;
  rel_time_t exptime, autoviv_exptime, recache_time;
  uint32_t client_flags;
  uint64_t req_cas_id, delta, initial;
};

static int meta_preparse(token *tokens, size_t start, struct meta_flags *of, const char **errstr) {
  uint8_t seen[127];
  memset(seen, 0, sizeof seen);
  for (size_t i = start; tokens[i].length != 0; i++) {
    const uint8_t o = (uint8_t)tokens[i].value[0];
    int32_t tmp;
    if (o >= 127 || seen[o]) {
      *errstr = "CLIENT_ERROR duplicate flag";
      return -1;
    }
    seen[o] = 1;
    switch (o) {
      case 'b':
        /* base64 keys are not supported: say so as an unknown flag would */
        *errstr = "CLIENT_ERROR invalid flag";
        return -1;
      case 'N':
        of->locked = of->vivify = 1;
        if (!safe_strtol(tokens[i].value + 1, &tmp)) {
          *errstr = "CLIENT_ERROR bad token in command line format";
          of->has_error = 1;
        } else {
          of->autoviv_exptime = realtime(exptime_positive(tmp));
        }
        break;
      case 'T':
        of->locked = 1;
        if (!safe_strtol(tokens[i].value + 1, &tmp)) {
          *errstr = "CLIENT_ERROR bad token in command line format";
          of->has_error = 1;
        } else {
          of->exptime = realtime(exptime_positive(tmp));
          of->new_ttl = 1;
        }
        break;
      case 'R':
        of->locked = 1;
        if (!safe_strtol(tokens[i].value + 1, &tmp)) {
          *errstr = "CLIENT_ERROR bad token in command line format";
          of->has_error = 1;
        } else {
          of->recache_time = realtime(exptime_positive(tmp));
        }
        break;
      case 'l':
        of->la = of->locked = 1;
        break;
      case 'O': case 'P': case 'L': case 'k': case 's': case 't': case 'c': case 'f':
        break;
      case 'v':
        of->value = 1;
        break;
      case 'h':
        of->locked = 1;
        break;
      case 'u':
        of->no_update = 1;
        break;
      case 'q':
        of->no_reply = 1;
        break;
      case 'F':
        if (!safe_strtoul(tokens[i].value + 1, &of->client_flags)) of->has_error = 1;
        break;
      case 'C':
        if (!safe_strtoull(tokens[i].value + 1, &of->req_cas_id)) {
          *errstr = "CLIENT_ERROR bad token in command line format";
          of->has_error = 1;
        } else {
          of->has_cas = 1;
        }
        break;
      case 'M':
        if (tokens[i].length != 2) {
          *errstr = "CLIENT_ERROR incorrect length for M token";
          of->has_error = 1;
        } else {
          of->mode = tokens[i].value[1];
        }
        break;
      case 'J':
        if (!safe_strtoull(tokens[i].value + 1, &of->initial)) {
          *errstr = "CLIENT_ERROR invalid numeric initial value";
          of->has_error = 1;
        }
        break;
      case 'D':
        if (!safe_strtoull(tokens[i].value + 1, &of->delta)) {
          *errstr = "CLIENT_ERROR invalid numeric delta value";
          of->has_error = 1;
        }
        break;
      case 'I':
        of->set_stale = 1;
        break;
      default:
        *errstr = "CLIENT_ERROR invalid flag";
        return -1;
    }
  }
  return of->has_error ? -1 : 0;
}

/* Small line builder for meta replies. */
typedef struct {
  char b[512];
  uint32_t n;
} line;

static void l_str(line *l, const char *s) {
  const size_t n = strlen(s);
  if (l->n + n < sizeof l->b) {
    memcpy(l->b + l->n, s, n);
    l->n += (uint32_t)n;
  }
}

static void l_mem(line *l, const char *s, size_t n) {
  if (l->n + n < sizeof l->b) {
    memcpy(l->b + l->n, s, n);
    l->n += (uint32_t)n;
  }
}

static void l_u64(line *l, uint64_t v) {
  char t[24];
  u64_dec(v, t);
  l_str(l, t);
}

static void l_flag_u64(line *l, char f, uint64_t v) {
  const char t[3] = {' ', f, 0};
  l_str(l, t);
  l_u64(l, v);
}

static void l_ttl(line *l, const item *it) {
  l_str(l, " t");
  if (it->exptime == 0) l_str(l, "-1");
  else l_u64(l, (uint32_t)(it->exptime - current_time));
}

#define MFLAG_MAX_OPT_LENGTH 20
#define MFLAG_MAX_OPAQUE_LENGTH 32

/* Adds the O(paque) and k(ey) flags; 0 if an opaque is too long. */
static int meta_ok_flags(line *l, token *tokens, size_t ntokens, const char *key, size_t nkey) {
  for (size_t i = 2; i < ntokens - 1; i++) {
    if (tokens[i].value[0] == 'O') {
      if (tokens[i].length > MFLAG_MAX_OPAQUE_LENGTH) return 0;
      l_str(l, " ");
      l_mem(l, tokens[i].value, tokens[i].length);
    } else if (tokens[i].value[0] == 'k') {
      l_str(l, " k");
      l_mem(l, key, nkey);
    }
  }
  return 1;
}

static void process_mget(conn *c, token *tokens, size_t ntokens) {
  struct meta_flags of;
  memset(&of, 0, sizeof of);
  const char *errstr = "CLIENT_ERROR bad command line format";
  if (ntokens < 3) {
    out_string(c, "ERROR");
    return;
  }
  if (tokens[1].length > KEY_MAX) {
    out_errstring(c, "CLIENT_ERROR bad command line format");
    return;
  }
  if (ntokens > MFLAG_MAX_OPT_LENGTH) {
    out_errstring(c, "CLIENT_ERROR options flags are too long");
    return;
  }
  if (meta_preparse(tokens, 2, &of, &errstr) != 0) {
    out_errstring(c, errstr);
    return;
  }
  c->noreply = of.no_reply;
  const char *key = tokens[1].value;
  const size_t nkey = tokens[1].length;
  int item_created = 0, won = 0, ttl_set = 0;
  item *it = item_get(key, nkey, !of.locked && !of.no_update);
  if (!it && of.vivify) {
    it = item_alloc(key, nkey, 0, realtime(0), 2, 0);
    if (it) {
      memcpy(ITEM_data(it), "\r\n", 2);
      item_link(it);
      wal_set(it);
      item_created = 1;
    }
  }
  line l;
  l.n = 0;
  if (it) {
    if (of.value) {
      l_str(&l, "VA ");
      l_u64(&l, it->nbytes - 2);
    } else {
      l_str(&l, "HD");
    }
    for (size_t i = 2; i < ntokens - 1; i++) {
      switch (tokens[i].value[0]) {
        case 'T':
          ttl_set = 1;
          it->exptime = of.exptime;
          {
            const int64_t e = abs_time(it->exptime);
            wal_key(WAL_TOUCH, ITEM_key(it), it->nkey, &e);
          }
          break;
        case 'N':
          if (item_created) {
            it->exptime = of.autoviv_exptime;
            const int64_t e = abs_time(it->exptime);
            wal_key(WAL_TOUCH, ITEM_key(it), it->nkey, &e);
            won = 1;
          }
          break;
        case 'R':
          if (!(it->iflags & IT_TOKEN_SENT) && !item_created && it->exptime != 0 && it->exptime < of.recache_time)
            won = 1;
          break;
        case 's':
          l_flag_u64(&l, 's', it->nbytes - 2);
          break;
        case 't':
          l_ttl(&l, it);
          break;
        case 'c':
          l_flag_u64(&l, 'c', it->cas);
          break;
        case 'f':
          l_flag_u64(&l, 'f', it->flags);
          break;
        case 'l':
          l_flag_u64(&l, 'l', (uint32_t)(current_time - it->time));
          break;
        case 'h':
          l_str(&l, it->iflags & IT_FETCHED ? " h1" : " h0");
          break;
        case 'O':
          if (tokens[i].length > MFLAG_MAX_OPAQUE_LENGTH) {
            out_errstring(c, "CLIENT_ERROR opaque token too long");
            return;
          }
          l_str(&l, " ");
          l_mem(&l, tokens[i].value, tokens[i].length);
          break;
        case 'k':
          l_str(&l, " k");
          l_mem(&l, ITEM_key(it), it->nkey);
          break;
      }
    }
    if (it->iflags & IT_TOKEN_SENT) l_str(&l, " Z");
    if (it->iflags & IT_STALE) {
      l_str(&l, " X");
      if (!(it->iflags & IT_TOKEN_SENT)) won = 1;
    }
    if (won) {
      l_str(&l, " W");
      it->iflags |= IT_TOKEN_SENT;
    }
    l_str(&l, "\r\n");
    add_bytes(c, l.b, l.n);
    if (of.value) add_item_value(c, it);
    if (of.locked && !of.no_update) {
      it->iflags |= IT_FETCHED;
      lru_unlink(it);
      lru_link(it);
    }
    if (ttl_set) {
      st.cmd_touch++;
      st.touch_hits++;
      classes[it->clsid].touch_hits++;
    } else {
      st.get_hits++;
      st.cmd_get++;
      classes[it->clsid].get_hits++;
    }
  } else {
    if (ttl_set) {
      st.cmd_touch++;
      st.touch_misses++;
    } else {
      st.get_misses++;
      st.cmd_get++;
    }
    if (c->noreply) skip_resp(c);
    l_str(&l, "EN");
    if (!meta_ok_flags(&l, tokens, ntokens, key, nkey)) {
      out_errstring(c, "CLIENT_ERROR opaque token too long");
      return;
    }
    l_str(&l, "\r\n");
    if (!resp_skipped(c)) add_bytes(c, l.b, l.n);
  }
  c->noreply = 0;
}

static void process_mset(conn *c, token *tokens, size_t ntokens) {
  struct meta_flags of;
  memset(&of, 0, sizeof of);
  const char *errstr = "CLIENT_ERROR bad command line format";
  int32_t vlen = 0;
  if (ntokens < 3) {
    out_string(c, "ERROR");
    return;
  }
  if (tokens[1].length > KEY_MAX || ntokens == 3) {
    out_errstring(c, "CLIENT_ERROR bad command line format");
    return;
  }
  if (ntokens > MFLAG_MAX_OPT_LENGTH) {
    out_errstring(c, "CLIENT_ERROR options flags too long");
    return;
  }
  if (!safe_strtol(tokens[2].value, &vlen) || vlen < 0 || vlen > 0x7fffffff - 2) {
    out_errstring(c, "CLIENT_ERROR bad command line format");
    return;
  }
  vlen += 2;
  line l;
  l.n = 0;
  int comm = NREAD_SET;
  if (meta_preparse(tokens, 3, &of, &errstr) != 0) goto error;
  c->noreply = of.no_reply;
  const char *key = tokens[1].value;
  const size_t nkey = tokens[1].length;
  int has_error = 0;
  /* The flags to echo are kept as text: O and k now, c once the CAS is known. */
  for (size_t i = 3; i < ntokens - 1; i++) {
    switch (tokens[i].value[0]) {
      case 'O':
        if (tokens[i].length > MFLAG_MAX_OPAQUE_LENGTH) {
          errstr = "CLIENT_ERROR opaque token too long";
          has_error = 1;
          break;
        }
        l_str(&l, " ");
        l_mem(&l, tokens[i].value, tokens[i].length);
        break;
      case 'k':
        l_str(&l, " k");
        l_mem(&l, key, nkey);
        break;
      case 'c':
        l_str(&l, " c");
        break;
    }
  }
  switch (of.mode) {
    case 0: break;
    case 'E': comm = NREAD_ADD; break;
    case 'A': comm = NREAD_APPEND; break;
    case 'P': comm = NREAD_PREPEND; break;
    case 'R': comm = NREAD_REPLACE; break;
    case 'S': comm = NREAD_SET; break;
    default:
      errstr = "CLIENT_ERROR invalid mode for ms M token";
      goto error;
  }
  if (of.has_cas && (comm == NREAD_SET || comm == NREAD_REPLACE)) comm = NREAD_CAS;
  if (has_error) goto error;
  int too_large = 0;
  item *it = item_alloc(key, nkey, of.client_flags, of.exptime, (uint32_t)vlen, &too_large);
  if (!it) {
    if (too_large) {
      errstr = "SERVER_ERROR object too large for cache";
      st.store_too_large++;
    } else {
      errstr = "SERVER_ERROR out of memory storing object";
      st.store_no_memory++;
    }
    item *old = item_get(key, nkey, 0);
    if (old) {
      item_unlink(old);
      wal_key(WAL_DELETE, key, (uint8_t)nkey, 0);
    }
    goto error;
  }
  it->cas = of.req_cas_id;
  it->refcount = 1;
  c->nitem = it;
  c->nleft = it->nbytes;
  c->ncomm = comm;
  c->mset = 1;
  memcpy(c->mset_ret, l.b, l.n);
  c->mset_len = l.n;
  c->state = ST_NREAD;
  return;
error:
  c->swallow = (uint32_t)vlen;
  c->state = ST_SWALLOW;
  out_errstring(c, errstr);
}

static void process_mdelete(conn *c, token *tokens, size_t ntokens) {
  struct meta_flags of;
  memset(&of, 0, sizeof of);
  const char *errstr = "CLIENT_ERROR bad command line format";
  if (ntokens < 3) {
    out_string(c, "ERROR");
    return;
  }
  if (tokens[1].length > KEY_MAX) {
    out_string(c, "CLIENT_ERROR bad command line format");
    return;
  }
  if (ntokens > MFLAG_MAX_OPT_LENGTH) {
    out_string(c, "CLIENT_ERROR options flags too long");
    return;
  }
  if (meta_preparse(tokens, 2, &of, &errstr) != 0) {
    out_errstring(c, "CLIENT_ERROR invalid or duplicate flag");
    return;
  }
  c->noreply = of.no_reply;
  const char *key = tokens[1].value;
  const size_t nkey = tokens[1].length;
  line flags;
  flags.n = 0;
  if (!meta_ok_flags(&flags, tokens, ntokens, key, nkey)) {
    out_errstring(c, "CLIENT_ERROR opaque token too long");
    return;
  }
  const char *code;
  item *it = item_get(key, nkey, 0);
  if (it) {
    if (of.has_cas && it->cas != of.req_cas_id) {
      st.delete_misses++;
      code = "EX";
    } else if (of.set_stale) {
      if (of.new_ttl) it->exptime = of.exptime;
      it->iflags |= IT_STALE;
      it->iflags &= (uint8_t)~IT_TOKEN_SENT;
      it->cas = next_cas();
      wal_set(it);
      if (c->noreply) skip_resp(c);
      code = "HD";
    } else {
      classes[it->clsid].delete_hits++;
      st.delete_hits++;
      item_unlink(it);
      wal_key(WAL_DELETE, key, (uint8_t)nkey, 0);
      if (c->noreply) skip_resp(c);
      code = "HD";
    }
  } else {
    st.delete_misses++;
    code = "NF";
  }
  if (!resp_skipped(c)) {
    add_str(c, code);
    add_bytes(c, flags.b, flags.n);
    add_bytes(c, "\r\n", 2);
  }
  c->noreply = 0;
}

enum { DELTA_OK, DELTA_NON_NUMERIC, DELTA_EOM, DELTA_NOT_FOUND, DELTA_CAS_MISMATCH };

/* memcached's do_add_delta: the value is rewritten in place, padded with spaces to its old length,
   when the new number fits and no reply is still sending it; otherwise a new item replaces it. */
static int add_delta(const char *key, size_t nkey, int incr, uint64_t delta, char *buf, uint64_t *cas,
                     item **it_ret) {
  item *it = item_get(key, nkey, 0);
  if (!it) return DELTA_NOT_FOUND;
  if (it->nbytes <= 2 || (it->iflags & IT_LARGE)) return DELTA_NON_NUMERIC;
  if (cas && *cas != 0 && it->cas != *cas) return DELTA_CAS_MISMATCH;
  uint64_t value;
  if (!safe_strtoull(ITEM_data(it), &value)) return DELTA_NON_NUMERIC;
  if (incr) {
    value += delta;
    classes[it->clsid].incr_hits++;
    st.incr_hits++;
  } else {
    value = delta > value ? 0 : value - delta;
    classes[it->clsid].decr_hits++;
    st.decr_hits++;
  }
  const uint32_t res = (uint32_t)(u64_dec(value, buf) - buf);
  if (res + 2 <= it->nbytes && it->refcount == 0) {
    it->cas = next_cas();
    memcpy(ITEM_data(it), buf, res);
    memset(ITEM_data(it) + res, ' ', it->nbytes - res - 2);
    if (it->time < current_time - ITEM_UPDATE_INTERVAL) it->time = current_time;
  } else {
    it->refcount++;
    item *n = item_alloc(key, nkey, it->flags, it->exptime, res + 2, 0);
    item_release(it);
    if (!n || !(it->iflags & IT_LINKED)) {
      if (n) item_free(n);
      return DELTA_EOM;
    }
    memcpy(ITEM_data(n), buf, res);
    memcpy(ITEM_data(n) + res, "\r\n", 2);
    item_replace(it, n);
    it = n;
  }
  wal_set(it);
  if (cas) *cas = it->cas;
  if (it_ret) *it_ret = it;
  return DELTA_OK;
}

static void process_marith(conn *c, token *tokens, size_t ntokens) {
  struct meta_flags of;
  memset(&of, 0, sizeof of);
  of.delta = 1;
  const char *errstr = "CLIENT_ERROR bad command line format";
  int incr = 1;
  if (ntokens < 3) {
    out_string(c, "ERROR");
    return;
  }
  if (tokens[1].length > KEY_MAX) {
    out_string(c, "CLIENT_ERROR bad command line format");
    return;
  }
  if (ntokens > MFLAG_MAX_OPT_LENGTH) {
    out_string(c, "CLIENT_ERROR options flags too long");
    return;
  }
  if (meta_preparse(tokens, 2, &of, &errstr) != 0) {
    out_errstring(c, "CLIENT_ERROR invalid or duplicate flag");
    return;
  }
  c->noreply = of.no_reply;
  const char *key = tokens[1].value;
  const size_t nkey = tokens[1].length;
  switch (of.mode) {
    case 0: break;
    case 'I': case 'i': case '+': incr = 1; break;
    case 'D': case 'd': case '-': incr = 0; break;
    default:
      out_errstring(c, "CLIENT_ERROR invalid mode for ma M token");
      return;
  }
  char tmp[24];
  item *it = 0;
  int created = 0;
  line l;
  l.n = 0;
  switch (add_delta(key, nkey, incr, of.delta, tmp, &of.req_cas_id, &it)) {
    case DELTA_OK:
      if (c->noreply) skip_resp(c);
      break;
    case DELTA_NON_NUMERIC:
      out_errstring(c, "CLIENT_ERROR cannot increment or decrement non-numeric value");
      return;
    case DELTA_EOM:
      out_errstring(c, "SERVER_ERROR out of memory");
      return;
    case DELTA_NOT_FOUND:
      if (of.vivify) {
        u64_dec(of.initial, tmp);
        const uint32_t vlen = (uint32_t)strlen(tmp);
        it = item_alloc(key, nkey, 0, 0, vlen + 2, 0);
        if (!it) {
          out_errstring(c, "SERVER_ERROR Out of memory allocating new item");
          return;
        }
        memcpy(ITEM_data(it), tmp, vlen);
        memcpy(ITEM_data(it) + vlen, "\r\n", 2);
        if (store_item(it, NREAD_ADD, 0) == STORED) created = 1;
        else l_str(&l, "NS");
      } else {
        if (incr) st.incr_misses++;
        else st.decr_misses++;
        l_str(&l, "NF");
      }
      break;
    case DELTA_CAS_MISMATCH:
      l_str(&l, "EX");
      break;
  }
  if (it) {
    const size_t vlen = strlen(tmp);
    if (of.value) {
      l_str(&l, "VA ");
      l_u64(&l, vlen);
    } else {
      l_str(&l, "HD");
    }
    for (size_t i = 2; i < ntokens - 1; i++) {
      switch (tokens[i].value[0]) {
        case 'c':
          l_flag_u64(&l, 'c', it->cas);
          break;
        case 't':
          l_ttl(&l, it);
          break;
        case 'T':
          it->exptime = of.exptime;
          {
            const int64_t e = abs_time(it->exptime);
            wal_key(WAL_TOUCH, ITEM_key(it), it->nkey, &e);
          }
          break;
        case 'N':
          if (created) {
            it->exptime = of.autoviv_exptime;
            const int64_t e = abs_time(it->exptime);
            wal_key(WAL_TOUCH, ITEM_key(it), it->nkey, &e);
          }
          break;
        case 'O':
          if (tokens[i].length > MFLAG_MAX_OPAQUE_LENGTH) {
            out_errstring(c, "CLIENT_ERROR opaque token too long");
            return;
          }
          l_str(&l, " ");
          l_mem(&l, tokens[i].value, tokens[i].length);
          break;
        case 'k':
          l_str(&l, " k");
          l_mem(&l, key, nkey);
          break;
      }
    }
    if (of.value) {
      l_str(&l, "\r\n");
      l_mem(&l, tmp, vlen);
    }
  } else if (!meta_ok_flags(&l, tokens, ntokens, key, nkey)) {
    out_errstring(c, "CLIENT_ERROR opaque token too long");
    return;
  }
  l_str(&l, "\r\n");
  if (!resp_skipped(c)) add_bytes(c, l.b, l.n);
  c->noreply = 0;
}

static void process_meta_debug(conn *c, token *tokens, size_t ntokens) {
  if (ntokens < 3 || tokens[1].length > KEY_MAX) {
    out_string(c, "CLIENT_ERROR bad command line format");
    return;
  }
  item *it = item_get(tokens[1].value, tokens[1].length, 0);
  st.cmd_meta++;
  if (!it) {
    out_string(c, "EN");
    return;
  }
  line l;
  l.n = 0;
  char t[24];
  l_str(&l, "ME ");
  l_mem(&l, ITEM_key(it), it->nkey);
  l_str(&l, " exp=");
  i64_dec(it->exptime == 0 ? -1 : (int32_t)(current_time - it->exptime), t);
  l_str(&l, t);
  l_str(&l, " la=");
  l_u64(&l, (uint32_t)(current_time - it->time));
  l_str(&l, " cas=");
  l_u64(&l, it->cas);
  l_str(&l, it->iflags & IT_FETCHED ? " fetch=yes" : " fetch=no");
  l_str(&l, " cls=");
  l_u64(&l, it->clsid);
  l_str(&l, " size=");
  l_u64(&l, item_ntotal(it));
  l_str(&l, "\r\n");
  add_bytes(c, l.b, l.n);
}

/* ---- classic commands ------------------------------------------------------------------------- */

static void process_get(conn *c, token *tokens, size_t ntokens, int return_cas, int should_touch) {
  token *key_token = &tokens[1];
  rel_time_t exptime = 0;
  int fail_length = 0;
  (void)ntokens;
  if (should_touch) {
    int32_t e;
    if (!safe_strtol(tokens[1].value, &e)) {
      out_string(c, "CLIENT_ERROR invalid exptime argument");
      return;
    }
    key_token++;
    exptime = realtime(exptime_positive(e));
  }
  do {
    while (key_token->length != 0) {
      const char *key = key_token->value;
      const size_t nkey = key_token->length;
      if (nkey > KEY_MAX) {
        fail_length = 1;
        goto stop;
      }
      /* Where memcached would run out of response objects: its out-of-memory answer, not ours. */
      if (c->nsegs > GET_MAX_SEGS || c->oom) goto stop;
      item *it = item_get(key, nkey, 1);
      if (it && should_touch) {
        it->exptime = exptime;
        const int64_t e = abs_time(exptime);
        wal_key(WAL_TOUCH, key, (uint8_t)nkey, &e);
      }
      if (it) {
        char suffix[64], *p = suffix;
        add_str(c, "VALUE ");
        add_bytes(c, ITEM_key(it), it->nkey);
        *p++ = ' ';
        p = u64_dec(it->flags, p);
        *p++ = ' ';
        p = u64_dec(it->nbytes - 2, p);
        if (return_cas) {
          *p++ = ' ';
          p = u64_dec(it->cas, p);
        }
        *p++ = '\r';
        *p++ = '\n';
        add_bytes(c, suffix, (uint32_t)(p - suffix));
        add_item_value(c, it);
        if (should_touch) {
          st.cmd_touch++;
          st.touch_hits++;
          classes[it->clsid].touch_hits++;
        } else {
          st.get_hits++;
          st.cmd_get++;
          classes[it->clsid].get_hits++;
        }
      } else if (should_touch) {
        st.cmd_touch++;
        st.touch_misses++;
      } else {
        st.get_misses++;
        st.cmd_get++;
      }
      key_token++;
      if (key_token->length != 0) resp_start(c);
    }
    if (key_token->value != 0) {
      tokenize(key_token->value, tokens, MAX_TOKENS);
      key_token = tokens;
      resp_start(c);
    }
  } while (key_token->value != 0);
stop:
  if (key_token->value != 0) {
    /* memcached culls every response not yet sent (not just this command's), then sends the error
       alone; a segment already partly on the wire stays, or the stream would be torn. */
    const uint32_t keep = c->sent_off ? c->sent_seg + 1 : c->sent_seg;
    for (uint32_t i = keep; i < c->nsegs; i++)
      if (c->segs[i].it) item_release(c->segs[i].it);
    c->nsegs = keep;
    c->nresps = 0;
    resp_start(c);
    c->oom = 0;
    if (fail_length) out_string(c, "CLIENT_ERROR bad command line format");
    else out_string(c, "SERVER_ERROR out of memory writing get response");
  } else {
    add_bytes(c, "END\r\n", 5);
  }
}

static void process_update(conn *c, token *tokens, size_t ntokens, int comm, int handle_cas) {
  uint32_t flags;
  int32_t exptime_int = 0, vlen;
  uint64_t req_cas_id = 0;
  set_noreply_maybe(c, tokens, ntokens);
  if (tokens[1].length > KEY_MAX) {
    out_string(c, "CLIENT_ERROR bad command line format");
    return;
  }
  const char *key = tokens[1].value;
  const size_t nkey = tokens[1].length;
  if (!(safe_strtoul(tokens[2].value, &flags) && safe_strtol(tokens[3].value, &exptime_int) &&
        safe_strtol(tokens[4].value, &vlen))) {
    out_string(c, "CLIENT_ERROR bad command line format");
    return;
  }
  const rel_time_t exptime = realtime(exptime_positive(exptime_int));
  if (handle_cas && !safe_strtoull(tokens[5].value, &req_cas_id)) {
    out_string(c, "CLIENT_ERROR bad command line format");
    return;
  }
  if (vlen < 0 || vlen > 0x7fffffff - 2) {
    out_string(c, "CLIENT_ERROR bad command line format");
    return;
  }
  vlen += 2;
  int too_large = 0;
  item *it = item_alloc(key, nkey, flags, exptime, (uint32_t)vlen, &too_large);
  if (!it) {
    if (too_large) {
      out_string(c, "SERVER_ERROR object too large for cache");
      st.store_too_large++;
    } else {
      out_string(c, "SERVER_ERROR out of memory storing object");
      st.store_no_memory++;
    }
    c->state = ST_SWALLOW;
    c->swallow = (uint32_t)vlen;
    /* A failed set must not leave the old value readable. */
    if (comm == NREAD_SET) {
      item *old = item_get(key, nkey, 0);
      if (old) {
        item_unlink(old);
        wal_key(WAL_DELETE, key, (uint8_t)nkey, 0);
      }
    }
    return;
  }
  it->cas = req_cas_id;
  it->refcount = 1;
  c->nitem = it;
  c->nleft = it->nbytes;
  c->ncomm = comm;
  c->mset = 0;
  c->state = ST_NREAD;
}

/* The value of a set-like command has arrived. */
static void complete_nread(conn *c) {
  item *it = c->nitem;
  c->nitem = 0;
  c->state = ST_CMD;
  st.cmd_set++;
  classes[it->clsid].cmd_set++;
  it->refcount = 0;
  if (memcmp(ITEM_data(it) + it->nbytes - 2, "\r\n", 2) != 0) {
    if (c->mset) c->noreply = 0;
    out_string(c, "CLIENT_ERROR bad data chunk");
    item_free(it);
    /* memcached then reads the rest of the line as a new command (no swallow) */
    return;
  }
  uint64_t cas = 0;
  const int ret = store_item(it, c->ncomm, &cas);
  if (ret != STORED && !(it->iflags & IT_LINKED)) item_free(it);
  if (!c->mset) {
    out_string(c, store_names[ret]);
    return;
  }
  static const char *codes[] = {"HD", "NS", "EX", "NF"};
  line l;
  l.n = 0;
  l_str(&l, codes[ret]);
  if (ret == STORED && c->noreply) skip_resp(c);
  /* The echoed flags: the stored text, with the CAS filled in after " c". */
  for (uint32_t i = 0; i < c->mset_len;) {
    uint32_t j = i + 1;
    while (j < c->mset_len && c->mset_ret[j] != ' ') j++;
    if (j - i == 2 && c->mset_ret[i + 1] == 'c') l_flag_u64(&l, 'c', cas);
    else l_mem(&l, c->mset_ret + i, j - i);
    i = j;
  }
  l_str(&l, "\r\n");
  if (!resp_skipped(c)) add_bytes(c, l.b, l.n);
  c->noreply = 0;
  c->mset = 0;
}

static void process_arith(conn *c, token *tokens, size_t ntokens, int incr) {
  char temp[24];
  uint64_t delta;
  set_noreply_maybe(c, tokens, ntokens);
  if (tokens[1].length > KEY_MAX) {
    out_string(c, "CLIENT_ERROR bad command line format");
    return;
  }
  if (!safe_strtoull(tokens[2].value, &delta)) {
    out_string(c, "CLIENT_ERROR invalid numeric delta argument");
    return;
  }
  switch (add_delta(tokens[1].value, tokens[1].length, incr, delta, temp, 0, 0)) {
    case DELTA_OK:
      out_string(c, temp);
      break;
    case DELTA_NON_NUMERIC:
      out_string(c, "CLIENT_ERROR cannot increment or decrement non-numeric value");
      break;
    case DELTA_EOM:
      out_string(c, "SERVER_ERROR out of memory");
      break;
    case DELTA_NOT_FOUND:
      if (incr) st.incr_misses++;
      else st.decr_misses++;
      out_string(c, "NOT_FOUND");
      break;
  }
}

static void process_delete(conn *c, token *tokens, size_t ntokens) {
  if (ntokens > 3) {
    const int hold_is_zero = !strcmp(tokens[2].value, "0");
    const int sets_noreply = set_noreply_maybe(c, tokens, ntokens);
    const int valid = (ntokens == 4 && (hold_is_zero || sets_noreply)) || (ntokens == 5 && hold_is_zero && sets_noreply);
    if (!valid) {
      out_string(c, "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]");
      return;
    }
  }
  const char *key = tokens[1].value;
  const size_t nkey = tokens[1].length;
  if (nkey > KEY_MAX) {
    out_string(c, "CLIENT_ERROR bad command line format");
    return;
  }
  item *it = item_get(key, nkey, 0);
  if (it) {
    classes[it->clsid].delete_hits++;
    st.delete_hits++;
    item_unlink(it);
    wal_key(WAL_DELETE, key, (uint8_t)nkey, 0);
    out_string(c, "DELETED");
  } else {
    st.delete_misses++;
    out_string(c, "NOT_FOUND");
  }
}

static void process_touch(conn *c, token *tokens, size_t ntokens) {
  int32_t e;
  set_noreply_maybe(c, tokens, ntokens);
  if (tokens[1].length > KEY_MAX) {
    out_string(c, "CLIENT_ERROR bad command line format");
    return;
  }
  if (!safe_strtol(tokens[2].value, &e)) {
    out_string(c, "CLIENT_ERROR invalid exptime argument");
    return;
  }
  const rel_time_t exptime = realtime(exptime_positive(e));
  item *it = item_get(tokens[1].value, tokens[1].length, 1);
  st.cmd_touch++;
  if (it) {
    it->exptime = exptime;
    const int64_t abs = abs_time(exptime);
    wal_key(WAL_TOUCH, ITEM_key(it), it->nkey, &abs);
    st.touch_hits++;
    classes[it->clsid].touch_hits++;
    out_string(c, "TOUCHED");
  } else {
    st.touch_misses++;
    out_string(c, "NOT_FOUND");
  }
}

static void process_flush_all(conn *c, token *tokens, size_t ntokens) {
  int32_t exptime = 0;
  set_noreply_maybe(c, tokens, ntokens);
  st.cmd_flush++;
  if (ntokens != (size_t)(c->noreply ? 3 : 2)) {
    if (!safe_strtol(tokens[1].value, &exptime)) {
      out_string(c, "CLIENT_ERROR invalid exptime argument");
      return;
    }
  }
  const rel_time_t new_oldest = exptime > 0 ? realtime(exptime) : current_time;
  oldest_live = new_oldest - 1;
  if (oldest_live <= current_time) oldest_cas = next_cas();
  wal_flush_all();
  out_string(c, "OK");
}

/* ---- stats ------------------------------------------------------------------------------------ */

static void stat_u64(conn *c, const char *prefix, const char *name, uint64_t v) {
  char t[24];
  add_str(c, "STAT ");
  add_str(c, prefix);
  add_str(c, name);
  add_str(c, " ");
  u64_dec(v, t);
  add_str(c, t);
  add_bytes(c, "\r\n", 2);
}

static void stat_str(conn *c, const char *name, const char *v) {
  add_str(c, "STAT ");
  add_str(c, name);
  add_str(c, " ");
  add_str(c, v);
  add_bytes(c, "\r\n", 2);
}

/* memcached's "%ld.%06ld". */
static void stat_timeval(conn *c, const char *name, const int32_t tv[2]) {
  char t[40], *p = u64_dec((uint32_t)tv[0], t);
  char us[24];
  const size_t n = (size_t)(u64_dec((uint32_t)tv[1], us) - us);
  *p++ = '.';
  for (size_t i = n; i < 6; i++) *p++ = '0';
  memcpy(p, us, n + 1);
  stat_str(c, name, t);
}

static uint32_t ports_tcp = PORT, ports_udp = PORT;
static uint32_t max_conns = 1024; /* -c (memcached's default): beyond it, a new connection is told so and closed */

static void stats_general(conn *c) {
  const int64_t now = clock_sec(CLOCK_REALTIME);
  stat_u64(c, "", "pid", (uint64_t)getpid());
  stat_u64(c, "", "uptime", current_time - (ITEM_UPDATE_INTERVAL + 2));
  stat_u64(c, "", "time", (uint64_t)now);
  stat_str(c, "version", VERSION);
  stat_str(c, "libevent", "none");
  stat_u64(c, "", "pointer_size", 32);
  /* The kernel's struct rusage on rv32: two timevals of 32-bit longs, then 14 longs. */
  struct { int32_t utime[2], stime[2], rest[14]; } ru;
  memset(&ru, 0, sizeof ru);
  my_syscall2(__NR_getrusage, 0 /* RUSAGE_SELF */, &ru);
  stat_timeval(c, "rusage_user", ru.utime);
  stat_timeval(c, "rusage_system", ru.stime);
  stat_u64(c, "", "max_connections", max_conns);
  stat_u64(c, "", "curr_connections", st.curr_conns);
  stat_u64(c, "", "total_connections", st.total_conns);
  stat_u64(c, "", "rejected_connections", st.rejected_conns);
  stat_u64(c, "", "connection_structures", st.curr_conns);
  static const char *zeros1[] = {"response_obj_oom", "response_obj_count", "response_obj_bytes", "read_buf_count",
                                 "read_buf_bytes", "read_buf_bytes_free", "read_buf_oom", "reserved_fds", 0};
  for (int i = 0; zeros1[i]; i++) stat_u64(c, "", zeros1[i], 0);
  const struct { const char *n; uint64_t v; } a[] = {
      {"cmd_get", st.cmd_get}, {"cmd_set", st.cmd_set}, {"cmd_flush", st.cmd_flush}, {"cmd_touch", st.cmd_touch},
      {"cmd_meta", st.cmd_meta}, {"get_hits", st.get_hits}, {"get_misses", st.get_misses},
      {"get_expired", st.get_expired}, {"get_flushed", st.get_flushed}, {"delete_misses", st.delete_misses},
      {"delete_hits", st.delete_hits}, {"incr_misses", st.incr_misses}, {"incr_hits", st.incr_hits},
      {"decr_misses", st.decr_misses}, {"decr_hits", st.decr_hits}, {"cas_misses", st.cas_misses},
      {"cas_hits", st.cas_hits}, {"cas_badval", st.cas_badval}, {"touch_hits", st.touch_hits},
      {"touch_misses", st.touch_misses}, {"store_too_large", st.store_too_large},
      {"store_no_memory", st.store_no_memory}, {"auth_cmds", 0}, {"auth_errors", 0},
      {"bytes_read", st.bytes_read}, {"bytes_written", st.bytes_written}, {"limit_maxbytes", mem_limit},
      {"accepting_conns", 1}, {"listen_disabled_num", 0}, {"time_in_listen_disabled_us", 0}, {"threads", 1},
      {"conn_yields", 0}, {"hash_power_level", 0}, {"hash_bytes", (uint64_t)(hmask + 1) * sizeof(item *)},
      {"hash_is_expanding", 0}, {"slab_reassign_rescues", 0}, {"slab_reassign_chunk_rescues", 0},
      {"slab_reassign_evictions_nomem", 0}, {"slab_reassign_inline_reclaim", 0}, {"slab_reassign_busy_items", 0},
      {"slab_reassign_busy_deletes", 0}, {"slab_reassign_running", 0}, {"slabs_moved", 0},
      {"lru_crawler_running", 0}, {"lru_crawler_starts", 0}, {"lru_maintainer_juggles", 0}, {"malloc_fails", 0},
      {"log_worker_dropped", 0}, {"log_worker_written", 0}, {"log_watcher_skipped", 0}, {"log_watcher_sent", 0},
      {"log_watchers", 0}, {"unexpected_napi_ids", 0}, {"round_robin_fallback", 0}, {"bytes", st.bytes},
      {"curr_items", st.curr_items}, {"total_items", st.total_items}, {"slab_global_page_pool", 0},
      {"expired_unfetched", st.expired_unfetched}, {"evicted_unfetched", st.evicted_unfetched},
      {"evicted_active", 0}, {"evictions", st.evictions}, {"reclaimed", st.reclaimed}, {"crawler_reclaimed", 0},
      {"crawler_items_checked", 0}, {"lrutail_reflocked", 0}, {"moves_to_cold", 0}, {"moves_to_warm", 0},
      {"moves_within_lru", 0}, {"direct_reclaims", 0}, {"lru_bumps_dropped", 0}};
  for (unsigned i = 0; i < sizeof a / sizeof a[0]; i++) stat_u64(c, "", a[i].n, a[i].v);
}

/* The names memcached 1.6.18 lists, in its order; the values are this server's. */
static void stats_settings(conn *c) {
  char num[6][24];
  u64_dec(mem_limit, num[0]);
  u64_dec(max_conns, num[1]);
  u64_dec(ports_tcp, num[2]);
  u64_dec(ports_udp, num[3]);
  u64_dec((uint64_t)verbosity, num[4]);
  u64_dec(oldest_live, num[5]);
  const char *const table[][2] = {
      {"maxbytes", num[0]}, {"maxconns", num[1]}, {"tcpport", num[2]}, {"udpport", num[3]}, {"inter", "NULL"},
      {"verbosity", num[4]}, {"oldest", num[5]}, {"evictions", "on"}, {"domain_socket", "NULL"},
      {"umask", "700"}, {"shutdown_command", "no"}, {"growth_factor", "1.25"}, {"chunk_size", "48"},
      {"num_threads", "1"}, {"num_threads_per_udp", "1"}, {"stat_key_prefix", ":"}, {"detail_enabled", "no"},
      {"reqs_per_event", "20"}, {"cas_enabled", "yes"}, {"tcp_backlog", "1024"}, {"binding_protocol", "ascii"},
      {"auth_enabled_sasl", "no"}, {"auth_enabled_ascii", "no"}, {"item_size_max", "1048576"},
      {"maxconns_fast", "yes"}, {"hashpower_init", "0"}, {"slab_reassign", "no"}, {"slab_automove", "0"},
      {"slab_automove_ratio", "0.80"}, {"slab_automove_window", "30"}, {"slab_chunk_max", "524288"},
      {"lru_crawler", "no"}, {"lru_crawler_sleep", "100"}, {"lru_crawler_tocrawl", "0"},
      {"tail_repair_time", "0"}, {"flush_enabled", "yes"}, {"dump_enabled", "yes"}, {"hash_algorithm", "fnv1a"},
      {"lru_maintainer_thread", "no"}, {"lru_segmented", "no"}, {"hot_lru_pct", "20"}, {"warm_lru_pct", "40"},
      {"hot_max_factor", "0.20"}, {"warm_max_factor", "2.00"}, {"temp_lru", "no"}, {"temporary_ttl", "61"},
      {"idle_timeout", "0"}, {"watcher_logbuf_size", "0"}, {"worker_logbuf_size", "0"},
      {"read_buf_mem_limit", "0"}, {"track_sizes", "no"}, {"inline_ascii_response", "no"},
      {"ext_item_size", "512"}, {"ext_item_age", "4294967295"}, {"ext_low_ttl", "0"},
      {"ext_recache_rate", "2000"}, {"ext_wbuf_size", "0"}, {"ext_compact_under", "0"}, {"ext_drop_under", "0"},
      {"ext_max_sleep", "1000000"}, {"ext_max_frag", "0.80"}, {"slab_automove_freeratio", "0.010"},
      {"ext_drop_unread", "no"}, {"ssl_enabled", "no"}, {"ssl_chain_cert", "(null)"}, {"ssl_key", "(null)"},
      {"ssl_verify_mode", "0"}, {"ssl_keyformat", "1"}, {"ssl_ciphers", "NULL"}, {"ssl_ca_cert", "NULL"},
      {"ssl_wbuf_size", "16384"}, {"ssl_session_cache", "no"}, {"ssl_kernel_tls", "no"},
      {"ssl_min_version", "tlsv1.2"}, {"num_napi_ids", "(null)"},
      {"memory_file", wal_fd >= 0 ? "/dev/vda (write-ahead log)" : "(null)"}};
  for (unsigned i = 0; i < sizeof table / sizeof table[0]; i++) stat_str(c, table[i][0], table[i][1]);
}

static void stats_items(conn *c) {
  for (int i = 1; i <= largest_class; i++) {
    const struct slabclass *sc = &classes[i];
    if (sc->items == 0) continue;
    char p[24], *q = p;
    q = strcpy(q, "items:") + 6;
    q = u64_dec((uint64_t)i, q);
    *q++ = ':';
    *q = 0;
    stat_u64(c, p, "number", sc->items);
    stat_u64(c, p, "number_hot", 0);
    stat_u64(c, p, "number_warm", 0);
    stat_u64(c, p, "number_cold", sc->items);
    stat_u64(c, p, "age_hot", 0);
    stat_u64(c, p, "age_warm", 0);
    stat_u64(c, p, "age", sc->tail ? current_time - sc->tail->time : 0);
    stat_u64(c, p, "mem_requested", sc->requested);
    stat_u64(c, p, "evicted", sc->evicted);
    stat_u64(c, p, "evicted_nonzero", sc->evicted_nonzero);
    stat_u64(c, p, "evicted_time", 0);
    stat_u64(c, p, "outofmemory", sc->outofmemory);
    stat_u64(c, p, "tailrepairs", 0);
    stat_u64(c, p, "reclaimed", sc->reclaimed);
    stat_u64(c, p, "expired_unfetched", sc->expired_unfetched);
    stat_u64(c, p, "evicted_unfetched", sc->evicted_unfetched);
    static const char *zeros[] = {"evicted_active", "crawler_reclaimed", "crawler_items_checked", "lrutail_reflocked",
                                  "moves_to_cold", "moves_to_warm", "moves_within_lru", "direct_reclaims",
                                  "hits_to_hot", "hits_to_warm", "hits_to_cold", "hits_to_temp", 0};
    for (int z = 0; zeros[z]; z++) stat_u64(c, p, zeros[z], 0);
  }
}

static void stats_slabs(conn *c) {
  int active = 0;
  for (int i = 1; i <= largest_class; i++) {
    const struct slabclass *sc = &classes[i];
    if (sc->pages == 0 && sc->items == 0) continue;
    active++;
    char p[16], *q = u64_dec((uint64_t)i, p);
    *q++ = ':';
    *q = 0;
    stat_u64(c, p, "chunk_size", sc->size);
    stat_u64(c, p, "chunks_per_page", sc->perslab);
    stat_u64(c, p, "total_pages", sc->pages);
    stat_u64(c, p, "total_chunks", sc->total_chunks);
    stat_u64(c, p, "used_chunks", sc->items);
    stat_u64(c, p, "free_chunks", sc->nfree);
    stat_u64(c, p, "free_chunks_end", sc->end_left / (sc->size ? sc->size : 1));
    stat_u64(c, p, "get_hits", sc->get_hits);
    stat_u64(c, p, "cmd_set", sc->cmd_set);
    stat_u64(c, p, "delete_hits", sc->delete_hits);
    stat_u64(c, p, "incr_hits", sc->incr_hits);
    stat_u64(c, p, "decr_hits", sc->decr_hits);
    stat_u64(c, p, "cas_hits", sc->cas_hits);
    stat_u64(c, p, "cas_badval", sc->cas_badval);
    stat_u64(c, p, "touch_hits", sc->touch_hits);
  }
  stat_u64(c, "", "active_slabs", (uint64_t)active);
  stat_u64(c, "", "total_malloced", mem_malloced);
}

/* kvd's own (memcached has no such command): the write-ahead log's figures. Counters since start or
   `stats reset`: wal_writes (rounds committed), wal_syncs (fdatasync calls, header and snapshots
   included), wal_bytes (record bytes appended by rounds), wal_compactions, wal_compaction_bytes
   (snapshot bytes written), wal_evictions (items a compaction dropped, also in `evictions`). State:
   wal_half_bytes (a half's size, 0 without a disk), wal_live_bytes (the last compaction's snapshot,
   0 before the first since start), wal_used_bytes (bytes of the active half in use: the snapshot or the
   log replayed at start, and the records appended since). */
static void stats_wal(conn *c) {
  const struct { const char *n; uint64_t v; } a[] = {
      {"wal_writes", st.wal_writes}, {"wal_syncs", st.wal_syncs}, {"wal_bytes", st.wal_bytes},
      {"wal_compactions", st.wal_compactions}, {"wal_compaction_bytes", st.wal_compaction_bytes},
      {"wal_half_bytes", wal_fd >= 0 ? wal_half_size : 0}, {"wal_live_bytes", wal_live},
      {"wal_used_bytes", wal_fd >= 0 ? wal_pos : 0}, {"wal_evictions", st.wal_evictions}};
  for (unsigned i = 0; i < sizeof a / sizeof a[0]; i++) stat_u64(c, "", a[i].n, a[i].v);
}

static void ipv4_text(char *p, uint32_t a, uint16_t port_be) {
  for (int i = 0; i < 4; i++) {
    p = u64_dec((a >> (8 * i)) & 0xff, p);
    *p++ = i < 3 ? '.' : ':';
  }
  u64_dec((uint64_t)(((port_be & 0xff) << 8) | (port_be >> 8)), p);
}

static void stat_pstr(conn *c, const char *prefix, const char *name, const char *v) {
  add_str(c, "STAT ");
  add_str(c, prefix);
  add_str(c, name);
  add_str(c, " ");
  add_str(c, v);
  add_bytes(c, "\r\n", 2);
}

static void stats_conns(conn *c) {
  char prefix[16], v[64];
  for (uint32_t fd = 0; fd < conns_cap; fd++) {
    char *q = u64_dec(fd, prefix);
    *q++ = ':';
    *q = 0;
    if ((int)fd == tcp_fd || (int)fd == udp_fd) {
      strcpy(v, fd == (uint32_t)tcp_fd ? "tcp:0.0.0.0:" : "udp:0.0.0.0:");
      u64_dec(PORT, v + strlen(v));
      stat_pstr(c, prefix, "addr", v);
      continue;
    }
    const conn *k = conns[fd];
    if (!k || k->udp) continue;
    strcpy(v, "tcp:");
    ipv4_text(v + 4, k->peer.addr, k->peer.port);
    stat_pstr(c, prefix, "addr", v);
    stat_pstr(c, prefix, "state", k == c ? "conn_parse_cmd" : "conn_waiting");
    stat_u64(c, prefix, "secs_since_last_cmd", current_time - k->last_cmd);
  }
}

static void stats_cachedump(conn *c, token *tokens, size_t ntokens) {
  uint32_t id, limit = 0;
  if (ntokens < 5) {
    out_string(c, "CLIENT_ERROR bad command line");
    return;
  }
  if (!safe_strtoul(tokens[2].value, &id) || !safe_strtoul(tokens[3].value, &limit)) {
    out_string(c, "CLIENT_ERROR bad command line format");
    return;
  }
  if (id >= MAX_CLASSES) {
    out_string(c, "CLIENT_ERROR Illegal slab id");
    return;
  }
  uint32_t shown = 0;
  for (item *it = classes[id].head; it && (limit == 0 || shown < limit); it = it->next, shown++) {
    char t[64], *p = t;
    add_str(c, "ITEM ");
    add_bytes(c, ITEM_key(it), it->nkey);
    p = strcpy(p, " [") + 2;
    p = u64_dec(it->nbytes - 2, p);
    p = strcpy(p, " b; ") + 4;
    p = u64_dec((uint64_t)(it->exptime == 0 ? 0 : abs_time(it->exptime)), p);
    strcpy(p, " s]\r\n");
    add_str(c, t);
  }
  add_bytes(c, "END\r\n", 5);
}

static void process_stats(conn *c, token *tokens, size_t ntokens) {
  const char *sub = tokens[1].value;
  if (ntokens < 2) {
    out_string(c, "CLIENT_ERROR bad command line");
    return;
  }
  if (ntokens == 2) {
    stats_general(c);
  } else if (!strcmp(sub, "reset")) {
    const uint64_t keep[] = {st.curr_items, st.total_items, st.bytes, st.curr_conns, st.total_conns};
    memset(&st, 0, sizeof st);
    st.curr_items = keep[0];
    st.total_items = keep[1];
    st.bytes = keep[2];
    st.curr_conns = keep[3];
    st.total_conns = keep[4];
    out_string(c, "RESET");
    return;
  } else if (!strcmp(sub, "detail")) {
    if (ntokens < 4) out_string(c, "CLIENT_ERROR usage: stats detail on|off|dump");
    else if (!strcmp(tokens[2].value, "on") || !strcmp(tokens[2].value, "off")) out_string(c, "OK");
    else if (!strcmp(tokens[2].value, "dump")) add_bytes(c, "END\r\n", 5);
    else out_string(c, "CLIENT_ERROR usage: stats detail on|off|dump");
    return;
  } else if (!strcmp(sub, "settings")) {
    stats_settings(c);
  } else if (!strcmp(sub, "cachedump")) {
    stats_cachedump(c, tokens, ntokens);
    return;
  } else if (!strcmp(sub, "conns")) {
    stats_conns(c);
  } else if (!strcmp(sub, "items")) {
    stats_items(c);
  } else if (!strcmp(sub, "slabs")) {
    stats_slabs(c);
  } else if (!strcmp(sub, "sizes")) {
    stat_str(c, "sizes_status", "disabled");
  } else if (!strcmp(sub, "wal")) {
    stats_wal(c);
  } else {
    out_string(c, "ERROR");
    return;
  }
  add_bytes(c, "END\r\n", 5);
}

#define WANT_TOKENS(min, max)                                          \
  do {                                                                 \
    if ((min != -1 && ntokens < min) || (max != -1 && ntokens > max)) { \
      out_string(c, "ERROR");                                          \
      return;                                                          \
    }                                                                  \
  } while (0)
#define WANT_TOKENS_OR(a, b)              \
  do {                                    \
    if (ntokens != a && ntokens != b) {   \
      out_string(c, "ERROR");             \
      return;                             \
    }                                     \
  } while (0)

static void process_command(conn *c, char *command) {
  token tokens[MAX_TOKENS];
  c->noreply = 0;
  c->last_cmd = current_time;
  resp_start(c);
  const size_t ntokens = tokenize(command, tokens, MAX_TOKENS);
  if (ntokens < 2 || tokens[0].length < 2) {
    out_string(c, "ERROR");
    return;
  }
  const char *cmd = tokens[0].value;
  const char first = cmd[0];
  if (first == 'm' && tokens[0].length == 2) {
    switch (cmd[1]) {
      case 'g': process_mget(c, tokens, ntokens); break;
      case 's': process_mset(c, tokens, ntokens); break;
      case 'd': process_mdelete(c, tokens, ntokens); break;
      case 'n': out_string(c, "MN"); break;
      case 'a': process_marith(c, tokens, ntokens); break;
      case 'e': process_meta_debug(c, tokens, ntokens); break;
      default: out_string(c, "ERROR"); break;
    }
  } else if (first == 'g') {
    WANT_TOKENS(3, -1);
    if (!strcmp(cmd, "get")) process_get(c, tokens, ntokens, 0, 0);
    else if (!strcmp(cmd, "gets")) process_get(c, tokens, ntokens, 1, 0);
    else if (!strcmp(cmd, "gat")) process_get(c, tokens, ntokens, 0, 1);
    else if (!strcmp(cmd, "gats")) process_get(c, tokens, ntokens, 1, 1);
    else out_string(c, "ERROR");
  } else if (!strcmp(cmd, "set")) {
    WANT_TOKENS_OR(6, 7);
    process_update(c, tokens, ntokens, NREAD_SET, 0);
  } else if (!strcmp(cmd, "stats")) {
    process_stats(c, tokens, ntokens);
  } else if (!strcmp(cmd, "add") || !strcmp(cmd, "append")) {
    WANT_TOKENS_OR(6, 7);
    process_update(c, tokens, ntokens, cmd[1] == 'd' ? NREAD_ADD : NREAD_APPEND, 0);
  } else if (!strcmp(cmd, "cas")) {
    WANT_TOKENS_OR(7, 8);
    process_update(c, tokens, ntokens, NREAD_CAS, 1);
  } else if (!strcmp(cmd, "incr")) {
    WANT_TOKENS_OR(4, 5);
    process_arith(c, tokens, ntokens, 1);
  } else if (!strcmp(cmd, "delete")) {
    WANT_TOKENS(3, 5);
    process_delete(c, tokens, ntokens);
  } else if (!strcmp(cmd, "decr")) {
    WANT_TOKENS_OR(4, 5);
    process_arith(c, tokens, ntokens, 0);
  } else if (!strcmp(cmd, "touch")) {
    WANT_TOKENS_OR(4, 5);
    process_touch(c, tokens, ntokens);
  } else if (!strcmp(cmd, "replace") || !strcmp(cmd, "prepend")) {
    WANT_TOKENS_OR(6, 7);
    process_update(c, tokens, ntokens, cmd[0] == 'r' ? NREAD_REPLACE : NREAD_PREPEND, 0);
  } else if (!strcmp(cmd, "bget")) {
    WANT_TOKENS(3, -1);
    process_get(c, tokens, ntokens, 0, 0);
  } else if (!strcmp(cmd, "flush_all")) {
    WANT_TOKENS(2, 4);
    process_flush_all(c, tokens, ntokens);
  } else if (!strcmp(cmd, "version")) {
    out_string(c, "VERSION " VERSION);
  } else if (!strcmp(cmd, "quit")) {
    c->close_after_write = 1;
  } else if (!strcmp(cmd, "verbosity")) {
    WANT_TOKENS_OR(3, 4);
    uint32_t level;
    set_noreply_maybe(c, tokens, ntokens);
    if (!safe_strtoul(tokens[1].value, &level)) {
      out_string(c, "CLIENT_ERROR bad command line format");
      return;
    }
    verbosity = level > 2 ? 2 : (int)level;
    out_string(c, "OK");
  } else if (!strcmp(cmd, "shutdown")) {
    out_string(c, "ERROR: shutdown not enabled");
  } else {
    out_string(c, "ERROR");
  }
}

/* Runs the commands in c's input buffer; returns when it needs more input, or stops early (with the
   rest kept) when the connection closes or too much output is queued. */
static void process_input(conn *c) {
  while (c->state != ST_CLOSING && !c->close_after_write && !c->oom) {
    const uint32_t avail = c->rlen - c->rpos;
    if (c->state == ST_NREAD) {
      if (avail == 0) return;
      const uint32_t n = avail < c->nleft ? avail : c->nleft;
      memcpy(ITEM_data(c->nitem) + (c->nitem->nbytes - c->nleft), c->rbuf + c->rpos, n);
      c->rpos += n;
      c->nleft -= n;
      if (c->nleft) return;
      complete_nread(c);
      continue;
    }
    if (c->state == ST_SWALLOW) {
      const uint32_t n = (uint64_t)avail < c->swallow ? avail : (uint32_t)c->swallow;
      c->rpos += n;
      c->swallow -= n;
      if (c->swallow) return;
      c->state = ST_CMD;
      continue;
    }
    if (avail == 0) return;
    if (!c->udp && (pending_out(c) > OUT_BACKLOG || wal_round_full())) return;
    char *start = c->rbuf + c->rpos;
    if (c->scanned > avail) c->scanned = 0;
    char *el = find_byte(start + c->scanned, '\n', avail - c->scanned);
    if (!el) {
      c->scanned = avail;
      if (avail > LINE_JUNK) {
        const char *p = start;
        while (p < start + avail && *p == ' ') p++;
        if (p - start > 100 || (strncmp(p, "get ", 4) && strncmp(p, "gets ", 5)) || avail > LINE_MAX_GET)
          c->state = ST_CLOSING;
      }
      return;
    }
    c->scanned = 0;
    char *cont = el + 1;
    if (el - start > 1 && el[-1] == '\r') el--;
    *el = 0;
    process_command(c, start);
    c->rpos = (uint32_t)(cont - c->rbuf);
  }
}

/* ---- network ---------------------------------------------------------------------------------- */

static uint16_t be16(uint32_t v) { return (uint16_t)(((v & 0xff) << 8) | ((v >> 8) & 0xff)); }

static int listen_on(int type, uint32_t port) {
  const int s = my_syscall3(__NR_socket, LS_AF_INET, type | LS_SOCK_NONBLOCK, 0);
  if (s < 0) return s;
  const int one = 1;
  my_syscall5(__NR_setsockopt, s, LS_SOL_SOCKET, LS_SO_REUSEADDR, &one, sizeof one);
  struct ls_sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.family = LS_AF_INET;
  a.port = be16(port);
  int r = my_syscall3(__NR_bind, s, &a, sizeof a);
  if (r < 0) return r;
  if (type == LS_SOCK_STREAM && (r = my_syscall2(__NR_listen, s, 1024)) < 0) return r;
  return s;
}

/* Sends what c has queued; returns -1 if the peer is gone. */
static int conn_send(conn *c) {
  while (c->sent_seg < c->nsegs) {
    struct ls_iovec iov[64];
    int n = 0;
    for (uint32_t i = c->sent_seg; i < c->nsegs && n < 64; i++) {
      const seg *s = &c->segs[i];
      const char *base = s->it ? ITEM_data(s->it) + s->off : c->wbuf + s->off;
      const uint32_t skip = i == c->sent_seg ? c->sent_off : 0;
      iov[n].base = base + skip;
      iov[n].len = s->len - skip;
      n++;
    }
    const long w = my_syscall3(__NR_writev, c->fd, iov, n);
    if (w == -EAGAIN) return 0;
    if (w == -EINTR) continue;
    if (w < 0) return -1;
    st.bytes_written += (uint64_t)w;
    uint32_t left = (uint32_t)w;
    while (left && c->sent_seg < c->nsegs) {
      const uint32_t rest = c->segs[c->sent_seg].len - c->sent_off;
      if (left >= rest) {
        left -= rest;
        c->sent_seg++;
        c->sent_off = 0;
      } else {
        c->sent_off += left;
        left = 0;
      }
    }
  }
  out_reset(c);
  return 0;
}

static void udp_reply(conn *c) {
  /* Each response goes as its own run of datagrams, numbered from 0, as memcached 1.6 sends them;
     skipped ones send nothing. */
  static char dgram[UDP_MAX_PAYLOAD];
  uint32_t r = 0;
  int after_send = 0;
  while (r < c->nresps) {
    const resp *rs = &c->resps[r];
    /* After a send, memcached retires the empty responses that follow without sending them; at the
       head, a skipped one is dropped and an empty one goes out as a header with total 0. */
    if (rs->bytes == 0 && (after_send || rs->skip)) {
      r++;
      continue;
    }
    after_send = 1;
    uint32_t total = rs->bytes / UDP_DATA + (rs->bytes % UDP_DATA ? 1 : 0);
    if (total > 0xffff) total = 0xffff;
    const uint32_t seg_end = r + 1 < c->nresps ? c->resps[r + 1].first_seg : c->nsegs;
    uint32_t si = rs->first_seg, so = 0, seq = 0, left = rs->bytes;
    do {
      uint32_t len = 0;
      while (len < UDP_DATA && si < seg_end) {
        const seg *s = &c->segs[si];
        const char *base = s->it ? ITEM_data(s->it) + s->off : c->wbuf + s->off;
        uint32_t n = s->len - so;
        if (n > UDP_DATA - len) n = UDP_DATA - len;
        memcpy(dgram + UDP_HDR + len, base + so, n);
        len += n;
        so += n;
        if (so == s->len) {
          si++;
          so = 0;
        }
      }
      dgram[0] = (char)(c->udp_req_id >> 8);
      dgram[1] = (char)c->udp_req_id;
      dgram[2] = (char)(seq >> 8);
      dgram[3] = (char)seq;
      dgram[4] = (char)(total >> 8);
      dgram[5] = (char)total;
      dgram[6] = dgram[7] = 0;
      seq++;
      const long w = my_syscall6(__NR_sendto, udp_fd, dgram, UDP_HDR + len, LS_MSG_DONTWAIT, &c->peer, sizeof c->peer);
      if (w > 0) st.bytes_written += (uint64_t)w;
      left -= len;
    } while (left > 0);
    r++;
  }
  out_reset(c);
}

/* Datagrams handled per disk write: each has its own reply state (its peer, request id and output). */
#define UDP_GROUP 16
static conn *udp_conn, *udp_group[UDP_GROUP];

static conn *udp_slot(uint32_t i) {
  if (!udp_group[i]) {
    if (i == 0) {
      udp_group[0] = udp_conn;
    } else {
      conn *c = halloc(sizeof(conn)); /* not in conns[]: the descriptor is udp_conn's */
      if (!c) return 0;
      memset(c, 0, sizeof *c);
      c->fd = udp_fd;
      c->udp = 1;
      c->state = ST_CMD;
      udp_group[i] = c;
    }
  }
  return udp_group[i];
}

static void udp_read(void) {
  static char buf[65536];
  /* A group of datagrams is applied, written to the disk once, then answered: under load a set costs a
     share of one disk flush, as a TCP round's sets do, instead of a flush each. */
  int budget = 64, drained = 0;
  while (!drained && budget > 0) {
    uint32_t n_group = 0;
    while (n_group < UDP_GROUP && budget > 0) {
      conn *c = udp_slot(n_group);
      if (!c) break;
      uint32_t alen = sizeof c->peer;
      const long n = my_syscall6(__NR_recvfrom, udp_fd, buf, sizeof buf - 1, LS_MSG_DONTWAIT, &c->peer, &alen);
      if (n < 0) {
        drained = 1;
        break;
      }
      budget--;
      st.bytes_read += (uint64_t)n;
      /* Requests that need more than one datagram are dropped, as memcached does. */
      if (n < UDP_HDR || buf[4] != 0 || buf[5] != 1) continue;
      c->udp_req_id = (uint16_t)(((uint8_t)buf[0] << 8) | (uint8_t)buf[1]);
      c->rbuf = buf + UDP_HDR;
      c->rpos = c->scanned = 0;
      c->rlen = (uint32_t)n - UDP_HDR;
      c->rbuf[c->rlen] = 0;
      c->state = ST_CMD;
      c->close_after_write = 0;
      c->oom = 0;
      process_input(c);
      if (c->nitem) { /* a value cut off by the datagram's end: drop it */
        item_free(c->nitem);
        c->nitem = 0;
      }
      c->rbuf = 0;
      n_group++;
    }
    if (n_group == 0) return;
    wal_commit();
    for (uint32_t i = 0; i < n_group; i++) udp_reply(udp_group[i]);
  }
}

static void tcp_accept(void) {
  for (int budget = 64; budget > 0; budget--) {
    struct ls_sockaddr_in peer;
    uint32_t alen = sizeof peer;
    const int fd = my_syscall4(__NR_accept4, tcp_fd, &peer, &alen, LS_SOCK_NONBLOCK);
    if (fd < 0) {
      if (fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM) st.rejected_conns++;
      return;
    }
    if (st.curr_conns >= max_conns) {
      static const char full[] = "ERROR Too many open connections\r\n";
      my_syscall6(__NR_sendto, fd, full, sizeof full - 1, LS_MSG_DONTWAIT | LS_MSG_NOSIGNAL, 0, 0);
      close(fd);
      st.rejected_conns++;
      continue;
    }
    conn *c = conn_new(fd, 0);
    if (!c) {
      st.rejected_conns++;
      close(fd);
      continue;
    }
    c->peer = peer;
    const int one = 1;
    my_syscall5(__NR_setsockopt, fd, LS_IPPROTO_TCP, LS_TCP_NODELAY, &one, sizeof one);
    st.curr_conns++;
    st.total_conns++;
  }
}

static void rbuf_release_if_empty(conn *c) {
  if (c->rpos == c->rlen && c->rbuf) {
    hfree(c->rbuf);
    c->rbuf = 0;
    c->rpos = c->rlen = 0;
  }
}

/* Reads what is there; returns 0, or -1 when the connection is over. */
static int conn_read(conn *c) {
  for (;;) {
    char *dst;
    uint32_t room;
    if (c->state == ST_NREAD && c->rpos == c->rlen) {
      /* Values go straight into the item. */
      dst = ITEM_data(c->nitem) + (c->nitem->nbytes - c->nleft);
      room = c->nleft;
    } else {
      if (c->rpos == c->rlen) c->rpos = c->rlen = 0;
      if (c->rpos > 0 && c->rlen - c->rpos < 1024) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
      }
      if (!c->rbuf || hsize(c->rbuf) - c->rlen < 1024) {
        if (c->rlen > LINE_MAX_GET + 4096 || !hgrow(&c->rbuf, c->rlen, c->rbuf ? hsize(c->rbuf) * 2 : 4096)) return -1;
      }
      dst = c->rbuf + c->rlen;
      room = (uint32_t)hsize(c->rbuf) - c->rlen - 1;
    }
    const long n = my_syscall6(__NR_recvfrom, c->fd, dst, room, LS_MSG_DONTWAIT, 0, 0);
    if (n == -EAGAIN) {
      rbuf_release_if_empty(c);
      return 0;
    }
    if (n == -EINTR) continue;
    if (n <= 0) return -1;
    st.bytes_read += (uint64_t)n;
    if (dst == c->rbuf + c->rlen) {
      c->rlen += (uint32_t)n;
      c->rbuf[c->rlen] = 0;
    } else {
      c->nleft -= (uint32_t)n;
      if (c->nleft == 0) complete_nread(c);
    }
    process_input(c);
    if (c->state == ST_CLOSING || c->oom) return -1;
    if (c->close_after_write || pending_out(c) > OUT_BACKLOG || wal_round_full()) return 0;
    if ((uint32_t)n < room) {
      rbuf_release_if_empty(c);
      return 0;
    }
  }
}

/* ---- main ------------------------------------------------------------------------------------- */

struct ls_sysinfo {
  int32_t uptime;
  uint32_t loads[3], totalram, freeram, sharedram, bufferram, totalswap, freeswap;
  uint16_t procs, pad;
  uint32_t totalhigh, freehigh, mem_unit;
  char rest[8];
};

static void usage(void) {
  say("usage: kvd [-p port] [-U udp-port] [-m megabytes] [-c max-connections] [-d device | -n]\n");
  exit(2);
}

int main(int argc, char **argv) {
  const char *dev = "/dev/vda";
  uint32_t mb = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-n")) {
      dev = 0;
    } else if (i + 1 < argc && (!strcmp(a, "-p") || !strcmp(a, "-U") || !strcmp(a, "-m") || !strcmp(a, "-d") || !strcmp(a, "-c"))) {
      const char *v = argv[++i];
      if (a[1] == 'd') dev = v;
      else if (a[1] == 'c') max_conns = (uint32_t)atol(v);
      else if (a[1] == 'm') mb = (uint32_t)atol(v);
      else if (a[1] == 'p') ports_tcp = (uint32_t)atol(v);
      else ports_udp = (uint32_t)atol(v);
    } else {
      usage();
    }
  }
  if (mb == 0) { /* a quarter of the RAM: the kernel needs room for thousands of sockets too */
    struct ls_sysinfo si;
    memset(&si, 0, sizeof si);
    my_syscall1(__NR_sysinfo, &si);
    const uint64_t ram = (uint64_t)si.totalram * (si.mem_unit ? si.mem_unit : 1);
    mb = (uint32_t)(ram >> 22);
    if (mb < 8) mb = 8;
  }
  mem_limit = (uint64_t)mb << 20;
  /* A peer that resets its connection must cost a failed write, not the process (SIGPIPE). */
  const struct { unsigned long handler, flags; uint32_t mask[2]; } ignore = {1 /* SIG_IGN */, 0, {0, 0}};
  my_syscall4(__NR_rt_sigaction, 13 /* SIGPIPE */, &ignore, 0, 8);
  /* Room for many connections: raise the descriptor limit as far as the kernel lets us. */
  const uint64_t lim[2] = {65536, 65536};
  my_syscall4(__NR_prlimit64, 0, LS_RLIMIT_NOFILE, lim, 0);
  crc_init();
  clock_init();
  slabs_init();
  hmask = 1023;
  htab = halloc((hmask + 1) * sizeof(item *));
  if (!htab) return 1;
  memset(htab, 0, (hmask + 1) * sizeof(item *));
  if (dev) wal_open(dev);
  tcp_fd = listen_on(LS_SOCK_STREAM, ports_tcp);
  udp_fd = listen_on(LS_SOCK_DGRAM, ports_udp);
  if (tcp_fd < 0 || udp_fd < 0) {
    say("kvd: cannot listen on port ");
    say_num((long)ports_tcp);
    say(" (error ");
    say_num((long)-(tcp_fd < 0 ? tcp_fd : udp_fd));
    say(")\n");
    return 1;
  }
  udp_conn = conn_new(udp_fd, 1);
  say("kvd: listening on tcp ");
  say_num((long)ports_tcp);
  say(" and udp ");
  say_num((long)ports_udp);
  say(", ");
  say_num((long)mb);
  say(" MiB for items\n");

  struct pollfd *pfds = 0;
  uint32_t pcap = 0;
  for (;;) {
    /* One entry per open descriptor; a connection with too much queued output waits for POLLOUT only. */
    uint32_t n = 0;
    if (pcap < conns_cap + 2) {
      hfree(pfds);
      pcap = conns_cap + 2;
      pfds = halloc(pcap * sizeof *pfds);
      if (!pfds) return 1;
    }
    pfds[n].fd = tcp_fd;
    pfds[n++].events = POLLIN;
    pfds[n].fd = udp_fd;
    pfds[n++].events = POLLIN;
    for (uint32_t fd = 0; fd < conns_cap; fd++) {
      conn *c = conns[fd];
      if (!c || c->udp) continue;
      short ev = 0;
      if (c->nsegs > c->sent_seg) ev |= POLLOUT;
      if (!c->close_after_write && pending_out(c) <= OUT_BACKLOG) ev |= POLLIN;
      pfds[n].fd = (int)fd;
      pfds[n++].events = ev;
    }
    const int r = poll(pfds, (int)n, 1000);
    clock_tick();
    if (r < 0) continue;
    for (uint32_t i = 0; i < n; i++) {
      if (!pfds[i].revents) continue;
      const int fd = pfds[i].fd;
      if (fd == tcp_fd) {
        tcp_accept();
      } else if (fd == udp_fd) {
        udp_read();
      } else {
        conn *c = conns[fd];
        if (!c) continue;
        if ((pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) && conn_read(c) < 0) {
          c->state = ST_CLOSING;
        }
      }
    }
    /* Replies only once this round's changes are on the disk. */
    wal_commit();
    for (uint32_t fd = 0; fd < conns_cap; fd++) {
      conn *c = conns[fd];
      if (!c || c->udp) continue;
      if (c->state != ST_CLOSING && c->nsegs > c->sent_seg && conn_send(c) < 0) c->state = ST_CLOSING;
      if (c->state != ST_CLOSING && c->close_after_write && c->nsegs == c->sent_seg) c->state = ST_CLOSING;
      if (c->state == ST_CLOSING) {
        conn_close(c);
        continue;
      }
      /* Input left unprocessed while the output was backed up or a round's records were full: as many
         rounds as it takes (each committed before its replies go), while they make progress. */
      while (c->rpos < c->rlen && pending_out(c) <= OUT_BACKLOG && c->state == ST_CMD) {
        const uint32_t before = c->rpos;
        process_input(c);
        wal_commit();
        if (conn_send(c) < 0 || c->state == ST_CLOSING || c->oom) {
          conn_close(c);
          break;
        }
        if (c->rpos == before) break;
      }
    }
  }
}
