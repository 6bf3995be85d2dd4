/* nolibc (Linux 6.1's tools/include/nolibc) completed for rv32, where the kernel offers only the
   64-bit-time, statx, waitid and llseek forms of six calls nolibc expects. nolibc's versions of those
   are compiled under other names (as ENOSYS stubs nothing calls) and replaced by wrappers over the
   calls rv32 has. Include this instead of nolibc.h. No state, no allocation. */
#ifndef LSYS_H
#define LSYS_H

#include <asm/unistd.h>

/* A number past the syscall table: the kernel answers ENOSYS. Only the renamed stubs use it. */
#define LS_NR_ABSENT 4095
#ifndef __NR_gettimeofday
#define __NR_gettimeofday LS_NR_ABSENT
#endif
#ifndef __NR_lseek
#define __NR_lseek LS_NR_ABSENT
#endif
#if !defined(__NR_ppoll) && !defined(__NR_poll)
#define __NR_poll LS_NR_ABSENT
#endif
#if !defined(__NR_select) && !defined(__NR_pselect6) && !defined(__NR__newselect)
#define __NR_select LS_NR_ABSENT
#endif
#if !defined(__NR_newfstatat) && !defined(__NR_stat)
#define __NR_stat LS_NR_ABSENT
#endif
#ifndef __NR_wait4
#define __NR_wait4 LS_NR_ABSENT
#endif

/* Function-like, so only calls and definitions are renamed (struct stat keeps its name). */
#define sys_gettimeofday(...) nolibc_unused_sys_gettimeofday(__VA_ARGS__)
#define gettimeofday(...) nolibc_unused_gettimeofday(__VA_ARGS__)
#define time(...) nolibc_unused_time(__VA_ARGS__)
#define sys_lseek(...) nolibc_unused_sys_lseek(__VA_ARGS__)
#define lseek(...) nolibc_unused_lseek(__VA_ARGS__)
#define sys_poll(...) nolibc_unused_sys_poll(__VA_ARGS__)
#define poll(...) nolibc_unused_poll(__VA_ARGS__)
#define sys_select(...) nolibc_unused_sys_select(__VA_ARGS__)
#define select(...) nolibc_unused_select(__VA_ARGS__)
#define sleep(...) nolibc_unused_sleep(__VA_ARGS__)
#define msleep(...) nolibc_unused_msleep(__VA_ARGS__)
#define usleep(...) nolibc_unused_usleep(__VA_ARGS__)
#define sys_stat(...) nolibc_unused_sys_stat(__VA_ARGS__)
#define stat(...) nolibc_unused_stat(__VA_ARGS__)
#define sys_wait4(...) nolibc_unused_sys_wait4(__VA_ARGS__)
#define wait(...) nolibc_unused_wait(__VA_ARGS__)
#define wait4(...) nolibc_unused_wait4(__VA_ARGS__)
#define waitpid(...) nolibc_unused_waitpid(__VA_ARGS__)

#include "nolibc.h"

#undef sys_gettimeofday
#undef gettimeofday
#undef time
#undef sys_lseek
#undef lseek
#undef sys_poll
#undef poll
#undef sys_select
#undef select
#undef sleep
#undef msleep
#undef usleep
#undef sys_stat
#undef stat
#undef sys_wait4
#undef wait
#undef wait4
#undef waitpid

/* wait status macros nolibc 6.1 lacks (it has WIFEXITED and WEXITSTATUS). */
#ifndef WIFSIGNALED
#define WIFSIGNALED(status) (((status) & 0x7f) != 0 && ((status) & 0x7f) != 0x7f)
#endif
#ifndef WTERMSIG
#define WTERMSIG(status) ((status) & 0x7f)
#endif

/* nolibc 6.1's minor() has one parenthesis too many open. */
#undef minor
#define minor(dev) ((unsigned int)((dev) & 0xff))

#define LS_SET_ERRNO(ret)   \
  do {                      \
    if ((ret) < 0) {        \
      SET_ERRNO(-(ret));    \
      (ret) = -1;           \
    }                       \
  } while (0)

#ifndef CLOCK_REALTIME
#define CLOCK_REALTIME 0
#endif
#ifndef CLOCK_MONOTONIC
#define CLOCK_MONOTONIC 1
#endif

/* clock_gettime with 64-bit seconds (the only form rv32 has). */
static __attribute__((unused)) int ls_clock_gettime(int clock, struct __kernel_timespec *ts) {
  int ret = my_syscall2(__NR_clock_gettime64, clock, ts);
  LS_SET_ERRNO(ret);
  return ret;
}

/* ---- gettimeofday, time → clock_gettime64 ---------------------------------------------------- */

static __attribute__((unused)) int sys_gettimeofday(struct timeval *tv, struct timezone *tz) {
  struct __kernel_timespec ts;
  const int ret = my_syscall2(__NR_clock_gettime64, CLOCK_REALTIME, &ts);
  if (ret < 0) return ret;
  if (tv) {
    tv->tv_sec = (long)ts.tv_sec;
    tv->tv_usec = (long)ts.tv_nsec / 1000; /* 32-bit division: rv32 has no libgcc here */
  }
  if (tz) {
    tz->tz_minuteswest = 0;
    tz->tz_dsttime = 0;
  }
  return 0;
}

static __attribute__((unused)) int gettimeofday(struct timeval *tv, struct timezone *tz) {
  int ret = sys_gettimeofday(tv, tz);
  LS_SET_ERRNO(ret);
  return ret;
}

static __attribute__((unused)) time_t time(time_t *tptr) {
  struct timeval tv = {0, 0};
  sys_gettimeofday(&tv, NULL);
  if (tptr) *tptr = tv.tv_sec;
  return tv.tv_sec;
}

/* ---- lseek → llseek --------------------------------------------------------------------------- */

static __attribute__((unused)) off_t sys_lseek(int fd, off_t offset, int whence) {
  long long result = 0;
  const long long off = offset;
  const int ret = my_syscall5(__NR_llseek, fd, (unsigned long)(off >> 32), (unsigned long)off, &result, whence);
  if (ret < 0) return ret;
  if (result > 0x7fffffffLL) return -EOVERFLOW;
  return (off_t)result;
}

static __attribute__((unused)) off_t lseek(int fd, off_t offset, int whence) {
  off_t ret = sys_lseek(fd, offset, whence);
  LS_SET_ERRNO(ret);
  return ret;
}

/* ---- poll → ppoll_time64, select → pselect6_time64 -------------------------------------------- */

static __attribute__((unused)) int sys_poll(struct pollfd *fds, int nfds, int timeout) {
  struct __kernel_timespec t;
  if (timeout >= 0) {
    t.tv_sec = timeout / 1000;
    t.tv_nsec = (timeout % 1000) * 1000000;
  }
  return my_syscall5(__NR_ppoll_time64, fds, nfds, timeout >= 0 ? &t : NULL, NULL, 8);
}

static __attribute__((unused)) int poll(struct pollfd *fds, int nfds, int timeout) {
  int ret = sys_poll(fds, nfds, timeout);
  LS_SET_ERRNO(ret);
  return ret;
}

static __attribute__((unused)) int sys_select(int nfds, fd_set *rfds, fd_set *wfds, fd_set *efds,
                                              struct timeval *timeout) {
  struct __kernel_timespec t;
  if (timeout) {
    t.tv_sec = timeout->tv_sec;
    t.tv_nsec = (long long)timeout->tv_usec * 1000;
  }
  const int ret = my_syscall6(__NR_pselect6_time64, nfds, rfds, wfds, efds, timeout ? &t : NULL, NULL);
  if (timeout) { /* like select(2): the time left */
    timeout->tv_sec = (long)t.tv_sec;
    timeout->tv_usec = (long)t.tv_nsec / 1000;
  }
  return ret;
}

static __attribute__((unused)) int select(int nfds, fd_set *rfds, fd_set *wfds, fd_set *efds,
                                          struct timeval *timeout) {
  int ret = sys_select(nfds, rfds, wfds, efds, timeout);
  LS_SET_ERRNO(ret);
  return ret;
}

static __attribute__((unused)) unsigned int sleep(unsigned int seconds) {
  struct timeval tv = {.tv_sec = (long)seconds, .tv_usec = 0};
  if (sys_select(0, 0, 0, 0, &tv) < 0) return (unsigned int)(tv.tv_sec + !!tv.tv_usec);
  return 0;
}

static __attribute__((unused)) unsigned int msleep(unsigned int msecs) {
  struct timeval tv = {.tv_sec = (long)(msecs / 1000), .tv_usec = (long)(msecs % 1000) * 1000};
  if (sys_select(0, 0, 0, 0, &tv) < 0) return (unsigned int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
  return 0;
}

static __attribute__((unused)) int usleep(unsigned int usecs) {
  struct timeval tv = {.tv_sec = (long)(usecs / 1000000), .tv_usec = (long)(usecs % 1000000)};
  return sys_select(0, 0, 0, 0, &tv);
}

/* ---- stat → statx ----------------------------------------------------------------------------- */

/* struct statx (include/uapi/linux/stat.h), the part that stat needs; 256 bytes in all. */
struct ls_statx {
  uint32_t mask, blksize;
  uint64_t attributes;
  uint32_t nlink, uid, gid;
  uint16_t mode, spare0;
  uint64_t ino, size, blocks, attributes_mask;
  struct { int64_t tv_sec; uint32_t tv_nsec; int32_t reserved; } atime, btime, ctime, mtime;
  uint32_t rdev_major, rdev_minor, dev_major, dev_minor;
  uint64_t spare[14];
};
_Static_assert(__builtin_offsetof(struct ls_statx, mode) == 28, "statx layout");
_Static_assert(__builtin_offsetof(struct ls_statx, ino) == 32, "statx layout");
_Static_assert(__builtin_offsetof(struct ls_statx, atime) == 64, "statx layout");
_Static_assert(__builtin_offsetof(struct ls_statx, rdev_major) == 128, "statx layout");
_Static_assert(sizeof(struct ls_statx) == 256, "statx layout");

#define LS_STATX_BASIC_STATS 0x7ffu
#ifndef AT_FDCWD
#define AT_FDCWD -100
#endif

static __attribute__((unused)) int sys_stat(const char *path, struct stat *buf) {
  struct ls_statx sx;
  const int ret = my_syscall5(__NR_statx, AT_FDCWD, path, 0, LS_STATX_BASIC_STATS, &sx);
  if (ret < 0) return ret;
  buf->st_dev = makedev(sx.dev_major, sx.dev_minor);
  buf->st_ino = (ino_t)sx.ino;
  buf->st_mode = sx.mode;
  buf->st_nlink = sx.nlink;
  buf->st_uid = sx.uid;
  buf->st_gid = sx.gid;
  buf->st_rdev = makedev(sx.rdev_major, sx.rdev_minor);
  buf->st_size = (off_t)sx.size;
  buf->st_blksize = (blksize_t)sx.blksize;
  buf->st_blocks = (blkcnt_t)sx.blocks;
  buf->st_atime = (time_t)sx.atime.tv_sec;
  buf->st_mtime = (time_t)sx.mtime.tv_sec;
  buf->st_ctime = (time_t)sx.ctime.tv_sec;
  return 0;
}

static __attribute__((unused)) int stat(const char *path, struct stat *buf) {
  int ret = sys_stat(path, buf);
  LS_SET_ERRNO(ret);
  return ret;
}

/* ---- wait4, waitpid, wait → waitid ------------------------------------------------------------ */

/* siginfo_t for SIGCHLD (include/uapi/asm-generic/siginfo.h, 32-bit): 128 bytes. */
struct ls_siginfo {
  int32_t signo, errno_, code;
  int32_t pid;
  uint32_t uid;
  int32_t status;
  int32_t rest[26];
};
_Static_assert(sizeof(struct ls_siginfo) == 128, "siginfo layout");

#define LS_P_ALL 0
#define LS_P_PID 1
#define LS_P_PGID 2
#define LS_WEXITED 4
#define LS_CLD_EXITED 1
#define LS_CLD_KILLED 2
#define LS_CLD_DUMPED 3
#define LS_CLD_STOPPED 5
#define LS_CLD_CONTINUED 6

static __attribute__((unused)) pid_t sys_wait4(pid_t pid, int *status, int options, struct rusage *rusage) {
  struct ls_siginfo si;
  int which = LS_P_PID, id = pid;
  if (pid == -1) which = LS_P_ALL, id = 0;
  else if (pid <= 0) which = LS_P_PGID, id = -pid;
  memset(&si, 0, sizeof si);
  const int ret = my_syscall5(__NR_waitid, which, id, &si, options | LS_WEXITED, rusage);
  if (ret < 0) return ret;
  if (si.pid == 0) return 0; /* WNOHANG and nothing to report */
  if (status) {
    switch (si.code) {
      case LS_CLD_EXITED: *status = (si.status & 0xff) << 8; break;
      case LS_CLD_KILLED: *status = si.status & 0x7f; break;
      case LS_CLD_DUMPED: *status = (si.status & 0x7f) | 0x80; break;
      case LS_CLD_STOPPED: *status = ((si.status & 0xff) << 8) | 0x7f; break;
      case LS_CLD_CONTINUED: *status = 0xffff; break;
      default: *status = 0; break;
    }
  }
  return si.pid;
}

static __attribute__((unused)) pid_t wait(int *status) {
  pid_t ret = sys_wait4(-1, status, 0, NULL);
  LS_SET_ERRNO(ret);
  return ret;
}

static __attribute__((unused)) pid_t wait4(pid_t pid, int *status, int options, struct rusage *rusage) {
  pid_t ret = sys_wait4(pid, status, options, rusage);
  LS_SET_ERRNO(ret);
  return ret;
}

static __attribute__((unused)) pid_t waitpid(pid_t pid, int *status, int options) {
  pid_t ret = sys_wait4(pid, status, options, NULL);
  LS_SET_ERRNO(ret);
  return ret;
}

#endif
