/* CPU benchmark from code nobody here wrote: the Linux kernel's sorts (lib/sort.c, its in-place
   heapsort with word-wise swaps, and lib/list_sort.c, its bottom-up merge sort of linked lists; v6.1,
   extracted from Debian's linux-source-6.1 at build time). Each round sorts 32-bit keys, 12-byte
   records by two fields (a comparison with a context), 64-bit keys with a swap function of its own,
   and a 2 048-node list by key; every result is checked in order (and the list sort for stability). */
#include <linux/list.h>
#include <linux/list_sort.h>
#include <linux/sort.h>
#include "common.h"
#include "lockstep.h"

#define N 2048u
#define ROUNDS 80u

struct rec {
  u32 key;
  u16 group;
  u16 seq;
  u32 payload;
};

struct item {
  struct list_head link;
  u32 key;
  u32 seq;
};

static u32 keys[N];
static struct rec recs[N];
static u64 wide[N];
static struct item items[N];
static u32 swaps64;

static int cmp_u32(const void *a, const void *b) {
  u32 x = *(const u32 *)a, y = *(const u32 *)b;
  return (x > y) - (x < y);
}

/* Records by group, then key: the context says which way the key goes. */
static int cmp_rec(const void *a, const void *b, const void *priv) {
  const struct rec *x = a, *y = b;
  if (x->group != y->group) return x->group < y->group ? -1 : 1;
  int d = (x->key > y->key) - (x->key < y->key);
  return *(const int *)priv ? -d : d;
}

static int cmp_u64(const void *a, const void *b) {
  u64 x = *(const u64 *)a, y = *(const u64 *)b;
  return (x > y) - (x < y);
}

static void swap_u64(void *a, void *b, int size) {
  (void)size;
  u64 t = *(u64 *)a;
  *(u64 *)a = *(u64 *)b;
  *(u64 *)b = t;
  swaps64++;
}

static int cmp_item(void *priv, const struct list_head *a, const struct list_head *b) {
  (void)priv;
  return container_of(a, struct item, link)->key > container_of(b, struct item, link)->key;
}

int main(void) {
  uint32_t seed = 0x510e527fu, h = 2166136261u, bad = 0;
  int descending = 1;
  for (uint32_t r = 0; r < ROUNDS; r++) {
    for (uint32_t i = 0; i < N; i++) {
      keys[i] = kl_xorshift(&seed);
      recs[i] = (struct rec){kl_xorshift(&seed) % 1000u, (u16)(kl_xorshift(&seed) % 16u), (u16)i, i * 2654435761u};
      wide[i] = ((u64)kl_xorshift(&seed) << 32) | kl_xorshift(&seed);
    }
    /* Every fourth round starts from nearly sorted keys (a run with a few strays). */
    if (r % 4 == 3) {
      sort(keys, N, sizeof keys[0], cmp_u32, NULL);
      for (uint32_t i = 0; i < 16; i++) keys[kl_xorshift(&seed) % N] = kl_xorshift(&seed);
    }
    sort(keys, N, sizeof keys[0], cmp_u32, NULL);
    sort_r(recs, N, sizeof recs[0], cmp_rec, NULL, &descending);
    sort(wide, N, sizeof wide[0], cmp_u64, swap_u64);

    LIST_HEAD(list);
    for (uint32_t i = 0; i < N; i++) {
      items[i].key = kl_xorshift(&seed) % 512u; /* many equal keys: stability shows */
      items[i].seq = i;
      list_add_tail(&items[i].link, &list);
    }
    list_sort(NULL, &list, cmp_item);

    for (uint32_t i = 1; i < N; i++) {
      bad += keys[i - 1] > keys[i];
      bad += recs[i - 1].group > recs[i].group || (recs[i - 1].group == recs[i].group && recs[i - 1].key < recs[i].key);
      bad += wide[i - 1] > wide[i];
    }
    const struct item *prev = NULL;
    uint32_t count = 0;
    struct item *it;
    list_for_each_entry(it, &list, link) {
      if (prev) bad += prev->key > it->key || (prev->key == it->key && prev->seq > it->seq);
      h = (h ^ it->seq) * 16777619u;
      prev = it;
      count++;
    }
    bad += count != N;
    h = kl_fnv(h, keys, sizeof keys);
    h = kl_fnv(h, recs, sizeof recs);
    h = kl_fnv(h, wide, sizeof wide);
  }
  ls_puts("klib-sort: ");
  ls_putdec(ROUNDS);
  ls_puts(" rounds of sort() over 2048 u32, records and u64, list_sort() over 2048 nodes, ");
  ls_putdec(bad);
  ls_puts(" out of order, ");
  ls_putdec(swaps64);
  ls_puts(" u64 swaps, fnv ");
  ls_puthex(h);
  ls_putc('\n');
  return bad != 0;
}
