/* The firmware's only device-tree work: find RAM and the initrd in the blob the loader passed, and
   add a /memreserve/ entry so the kernel never allocates the firmware's pages. Bounds-checked: a
   malformed blob is reported, never walked past its end. */
#include "firmware.h"

#define FDT_MAGIC      0xd00dfeedu
#define FDT_BEGIN_NODE 1u
#define FDT_END_NODE   2u
#define FDT_PROP       3u
#define FDT_NOP        4u
#define FDT_END        9u
#define FDT_MAX_SIZE   (1u << 20)

static uint32_t be32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_be32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static bool str_eq(const char *a, const char *b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}

static bool starts_with(const char *s, const char *prefix) {
  while (*prefix && *s == *prefix) s++, prefix++;
  return *prefix == 0;
}

/* Length of the NUL-terminated string at s, or -1 when no NUL comes before limit. */
static int32_t bounded_len(const char *s, const char *limit) {
  for (const char *q = s; q < limit; q++)
    if (*q == 0) return (int32_t)(q - s);
  return -1;
}

/* Up to two cells as one number (more cells than that: the low two). */
static uint64_t cells(const uint8_t *p, uint32_t n) {
  uint64_t v = 0;
  for (uint32_t i = 0; i < n; i++) v = (v << 32) | be32(p + 4 * i);
  return v;
}

const char *fdt_prepare(uint32_t dtb, struct boot_info *info) {
  if (dtb == 0 || (dtb & 3u)) return "no device tree in a1";
  fw_guard_faulted = 0;
  const uint32_t magic = fw_guard_lw(dtb);
  if (fw_guard_faulted || magic != __builtin_bswap32(FDT_MAGIC)) return "no device tree (bad magic) at";
  uint8_t *const b = (uint8_t *)dtb;
  const uint32_t total = be32(b + 4);
  if (total < 40 || total > FDT_MAX_SIZE || dtb + total < dtb) return "device tree size out of range at";
  (void)fw_guard_lbu(dtb + total - 1);
  if (fw_guard_faulted) return "device tree runs past memory at";
  const uint32_t off_struct = be32(b + 8), off_strings = be32(b + 12), off_rsv = be32(b + 16);
  const uint32_t version = be32(b + 20);
  if (version < 16) return "device tree version below 16 at";
  const uint32_t size_strings = be32(b + 32);
  const uint32_t size_struct = version >= 17 ? be32(b + 36) : total - off_struct;
  if (off_struct > total || size_struct > total - off_struct || off_strings > total ||
      size_strings > total - off_strings || off_rsv > total - 16 || (off_struct & 3u) || (off_rsv & 7u))
    return "device tree blocks out of bounds at";

  /* Walk the structure block for /memory@…/reg and /chosen's initrd bounds. */
  const uint8_t *p = b + off_struct, *const end = b + off_struct + size_struct;
  const char *const strings = (const char *)b + off_strings, *const strings_end = strings + size_strings;
  uint32_t depth = 0, addr_cells = 2, size_cells = 1;
  bool in_memory = false, in_chosen = false, done = false;
  uint64_t ram_base = 0, ram_size = 0;
  while (!done) {
    if (end - p < 4) return "device tree structure block truncated at";
    const uint32_t tok = be32(p);
    p += 4;
    switch (tok) {
      case FDT_BEGIN_NODE: {
        const int32_t len = bounded_len((const char *)p, (const char *)end);
        if (len < 0) return "device tree node name unterminated at";
        depth++;
        if (depth == 2) {
          in_memory = str_eq((const char *)p, "memory") || starts_with((const char *)p, "memory@");
          in_chosen = str_eq((const char *)p, "chosen");
        }
        p += ((uint32_t)len + 4u) & ~3u;
        break;
      }
      case FDT_END_NODE:
        if (depth == 0) return "device tree nodes unbalanced at";
        depth--;
        if (depth < 2) in_memory = in_chosen = false;
        if (depth == 0) done = true;
        break;
      case FDT_PROP: {
        if (end - p < 8) return "device tree property truncated at";
        const uint32_t len = be32(p), nameoff = be32(p + 4);
        p += 8;
        if (len > (uint32_t)(end - p) || nameoff >= size_strings) return "device tree property out of bounds at";
        const char *name = strings + nameoff;
        if (bounded_len(name, strings_end) < 0) return "device tree property name unterminated at";
        if (depth == 1 && len == 4 && str_eq(name, "#address-cells")) addr_cells = be32(p);
        else if (depth == 1 && len == 4 && str_eq(name, "#size-cells")) size_cells = be32(p);
        else if (in_memory && ram_size == 0 && str_eq(name, "reg") && addr_cells >= 1 && addr_cells <= 2 &&
                 size_cells >= 1 && size_cells <= 2 && len >= 4 * (addr_cells + size_cells)) {
          ram_base = cells(p, addr_cells);
          ram_size = cells(p + 4 * addr_cells, size_cells);
        } else if (in_chosen && (len == 4 || len == 8) && str_eq(name, "linux,initrd-start")) {
          info->initrd_start = (uint32_t)cells(p, len / 4);
        } else if (in_chosen && (len == 4 || len == 8) && str_eq(name, "linux,initrd-end")) {
          info->initrd_end = (uint32_t)cells(p, len / 4);
        }
        p += (len + 3u) & ~3u;
        break;
      }
      case FDT_NOP:
        break;
      case FDT_END:
        done = true;
        break;
      default:
        return "device tree has an unknown token at";
    }
  }
  if (ram_base != RAM_BASE || ram_size < 2u * FW_RESERVED) return "device tree has no /memory at 0x80000000 in";
  const uint64_t ram_end = ram_base + ram_size;
  info->ram_end = ram_end > 0xfffff000u ? 0xfffff000u : (uint32_t)ram_end;

  /* Already reserved (a loader may have done it)? */
  uint32_t n = 0;
  for (;; n++) {
    const uint32_t e = off_rsv + 16 * n;
    if (e > total - 16) return "device tree memory reservations unterminated at";
    const uint64_t addr = cells(b + e, 2), size = cells(b + e + 8, 2);
    if (addr == 0 && size == 0) break;
    if (addr <= RAM_BASE && addr + size >= RAM_BASE + FW_RESERVED) return 0;
  }

  /* Insert one entry before the terminator: everything after it moves up 16 bytes, so the blob
     needs 16 free bytes above it (a loader that puts it at the top of RAM, as QEMU does, leaves
     them) that are neither past RAM nor in the initrd. */
  const uint32_t at = off_rsv + 16 * n;
  if (at > off_struct || at > off_strings) return "device tree blocks in an unusual order at";
  const uint32_t grow_lo = dtb + total, grow_hi = grow_lo + 16;
  if (grow_hi > info->ram_end || grow_hi < grow_lo) return "no room after the device tree to reserve the firmware at";
  if (info->initrd_end > info->initrd_start && grow_lo < info->initrd_end && info->initrd_start < grow_hi)
    return "no room between the device tree and the initrd to reserve the firmware at";
  for (uint32_t i = total; i > at; i--) b[i - 1 + 16] = b[i - 1];
  put_be32(b + at, 0);
  put_be32(b + at + 4, RAM_BASE);
  put_be32(b + at + 8, 0);
  put_be32(b + at + 12, FW_RESERVED);
  put_be32(b + 4, total + 16);
  put_be32(b + 8, off_struct + 16);
  put_be32(b + 12, off_strings + 16);
  return 0;
}
