/* disk: drives the virtio-blk disk (/dev/vda) for the tests: each pass writes 64 KiB (16 chunks of
   4 KiB, a pattern of the pass and the chunk) with O_DIRECT, so every request reaches the device,
   syncs, reads the chunks back and checks them. One line per pass whose text depends only on the
   data, so a run prints the same on any machine and through a failover.
   Usage: disk [passes] (default 8). Exits 1 on a mismatch or an I/O error. */
#include "lsys.h"

#define CHUNK 4096
#define CHUNKS 16
#define LS_O_DIRECT 040000 /* asm-generic/fcntl.h (nolibc 6.1 does not define it) */

static uint32_t buf[CHUNK / 4] __attribute__((aligned(CHUNK)));

static void out(const char *s) { write(1, s, strlen(s)); }

static void out_hex(uint32_t v) {
  char t[11] = "0x00000000";
  for (int i = 0; i < 8; i++) t[9 - i] = "0123456789abcdef"[(v >> (4 * i)) & 15];
  out(t);
}

static int fail(const char *what, long pass) {
  out("disk: pass ");
  out(ltoa(pass));
  out(": ");
  out(what);
  out(" failed (error ");
  out(ltoa(errno));
  out(")\n");
  return 1;
}

/* xorshift32 seeded by pass and chunk: every word of every chunk differs from pass to pass. */
static uint32_t word(uint32_t pass, uint32_t chunk, uint32_t i) {
  uint32_t x = (pass * 0x9e3779b9u) ^ (chunk * 0x85ebca6bu) ^ (i * 0xc2b2ae35u) ^ 0x27d4eb2fu;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return x;
}

/* FNV-1a over words: the pass's checksum, printed so a reader can compare runs. */
static uint32_t fnv(uint32_t h, uint32_t w) {
  for (int b = 0; b < 4; b++) h = (h ^ ((w >> (8 * b)) & 0xff)) * 16777619u;
  return h;
}

static int at(int fd, uint32_t slot) { return lseek(fd, (off_t)(slot * CHUNK), SEEK_SET) == (off_t)(slot * CHUNK); }

int main(int argc, char **argv) {
  const long passes = argc > 1 ? atol(argv[1]) : 8;
  const int fd = open("/dev/vda", O_RDWR | LS_O_DIRECT, 0);
  if (fd < 0) return fail("open /dev/vda", 0);
  const off_t size = lseek(fd, 0, SEEK_END);
  if (size < (off_t)(CHUNKS * CHUNK)) return fail("a disk of at least 64 KiB", 0);
  const uint32_t slots = (uint32_t)size / CHUNK;
  out("disk: /dev/vda, ");
  out(ltoa((long)(slots * (CHUNK / 1024))));
  out(" KiB, ");
  out(ltoa(passes));
  out(" passes of 64 KiB\n");
  for (long p = 1; p <= passes; p++) {
    const uint32_t first = ((uint32_t)p * CHUNKS) % slots;
    for (uint32_t c = 0; c < CHUNKS; c++) {
      for (uint32_t i = 0; i < CHUNK / 4; i++) buf[i] = word((uint32_t)p, c, i);
      if (!at(fd, (first + c) % slots) || write(fd, buf, CHUNK) != CHUNK) return fail("write", p);
    }
    if (fsync(fd) < 0) return fail("fsync", p);
    uint32_t sum = 2166136261u;
    for (uint32_t c = 0; c < CHUNKS; c++) {
      memset(buf, 0, CHUNK);
      if (!at(fd, (first + c) % slots) || read(fd, buf, CHUNK) != CHUNK) return fail("read", p);
      for (uint32_t i = 0; i < CHUNK / 4; i++) {
        if (buf[i] != word((uint32_t)p, c, i)) {
          errno = 0;
          return fail("read-back check", p);
        }
        sum = fnv(sum, buf[i]);
      }
    }
    out("disk: pass ");
    out(ltoa(p));
    out(": 64 KiB at block ");
    out(ltoa((long)first));
    out(" written and read back, sum ");
    out_hex(sum);
    out("\n");
  }
  close(fd);
  out("disk: ok\n");
  return 0;
}
