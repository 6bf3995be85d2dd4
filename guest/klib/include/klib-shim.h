/* The little of the Linux kernel's headers that the lib/ code built by guest/klib needs, for a
 * bare-metal rv32 guest with picolibc: types, export and module macros (empty), unaligned and endian
 * helpers, rotates, bit reversal, errno values, list and tree accessors. Every linux/ and asm/ header here includes only this. */
#ifndef KLIB_SHIM_H
#define KLIB_SHIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t s8;
typedef int16_t s16;
typedef int32_t s32;
typedef int64_t s64;
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
typedef uint16_t __le16;
typedef uint32_t __le32;
typedef uint64_t __le64;
typedef uint16_t __be16;
typedef uint32_t __be32;
typedef uint64_t __be64;
typedef unsigned int gfp_t;

#define __LITTLE_ENDIAN 1234

#define EXPORT_SYMBOL(sym)
#define EXPORT_SYMBOL_GPL(sym)
#define MODULE_LICENSE(s)
#define MODULE_DESCRIPTION(s)
#define MODULE_AUTHOR(s)
#define MODULE_ALIAS_CRYPTO(s)
#define module_init(f)
#define module_exit(f)
#define __init
#define __exit
#define __initdata

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#ifndef __always_inline
#define __always_inline inline __attribute__((__always_inline__))
#endif
#define noinline __attribute__((__noinline__))
#define __maybe_unused __attribute__((__unused__))
#define __aligned(x) __attribute__((__aligned__(x)))
#define __packed __attribute__((__packed__))
#define __pure __attribute__((__pure__))
#define __cacheline_aligned __aligned(64)
#define ____cacheline_aligned __aligned(64)
#define __alias(sym) __attribute__((__alias__(#sym)))
#define fallthrough __attribute__((__fallthrough__))
#define __force
#define __user
#define __must_check
#define BUILD_BUG_ON(c) _Static_assert(!(c), #c)
#define BUG_ON(c) do { if (c) __builtin_trap(); } while (0)
#define WARN_ON(c) (c)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define min(a, b) ((a) < (b) ? (a) : (b))
#define max(a, b) ((a) > (b) ? (a) : (b))
#define min_t(t, a, b) ((t)(a) < (t)(b) ? (t)(a) : (t)(b))
#define max_t(t, a, b) ((t)(a) > (t)(b) ? (t)(a) : (t)(b))

/* Kconfig: nothing enabled (no CONFIG_64BIT, no CONFIG_HAVE_EFFICIENT_UNALIGNED_ACCESS). */
#define IS_ENABLED(option) 0
struct crypto_tfm;

#define EINVAL 22
#define ENOMEM 12
#define EBADMSG 74

/* Unaligned access through packed structs, as the kernel's generic version does: rv32imac gets byte loads. */
#define __KLIB_UA(type) struct { type v; } __attribute__((__packed__, __may_alias__))
#define get_unaligned(p) (((const __KLIB_UA(__typeof__(*(p))) *)(p))->v)
#define put_unaligned(val, p) ((void)(((__KLIB_UA(__typeof__(*(p))) *)(p))->v = (val)))
static inline u16 get_unaligned_le16(const void *p) { return ((const __KLIB_UA(u16) *)p)->v; }
static inline u32 get_unaligned_le32(const void *p) { return ((const __KLIB_UA(u32) *)p)->v; }
static inline u64 get_unaligned_le64(const void *p) { return ((const __KLIB_UA(u64) *)p)->v; }
static inline u32 get_unaligned_be32(const void *p) { return __builtin_bswap32(((const __KLIB_UA(u32) *)p)->v); }
static inline u64 get_unaligned_be64(const void *p) { return __builtin_bswap64(((const __KLIB_UA(u64) *)p)->v); }
static inline void put_unaligned_le16(u16 v, void *p) { ((__KLIB_UA(u16) *)p)->v = v; }
static inline void put_unaligned_le32(u32 v, void *p) { ((__KLIB_UA(u32) *)p)->v = v; }
static inline void put_unaligned_le64(u64 v, void *p) { ((__KLIB_UA(u64) *)p)->v = v; }
static inline void put_unaligned_be32(u32 v, void *p) { ((__KLIB_UA(u32) *)p)->v = __builtin_bswap32(v); }
static inline void put_unaligned_be64(u64 v, void *p) { ((__KLIB_UA(u64) *)p)->v = __builtin_bswap64(v); }

#define cpu_to_le16(x) ((u16)(x))
#define cpu_to_le32(x) ((u32)(x))
#define le16_to_cpu(x) ((u16)(x))
#define le32_to_cpu(x) ((u32)(x))
#define cpu_to_be32(x) __builtin_bswap32(x)
#define be32_to_cpu(x) __builtin_bswap32(x)
#define cpu_to_be64(x) __builtin_bswap64(x)
#define be64_to_cpu(x) __builtin_bswap64(x)

static inline u32 rol32(u32 w, unsigned s) { return (w << (s & 31)) | (w >> ((-s) & 31)); }
static inline u32 ror32(u32 w, unsigned s) { return (w >> (s & 31)) | (w << ((-s) & 31)); }
static inline u64 rol64(u64 w, unsigned s) { return (w << (s & 63)) | (w >> ((-s) & 63)); }
static inline u64 ror64(u64 w, unsigned s) { return (w >> (s & 63)) | (w << ((-s) & 63)); }

static inline unsigned long __ffs(unsigned long w) { return (unsigned long)__builtin_ctzl(w); }

static inline u32 bitrev32(u32 x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  return __builtin_bswap32(x);
}

/* Linked lists and red-black trees (lib/list_sort.c, lib/rbtree.c): one hart, no RCU readers. */
struct list_head {
  struct list_head *next, *prev;
};
struct hlist_head {
  struct hlist_node *first;
};
struct hlist_node {
  struct hlist_node *next, **pprev;
};
typedef void (*swap_r_func_t)(void *a, void *b, int size, const void *priv);
typedef void (*swap_func_t)(void *a, void *b, int size);
typedef int (*cmp_r_func_t)(const void *a, const void *b, const void *priv);
typedef int (*cmp_func_t)(const void *a, const void *b);
#define smp_load_acquire(p) READ_ONCE(*(p))
#define smp_store_release(p, v) WRITE_ONCE(*(p), (v))
#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))
#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, val) (*(volatile __typeof__(x) *)&(x) = (val))
#define rcu_assign_pointer(p, v) WRITE_ONCE((p), (v))
#define barrier() __asm__ __volatile__("" : : : "memory")
#define LIST_POISON1 ((void *)0x100)
#define LIST_POISON2 ((void *)0x122)
#define __attribute_const__ __attribute__((__const__))
#define __cold __attribute__((__cold__))
#define CHECK_DATA_CORRUPTION(condition, fmt, ...) (condition)

static inline void memzero_explicit(void *s, size_t n) {
  memset(s, 0, n);
  __asm__ __volatile__("" : : "r"(s) : "memory");
}

#endif
