/* CPU benchmark in the spirit of CoreMark (written from scratch): linked-list search and reversal,
   a small integer matrix multiply and a number-parsing state machine, with a CRC over the results
   of every iteration so that no kernel's work can be optimised away. */
#include "lockstep.h"

#define ITERATIONS 3300u /* ~136 K instructions each: ~450 M retired */
#define LIST_NODES 256u
#define MAT 12u

typedef struct node {
  struct node *next;
  int32_t key;
  int32_t value;
} node;

static node pool[LIST_NODES];
static int32_t mat_a[MAT][MAT], mat_b[MAT][MAT], mat_c[MAT][MAT];

static uint16_t crc16_update(uint16_t crc, uint32_t v) {
  for (int b = 0; b < 32; b += 8) {
    crc ^= (uint8_t)(v >> b);
    for (int k = 0; k < 8; k++) crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xa001u) : (uint16_t)(crc >> 1);
  }
  return crc;
}

/* ---- linked list ---- */

static node *list_build(uint32_t seed) {
  node *head = 0;
  for (uint32_t i = 0; i < LIST_NODES; i++) {
    seed = seed * 1103515245u + 12345u;
    pool[i].key = (int32_t)((seed >> 16) & 0x3ff);
    pool[i].value = (int32_t)i;
    pool[i].next = head;
    head = &pool[i];
  }
  return head;
}

static node *list_reverse(node *head) {
  node *prev = 0;
  while (head) {
    node *next = head->next;
    head->next = prev;
    prev = head;
    head = next;
  }
  return prev;
}

static int32_t list_find(const node *head, int32_t key) {
  for (int32_t pos = 0; head; head = head->next, pos++)
    if (head->key == key) return pos;
  return -1;
}

/* Insertion sort by key into a new list: pointer chasing with data-dependent exits. */
static node *list_sort(node *head) {
  node *sorted = 0;
  while (head) {
    node *n = head;
    head = head->next;
    node **slot = &sorted;
    while (*slot && (*slot)->key <= n->key) slot = &(*slot)->next;
    n->next = *slot;
    *slot = n;
  }
  return sorted;
}

static uint32_t list_work(uint32_t seed) {
  node *head = list_build(seed);
  uint32_t acc = 0;
  for (int32_t k = 0; k < 64; k += 3) acc += (uint32_t)list_find(head, k);
  head = list_reverse(head);
  head = list_sort(head);
  for (const node *n = head; n; n = n->next) acc = acc * 31u + (uint32_t)n->value;
  return acc;
}

/* ---- matrix ---- */

static uint32_t matrix_work(uint32_t seed) {
  for (uint32_t i = 0; i < MAT; i++)
    for (uint32_t j = 0; j < MAT; j++) {
      seed = seed * 1664525u + 1013904223u;
      mat_a[i][j] = (int32_t)(seed >> 20) - 2048;
      mat_b[i][j] = (int32_t)((seed >> 8) & 0xff) - 128;
    }
  for (uint32_t i = 0; i < MAT; i++)
    for (uint32_t j = 0; j < MAT; j++) {
      int32_t s = 0;
      for (uint32_t k = 0; k < MAT; k++) s += mat_a[i][k] * mat_b[k][j];
      mat_c[i][j] = s;
    }
  uint32_t acc = 0;
  for (uint32_t i = 0; i < MAT; i++)
    for (uint32_t j = 0; j < MAT; j++) acc = (acc << 1 | acc >> 31) ^ (uint32_t)mat_c[i][j];
  return acc;
}

/* ---- state machine: classify tokens as integer, decimal, exponent or invalid ---- */

enum state { S_START, S_SIGN, S_INT, S_DOT, S_FRAC, S_EXP, S_EXP_SIGN, S_EXP_INT, S_INVALID, S_COUNT };

static const char tokens[] =
    "5012 1.5e3 -42 +0.25 7e- 3.14159 -.5 1e+9 abc 12a 0 +7.0E-3 ,, 998877 6.02e23 --1 4.5. "
    "100 -0.0001 2e10 x9 31337 .1 +.e 1234567 -8.8e-8 0.5 77 e5 ";

static uint32_t state_machine_work(uint32_t salt) {
  uint32_t counts[S_COUNT] = {0};
  uint32_t transitions = 0;
  enum state s = S_START;
  for (const char *p = tokens;; p++) {
    char c = *p;
    if (c == ' ' || c == ',' || c == 0) {
      if (s != S_START) counts[s]++;
      s = S_START;
      if (c == 0) break;
      continue;
    }
    /* The salt perturbs one character per pass so successive iterations classify differently. */
    if ((uint32_t)(p - tokens) == salt % (sizeof tokens - 1) && c >= '0' && c <= '9') c = '.';
    enum state next = S_INVALID;
    int digit = c >= '0' && c <= '9';
    switch (s) {
      case S_START: next = digit ? S_INT : (c == '+' || c == '-') ? S_SIGN : c == '.' ? S_DOT : S_INVALID; break;
      case S_SIGN: next = digit ? S_INT : c == '.' ? S_DOT : S_INVALID; break;
      case S_INT: next = digit ? S_INT : c == '.' ? S_FRAC : (c == 'e' || c == 'E') ? S_EXP : S_INVALID; break;
      case S_DOT: next = digit ? S_FRAC : S_INVALID; break;
      case S_FRAC: next = digit ? S_FRAC : (c == 'e' || c == 'E') ? S_EXP : S_INVALID; break;
      case S_EXP: next = digit ? S_EXP_INT : (c == '+' || c == '-') ? S_EXP_SIGN : S_INVALID; break;
      case S_EXP_SIGN: next = digit ? S_EXP_INT : S_INVALID; break;
      case S_EXP_INT: next = digit ? S_EXP_INT : S_INVALID; break;
      default: next = S_INVALID; break;
    }
    if (next != s) transitions++;
    s = next;
  }
  uint32_t acc = transitions;
  for (int i = 0; i < S_COUNT; i++) acc = acc * 131u + counts[i];
  return acc;
}

int main(void) {
  uint16_t crc_list = 0, crc_matrix = 0, crc_state = 0;
  for (uint32_t it = 0; it < ITERATIONS; it++) {
    crc_list = crc16_update(crc_list, list_work(it * 7919u + 1u));
    crc_matrix = crc16_update(crc_matrix, matrix_work(it * 104729u + 3u));
    crc_state = crc16_update(crc_state, state_machine_work(it));
  }
  uint16_t total = crc16_update(crc16_update(crc16_update(0, crc_list), crc_matrix), crc_state);
  ls_puts("mixed: ");
  ls_putdec(ITERATIONS);
  ls_puts(" iterations, list ");
  ls_puthex(crc_list);
  ls_puts(" matrix ");
  ls_puthex(crc_matrix);
  ls_puts(" state ");
  ls_puthex(crc_state);
  ls_puts("\nmixed: checksum ");
  ls_puthex(total);
  ls_putc('\n');
  return 0;
}
