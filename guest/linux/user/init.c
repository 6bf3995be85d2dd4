/* /init of lockstep's Linux guest: mounts /proc, /sys and /dev, brings up lo and eth0 (10.0.2.15/24
   via 10.0.2.2, QEMU's user network, as the bare-metal SDK does), prints the user-space marker, sets the
   wall clock from `lockstep.time=`, starts the services of `lockstep.service=` in the background, then
   either runs the programs named by `lockstep.run=` on the kernel command line (`name:arg:arg`, comma
   separated) and powers off, or runs a small shell on the console. Prints nothing that depends on the
   clock unless asked (`time`). */
#include "lsys.h"

#define MARKER "lockstep-linux: init ready"

/* ---- output ----------------------------------------------------------------------------------- */

static void out(const char *s) {
  size_t n = strlen(s);
  while (n > 0) {
    const ssize_t w = write(1, s, n);
    if (w <= 0) return;
    s += w;
    n -= (size_t)w;
  }
}

static void out_num(long v) { out(ltoa(v)); }

/* "<what>: <strerror-ish>" for a failed call: errno as a number keeps nolibc small. */
static void out_err(const char *what) {
  out(what);
  out(": error ");
  out_num(errno);
  out("\n");
}

/* ---- files ------------------------------------------------------------------------------------ */

/* Reads up to cap-1 bytes of a file into buf (NUL-terminated); returns the length or -1. */
static int read_file(const char *path, char *buf, int cap) {
  const int fd = open(path, O_RDONLY, 0);
  if (fd < 0) return -1;
  int len = 0;
  while (len < cap - 1) {
    const ssize_t n = read(fd, buf + len, (size_t)(cap - 1 - len));
    if (n <= 0) break;
    len += (int)n;
  }
  close(fd);
  buf[len] = 0;
  return len;
}

static int cat(const char *path) {
  const int fd = open(path, O_RDONLY, 0);
  if (fd < 0) {
    out_err(path);
    return 1;
  }
  char buf[512];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    if (write(1, buf, (size_t)n) != n) break;
  }
  close(fd);
  return 0;
}

struct ls_dirent64 {
  uint64_t ino;
  int64_t off;
  uint16_t reclen;
  uint8_t type;
  char name[];
};

#define MAX_NAMES 256
static char name_store[MAX_NAMES][64];

/* Directory entries sorted by name (getdents order is the file system's, not a promise). */
static int list_dir(const char *path, char (**names)[64]) {
  const int fd = open(path, O_RDONLY | O_DIRECTORY, 0);
  if (fd < 0) return -1;
  static char buf[4096];
  int count = 0;
  for (;;) {
    const int n = my_syscall3(__NR_getdents64, fd, buf, sizeof buf);
    if (n <= 0) break;
    for (int off = 0; off < n;) {
      const struct ls_dirent64 *d = (const struct ls_dirent64 *)(buf + off);
      off += d->reclen;
      if (!strcmp(d->name, ".") || !strcmp(d->name, "..") || count == MAX_NAMES) continue;
      strlcpy(name_store[count], d->name, sizeof name_store[count]);
      for (int i = count; i > 0 && strcmp(name_store[i - 1], name_store[i]) > 0; i--) {
        char t[64];
        memcpy(t, name_store[i], 64);
        memcpy(name_store[i], name_store[i - 1], 64);
        memcpy(name_store[i - 1], t, 64);
      }
      count++;
    }
  }
  close(fd);
  *names = name_store;
  return count;
}

/* ---- network: ioctls on a datagram socket, as ifconfig and route do --------------------------- */

struct ls_sockaddr_in {
  uint16_t family;
  uint16_t port;
  uint32_t addr; /* network byte order */
  uint8_t zero[8];
};

struct ls_ifreq {
  char name[16];
  union {
    struct ls_sockaddr_in addr;
    short flags;
    uint8_t raw[16];
  } u;
};

/* struct rtentry (include/uapi/linux/route.h), 32-bit layout. */
struct ls_rtentry {
  unsigned long pad1;
  struct ls_sockaddr_in dst, gateway, genmask;
  unsigned short flags;
  short pad2;
  unsigned long pad3;
  void *pad4;
  short metric;
  char *dev;
  unsigned long mtu, window;
  unsigned short irtt;
};

#define LS_AF_INET 2
#define LS_SOCK_DGRAM 2
#define LS_SIOCADDRT 0x890B
#define LS_SIOCGIFFLAGS 0x8913
#define LS_SIOCSIFFLAGS 0x8914
#define LS_SIOCGIFADDR 0x8915
#define LS_SIOCSIFADDR 0x8916
#define LS_SIOCSIFNETMASK 0x891C
#define LS_IFF_UP 0x1
#define LS_RTF_UP 0x1
#define LS_RTF_GATEWAY 0x2

static uint32_t ipv4(unsigned a, unsigned b, unsigned c, unsigned d) {
  /* network byte order in a little-endian word */
  return a | (b << 8) | (c << 16) | (d << 24);
}

static struct ls_sockaddr_in sin_of(uint32_t addr) {
  struct ls_sockaddr_in s;
  memset(&s, 0, sizeof s);
  s.family = LS_AF_INET;
  s.addr = addr;
  return s;
}

static int if_up(int sock, const char *name) {
  struct ls_ifreq r;
  memset(&r, 0, sizeof r);
  strlcpy(r.name, name, sizeof r.name);
  if (ioctl(sock, LS_SIOCGIFFLAGS, &r) < 0) return -1;
  r.u.flags |= LS_IFF_UP;
  return ioctl(sock, LS_SIOCSIFFLAGS, &r);
}

static int if_set(int sock, const char *name, unsigned long req, uint32_t addr) {
  struct ls_ifreq r;
  memset(&r, 0, sizeof r);
  strlcpy(r.name, name, sizeof r.name);
  r.u.addr = sin_of(addr);
  return ioctl(sock, req, &r);
}

static void out_ipv4(uint32_t a) {
  for (int i = 0; i < 4; i++) {
    out_num((long)((a >> (8 * i)) & 0xff));
    if (i < 3) out(".");
  }
}

static void net_setup(void) {
  const int sock = my_syscall3(__NR_socket, LS_AF_INET, LS_SOCK_DGRAM, 0);
  if (sock < 0) {
    out("lockstep-linux: no IPv4 sockets (error ");
    out_num(-sock);
    out(")\n");
    return;
  }
  if (if_up(sock, "lo") < 0) out_err("lockstep-linux: lo");
  struct ls_ifreq probe;
  memset(&probe, 0, sizeof probe);
  strcpy(probe.name, "eth0");
  if (ioctl(sock, LS_SIOCGIFFLAGS, &probe) < 0) {
    out("lockstep-linux: no eth0\n");
    close(sock);
    return;
  }
  if (if_set(sock, "eth0", LS_SIOCSIFADDR, ipv4(10, 0, 2, 15)) < 0 ||
      if_set(sock, "eth0", LS_SIOCSIFNETMASK, ipv4(255, 255, 255, 0)) < 0 || if_up(sock, "eth0") < 0) {
    out_err("lockstep-linux: eth0");
    close(sock);
    return;
  }
  struct ls_rtentry rt;
  memset(&rt, 0, sizeof rt);
  rt.dst = sin_of(0);
  rt.genmask = sin_of(0);
  rt.gateway = sin_of(ipv4(10, 0, 2, 2));
  rt.flags = LS_RTF_UP | LS_RTF_GATEWAY;
  if (ioctl(sock, LS_SIOCADDRT, &rt) < 0) out_err("lockstep-linux: default route");
  else out("lockstep-linux: eth0 10.0.2.15/24 via 10.0.2.2\n");
  close(sock);
}

static int net_show(void) {
  const int sock = my_syscall3(__NR_socket, LS_AF_INET, LS_SOCK_DGRAM, 0);
  if (sock < 0) {
    out("net: no IPv4 sockets\n");
    return 1;
  }
  static const char *const names[] = {"lo", "eth0"};
  for (unsigned i = 0; i < 2; i++) {
    struct ls_ifreq r;
    memset(&r, 0, sizeof r);
    strcpy(r.name, names[i]);
    if (ioctl(sock, LS_SIOCGIFFLAGS, &r) < 0) continue;
    const short flags = r.u.flags;
    out(names[i]);
    out(flags & LS_IFF_UP ? ": up" : ": down");
    if (ioctl(sock, LS_SIOCGIFADDR, &r) == 0) {
      out(" inet ");
      out_ipv4(r.u.addr.addr);
    }
    out("\n");
  }
  close(sock);
  return 0;
}

/* ---- programs --------------------------------------------------------------------------------- */

static char **env;

/* Runs /bin/<argv[0]> (or argv[0] when it holds a '/') and waits for it; returns its wait status. */
static int spawn(char **argv, int *status) {
  char path[96];
  if (strchr(argv[0], '/')) {
    strlcpy(path, argv[0], sizeof path);
  } else {
    strlcpy(path, "/bin/", sizeof path);
    strlcat(path, argv[0], sizeof path);
  }
  struct stat st;
  if (stat(path, &st) < 0) return -1;
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execve(path, argv, env);
    out_err(path);
    exit(127);
  }
  /* Only this child: init also inherits orphans, but none of ours leaves any behind. */
  while (waitpid(pid, status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return 0;
}

static void report_status(const char *name, int status, int always) {
  if (!always && status == 0) return;
  out(always ? "lockstep-linux: " : "");
  out(name);
  if ((status & 0x7f) == 0) {
    out(" exited ");
    out_num((status >> 8) & 0xff);
  } else {
    out(" killed by signal ");
    out_num(status & 0x7f);
  }
  out("\n");
}

static void power_off(void) {
  out("lockstep-linux: powering off\n");
  reboot(LINUX_REBOOT_CMD_POWER_OFF);
  out_err("poweroff");
  for (;;) sleep(3600);
}

/* ---- shell ------------------------------------------------------------------------------------ */

static int ps(void) {
  char (*names)[64];
  const int n = list_dir("/proc", &names);
  if (n < 0) {
    out_err("/proc");
    return 1;
  }
  /* Numeric order: names are sorted as strings, so sort the PIDs again. */
  static long pids[MAX_NAMES];
  int count = 0;
  for (int i = 0; i < n; i++) {
    if (names[i][0] < '0' || names[i][0] > '9') continue;
    long pid = atol(names[i]);
    int j = count++;
    for (; j > 0 && pids[j - 1] > pid; j--) pids[j] = pids[j - 1];
    pids[j] = pid;
  }
  out("  PID  PPID S COMMAND\n");
  for (int i = 0; i < count; i++) {
    char path[32], stat_line[512];
    strlcpy(path, "/proc/", sizeof path);
    strlcat(path, ltoa(pids[i]), sizeof path);
    strlcat(path, "/stat", sizeof path);
    if (read_file(path, stat_line, sizeof stat_line) <= 0) continue;
    /* "pid (comm) S ppid ..." where comm may hold spaces and parentheses: take the last ')'. */
    char *open_paren = strchr(stat_line, '(');
    char *close_paren = strrchr(stat_line, ')');
    if (!open_paren || !close_paren || close_paren[1] != ' ') continue;
    *close_paren = 0;
    const char state = close_paren[2];
    const long ppid = atol(close_paren + 4);
    char col[8];
    const char *p = ltoa(pids[i]);
    for (int k = (int)strlen(p); k < 5; k++) out(" ");
    out(p);
    out(" ");
    p = ltoa(ppid);
    for (int k = (int)strlen(p); k < 5; k++) out(" ");
    out(p);
    col[0] = ' ';
    col[1] = state;
    col[2] = ' ';
    col[3] = 0;
    out(col);
    /* A kworker's name carries the work it is doing right now ("kworker/0:0-events"): timing, not state. */
    char *comm = open_paren + 1;
    if (!strncmp(comm, "kworker/", 8) && strchr(comm, '-')) *strchr(comm, '-') = 0;
    out(comm);
    out("\n");
  }
  return 0;
}

static int ls(const char *path) {
  char (*names)[64];
  const int n = list_dir(path, &names);
  if (n < 0) {
    out_err(path);
    return 1;
  }
  for (int i = 0; i < n; i++) {
    char full[160];
    struct stat st;
    strlcpy(full, path, sizeof full);
    if (full[strlen(full) - 1] != '/') strlcat(full, "/", sizeof full);
    strlcat(full, names[i], sizeof full);
    const int ok = stat(full, &st) == 0;
    out(names[i]);
    if (ok && (st.st_mode & S_IFMT) == S_IFDIR) out("/");
    out("\n");
  }
  return 0;
}

struct utsname_ {
  char sysname[65], nodename[65], release[65], version[65], machine[65], domainname[65];
};

static int uname_(void) {
  static struct utsname_ u;
  if (my_syscall1(__NR_uname, &u) < 0) return 1;
  out(u.sysname);
  out(" ");
  out(u.release);
  out(" ");
  out(u.version);
  out(" ");
  out(u.machine);
  out("\n");
  return 0;
}

static int dmesg(void) {
  static char buf[16384];
  const int n = my_syscall3(__NR_syslog, 3 /* SYSLOG_ACTION_READ_ALL */, buf, sizeof buf);
  if (n < 0) {
    out("dmesg: error ");
    out_num(-n);
    out("\n");
    return 1;
  }
  if (write(1, buf, (size_t)n) != n) return 1;
  return 0;
}

static void help(void) {
  out("builtins: help echo cat ls ps mounts net uname dmesg time run poweroff reboot\n"
      "  run <program> [args]   run /bin/<program> (also: just <program> [args])\n"
      "  time <program> [args]  run it and print the elapsed time\n"
      "programs in /bin:");
  char (*names)[64];
  const int n = list_dir("/bin", &names);
  for (int i = 0; i < n; i++) {
    out(" ");
    out(names[i]);
  }
  out("\n");
}

static struct __kernel_timespec now(void) {
  struct __kernel_timespec ts = {0, 0};
  ls_clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts;
}

static int run_program(char **argv) {
  int status = 0;
  if (spawn(argv, &status) < 0) {
    out(argv[0]);
    out(": not found\n");
    return 127;
  }
  report_status(argv[0], status, 0);
  return status;
}

static int execute(int argc, char **argv) {
  const char *cmd = argv[0];
  if (!strcmp(cmd, "help")) {
    help();
  } else if (!strcmp(cmd, "echo")) {
    for (int i = 1; i < argc; i++) {
      out(argv[i]);
      out(i + 1 < argc ? " " : "");
    }
    out("\n");
  } else if (!strcmp(cmd, "cat")) {
    for (int i = 1; i < argc; i++) cat(argv[i]);
  } else if (!strcmp(cmd, "ls")) {
    return ls(argc > 1 ? argv[1] : "/");
  } else if (!strcmp(cmd, "ps")) {
    return ps();
  } else if (!strcmp(cmd, "mounts")) {
    return cat("/proc/mounts");
  } else if (!strcmp(cmd, "net")) {
    return net_show();
  } else if (!strcmp(cmd, "uname")) {
    return uname_();
  } else if (!strcmp(cmd, "dmesg")) {
    return dmesg();
  } else if (!strcmp(cmd, "poweroff")) {
    power_off();
  } else if (!strcmp(cmd, "reboot")) {
    out("lockstep-linux: rebooting\n");
    reboot(LINUX_REBOOT_CMD_RESTART);
    out_err("reboot");
  } else if (!strcmp(cmd, "time")) {
    if (argc < 2) return 0;
    const struct __kernel_timespec t0 = now();
    run_program(argv + 1);
    const struct __kernel_timespec t1 = now();
    /* 32-bit arithmetic only (no libgcc for 64-bit division on rv32 here). */
    long sec = (long)(t1.tv_sec - t0.tv_sec), nsec = (long)t1.tv_nsec - (long)t0.tv_nsec;
    if (nsec < 0) sec--, nsec += 1000000000L;
    out("time: ");
    out_num(sec);
    out(".");
    out(ltoa(nsec / 1000 + 1000000) + 1);
    out(" s\n");
  } else if (!strcmp(cmd, "run")) {
    if (argc < 2) return 0;
    return run_program(argv + 1);
  } else {
    return run_program(argv);
  }
  return 0;
}

#define MAX_ARGS 16

static int split(char *line, char **argv) {
  int argc = 0;
  char *p = line;
  while (*p && argc < MAX_ARGS - 1) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') *p++ = 0;
    if (!*p) break;
    argv[argc++] = p;
    while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') p++;
  }
  argv[argc] = 0;
  return argc;
}

static void shell(void) {
  static char line[256];
  char *argv[MAX_ARGS];
  out("type 'help' for commands\n");
  for (;;) {
    out("# ");
    const ssize_t n = read(0, line, sizeof line - 1);
    if (n < 0) {
      if (errno == EINTR) continue;
      out_err("console");
      power_off();
    }
    if (n == 0) { /* ^D on the console: a fresh prompt, not an exit (init must not end) */
      out("\n");
      continue;
    }
    line[n] = 0;
    const int argc = split(line, argv);
    if (argc > 0) execute(argc, argv);
  }
}

/* ---- start ------------------------------------------------------------------------------------ */

static void mount_or_say(const char *src, const char *dst, const char *type) {
  if (mount(src, dst, type, 0, 0) < 0) out_err(dst);
}

/* The value of `<name>=` (e.g. "lockstep.run=") in /proc/cmdline, or NULL; each call reads a fresh
   copy into its own buffer. Read from /proc because the kernel keeps dotted parameters from init's argv
   and environment. */
static char *cmdline_param(const char *name, char *cmdline, int cap) {
  if (read_file("/proc/cmdline", cmdline, cap) <= 0) return 0;
  const size_t n = strlen(name);
  for (char *p = cmdline; *p;) {
    while (*p == ' ' || *p == '\n') p++;
    char *word = p;
    while (*p && *p != ' ' && *p != '\n') p++;
    if (*p) *p++ = 0;
    if (!strncmp(word, name, n)) return word + n;
  }
  return 0;
}

/* Splits "name:arg1:arg2" in place into args (at most 7 and a null); returns the count. */
static int split_args(char *name, char **args) {
  int nargs = 1;
  args[0] = name;
  for (char *q = name; *q; q++) {
    if (*q != ':') continue;
    *q = 0;
    if (nargs < 7) args[nargs++] = q + 1;
  }
  args[nargs] = 0;
  return nargs;
}

/* `lockstep.time=<unix seconds>`: the guest has no RTC, so whoever boots it may say what time it is
   (memcached's absolute expiry times need it). A value, not the host's clock: the same command line
   gives the same guest. */
static void set_clock(void) {
  static char cmdline[1024];
  const char *v = cmdline_param("lockstep.time=", cmdline, sizeof cmdline);
  if (!v) return;
  struct __kernel_timespec ts = {0, 0};
  for (; *v >= '0' && *v <= '9'; v++) ts.tv_sec = ts.tv_sec * 10 + (*v - '0');
  const int r = my_syscall2(__NR_clock_settime64, CLOCK_REALTIME, &ts);
  if (r < 0) {
    out("lockstep-linux: lockstep.time: error ");
    out_num(-r);
    out("\n");
  }
}

/* `lockstep.service=a,b:arg,...`: each program started in the background (not waited for), after a
   line naming it; its output goes to the console. */
static void start_services(void) {
  static char cmdline[1024];
  char *list = cmdline_param("lockstep.service=", cmdline, sizeof cmdline);
  if (!list) return;
  for (char *p = list; *p;) {
    char *name = p;
    while (*p && *p != ',') p++;
    if (*p) *p++ = 0;
    if (!*name) continue;
    char *args[8];
    const int nargs = split_args(name, args);
    char path[96];
    strlcpy(path, "/bin/", sizeof path);
    strlcat(path, name, sizeof path);
    struct stat st;
    if (stat(path, &st) < 0) {
      out("lockstep-linux: service ");
      out(name);
      out(": not found\n");
      continue;
    }
    out("lockstep-linux: service");
    for (int i = 0; i < nargs; i++) {
      out(" ");
      out(args[i]);
    }
    out("\n");
    const pid_t pid = fork();
    if (pid == 0) {
      execve(path, args, env);
      out_err(path);
      exit(127);
    }
    if (pid < 0) out_err("lockstep-linux: fork");
  }
}

int main(int argc, char **argv, char **envp) {
  (void)argc;
  (void)argv;
  env = envp;
  mount_or_say("proc", "/proc", "proc");
  mount_or_say("sysfs", "/sys", "sysfs");
  mount_or_say("devtmpfs", "/dev", "devtmpfs");
  net_setup();
  out(MARKER "\n");
  set_clock();
  start_services();

  static char cmdline[1024];
  char *list = cmdline_param("lockstep.run=", cmdline, sizeof cmdline);
  if (!list) {
    shell();
    return 0;
  }
  for (char *p = list; *p;) {
    char *name = p;
    while (*p && *p != ',') p++;
    if (*p) *p++ = 0;
    if (!*name) continue;
    /* name:arg1:arg2… passes arguments (the command line has no other way to quote them). */
    char *args[8];
    const int nargs = split_args(name, args);
    int status = 0;
    out("lockstep-linux: run ");
    for (int i = 0; i < nargs; i++) {
      if (i) out(" ");
      out(args[i]);
    }
    out("\n");
    if (spawn(args, &status) < 0) {
      out("lockstep-linux: ");
      out(name);
      out(": not found\n");
      continue;
    }
    report_status(name, status, 1);
  }
  power_off();
  return 0;
}
