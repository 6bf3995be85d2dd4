/* CPU benchmark: integer matrix multiplication, load/store-heavy in the way Embench's matmult-int
   is: 24x24 int32 matrices, C = A x B in the naive i-j-k order (a strided column walk), in i-k-j
   order (C updated in memory in the inner loop) and through a transposed copy, rounds times, each
   product fed back into A. Both orders must agree every round. */
#include "lockstep.h"

#define N 24
#define ROUNDS 2000u

static int32_t a[N][N], b[N][N], c[N][N], d[N][N], bt[N][N];

static void mul_ijk(int32_t (*r)[N]) {
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      int32_t s = 0;
      for (int k = 0; k < N; k++) s += a[i][k] * b[k][j];
      r[i][j] = s;
    }
}

static void mul_ikj(int32_t (*r)[N]) {
  for (int i = 0; i < N; i++) {
    for (int j = 0; j < N; j++) r[i][j] = 0;
    for (int k = 0; k < N; k++) {
      int32_t x = a[i][k];
      for (int j = 0; j < N; j++) r[i][j] += x * b[k][j];
    }
  }
}

static void mul_transposed(int32_t (*r)[N]) {
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) bt[j][i] = b[i][j];
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      const int32_t *p = a[i], *q = bt[j];
      int32_t s = 0;
      for (int k = 0; k < N; k++) s += p[k] * q[k];
      r[i][j] = s;
    }
}

int main(void) {
  uint32_t x = 0x1f123bb5u;
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      x ^= x << 13, x ^= x >> 17, x ^= x << 5;
      a[i][j] = (int32_t)(x % 201) - 100;
      x ^= x << 13, x ^= x >> 17, x ^= x << 5;
      b[i][j] = (int32_t)(x % 201) - 100;
    }
  uint32_t sum = 0;
  for (uint32_t r = 0; r < ROUNDS; r++) {
    switch (r % 3) {
      case 0: mul_ijk(c); mul_ikj(d); break;
      case 1: mul_ikj(c); mul_transposed(d); break;
      default: mul_transposed(c); mul_ijk(d); break;
    }
    for (int i = 0; i < N; i++)
      for (int j = 0; j < N; j++) {
        if (c[i][j] != d[i][j]) {
          ls_puts("matmult: products differ in round ");
          ls_putdec(r);
          ls_putc('\n');
          return 1;
        }
        sum = (sum ^ (uint32_t)c[i][j]) * 16777619u;
        /* Keep the entries small: the next A is this product reduced to -100..100. */
        a[i][j] = (int32_t)((uint32_t)c[i][j] % 201u) - 100;
      }
  }
  ls_puts("matmult: ");
  ls_putdec(ROUNDS);
  ls_puts(" rounds of 24x24 products in three orders, all equal, fnv ");
  ls_puthex(sum);
  ls_putc('\n');
  return 0;
}
