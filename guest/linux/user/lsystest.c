/* Checks lsys.h's rv32 stand-ins on a running kernel: each wrapper is called the way a program would
   and its result printed as a fact that does not depend on timing (ok / the error number / a status),
   so the output is fixed and tests compare it exactly. Exits 1 if anything was wrong. */
#include "lsys.h"

static int failures;

static void check(const char *what, int ok) {
  write(1, what, strlen(what));
  write(1, ok ? ": ok\n" : ": WRONG\n", ok ? 5 : 8);
  if (!ok) failures++;
}

int main(void) {
  struct timeval tv = {0, 0};
  struct timezone tz;
  /* No RTC driver: the wall clock counts from 1970 at boot, so 0 seconds is a valid answer. */
  check("gettimeofday", gettimeofday(&tv, &tz) == 0 && tv.tv_sec >= 0 && tv.tv_usec >= 0 && tv.tv_usec < 1000000);
  const time_t t = time(NULL);
  check("time", t >= tv.tv_sec);

  struct __kernel_timespec a, b;
  check("clock_gettime monotonic", ls_clock_gettime(CLOCK_MONOTONIC, &a) == 0 && a.tv_nsec < 1000000000);

  check("msleep 20", msleep(20) == 0);
  ls_clock_gettime(CLOCK_MONOTONIC, &b);
  const long long slept_us = (b.tv_sec - a.tv_sec) * 1000000LL + ((long)b.tv_nsec - (long)a.tv_nsec) / 1000;
  check("msleep took at least 20 ms", slept_us >= 20000);
  check("usleep 1000", usleep(1000) == 0);
  check("sleep 0", sleep(0) == 0);

  struct timeval zero = {0, 0};
  check("select, nothing, no wait", select(0, NULL, NULL, NULL, &zero) == 0);

  int fd = open("/init", O_RDONLY, 0);
  check("lseek to end", fd >= 0 && lseek(fd, 0, SEEK_END) > 1000);
  check("lseek to 1", lseek(fd, 1, SEEK_SET) == 1);
  char elf[3] = {0, 0, 0};
  check("read after lseek", read(fd, elf, 3) == 3 && elf[0] == 'E' && elf[1] == 'L' && elf[2] == 'F');
  check("lseek bad whence is EINVAL", lseek(fd, 0, 42) == -1 && errno == EINVAL);
  close(fd);

  struct pollfd p = {.fd = 0, .events = POLLOUT, .revents = 0};
  check("poll console writable", poll(&p, 1, 0) == 1 && (p.revents & POLLOUT));

  struct stat st;
  check("stat /init", stat("/init", &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && st.st_size > 1000);
  check("stat /dev/console", stat("/dev/console", &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR && major(st.st_rdev) == 5 &&
                                 minor(st.st_rdev) == 1);
  check("stat missing is ENOENT", stat("/no/such/file", &st) == -1 && errno == ENOENT);

  int status = -1;
  check("waitpid with no child is ECHILD", waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD);
  pid_t pid = fork();
  if (pid == 0) exit(7);
  check("waitpid: exit 7", waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 7);
  pid = fork();
  if (pid == 0) {
    kill(getpid(), SIGKILL);
    exit(0);
  }
  check("wait4: killed by SIGKILL", wait4(pid, &status, 0, NULL) == pid && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  pid = fork();
  if (pid == 0) exit(0);
  check("wait: exit 0", wait(&status) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);

  write(1, failures ? "lsystest: FAILED\n" : "lsystest: all ok\n", failures ? 17 : 17);
  return failures ? 1 : 0;
}
