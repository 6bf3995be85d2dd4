/* Shared by the guest/klib harnesses: a deterministic input generator and a running checksum. */
#ifndef KLIB_COMMON_H
#define KLIB_COMMON_H
#include <stdint.h>
#include <stddef.h>

static inline uint32_t kl_xorshift(uint32_t *s) {
  uint32_t x = *s;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return *s = x;
}

/* FNV-1a over bytes, continuing from h. */
static inline uint32_t kl_fnv(uint32_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
  return h;
}

/* Text-like, compressible data: words from a small vocabulary with spaces and line breaks, and a
   few random bytes (about 1 in 64), as a log file or source code might look. */
static inline void kl_text(uint8_t *buf, size_t n, uint32_t *seed) {
  static const char *const words[] = {
      "the", "lockstep", "machine", "records", "every", "input", "and", "replays", "it", "bit",
      "for", "on", "a", "second", "host", "interrupt", "timer", "disk", "block", "network",
      "packet", "guest", "instruction", "retired", "branch", "page", "table", "state", "hash", "log"};
  size_t i = 0;
  while (i < n) {
    uint32_t r = kl_xorshift(seed);
    if ((r & 63) == 0) {
      buf[i++] = (uint8_t)(r >> 8);
      continue;
    }
    const char *w = words[(r >> 8) % (sizeof words / sizeof words[0])];
    while (*w && i < n) buf[i++] = (uint8_t)*w++;
    if (i < n) buf[i++] = ((r >> 20) & 15) == 0 ? '\n' : ' ';
  }
}
#endif
