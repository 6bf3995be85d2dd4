/* CPU benchmark: branch- and call-heavy recursion (Fibonacci, Ackermann, N-queens), exercising
   jal/jalr, return-address traffic on the stack and hard-to-predict branches. */
#include "lockstep.h"

static uint32_t calls;

static uint32_t fib(uint32_t n) {
  calls++;
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

static uint32_t ackermann(uint32_t m, uint32_t n) {
  calls++;
  if (m == 0) return n + 1;
  if (n == 0) return ackermann(m - 1, 1);
  return ackermann(m - 1, ackermann(m, n - 1));
}

/* Bitboard N-queens: cols/diagonals as masks, one recursion level per row. */
static uint32_t queens(uint32_t all, uint32_t cols, uint32_t ld, uint32_t rd) {
  calls++;
  if (cols == all) return 1;
  uint32_t count = 0;
  uint32_t free = all & ~(cols | ld | rd);
  while (free) {
    uint32_t bit = free & -free;
    free ^= bit;
    count += queens(all, cols | bit, ((ld | bit) << 1) & all, (rd | bit) >> 1);
  }
  return count;
}

int main(void) {
  uint32_t f = 0, a = 0, q = 0;
  /* Recursion depth stays near a thousand frames (ackermann), well inside the SDK's 64 KiB stack. */
  for (int rep = 0; rep < 10; rep++) { /* ~45 M instructions each */
    f = fib(30);
    a = ackermann(2, 500) + ackermann(3, 7);
    q = queens((1u << 11) - 1, 0, 0, 0);
  }
  ls_puts("recurse: fib(30)=");
  ls_putdec(f);
  ls_puts(" ackermann(2,500)+ackermann(3,7)=");
  ls_putdec(a);
  ls_puts(" queens(11)=");
  ls_putdec(q);
  ls_puts("\nrecurse: ");
  ls_putdec(calls);
  ls_puts(" calls\n");
  return f == 832040u && q == 2680u && a == 1003u + 1021u ? 0 : 1;
}
