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
   reply that would not fit one datagram becomes "SERVER_ERROR object too large for cache". A request
   datagram too large for one frame (over 1472 bytes) arrives cut short: it is answered
   "SERVER_ERROR object too large for cache" (a storage command) or "CLIENT_ERROR line too long".

   Configuration: the guest command line (lockstep --append / vm.append, QEMU -append with
   semihosting), words of the form kvserver.<name>=<value>:
     kvserver.storage=disk    (default) writes are acknowledged only once on the disk; without a
                              usable disk every write is refused with a SERVER_ERROR
     kvserver.storage=memory  no disk is used; writes are acknowledged from memory and lost at a
                              restart (an FT pair still carries them through a failover)

   Reply cache (exactly-once for clients that ask for it):
     A client marks a request by setting bit 15 of the frame header's reserved field (bytes 6-7); bits
     14..0 then extend the 16-bit request id to a 31-bit one. By marking, the client promises that it
     never uses the same 31-bit id from the same source address and port for another request within
     RC_WINDOW_MS (20 s) of guest time, and that it retries a request only within 10 s of its first
     send (lockstep's KvClient does both). For a marked request, the key (source IP, source port,
     31-bit id) plus the request's length and FNV-1a hash decide: a key already in the cache with the
     same text is a retry, answered with the stored reply and not executed; anything else is
     executed. The reply of a marked request that changed the store is kept for at least
     RC_WINDOW_MS; one that changed nothing is not kept (running it again is indistinguishable from
     running it once, later). When the cache has no room for a new entry without dropping one younger
     than the window, the request is dropped unexecuted (counted as reply_cache_full): the client
     retries. Unmarked requests (stock memcached clients) are executed every time and never answered
     from the cache, exactly as memcached does; their retries may be applied twice, as with
     memcached. The cache lives in RAM: an FT pair carries it through a failover; a crash and restart
     of a lone server loses it (a retry of a write in flight at the crash is then applied again).
     Replies echo the request's reserved field, so a client can match all 31 bits of the id.

   Write-ahead log, format version 2 (all integers little-endian; 512-byte sectors):
     sectors 0 and 1: superblock slots; generation g lives in slot g&1:
       "LSKVWAL1" | u32 version=2 | u32 gen | u32 half_len | u64 next_cas | u32 flags | u32 crc32(bytes 0..31)
     (next_cas keeps CAS values unique across a compaction that drops deleted items' records; flags
     bit 0, pending: a compaction into generation gen began but has not finished, so gen is not
     valid and is never used again: a generation number is never reused, not even one whose
     compaction failed or was cut short, so records of the current generation are its own)
     the rest, [2, 2+2*half_len): two halves (at most HALF_MAX sectors each); generation g appends to
     half g&1 from its start.
     record (starts on a sector boundary, zero-padded to one):
       u32 magic "KVR2" (0x3252564b) | u32 gen | u32 seq | u8 type (1 set, 2 delete, 3 clear) |
       u8 key_len | u16 0 | u32 flags | u32 value_len | u64 cas | u32 sectors | u32 prev | u32 0 |
       u32 crc32(header with this field 0, key, value) | key | value
     where prev is the crc of the generation's previous record (0 for seq 0): the records of a
     generation form a chain, so a stale record can follow a current one only by forging a CRC.
   Boot reads both superblocks and takes the valid one with the highest generation; it formats the
   disk only when sectors 0 and 1 are all zero (a blank image): a disk that holds anything else
   without a valid superblock is not touched and writes are refused. It replays the generation's half
   while records have the right magic, generation, seq (0, 1, 2, ...), prev, sane lengths and a good
   CRC. Where that stops, it reads the rest of the half: records of the generation found after the
   stop mean an acknowledged record was damaged, and the console says so with what was lost; a bad
   last record alone is a write cut short (or a damaged last write), also reported. Then every boot
   of a disk with a log starts a new generation (a compaction: the live items rewritten into the
   other half), so nothing written after a damaged or torn point can be mistaken for current later.
   A write is answered only after its record is written and FLUSHed; a failed write also starts a
   new generation before the next one. When a half fills, every live item is rewritten as set
   records into the other half under generation g+1, flushed, and then superblock g+1 is written and
   flushed: a crash at any point leaves one complete generation. A delete or flush_all that meets a
   full half is made durable by that compaction itself (the item is left out). */
#include <string.h>

#include "blk.h"
#include "cmdline.h"
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
  uint32_t reply_cache_hits, reply_cache_full, reply_cache_mismatch, requests, bad_requests, requests_too_large;
  uint32_t wal_records, wal_compactions, wal_errors, wal_refused, wal_lost_records;
} st;

static int applied; /* the datagram being executed changed the store */

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
#define SB_VERSION 2u
#define REC_MAGIC 0x3252564bu
#define REC_HDR 48u
#define REC_SET 1u
#define REC_DELETE 2u
#define REC_CLEAR 3u
#define REC_MAX_SECTORS ((REC_HDR + KEY_MAX + VAL_MAX + BLK_SECTOR - 1) / BLK_SECTOR)
#define STAGE_SECTORS 16u
#define MIN_SECTORS (2u + 2u * 2u * REC_MAX_SECTORS)
/* Sectors per half at most: bounds the boot's read of the rest of the half. The live items never
   need more than MAX_ITEMS * REC_MAX_SECTORS. */
#define HALF_MAX 4096u
#define LOST_SHOWN 8u

/* Why a write was not made durable (besides VIO_ERR_* from the disk). */
#define WAL_REFUSED (-100) /* no usable disk and no kvserver.storage=memory */
#define WAL_FULL (-101)    /* the record does not fit even after a compaction */

typedef struct rec_hdr {
  uint32_t magic, gen, seq;
  uint8_t type, klen;
  uint16_t zero;
  uint32_t flags, vlen;
  uint64_t cas;
  uint32_t sectors, prev, zero2, crc;
} rec_hdr;
_Static_assert(sizeof(rec_hdr) == REC_HDR, "record header layout");

enum { STORE_REFUSE, STORE_DISK, STORE_MEMORY };
static int storage = STORE_REFUSE;
static const char *no_disk; /* why there is no usable disk */
static uint64_t capacity;
static uint32_t half_len;     /* sectors per half */
static uint32_t gen;          /* current generation */
static uint32_t seq;          /* next record's sequence number */
static uint32_t last_crc;     /* crc of the generation's last record: the next one's prev */
static uint64_t wal_pos;      /* next record's sector */
static int need_new_gen;      /* a failed write may have left bytes at wal_pos: start a new generation */
/* The next compaction's generation. Never one that was tried before, even by a compaction that failed
   or was cut short: records of a generation can then only be that generation's own. */
static uint32_t next_gen;
static uint8_t stage[STAGE_SECTORS * BLK_SECTOR] __attribute__((aligned(8)));
static uint32_t staged;       /* sectors in stage */
static uint64_t stage_pos;    /* disk sector of stage[0] */
static uint8_t rec[REC_MAX_SECTORS * BLK_SECTOR] __attribute__((aligned(8))); /* one record read back */

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

/* Builds the next record of the generation at dst (rec_sectors() sectors, zero-padded). */
static void rec_build(uint8_t *dst, uint32_t type, const char *k, size_t klen, uint32_t flags, const uint8_t *v,
                      size_t vlen, uint64_t cas) {
  uint32_t n = rec_sectors(klen, vlen);
  memset(dst, 0, n * BLK_SECTOR);
  rec_hdr h = {REC_MAGIC, gen, seq, (uint8_t)type, (uint8_t)klen, 0, flags, (uint32_t)vlen, cas, n, last_crc, 0, 0};
  memcpy(dst, &h, REC_HDR);
  memcpy(dst + REC_HDR, k, klen);
  memcpy(dst + REC_HDR + klen, v, vlen);
  h.crc = crc32_update(0, dst, REC_HDR + klen + vlen);
  memcpy(dst + offsetof(rec_hdr, crc), &h.crc, 4);
  last_crc = h.crc;
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

#define SB_PENDING 1u /* flags: generation g is being written; not valid yet */

static int write_superblock(uint32_t g, uint32_t flags) {
  uint8_t *sb = stage; /* the stage is empty whenever a superblock is written */
  memset(sb, 0, BLK_SECTOR);
  memcpy(sb, SB_MAGIC, 8);
  uint32_t f[3] = {SB_VERSION, g, half_len};
  memcpy(sb + 8, f, 12);
  memcpy(sb + 20, &next_cas, 8);
  memcpy(sb + 28, &flags, 4);
  uint32_t crc = crc32_update(0, sb, 32);
  memcpy(sb + 32, &crc, 4);
  int r = blk_write(g & 1u, sb, 1);
  if (r == 0) r = blk_flush();
  return r;
}

/* Rewrites the live items (but `exclude`, or none at all with `clear`) into the other half as
   generation gen+1 and switches to it. */
static int compact(const item *exclude, int clear) {
  uint32_t old_gen = gen, old_seq = seq, old_crc = last_crc;
  uint64_t old_pos = wal_pos;
  gen = next_gen;
  next_gen += 2u; /* same parity: the other half again next time, whatever happens to this attempt */
  seq = 0;
  last_crc = 0;
  wal_pos = stage_pos = half_start(gen);
  staged = 0;
  /* First claim the generation in its slot (over the previous generation's superblock, no longer
     needed), so a later boot knows it was tried even if this is cut short. */
  int r = write_superblock(gen, SB_PENDING);
  for (unsigned i = 0; i < MAX_ITEMS && r == 0 && !clear; i++) {
    item *it = &items[i];
    if (!it->used || it == exclude) continue;
    uint32_t n = rec_sectors(it->klen, it->vlen);
    if (wal_pos + n > half_end(gen)) {
      r = WAL_FULL;
      break;
    }
    r = stage_record(REC_SET, it->key, it->klen, it->flags, it->val, it->vlen, it->cas);
  }
  if (r == 0) r = stage_write();
  if (r == 0) r = blk_flush();
  if (r == 0) r = write_superblock(gen, 0);
  if (r != 0) { /* the old generation is still the valid one */
    gen = old_gen;
    seq = old_seq;
    last_crc = old_crc;
    wal_pos = old_pos;
    staged = 0;
    need_new_gen = 1;
    st.wal_errors++;
    return r;
  }
  need_new_gen = 0;
  next_gen = gen + 1u; /* the other half; no generation of that parity above gen was ever tried */
  st.wal_compactions++;
  return 0;
}

/* Makes one change durable: 0 when its record is on disk and flushed (or the store is memory-only). */
static int wal_append(uint32_t type, const char *k, size_t klen, uint32_t flags, const uint8_t *v, size_t vlen,
                      uint64_t cas) {
  if (storage == STORE_MEMORY) return 0;
  if (storage != STORE_DISK) return WAL_REFUSED;
  uint32_t n = rec_sectors(klen, vlen);
  if (need_new_gen || wal_pos + n > half_end(gen)) {
    /* A delete or clear is durable through the compaction itself: the new generation lacks the item. */
    int r = compact(type == REC_DELETE ? find(k, klen) : 0, type == REC_CLEAR);
    if (r != 0) return r;
    if (type != REC_SET) return 0;
    if (wal_pos + n > half_end(gen)) return WAL_FULL;
  }
  uint32_t saved_seq = seq, saved_crc = last_crc;
  uint64_t saved_pos = wal_pos;
  stage_pos = wal_pos;
  staged = 0;
  int r = stage_record(type, k, klen, flags, v, vlen, cas);
  if (r == 0) r = stage_write();
  if (r == 0) r = blk_flush();
  if (r != 0) {
    /* Not acknowledged. What reached the disk is unknown, so the next write starts a new generation
       rather than overwrite it (a partial write must never be followed by a valid-looking record). */
    seq = saved_seq;
    last_crc = saved_crc;
    wal_pos = saved_pos;
    need_new_gen = 1;
    st.wal_errors++;
    return r;
  }
  st.wal_records++;
  return 0;
}

/* The record at sector pos, read into rec: REC_OK when it is a whole record of generation g with
   sane fields and a good CRC; REC_FOREIGN when its first sector is not a record header of g at all;
   REC_BAD when it claims to be one but is damaged or incomplete. *h is filled in every case. */
enum { REC_OK, REC_FOREIGN, REC_BAD };
static int rec_load(uint64_t pos, uint32_t g, rec_hdr *h) {
  memset(h, 0, sizeof *h);
  if (pos >= half_end(g) || blk_read(pos, rec, 1) != 0) return REC_FOREIGN;
  memcpy(h, rec, REC_HDR);
  if (h->magic != REC_MAGIC || h->gen != g) return REC_FOREIGN;
  if (h->zero != 0 || h->zero2 != 0 || h->type < REC_SET || h->type > REC_CLEAR || h->klen > KEY_MAX ||
      h->vlen > VAL_MAX || (h->type != REC_CLEAR && h->klen == 0))
    return REC_BAD;
  uint32_t n = rec_sectors(h->klen, h->vlen);
  if (h->sectors != n || pos + n > half_end(g)) return REC_BAD;
  if (n > 1 && blk_read(pos + 1, rec + BLK_SECTOR, n - 1) != 0) return REC_BAD;
  memset(rec + offsetof(rec_hdr, crc), 0, 4);
  if (crc32_update(0, rec, REC_HDR + h->klen + h->vlen) != h->crc) return REC_BAD;
  return REC_OK;
}

/* "set <key>" etc., for the console: the key's bytes with anything unprintable shown as '?'. */
static void put_record(const rec_hdr *h, const uint8_t *key) {
  if (h->type < REC_SET || h->type > REC_CLEAR) {
    ls_puts("(type unreadable)");
    return;
  }
  ls_puts(h->type == REC_SET ? "set " : h->type == REC_DELETE ? "delete " : "flush_all");
  size_t n = h->type == REC_CLEAR || h->klen > KEY_MAX ? 0 : h->klen;
  for (size_t i = 0; i < n; i++) ls_putc(key[i] >= 0x21 && key[i] < 0x7f ? (char)key[i] : '?');
}

/* Replays the current generation's half, leaving wal_pos/seq/last_crc after the last good record, and
   reports loudly whatever stopped it early. */
static void replay(void) {
  wal_pos = half_start(gen);
  seq = 0;
  last_crc = 0;
  rec_hdr h;
  int r;
  for (;;) {
    r = rec_load(wal_pos, gen, &h);
    if (r != REC_OK || h.seq != seq || h.prev != last_crc) break;
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
    wal_pos += h.sectors;
    seq++;
    last_crc = h.crc;
  }
  /* What stopped the replay: the end of the log (a sector that is no record of this generation, with
     nothing of the generation after it), or damage. Read the rest of the half for later records. */
  rec_hdr stop = h;
  uint8_t stop_key[KEY_MAX];
  memcpy(stop_key, rec + REC_HDR, stop.klen <= KEY_MAX ? stop.klen : 0);
  int stop_ours = r == REC_BAD; /* a header of this generation, but the record is not whole */
  uint32_t lost = 0;
  uint64_t pos = wal_pos;
  while (pos < half_end(gen)) {
    uint32_t chunk = half_end(gen) - pos < STAGE_SECTORS ? (uint32_t)(half_end(gen) - pos) : STAGE_SECTORS;
    if (blk_read(pos, stage, chunk) != 0) {
      pos++;
      continue;
    }
    uint32_t i = 0;
    for (; i < chunk; i++) {
      rec_hdr c;
      memcpy(&c, stage + i * BLK_SECTOR, REC_HDR);
      if (c.magic != REC_MAGIC || c.gen != gen || c.seq < seq) continue;
      if (rec_load(pos + i, gen, &c) != REC_OK) continue;
      if (lost == 0) {
        ls_puts("kvserver: WAL CORRUPTION: record ");
        ls_putdec(seq);
        ls_puts(" (sector ");
        ls_putdec((uint32_t)wal_pos);
        ls_puts(") is damaged; the log is replayed up to it, and every later acknowledged write is lost:\n");
        if (stop_ours) {
          ls_puts("kvserver:   damaged: ");
          put_record(&stop, stop_key);
          ls_putc('\n');
        }
      }
      lost++;
      if (c.cas >= next_cas) next_cas = c.cas + 1u; /* never hand out a CAS value a lost write had */
      if (lost <= LOST_SHOWN) {
        ls_puts("kvserver:   lost: ");
        put_record(&c, rec + REC_HDR);
        ls_putc('\n');
      }
      pos += i + c.sectors;
      break;
    }
    if (i == chunk) pos += chunk;
  }
  if (lost > 0) {
    if (lost > LOST_SHOWN) {
      ls_puts("kvserver:   ... and ");
      ls_putdec(lost - LOST_SHOWN);
      ls_puts(" more\n");
    }
    st.wal_lost_records = lost + 1u; /* the damaged one was followed by others: it had been acknowledged too */
  } else if (stop_ours) {
    ls_puts("kvserver: WAL: the last record (");
    ls_putdec(seq);
    ls_puts(", sector ");
    ls_putdec((uint32_t)wal_pos);
    ls_puts(") is incomplete or damaged and was dropped: a write cut short by a crash (never acknowledged), or a damaged acknowledged write: ");
    put_record(&stop, stop_key);
    ls_putc('\n');
    /* Its CAS may have been handed out (if it was acknowledged): skip past it, when it is plausible. */
    if (stop.type == REC_SET && stop.cas >= next_cas && stop.cas - next_cas < (1ull << 32)) next_cas = stop.cas + 1u;
  }
}

/* A superblock slot: SB_VALID and SB_PENDING fill *g, *half and *cas_floor. */
enum { SB_VALID, SB_PENDING_GEN, SB_BLANK, SB_DAMAGED, SB_FOREIGN, SB_OLD_VERSION, SB_UNREADABLE };
static int read_superblock(uint32_t slot, uint32_t *g, uint32_t *half, uint64_t *cas_floor) {
  uint8_t *sb = stage;
  if (blk_read(slot, sb, 1) != 0) return SB_UNREADABLE;
  int blank = 1;
  for (unsigned i = 0; i < BLK_SECTOR && blank; i++) blank = sb[i] == 0;
  if (blank) return SB_BLANK;
  if (memcmp(sb, SB_MAGIC, 8) != 0) return SB_FOREIGN;
  uint32_t f[3], flags, crc;
  memcpy(f, sb + 8, 12);
  if (f[0] != SB_VERSION) return SB_OLD_VERSION;
  memcpy(cas_floor, sb + 20, 8);
  memcpy(&flags, sb + 28, 4);
  memcpy(&crc, sb + 32, 4);
  if (crc != crc32_update(0, sb, 32)) return SB_DAMAGED;
  if ((f[1] & 1u) != slot || f[2] == 0 || f[2] > HALF_MAX || 2u + 2u * (uint64_t)f[2] > capacity || (flags & ~SB_PENDING))
    return SB_DAMAGED;
  *g = f[1];
  *half = f[2];
  return flags & SB_PENDING ? SB_PENDING_GEN : SB_VALID;
}

/* Opens (or formats) the log and rebuilds the store. Returns 0, or sets no_disk and returns -1. */
static int wal_open(void) {
  static const char *const sb_problem[] = {"", "", "", "damaged (bad checksum or fields)",
                                           "not a kvserver superblock", "a log format other than version 2",
                                           "unreadable"};
  int r = blk_init();
  if (r != 0) {
    no_disk = r == VIO_ERR_NOT_FOUND ? "no disk device" : vio_strerror(r);
    return -1;
  }
  if (blk_read_only()) {
    no_disk = "the disk is read-only";
    return -1;
  }
  capacity = blk_capacity();
  if (capacity < MIN_SECTORS) {
    no_disk = "the disk is too small: a log needs at least 14 sectors (7 KiB)";
    return -1;
  }
  uint32_t g[2] = {0, 0}, h[2] = {0, 0};
  uint64_t c[2] = {0, 0};
  int s[2];
  for (uint32_t i = 0; i < 2; i++) s[i] = read_superblock(i, &g[i], &h[i], &c[i]);
  if (s[0] == SB_VALID || s[1] == SB_VALID) {
    uint32_t i = s[0] == SB_VALID && (s[1] != SB_VALID || g[0] > g[1]) ? 0u : 1u;
    uint32_t o = 1u - i;
    if (s[o] != SB_VALID && s[o] != SB_BLANK && s[o] != SB_PENDING_GEN) {
      ls_puts("kvserver: WAL: superblock slot ");
      ls_putdec(o);
      ls_puts(" is ");
      ls_puts(sb_problem[s[o]]);
      ls_puts("; using generation ");
      ls_putdec(g[i]);
      ls_puts(" from slot ");
      ls_putdec(i);
      ls_puts(" (a compaction cut short by a crash leaves this; if it was damage instead, the writes of a newer generation are lost)\n");
    }
    gen = g[i];
    half_len = h[i];
    next_cas = c[i] == 0 ? 1 : c[i];
    /* The other slot: the previous generation, a compaction that was tried (pending), or damage
       (perhaps a superblock write cut short): skip any generation that may have been tried. */
    next_gen = gen + 1u;
    if (s[o] == SB_PENDING_GEN && g[o] >= next_gen) next_gen = g[o] + 2u;
    else if (s[o] != SB_VALID && s[o] != SB_BLANK) next_gen = gen + 3u;
    replay();
    storage = STORE_DISK;
    /* A new generation at every boot: whatever lies after the replayed records in this half (a torn
       write, a damaged record and what followed it) can then never be taken for part of the log. */
    r = compact(0, 0);
    if (r != 0) {
      storage = STORE_REFUSE;
      no_disk = "the log could not be rewritten into a new generation (disk I/O error)";
      return -1;
    }
    return 0;
  }
  if (s[0] != SB_BLANK || s[1] != SB_BLANK) {
    /* Never format over something that is not blank: it may be a damaged log worth recovering. */
    int w = s[0] != SB_BLANK ? s[0] : s[1];
    if (w == SB_PENDING_GEN) w = s[0] == SB_PENDING_GEN ? s[1] : s[0];
    no_disk = w == SB_UNREADABLE    ? "its superblocks cannot be read (disk I/O error)"
              : w == SB_OLD_VERSION ? "it holds a log of another format version (zero sectors 0 and 1 to start over)"
              : w == SB_DAMAGED     ? "both log superblocks are damaged (zero sectors 0 and 1 to start over)"
                                    : "it is neither blank nor a kvserver log (zero sectors 0 and 1 to use it)";
    return -1;
  }
  /* A blank disk: generation 1 in half 1, whose first sector is zeroed so nothing old can pass for a
     record. */
  uint64_t usable = (capacity - 2u) / 2u;
  half_len = (uint32_t)(usable > HALF_MAX ? HALF_MAX : usable);
  gen = 1;
  next_gen = 2;
  memset(stage, 0, BLK_SECTOR);
  r = blk_write(half_start(gen), stage, 1);
  if (r == 0) r = blk_flush();
  if (r == 0) r = write_superblock(gen, 0);
  if (r != 0) {
    no_disk = "formatting the blank disk failed (disk I/O error)";
    return -1;
  }
  wal_pos = half_start(gen);
  seq = 0;
  last_crc = 0;
  storage = STORE_DISK;
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

/* The refusal for a write the log could not make durable: never "out of memory" for a disk problem. */
static void emit_wal_error(int r) {
  st.wal_refused++;
  emits(r == WAL_REFUSED ? "SERVER_ERROR writes refused: no usable disk\r\n"
        : r == WAL_FULL  ? "SERVER_ERROR disk full\r\n"
                         : "SERVER_ERROR disk write failed\r\n");
}

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
  int r = wal_append(REC_SET, k, klen, flags, v, vlen, cas);
  if (r != 0) {
    emit_wal_error(r);
    return used;
  }
  put(k, klen, flags, v, vlen, cas);
  applied = 1;
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
  int r = wal_append(REC_DELETE, t[1].p, t[1].n, 0, 0, 0, 0);
  if (r != 0) {
    emit_wal_error(r);
    return;
  }
  unlink_item(it);
  applied = 1;
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
  int r = wal_append(REC_SET, it->key, it->klen, it->flags, scratch, n, cas);
  if (r != 0) {
    emit_wal_error(r);
    return;
  }
  put(it->key, it->klen, it->flags, scratch, n, cas);
  applied = 1;
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
  int r = wal_append(REC_CLEAR, "", 0, 0, 0, 0, 0);
  if (r != 0) {
    emit_wal_error(r);
    return;
  }
  clear_all();
  applied = 1;
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
  stat_line("reply_cache_full", st.reply_cache_full);
  stat_line("reply_cache_mismatch", st.reply_cache_mismatch);
  stat_line("requests_too_large", st.requests_too_large);
  emits(storage == STORE_DISK ? "STAT storage disk\r\n" : storage == STORE_MEMORY ? "STAT storage memory\r\n" : "STAT storage none\r\n");
  stat_line("wal_records", st.wal_records);
  stat_line("wal_compactions", st.wal_compactions);
  stat_line("wal_errors", st.wal_errors);
  stat_line("wal_refused", st.wal_refused);
  stat_line("wal_lost_records", st.wal_lost_records);
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

/* Entries live in a byte ring (oldest at the tail, the window's order), found through an
   open-addressing index. Both sit above the first MiB (.highbss): kvserver needs 8 MiB of RAM.

     rc_arena  [ free | tail: oldest entry ... newest entry | head: free ]      (or wrapped:
               [ newer entries ... | head: free | tail: oldest ... | rc_wrap: unused end ])
     entry     rc_entry (24 bytes) | reply text (len bytes) | pad to 4
     rc_index  slot = arena offset + 1 of the entry for a key, 0 = empty (linear probing) */
#define RC_ARENA (4u << 20)
#define RC_SLOTS (1u << 17)
#define RC_MAX_ENTRIES (RC_SLOTS / 2u) /* the index stays at most half full */
#define RC_WINDOW_MS 20000u
#define RC_MARK 0x8000u

typedef struct rc_entry {
  uint32_t ip;
  uint16_t port;
  uint16_t len;   /* reply text bytes that follow (0: nothing was sent, e.g. noreply) */
  uint32_t xid;   /* 31-bit request id */
  uint32_t hash;  /* FNV-1a of the request text */
  uint32_t tlen;  /* request text length */
  uint32_t stamp; /* guest clock in ms (wrapping) when stored */
} rc_entry;
_Static_assert(sizeof(rc_entry) == 24, "reply cache entry layout");

static uint8_t rc_arena[RC_ARENA] __attribute__((section(".highbss"), aligned(8)));
static uint32_t rc_index[RC_SLOTS] __attribute__((section(".highbss")));
static uint32_t rc_head, rc_tail, rc_count;
static uint32_t rc_wrap = RC_ARENA; /* end of the used top part while wrapped; RC_ARENA when not */

static uint32_t rc_size(uint32_t len) { return (uint32_t)sizeof(rc_entry) + ((len + 3u) & ~3u); }
static rc_entry *rc_at(uint32_t off) { return (rc_entry *)(rc_arena + off); }

static uint32_t rc_home(uint32_t ip, uint16_t port, uint32_t xid) {
  uint32_t h = ip * 0x9e3779b1u ^ (uint32_t)port * 0x85ebca6bu ^ xid;
  h ^= h >> 16; /* murmur3's finaliser */
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h & (RC_SLOTS - 1u);
}

/* The index slot holding the key, or -1. */
static int32_t rc_find(uint32_t ip, uint16_t port, uint32_t xid) {
  for (uint32_t i = rc_home(ip, port, xid);; i = (i + 1u) & (RC_SLOTS - 1u)) {
    if (rc_index[i] == 0) return -1;
    rc_entry *e = rc_at(rc_index[i] - 1u);
    if (e->ip == ip && e->port == port && e->xid == xid) return (int32_t)i;
  }
}

/* Empties slot i, moving later entries of its probe run back so every key stays reachable. */
static void rc_unindex(uint32_t i) {
  uint32_t j = i;
  for (;;) {
    j = (j + 1u) & (RC_SLOTS - 1u);
    if (rc_index[j] == 0) break;
    rc_entry *e = rc_at(rc_index[j] - 1u);
    uint32_t k = rc_home(e->ip, e->port, e->xid);
    if (i <= j ? (i < k && k <= j) : (i < k || k <= j)) continue; /* its home lies in (i, j]: it stays */
    rc_index[i] = rc_index[j];
    i = j;
  }
  rc_index[i] = 0;
}

static void rc_drop_oldest(void) {
  rc_entry *e = rc_at(rc_tail);
  int32_t s = rc_find(e->ip, e->port, e->xid);
  if (s >= 0 && rc_index[s] == rc_tail + 1u) rc_unindex((uint32_t)s); /* else a newer entry replaced it */
  rc_tail += rc_size(e->len);
  rc_count--;
  if (rc_tail == rc_wrap) {
    rc_tail = 0;
    rc_wrap = RC_ARENA;
  }
  if (rc_count == 0) rc_head = rc_tail = 0, rc_wrap = RC_ARENA;
}

/* Drops every entry older than the window: retries that old are never sent. */
static void rc_expire(uint32_t now) {
  while (rc_count > 0 && now - rc_at(rc_tail)->stamp >= RC_WINDOW_MS) rc_drop_oldest();
}

/* Where an entry of `size` bytes would go, or -1 when there is no room without dropping a young one. */
static int32_t rc_place(uint32_t size) {
  if (rc_count >= RC_MAX_ENTRIES) return -1;
  if (rc_count == 0) return 0;
  if (rc_wrap == RC_ARENA) {
    if (RC_ARENA - rc_head >= size) return (int32_t)rc_head;
    return rc_tail >= size ? 0 : -1;
  }
  return rc_tail - rc_head >= size ? (int32_t)rc_head : -1;
}

static void rc_put(uint32_t ip, uint16_t port, uint32_t xid, uint32_t hash, uint32_t tlen, uint32_t now,
                   const uint8_t *reply, uint32_t len) {
  uint32_t size = rc_size(len);
  int32_t off = rc_place(size); /* room was checked before the request ran */
  if (off < 0) return;
  if (rc_count > 0 && rc_wrap == RC_ARENA && (uint32_t)off < rc_head) rc_wrap = rc_head;
  rc_head = (uint32_t)off + size;
  rc_count++;
  rc_entry *e = rc_at((uint32_t)off);
  *e = (rc_entry){ip, port, (uint16_t)len, xid, hash, tlen, now};
  memcpy(rc_arena + off + sizeof(rc_entry), reply, len);
  uint32_t i = rc_home(ip, port, xid);
  while (rc_index[i] != 0) i = (i + 1u) & (RC_SLOTS - 1u);
  rc_index[i] = (uint32_t)off + 1u;
}

/* ---------------------------------------------------------------- datagrams */

static uint32_t now_ms(void) { return (uint32_t)(ls_mtime() / (LS_TIMEBASE_HZ / 1000u)); }

static int is_storage_command(const uint8_t *p, size_t n) {
  static const char *const cmds[] = {"set ", "add ", "replace ", "append ", "prepend ", "cas "};
  for (unsigned i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
    size_t k = strlen(cmds[i]);
    if (n >= k && memcmp(p, cmds[i], k) == 0) return 1;
  }
  return 0;
}

static void send_reply(uint32_t ip, uint16_t port, uint16_t req_id, uint16_t reserved, const uint8_t *text, size_t n) {
  if (n == 0) return;
  if (text != out + FRAME_HDR) memcpy(out + FRAME_HDR, text, n);
  out[0] = (uint8_t)(req_id >> 8);
  out[1] = (uint8_t)req_id;
  out[2] = out[3] = 0; /* sequence 0 */
  out[4] = 0;
  out[5] = 1;          /* 1 datagram */
  out[6] = (uint8_t)(reserved >> 8);
  out[7] = (uint8_t)reserved;
  udp_sendto(MC_PORT, ip, port, out, FRAME_HDR + n);
}

static void on_datagram(uint32_t src_ip, uint16_t src_port, uint16_t dst_port, const uint8_t *d, size_t len,
                        size_t full_len) {
  (void)dst_port;
  if (len < FRAME_HDR) return; /* no header to answer to (memcached ignores these too) */
  uint16_t req_id = (uint16_t)((d[0] << 8) | d[1]);
  uint16_t seqno = (uint16_t)((d[2] << 8) | d[3]);
  uint16_t total = (uint16_t)((d[4] << 8) | d[5]);
  uint16_t reserved = (uint16_t)((d[6] << 8) | d[7]);
  if (seqno != 0 || total != 1) return; /* multi-datagram requests are not supported (nor by memcached) */
  const uint8_t *text = d + FRAME_HDR;
  size_t tlen = len - FRAME_HDR;
  if (full_len > len) {
    /* Only the first fragment arrived: answer rather than leave the client retrying forever. */
    st.requests_too_large++;
    const char *e = is_storage_command(text, tlen) ? TOO_LARGE : "CLIENT_ERROR line too long\r\n";
    send_reply(src_ip, src_port, req_id, reserved, (const uint8_t *)e, strlen(e));
    return;
  }
  int marked = (reserved & RC_MARK) != 0;
  uint32_t xid = ((uint32_t)(reserved & 0x7fffu) << 16) | req_id;
  uint32_t hash = 0, now = 0;
  if (marked) {
    hash = hash_key((const char *)text, tlen);
    now = now_ms();
    rc_expire(now);
    int32_t s = rc_find(src_ip, src_port, xid);
    if (s >= 0) {
      rc_entry *e = rc_at(rc_index[s] - 1u);
      if (e->hash == hash && e->tlen == tlen) {
        st.reply_cache_hits++;
        send_reply(src_ip, src_port, req_id, reserved, (const uint8_t *)(e + 1), e->len);
        return;
      }
      /* The same id with other text inside the window: the client broke its promise. Run it as new;
         its entry (if it changes the store) replaces this one. */
      st.reply_cache_mismatch++;
      rc_unindex((uint32_t)s);
    }
    if (rc_place(rc_size(MAX_REPLY)) < 0) {
      /* Running it could leave a reply with nowhere to keep it: drop it unexecuted; the retry comes
         once older entries have aged out of the window. */
      st.reply_cache_full++;
      return;
    }
  }
  out_len = 0;
  out_overflow = 0;
  applied = 0;
  execute(text, tlen);
  if (marked && applied) rc_put(src_ip, src_port, xid, hash, (uint32_t)tlen, now, out + FRAME_HDR, (uint32_t)out_len);
  send_reply(src_ip, src_port, req_id, reserved, out + FRAME_HDR, out_len);
}

/* ---------------------------------------------------------------- boot */

static void put_ip(uint32_t ip) {
  for (int s = 24; s >= 0; s -= 8) {
    ls_putdec((ip >> s) & 0xffu);
    if (s) ls_putc('.');
  }
}

/* kvserver.storage from the command line: STORE_DISK (the default) or STORE_MEMORY. */
static int storage_wanted(void) {
  static char cmdline[512];
  ls_cmdline(cmdline, sizeof cmdline);
  size_t n;
  const char *v = ls_cmdline_value(cmdline, "kvserver.storage", &n);
  if (!v || (n == 4 && memcmp(v, "disk", 4) == 0)) return STORE_DISK;
  if (n == 6 && memcmp(v, "memory", 6) == 0) return STORE_MEMORY;
  ls_puts("kvserver: kvserver.storage must be disk or memory; using disk\n");
  return STORE_DISK;
}

int main(void) {
  store_init();
  if (storage_wanted() == STORE_MEMORY) {
    storage = STORE_MEMORY;
    ls_puts("kvserver: memory-only (kvserver.storage=memory): writes are acknowledged without a disk and lost at a restart\n");
  } else if (wal_open() != 0) {
    ls_puts("kvserver: no usable disk (");
    ls_puts(no_disk);
    ls_puts("): every write will be refused; boot with kvserver.storage=memory to serve from memory only\n");
  }
  int r = net_init();
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
