/* CPU benchmark: sorting. Quicksort and heapsort of the same pseudo-random arrays, checked against
   each other and for order, so the loop mixes data-dependent branches with loads and stores. */
#include "lockstep.h"

#define N 4096u
#define ROUNDS 320u /* ~1.45 M instructions each: ~460 M retired */

static uint32_t input[N];
static uint32_t by_quick[N];
static uint32_t by_heap[N];

static uint32_t lcg_state = 12345u;
static uint32_t lcg(void) {
  lcg_state = lcg_state * 1664525u + 1013904223u;
  return lcg_state;
}

static void insertion_sort(uint32_t *a, int lo, int hi) {
  for (int i = lo + 1; i <= hi; i++) {
    uint32_t v = a[i];
    int j = i - 1;
    while (j >= lo && a[j] > v) {
      a[j + 1] = a[j];
      j--;
    }
    a[j + 1] = v;
  }
}

static void quicksort(uint32_t *a, int lo, int hi) {
  while (hi - lo > 16) {
    /* Median of three keeps the recursion shallow on the partly sorted rounds. */
    int mid = lo + (hi - lo) / 2;
    uint32_t x = a[lo], y = a[mid], z = a[hi];
    uint32_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
    int i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    /* Recurse into the smaller half, loop on the larger: bounded stack depth. */
    if (j - lo < hi - i) {
      quicksort(a, lo, j);
      lo = i;
    } else {
      quicksort(a, i, hi);
      hi = j;
    }
  }
  insertion_sort(a, lo, hi);
}

static void sift_down(uint32_t *a, uint32_t root, uint32_t n) {
  uint32_t v = a[root];
  for (;;) {
    uint32_t child = 2 * root + 1;
    if (child >= n) break;
    if (child + 1 < n && a[child + 1] > a[child]) child++;
    if (a[child] <= v) break;
    a[root] = a[child];
    root = child;
  }
  a[root] = v;
}

static void heapsort(uint32_t *a, uint32_t n) {
  for (uint32_t i = n / 2; i-- > 0;) sift_down(a, i, n);
  for (uint32_t end = n - 1; end > 0; end--) {
    uint32_t t = a[0];
    a[0] = a[end];
    a[end] = t;
    sift_down(a, 0, end);
  }
}

int main(void) {
  uint32_t checksum = 0;
  uint32_t failures = 0;
  for (uint32_t round = 0; round < ROUNDS; round++) {
    /* Every fourth round has a narrow key range: many duplicates stress the partition loop. */
    uint32_t mask = (round & 3) == 3 ? 0xffu : 0xffffffffu;
    for (uint32_t i = 0; i < N; i++) input[i] = lcg() & mask;
    for (uint32_t i = 0; i < N; i++) by_quick[i] = by_heap[i] = input[i];

    quicksort(by_quick, 0, (int)N - 1);
    heapsort(by_heap, N);

    for (uint32_t i = 0; i < N; i++) {
      if (by_quick[i] != by_heap[i]) failures++;
      if (i > 0 && by_quick[i - 1] > by_quick[i]) failures++;
      checksum = (checksum ^ by_quick[i]) * 16777619u + i;
    }
  }
  ls_puts("sort: ");
  ls_putdec(ROUNDS);
  ls_puts(" rounds of ");
  ls_putdec(N);
  ls_puts(" elements, ");
  ls_putdec(failures);
  ls_puts(" mismatches\nsort: checksum ");
  ls_puthex(checksum);
  ls_putc('\n');
  return failures == 0 ? 0 : 1;
}
