/* kvserver: a key-value store speaking the memcached ASCII protocol over UDP (port 11211, 8-byte frame
   header), persisted to the virtio-blk disk with a write-ahead log that is replayed on boot, with a
   reply cache so that a retried request is answered again but applied once. Runs until killed.

   Protocol coverage (one datagram per request and per reply; several commands per datagram allowed):
     get/gets <key>*          VALUE <key> <flags> <bytes>[ <cas>] ... END
     set/add/replace/append/prepend <key> <flags> <exptime> <bytes> [noreply]
     cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]
     delete <key> [0] [noreply]   incr/decr <key> <delta> [noreply]   touch <key> <exptime> [noreply]
     flush_all [delay] [noreply]  version   verbosity <n> [noreply]   stats
   exptime and delays are accepted and ignored (items never expire; flush_all is immediate): expiry
   would depend on the clock. incr/decr store the plain decimal result (memcached pads a shorter
   result with spaces in place). Limits: keys 1..250 bytes, values up to 1024 bytes, 256 items; a
   reply that would not fit one datagram becomes "SERVER_ERROR object too large for cache".
   Reply cache: the last 16 replies, keyed by source IP, source port, request id and a hash of the
   request text (a reused id carrying another request is a new request). It lives in memory only, so
   a retry that arrives after a restart is applied again.

   Write-ahead log (all integers little-endian; 512-byte sectors):
     sectors 0 and 1: superblock slots; generation g lives in slot g&1:
       "LSKVWAL1" | u32 version=1 | u32 gen | u32 half_len | u64 next_cas | u32 crc32(bytes 0..27)
     (next_cas keeps CAS values unique across a compaction that drops deleted items' records)
     the rest, [2, 2+2*half_len): two halves; generation g appends to half g&1 from its start.
     record (starts on a sector boundary, zero-padded to one):
       u32 magic "KVR1" (0x3152564b) | u32 gen | u32 seq | u8 type (1 set, 2 delete, 3 clear) |
       u8 key_len | u16 0 | u32 flags | u32 value_len | u64 cas | u32 sectors | u32 crc32(header with
       this field 0, key, value) | key | value
   Boot reads both superblocks, takes the valid one with the highest generation (formats a blank
   disk), and replays its half from the start while records have the right magic, generation, seq
   (0, 1, 2, ...), sane lengths and a good CRC; the first one that fails ends the log, and new
   records overwrite from there. A write is answered only after its record is written and FLUSHed.
   When a half fills, every live item is rewritten as set records into the other half under
   generation g+1, flushed, and then superblock g+1 is written and flushed: a crash at any point
   leaves one complete generation. */
#include <string.h>

#include "blk.h"
#include "lockstep.h"
#include "net.h"
#include "virtio.h"

#define MC_PORT 11211u
#define FRAME_HDR 8u
#define MAX_REPLY (UDP_MAX_PAYLOAD - FRAME_HDR) /* 1464 bytes of protocol text */

#define KEY_MAX 250u
#define VAL_MAX 1024u
#define MAX_ITEMS 256u
#define BUCKETS 512u
#define REPLY_CACHE 16u

/* ---------------------------------------------------------------- item store */

typedef struct item {
  int16_t next;  /* bucket chain, or the free list; -1 ends */
  uint8_t used;
  uint8_t klen;
  uint16_t vlen;
  uint32_t flags;
  uint32_t hash;
  uint64_t cas;
  char key[KEY_MAX];
  uint8_t val[VAL_MAX];
} item;

static item items[MAX_ITEMS];
static int16_t buckets[BUCKETS];
static int16_t free_items;
static uint64_t next_cas = 1;

static struct {
  uint32_t curr_items, total_items, bytes;
  uint32_t cmd_get, cmd_set, cmd_touch, cmd_flush;
  uint32_t get_hits, get_misses, delete_hits, delete_misses;
  uint32_t incr_hits, incr_misses, decr_hits, decr_misses;
  uint32_t cas_hits, cas_misses, cas_badval, touch_hits, touch_misses;
  uint32_t reply_cache_hits, requests, bad_requests;
  uint32_t wal_records, wal_compactions, wal_errors;
} st;

static uint32_t hash_key(const char *k, size_t n) {
  uint32_t h = 0x811c9dc5u;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)k[i]) * 0x01000193u;
  return h;
}

static void store_init(void) {
  for (unsigned i = 0; i < BUCKETS; i++) buckets[i] = -1;
  for (unsigned i = 0; i < MAX_ITEMS; i++) items[i].next = (int16_t)(i + 1 < MAX_ITEMS ? (int)i + 1 : -1);
  free_items = 0;
}

static item *find(const char *k, size_t n) {
  uint32_t h = hash_key(k, n);
  for (int16_t i = buckets[h % BUCKETS]; i >= 0; i = items[i].next) {
    item *it = &items[i];
    if (it->hash == h && it->klen == n && memcmp(it->key, k, n) == 0) return it;
  }
  return 0;
}

static void unlink_item(item *it) {
  int16_t idx = (int16_t)(it - items);
  int16_t *p = &buckets[it->hash % BUCKETS];
  while (*p != idx) p = &items[*p].next;
  *p = it->next;
  it->used = 0;
  it->next = free_items;
  free_items = idx;
  st.curr_items--;
  st.bytes -= it->vlen;
}

/* Inserts or overwrites; the caller has checked there is room (a free item or an existing key). */
static void put(const char *k, size_t klen, uint32_t flags, const uint8_t *v, size_t vlen, uint64_t cas) {
  item *it = find(k, klen);
  if (!it) {
    int16_t idx = free_items;
    it = &items[idx];
    free_items = it->next;
    it->used = 1;
    it->klen = (uint8_t)klen;
    memcpy(it->key, k, klen);
    it->hash = hash_key(k, klen);
    it->next = buckets[it->hash % BUCKETS];
    buckets[it->hash % BUCKETS] = idx;
    it->vlen = 0;
    st.curr_items++;
  }
  st.bytes = st.bytes - it->vlen + (uint32_t)vlen;
  it->flags = flags;
  it->vlen = (uint16_t)vlen;
  memmove(it->val, v, vlen); /* v may alias it->val (append/prepend build elsewhere, but be safe) */
  it->cas = cas;
  if (cas >= next_cas) next_cas = cas + 1;
}

static void clear_all(void) {
  for (unsigned i = 0; i < MAX_ITEMS; i++)
    if (items[i].used) unlink_item(&items[i]);
}

/* ---------------------------------------------------------------- write-ahead log */

#define SB_MAGIC "LSKVWAL1"
#define SB_VERSION 1u
#define REC_MAGIC 0x3152564bu
#define REC_HDR 40u
#define REC_SET 1u
#define REC_DELETE 2u
#define REC_CLEAR 3u
#define REC_MAX_SECTORS ((REC_HDR + KEY_MAX + VAL_MAX + BLK_SECTOR - 1) / BLK_SECTOR)
#define STAGE_SECTORS 16u

typedef struct rec_hdr {
  uint32_t magic, gen, seq;
  uint8_t type, klen;
  uint16_t zero;
  uint32_t flags, vlen;
  uint64_t cas;
  uint32_t sectors, crc;
} rec_hdr;
_Static_assert(sizeof(rec_hdr) == REC_HDR, "record header layout");

static int persistent;        /* a disk was found and its log is usable */
static uint64_t capacity;
static uint32_t half_len;     /* sectors per half */
static uint32_t gen;          /* current generation */
static uint32_t seq;          /* next record's sequence number */
static uint64_t wal_pos;      /* next record's sector */
static uint8_t stage[STAGE_SECTORS * BLK_SECTOR] __attribute__((aligned(8)));
static uint32_t staged;       /* sectors in stage */
static uint64_t stage_pos;    /* disk sector of stage[0] */

static uint32_t crc32_update(uint32_t crc, const uint8_t *p, size_t n) {
  static const uint32_t nib[16] = {0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4,
                                   0x4db26158, 0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c,
                                   0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c};
  crc = ~crc;
  for (size_t i = 0; i < n; i++) {
    crc ^= p[i];
    crc = (crc >> 4) ^ nib[crc & 15u];
    crc = (crc >> 4) ^ nib[crc & 15u];
  }
  return ~crc;
}

static uint64_t half_start(uint32_t g) { return 2u + (uint64_t)(g & 1u) * half_len; }
static uint64_t half_end(uint32_t g) { return half_start(g) + half_len; }

static uint32_t rec_sectors(size_t klen, size_t vlen) {
  return (uint32_t)((REC_HDR + klen + vlen + BLK_SECTOR - 1) / BLK_SECTOR);
}

/* Builds a record at dst (rec_sectors() sectors, zero-padded). */
static void rec_build(uint8_t *dst, uint32_t type, const char *k, size_t klen, uint32_t flags, const uint8_t *v,
                      size_t vlen, uint64_t cas) {
  uint32_t n = rec_sectors(klen, vlen);
  memset(dst, 0, n * BLK_SECTOR);
  rec_hdr h = {REC_MAGIC, gen, seq, (uint8_t)type, (uint8_t)klen, 0, flags, (uint32_t)vlen, cas, n, 0};
  memcpy(dst, &h, REC_HDR);
  memcpy(dst + REC_HDR, k, klen);
  memcpy(dst + REC_HDR + klen, v, vlen);
  h.crc = crc32_update(0, dst, REC_HDR + klen + vlen);
  memcpy(dst + offsetof(rec_hdr, crc), &h.crc, 4);
  seq++;
}

static int stage_write(void) {
  if (staged == 0) return 0;
  int r = blk_write(stage_pos, stage, staged);
  stage_pos += staged;
  staged = 0;
  return r;
}

/* Appends a record to the stage (writing the stage out first if it would not fit). */
static int stage_record(uint32_t type, const char *k, size_t klen, uint32_t flags, const uint8_t *v, size_t vlen,
                        uint64_t cas) {
  uint32_t n = rec_sectors(klen, vlen);
  if (staged + n > STAGE_SECTORS) {
    int r = stage_write();
    if (r != 0) return r;
  }
  rec_build(stage + staged * BLK_SECTOR, type, k, klen, flags, v, vlen, cas);
  staged += n;
  wal_pos += n;
  return 0;
}

static int write_superblock(uint32_t g) {
  uint8_t *sb = stage; /* the stage is empty whenever a superblock is written */
  memset(sb, 0, BLK_SECTOR);
  memcpy(sb, SB_MAGIC, 8);
  uint32_t f[3] = {SB_VERSION, g, half_len};
  memcpy(sb + 8, f, 12);
  memcpy(sb + 20, &next_cas, 8);
  uint32_t crc = crc32_update(0, sb, 28);
  memcpy(sb + 28, &crc, 4);
  int r = blk_write(g & 1u, sb, 1);
  if (r == 0) r = blk_flush();
  return r;
}

/* Rewrites the live items into the other half as generation gen+1 and switches to it. */
static int compact(void) {
  uint32_t old_gen = gen, old_seq = seq;
  uint64_t old_pos = wal_pos;
  gen = old_gen + 1u;
  seq = 0;
  wal_pos = stage_pos = half_start(gen);
  staged = 0;
  int r = 0;
  for (unsigned i = 0; i < MAX_ITEMS && r == 0; i++) {
    item *it = &items[i];
    if (!it->used) continue;
    uint32_t n = rec_sectors(it->klen, it->vlen);
    if (wal_pos + n > half_end(gen)) {
      r = VIO_ERR_FULL;
      break;
    }
    r = stage_record(REC_SET, it->key, it->klen, it->flags, it->val, it->vlen, it->cas);
  }
  if (r == 0) r = stage_write();
  if (r == 0) r = blk_flush();
  if (r == 0) r = write_superblock(gen);
  if (r != 0) { /* the old generation is still the valid one */
    gen = old_gen;
    seq = old_seq;
    wal_pos = old_pos;
    staged = 0;
    st.wal_errors++;
    return r;
  }
  st.wal_compactions++;
  return 0;
}

/* Makes one change durable: 0 when the record is on disk and flushed. */
static int wal_append(uint32_t type, const char *k, size_t klen, uint32_t flags, const uint8_t *v, size_t vlen,
                      uint64_t cas) {
  if (!persistent) return 0;
  uint32_t n = rec_sectors(klen, vlen);
  if (wal_pos + n > half_end(gen)) {
    int r = compact();
    if (r != 0) return r;
    if (wal_pos + n > half_end(gen)) return VIO_ERR_FULL;
  }
  uint32_t saved_seq = seq;
  uint64_t saved_pos = wal_pos;
  stage_pos = wal_pos;
  staged = 0;
  int r = stage_record(type, k, klen, flags, v, vlen, cas);
  if (r == 0) r = stage_write();
  if (r == 0) r = blk_flush();
  if (r != 0) {
    /* Not acknowledged; the next record overwrites whatever reached the disk. */
    seq = saved_seq;
    wal_pos = saved_pos;
    st.wal_errors++;
    return r;
  }
  st.wal_records++;
  return 0;
}

static int read_superblock(uint32_t slot, uint32_t *g, uint64_t *cas_floor) {
  uint8_t *sb = stage;
  if (blk_read(slot, sb, 1) != 0) return 0;
  if (memcmp(sb, SB_MAGIC, 8) != 0) return 0;
  uint32_t f[3], crc;
  memcpy(f, sb + 8, 12);
  memcpy(cas_floor, sb + 20, 8);
  memcpy(&crc, sb + 28, 4);
  if (crc != crc32_update(0, sb, 28) || f[0] != SB_VERSION || (f[1] & 1u) != slot) return 0;
  if (f[2] == 0 || 2u + 2u * (uint64_t)f[2] > capacity) return 0;
  *g = f[1];
  half_len = f[2];
  return 1;
}

/* Replays the current generation's half; leaves wal_pos/seq after the last good record. */
static void replay(void) {
  static uint8_t rec[REC_MAX_SECTORS * BLK_SECTOR];
  wal_pos = half_start(gen);
  seq = 0;
  for (;;) {
    if (wal_pos >= half_end(gen) || blk_read(wal_pos, rec, 1) != 0) break;
    rec_hdr h;
    memcpy(&h, rec, REC_HDR);
    if (h.magic != REC_MAGIC || h.gen != gen || h.seq != seq || h.zero != 0) break;
    if (h.type < REC_SET || h.type > REC_CLEAR || h.klen > KEY_MAX || h.vlen > VAL_MAX) break;
    if (h.type != REC_CLEAR && h.klen == 0) break;
    uint32_t n = rec_sectors(h.klen, h.vlen);
    if (h.sectors != n || wal_pos + n > half_end(gen)) break;
    if (n > 1 && blk_read(wal_pos + 1, rec + BLK_SECTOR, n - 1) != 0) break;
    memset(rec + offsetof(rec_hdr, crc), 0, 4);
    if (crc32_update(0, rec, REC_HDR + h.klen + h.vlen) != h.crc) break;
    const char *k = (const char *)rec + REC_HDR;
    if (h.type == REC_SET) {
      if (!find(k, h.klen) && free_items < 0) break; /* cannot happen: writes respect MAX_ITEMS */
      put(k, h.klen, h.flags, rec + REC_HDR + h.klen, h.vlen, h.cas);
    } else if (h.type == REC_DELETE) {
      item *it = find(k, h.klen);
      if (it) unlink_item(it);
    } else {
      clear_all();
    }
    wal_pos += n;
    seq++;
  }
}

/* Opens (or formats) the log and rebuilds the store; returns 0 or an error code. */
static int wal_open(void) {
  capacity = blk_capacity();
  if (capacity < 2u + 2u * (2u * REC_MAX_SECTORS)) return VIO_ERR_IO; /* too small to be useful */
  uint32_t g0 = 0, g1 = 0, h0 = 0, h1 = 0;
  uint64_t c0 = 0, c1 = 0;
  int ok0 = read_superblock(0, &g0, &c0);
  h0 = half_len;
  int ok1 = read_superblock(1, &g1, &c1);
  h1 = half_len;
  if (ok0 || ok1) {
    if (ok0 && (!ok1 || g0 > g1)) {
      gen = g0;
      half_len = h0;
      next_cas = c0;
    } else {
      gen = g1;
      half_len = h1;
      next_cas = c1;
    }
    if (next_cas == 0) next_cas = 1;
    persistent = 1;
    replay();
    return 0;
  }
  /* A blank (or foreign) disk: generation 1 in half 1, whose first sector is zeroed so nothing old
     can pass for a record. */
  uint64_t usable = capacity - 2u;
  half_len = (uint32_t)(usable / 2u > 0x7fffffffu ? 0x7fffffffu : usable / 2u);
  gen = 1;
  memset(stage, 0, BLK_SECTOR);
  int r = blk_write(half_start(gen), stage, 1);
  if (r == 0) r = blk_flush();
  if (r == 0) r = write_superblock(gen);
  if (r != 0) return r;
  wal_pos = half_start(gen);
  seq = 0;
  persistent = 1;
  return 0;
}

/* ---------------------------------------------------------------- replies */

static uint8_t out[FRAME_HDR + MAX_REPLY];
static size_t out_len; /* bytes of protocol text in out after the frame header */
static int out_overflow;

static void emit(const void *p, size_t n) {
  if (out_overflow || out_len + n > MAX_REPLY) {
    out_overflow = 1;
    return;
  }
  memcpy(out + FRAME_HDR + out_len, p, n);
  out_len += n;
}
static void emits(const char *s) { emit(s, strlen(s)); }
static void emitu64(uint64_t v) {
  char b[24];
  int i = 24;
  do {
    b[--i] = (char)('0' + v % 10u);
    v /= 10u;
  } while (v);
  emit(b + i, (size_t)(24 - i));
}

/* ---------------------------------------------------------------- request parsing */

typedef struct tok {
  const char *p;
  size_t n;
} tok;

#define MAX_TOKENS 32u

static int tok_is(const tok *t, const char *s) { return t->n == strlen(s) && memcmp(t->p, s, t->n) == 0; }

static int parse_u64(const tok *t, uint64_t *v) {
  if (t->n == 0 || t->n > 20) return 0;
  uint64_t x = 0;
  for (size_t i = 0; i < t->n; i++) {
    char c = t->p[i];
    if (c < '0' || c > '9') return 0;
    uint64_t d = (uint64_t)(c - '0');
    if (x > (UINT64_MAX - d) / 10u) return 0;
    x = x * 10u + d;
  }
  *v = x;
  return 1;
}

static int parse_u32(const tok *t, uint32_t *v) {
  uint64_t x;
  if (!parse_u64(t, &x) || x > UINT32_MAX) return 0;
  *v = (uint32_t)x;
  return 1;
}

static int parse_i32(const tok *t, int32_t *v) { /* exptime: may be negative */
  tok u = *t;
  int neg = u.n > 0 && u.p[0] == '-';
  if (neg) {
    u.p++;
    u.n--;
  }
  uint64_t x;
  if (!parse_u64(&u, &x) || x > 0x7fffffffu) return 0;
  *v = neg ? -(int32_t)x : (int32_t)x;
  return 1;
}

static int key_ok(const tok *t) { return t->n >= 1 && t->n <= KEY_MAX; }

#define CLIENT_ERROR_FORMAT "CLIENT_ERROR bad command line format\r\n"
#define TOO_LARGE "SERVER_ERROR object too large for cache\r\n"

static void cmd_get(const tok *t, unsigned nt, int with_cas) {
  if (nt < 2) {
    emits("ERROR\r\n");
    return;
  }
  for (unsigned i = 1; i < nt; i++) {
    if (!key_ok(&t[i])) {
      emits(CLIENT_ERROR_FORMAT);
      return;
    }
  }
  for (unsigned i = 1; i < nt; i++) {
    st.cmd_get++;
    item *it = find(t[i].p, t[i].n);
    if (!it) {
      st.get_misses++;
      continue;
    }
    st.get_hits++;
    emits("VALUE ");
    emit(it->key, it->klen);
    emits(" ");
    emitu64(it->flags);
    emits(" ");
    emitu64(it->vlen);
    if (with_cas) {
      emits(" ");
      emitu64(it->cas);
    }
    emits("\r\n");
    emit(it->val, it->vlen);
    emits("\r\n");
  }
  emits("END\r\n");
}

static uint8_t scratch[VAL_MAX]; /* append/prepend and incr/decr results */

enum { SET, ADD, REPLACE, APPEND, PREPEND, CAS };

/* A storage command; data (avail bytes) is the rest of the datagram (its data block). Returns the bytes of
   data consumed (block + CRLF), or -1 when the rest of the datagram cannot be parsed. */
static long cmd_store(int kind, const tok *t, unsigned nt, const uint8_t *data, size_t avail, int *noreply) {
  unsigned base = kind == CAS ? 6u : 5u;
  uint32_t flags, bytes;
  int32_t exptime;
  uint64_t cas_in = 0;
  if (nt < base || nt > base + 1u || !key_ok(&t[1]) || !parse_u32(&t[2], &flags) || !parse_i32(&t[3], &exptime) ||
      !parse_u32(&t[4], &bytes) || (kind == CAS && !parse_u64(&t[5], &cas_in)) ||
      (nt == base + 1u && !tok_is(&t[base], "noreply"))) {
    emits(CLIENT_ERROR_FORMAT);
    return -1;
  }
  *noreply = nt == base + 1u;
  (void)exptime; /* accepted, ignored: items never expire */
  if (bytes > VAL_MAX) {
    emits(TOO_LARGE);
    return (size_t)bytes + 2u <= avail ? (long)bytes + 2 : -1;
  }
  if ((size_t)bytes + 2u > avail || data[bytes] != '\r' || data[bytes + 1] != '\n') {
    emits("CLIENT_ERROR bad data chunk\r\n");
    return -1;
  }
  long used = (long)bytes + 2;
  st.cmd_set++;
  const char *k = t[1].p;
  size_t klen = t[1].n;
  item *it = find(k, klen);
  const uint8_t *v = data;
  size_t vlen = bytes;

  switch (kind) {
    case ADD:
      if (it) {
        emits("NOT_STORED\r\n");
        return used;
      }
      break;
    case REPLACE:
      if (!it) {
        emits("NOT_STORED\r\n");
        return used;
      }
      break;
    case APPEND:
    case PREPEND:
      if (!it) {
        emits("NOT_STORED\r\n");
        return used;
      }
      if ((size_t)it->vlen + bytes > VAL_MAX) {
        emits(TOO_LARGE);
        return used;
      }
      if (kind == APPEND) {
        memcpy(scratch, it->val, it->vlen);
        memcpy(scratch + it->vlen, data, bytes);
      } else {
        memcpy(scratch, data, bytes);
        memcpy(scratch + bytes, it->val, it->vlen);
      }
      v = scratch;
      vlen = (size_t)it->vlen + bytes;
      flags = it->flags; /* append/prepend keep the item's flags */
      break;
    case CAS:
      if (!it) {
        st.cas_misses++;
        emits("NOT_FOUND\r\n");
        return used;
      }
      if (it->cas != cas_in) {
        st.cas_badval++;
        emits("EXISTS\r\n");
        return used;
      }
      st.cas_hits++;
      break;
    default:
      break;
  }
  if (!it && free_items < 0) {
    emits("SERVER_ERROR out of memory storing object\r\n");
    return used;
  }
  uint64_t cas = next_cas;
  if (wal_append(REC_SET, k, klen, flags, v, vlen, cas) != 0) {
    emits("SERVER_ERROR out of memory storing object\r\n");
    return used;
  }
  put(k, klen, flags, v, vlen, cas);
  st.total_items++;
  emits("STORED\r\n");
  return used;
}

static int noreply_tail(const tok *t, unsigned nt, unsigned base) {
  return nt == base + 1u && tok_is(&t[base], "noreply");
}

static void cmd_delete(const tok *t, unsigned nt, int *noreply) {
  /* delete <key> [0] [noreply] */
  unsigned n = nt;
  *noreply = n >= 3 && tok_is(&t[n - 1], "noreply");
  if (*noreply) n--;
  if (n == 3 && tok_is(&t[2], "0")) n--;
  if (n != 2 || !key_ok(&t[1])) {
    emits("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
    return;
  }
  item *it = find(t[1].p, t[1].n);
  if (!it) {
    st.delete_misses++;
    emits("NOT_FOUND\r\n");
    return;
  }
  if (wal_append(REC_DELETE, t[1].p, t[1].n, 0, 0, 0, 0) != 0) {
    emits("SERVER_ERROR disk write failed\r\n");
    return;
  }
  unlink_item(it);
  st.delete_hits++;
  emits("DELETED\r\n");
}

static void cmd_arith(int incr, const tok *t, unsigned nt, int *noreply) {
  uint64_t delta;
  if ((nt != 3 && !noreply_tail(t, nt, 3)) || !key_ok(&t[1])) {
    emits(CLIENT_ERROR_FORMAT);
    return;
  }
  *noreply = nt == 4;
  if (!parse_u64(&t[2], &delta)) {
    emits("CLIENT_ERROR invalid numeric delta argument\r\n");
    return;
  }
  item *it = find(t[1].p, t[1].n);
  if (!it) {
    if (incr) st.incr_misses++;
    else st.decr_misses++;
    emits("NOT_FOUND\r\n");
    return;
  }
  tok v = {(const char *)it->val, it->vlen};
  uint64_t x;
  if (!parse_u64(&v, &x)) {
    emits("CLIENT_ERROR cannot increment or decrement non-numeric value\r\n");
    return;
  }
  if (incr) {
    x += delta; /* wraps at 2^64, as memcached does */
    st.incr_hits++;
  } else {
    x = delta > x ? 0 : x - delta;
    st.decr_hits++;
  }
  char b[24];
  int i = 24;
  uint64_t y = x;
  do {
    b[--i] = (char)('0' + y % 10u);
    y /= 10u;
  } while (y);
  size_t n = (size_t)(24 - i);
  memcpy(scratch, b + i, n);
  uint64_t cas = next_cas;
  if (wal_append(REC_SET, it->key, it->klen, it->flags, scratch, n, cas) != 0) {
    emits("SERVER_ERROR disk write failed\r\n");
    return;
  }
  put(it->key, it->klen, it->flags, scratch, n, cas);
  emitu64(x);
  emits("\r\n");
}

static void cmd_touch(const tok *t, unsigned nt, int *noreply) {
  int32_t exptime;
  if ((nt != 3 && !noreply_tail(t, nt, 3)) || !key_ok(&t[1]) || !parse_i32(&t[2], &exptime)) {
    emits(CLIENT_ERROR_FORMAT);
    return;
  }
  *noreply = nt == 4;
  st.cmd_touch++;
  if (find(t[1].p, t[1].n)) {
    st.touch_hits++;
    emits("TOUCHED\r\n");
  } else {
    st.touch_misses++;
    emits("NOT_FOUND\r\n");
  }
}

static void cmd_flush_all(const tok *t, unsigned nt, int *noreply) {
  unsigned n = nt;
  *noreply = n >= 2 && tok_is(&t[n - 1], "noreply");
  if (*noreply) n--;
  int32_t delay;
  if (n > 2 || (n == 2 && !parse_i32(&t[1], &delay))) {
    emits(CLIENT_ERROR_FORMAT);
    return;
  }
  st.cmd_flush++;
  if (wal_append(REC_CLEAR, "", 0, 0, 0, 0, 0) != 0) {
    emits("SERVER_ERROR disk write failed\r\n");
    return;
  }
  clear_all();
  emits("OK\r\n");
}

static void stat_line(const char *name, uint64_t v) {
  emits("STAT ");
  emits(name);
  emits(" ");
  emitu64(v);
  emits("\r\n");
}

static void cmd_stats(unsigned nt) {
  if (nt != 1) {
    emits("ERROR\r\n");
    return;
  }
  /* Only counters that depend on the requests alone: no uptime, time or rusage, so the answer is
     the same on every machine that saw the same requests. */
  stat_line("pid", 1);
  emits("STAT version 1.6.0-lockstep\r\n");
  stat_line("pointer_size", 32);
  stat_line("curr_items", st.curr_items);
  stat_line("total_items", st.total_items);
  stat_line("bytes", st.bytes);
  stat_line("cmd_get", st.cmd_get);
  stat_line("cmd_set", st.cmd_set);
  stat_line("cmd_flush", st.cmd_flush);
  stat_line("cmd_touch", st.cmd_touch);
  stat_line("get_hits", st.get_hits);
  stat_line("get_misses", st.get_misses);
  stat_line("delete_hits", st.delete_hits);
  stat_line("delete_misses", st.delete_misses);
  stat_line("incr_hits", st.incr_hits);
  stat_line("incr_misses", st.incr_misses);
  stat_line("decr_hits", st.decr_hits);
  stat_line("decr_misses", st.decr_misses);
  stat_line("cas_hits", st.cas_hits);
  stat_line("cas_misses", st.cas_misses);
  stat_line("cas_badval", st.cas_badval);
  stat_line("touch_hits", st.touch_hits);
  stat_line("touch_misses", st.touch_misses);
  stat_line("evictions", 0);
  stat_line("limit_maxbytes", (uint64_t)MAX_ITEMS * VAL_MAX);
  stat_line("limit_items", MAX_ITEMS);
  stat_line("reply_cache_hits", st.reply_cache_hits);
  stat_line("wal_records", st.wal_records);
  stat_line("wal_compactions", st.wal_compactions);
  stat_line("wal_errors", st.wal_errors);
  emits("END\r\n");
}

/* Executes every command in one datagram's text, appending the replies to `out`. */
static void execute(const uint8_t *p, size_t n) {
  size_t i = 0;
  while (i < n) {
    /* One command line, ended by \n (optionally \r\n). */
    size_t e = i;
    while (e < n && p[e] != '\n') e++;
    if (e == n) {
      /* An unterminated line: memcached waits for more, which one datagram never brings. */
      st.bad_requests++;
      emits("CLIENT_ERROR line not terminated\r\n");
      return;
    }
    size_t line_end = e > i && p[e - 1] == '\r' ? e - 1 : e;
    size_t next = e + 1;
    tok t[MAX_TOKENS];
    unsigned nt = 0;
    size_t k = i;
    int too_many = 0;
    while (k < line_end) {
      while (k < line_end && p[k] == ' ') k++;
      if (k == line_end) break;
      size_t s = k;
      while (k < line_end && p[k] != ' ') k++;
      if (nt == MAX_TOKENS) {
        too_many = 1;
        break;
      }
      t[nt++] = (tok){(const char *)p + s, k - s};
    }
    i = next;
    if (nt == 0) {
      emits("ERROR\r\n");
      continue;
    }
    st.requests++;
    size_t mark = out_len;
    int noreply = 0;
    if (too_many) {
      emits(CLIENT_ERROR_FORMAT);
    } else if (tok_is(&t[0], "get")) {
      cmd_get(t, nt, 0);
    } else if (tok_is(&t[0], "gets")) {
      cmd_get(t, nt, 1);
    } else if (tok_is(&t[0], "set") || tok_is(&t[0], "add") || tok_is(&t[0], "replace") ||
               tok_is(&t[0], "append") || tok_is(&t[0], "prepend") || tok_is(&t[0], "cas")) {
      int kind = tok_is(&t[0], "set")       ? SET
                 : tok_is(&t[0], "add")     ? ADD
                 : tok_is(&t[0], "replace") ? REPLACE
                 : tok_is(&t[0], "append")  ? APPEND
                 : tok_is(&t[0], "prepend") ? PREPEND
                                            : CAS;
      long used = cmd_store(kind, t, nt, p + i, n - i, &noreply);
      if (used < 0) {
        st.bad_requests++;
        return; /* the data block cannot be delimited: the rest of the datagram is lost */
      }
      i += (size_t)used;
    } else if (tok_is(&t[0], "delete")) {
      cmd_delete(t, nt, &noreply);
    } else if (tok_is(&t[0], "incr") || tok_is(&t[0], "decr")) {
      cmd_arith(tok_is(&t[0], "incr"), t, nt, &noreply);
    } else if (tok_is(&t[0], "touch")) {
      cmd_touch(t, nt, &noreply);
    } else if (tok_is(&t[0], "flush_all")) {
      cmd_flush_all(t, nt, &noreply);
    } else if (tok_is(&t[0], "version") && nt == 1) {
      emits("VERSION 1.6.0-lockstep\r\n");
    } else if (tok_is(&t[0], "verbosity") && (nt == 2 || noreply_tail(t, nt, 2))) {
      noreply = nt == 3;
      emits("OK\r\n");
    } else if (tok_is(&t[0], "stats")) {
      cmd_stats(nt);
    } else if (tok_is(&t[0], "quit")) {
      return; /* ends the "connection": nothing after it in this datagram runs */
    } else {
      st.bad_requests++;
      emits("ERROR\r\n");
    }
    if (out_overflow) {
      /* This command's reply does not fit the datagram: replace it by the error (its effect, if
         any, stays: writes have tiny replies, so in practice this is a big get or stats). */
      out_overflow = 0;
      out_len = mark;
      emits(TOO_LARGE);
    } else if (noreply) {
      out_len = mark;
    }
  }
}

/* ---------------------------------------------------------------- reply cache */

typedef struct cached_reply {
  uint32_t ip;
  uint16_t port, req_id;
  uint32_t req_hash; /* FNV-1a of the request text: a reused id with another request is new */
  uint32_t valid;
  uint32_t len;      /* bytes of out (frame header included); 0 = nothing was sent (noreply) */
  uint8_t data[FRAME_HDR + MAX_REPLY];
} cached_reply;

static cached_reply reply_cache[REPLY_CACHE];
static unsigned reply_next; /* FIFO replacement */

static void on_datagram(uint32_t src_ip, uint16_t src_port, uint16_t dst_port, const uint8_t *d, size_t len) {
  (void)dst_port;
  if (len < FRAME_HDR) return;
  uint16_t req_id = (uint16_t)((d[0] << 8) | d[1]);
  uint16_t seqno = (uint16_t)((d[2] << 8) | d[3]);
  uint16_t total = (uint16_t)((d[4] << 8) | d[5]);
  if (seqno != 0 || total != 1) return; /* multi-datagram requests are not supported */
  uint32_t h = hash_key((const char *)d + FRAME_HDR, len - FRAME_HDR);

  for (unsigned i = 0; i < REPLY_CACHE; i++) {
    cached_reply *c = &reply_cache[i];
    if (c->valid && c->ip == src_ip && c->port == src_port && c->req_id == req_id && c->req_hash == h) {
      st.reply_cache_hits++;
      if (c->len) udp_sendto(MC_PORT, src_ip, src_port, c->data, c->len);
      return;
    }
  }

  out_len = 0;
  out_overflow = 0;
  execute(d + FRAME_HDR, len - FRAME_HDR);
  out[0] = (uint8_t)(req_id >> 8);
  out[1] = (uint8_t)req_id;
  out[2] = out[3] = 0; /* sequence 0 */
  out[4] = 0;
  out[5] = 1;          /* 1 datagram */
  out[6] = out[7] = 0;
  size_t n = out_len ? FRAME_HDR + out_len : 0;

  cached_reply *c = &reply_cache[reply_next];
  reply_next = (reply_next + 1u) % REPLY_CACHE;
  c->valid = 1;
  c->ip = src_ip;
  c->port = src_port;
  c->req_id = req_id;
  c->req_hash = h;
  c->len = (uint32_t)n;
  memcpy(c->data, out, n);
  if (n) udp_sendto(MC_PORT, src_ip, src_port, out, n);
}

/* ---------------------------------------------------------------- boot */

static void put_ip(uint32_t ip) {
  for (int s = 24; s >= 0; s -= 8) {
    ls_putdec((ip >> s) & 0xffu);
    if (s) ls_putc('.');
  }
}

int main(void) {
  store_init();
  int r = blk_init();
  if (r == 0) r = wal_open();
  if (r != 0) {
    ls_puts("kvserver: no usable disk (");
    ls_puts(vio_strerror(r));
    ls_puts("), not persistent\n");
  }
  r = net_init();
  if (r != 0) {
    ls_puts("kvserver: no network: ");
    ls_puts(vio_strerror(r));
    ls_putc('\n');
    return 1;
  }
  udp_bind(MC_PORT, on_datagram);
  ls_puts("kvserver: listening on ");
  put_ip(net_ip());
  ls_puts(":");
  ls_putdec(MC_PORT);
  ls_puts(", ");
  ls_putdec(st.curr_items);
  ls_puts(" items recovered\n");
  net_run();
}
