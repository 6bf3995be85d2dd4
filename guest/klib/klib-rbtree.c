/* CPU benchmark from code nobody here wrote: the Linux kernel's red-black tree (lib/rbtree.c and
   include/linux/rbtree*.h, v6.1, extracted from Debian's linux-source-6.1 at build time): pointer
   chasing and the rebalancing of inserts and erases. Each round inserts 4 096 random keys (duplicates
   skipped), looks up as many, erases every key with a chosen bit and then walks the tree in order;
   the walk checks the order, the count and the black height of every path. */
#include <linux/rbtree.h>
#include "common.h"
#include "lockstep.h"

#define N 4096u
#define ROUNDS 400u

struct node {
  struct rb_node rb;
  u32 key;
};

static struct node pool[N];

static struct node *find(struct rb_root *root, u32 key) {
  struct rb_node *n = root->rb_node;
  while (n) {
    struct node *x = rb_entry(n, struct node, rb);
    if (key < x->key) n = n->rb_left;
    else if (key > x->key) n = n->rb_right;
    else return x;
  }
  return NULL;
}

static int insert(struct rb_root *root, struct node *new) {
  struct rb_node **link = &root->rb_node, *parent = NULL;
  while (*link) {
    struct node *x = rb_entry(*link, struct node, rb);
    parent = *link;
    if (new->key < x->key) link = &(*link)->rb_left;
    else if (new->key > x->key) link = &(*link)->rb_right;
    else return 0;
  }
  rb_link_node(&new->rb, parent, link);
  rb_insert_color(&new->rb, root);
  return 1;
}

/* Black nodes on every path from n down (rb_is_black: the colour bit of __rb_parent_color), or -1 if
   two paths differ or a red node has a red child. */
static int black_height(const struct rb_node *n, int parent_red) {
  if (!n) return 1;
  int red = !(n->__rb_parent_color & 1);
  if (red && parent_red) return -1;
  int l = black_height(n->rb_left, red), r = black_height(n->rb_right, red);
  if (l < 0 || l != r) return -1;
  return l + !red;
}

int main(void) {
  uint32_t seed = 0x9b05688cu, h = 2166136261u, bad = 0, found = 0, live = 0;
  for (uint32_t r = 0; r < ROUNDS; r++) {
    struct rb_root root = RB_ROOT;
    uint32_t inserted = 0;
    for (uint32_t i = 0; i < N; i++) {
      pool[i].key = kl_xorshift(&seed) % (N * 4u);
      inserted += insert(&root, &pool[i]);
    }
    for (uint32_t i = 0; i < N; i++) found += find(&root, kl_xorshift(&seed) % (N * 4u)) != NULL;
    uint32_t bit = 1u << (r % 12u), erased = 0;
    for (struct rb_node *n = rb_first(&root); n;) {
      struct rb_node *next = rb_next(n);
      if (rb_entry(n, struct node, rb)->key & bit) {
        rb_erase(n, &root);
        erased++;
      }
      n = next;
    }
    uint32_t count = 0, prev = 0;
    for (struct rb_node *n = rb_first(&root); n; n = rb_next(n)) {
      u32 k = rb_entry(n, struct node, rb)->key;
      bad += (count > 0 && prev >= k) || (k & bit) != 0;
      h = (h ^ k) * 16777619u;
      prev = k;
      count++;
    }
    /* The last key first, walking back: rb_last and rb_prev agree with the forward walk. */
    for (struct rb_node *n = rb_last(&root); n; n = rb_prev(n)) count--;
    bad += count != 0 || black_height(root.rb_node, 1) < 0;
    live += inserted - erased;
  }
  ls_puts("klib-rbtree: ");
  ls_putdec(ROUNDS);
  ls_puts(" rounds of 4096 inserts, lookups and erases, ");
  ls_putdec(found);
  ls_puts(" found, ");
  ls_putdec(live);
  ls_puts(" kept, ");
  ls_putdec(bad);
  ls_puts(" faults, fnv ");
  ls_puthex(h);
  ls_putc('\n');
  return bad != 0;
}
