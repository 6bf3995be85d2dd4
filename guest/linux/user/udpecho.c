/* udpecho: a UDP service on eth0 for the network tests. Each datagram "seq N" is answered "ack N";
   the first time N arrives (N = the last one + 1) it prints "udpecho: N", so a client's retry is
   answered again but printed once, and the console depends only on which numbers arrived, not on
   timing or losses. "quit N" is answered "bye N" and ends the program. Anything else is answered
   "what?" and not printed.
   Usage: udpecho [port] (default 7777). */
#include "lsys.h"

#define LS_AF_INET 2
#define LS_SOCK_DGRAM 2

struct ls_sockaddr_in {
  uint16_t family;
  uint16_t port; /* network byte order */
  uint32_t addr;
  uint8_t zero[8];
};

static void out(const char *s) { write(1, s, strlen(s)); }

static int fail(const char *what, long err) {
  out("udpecho: ");
  out(what);
  out(" failed (error ");
  out(ltoa(err));
  out(")\n");
  return 1;
}

/* "<word> <number>": the number, or -1. */
static long number_after(const char *msg, const char *word) {
  const size_t n = strlen(word);
  if (strncmp(msg, word, n) || msg[n] != ' ' || msg[n + 1] < '0' || msg[n + 1] > '9') return -1;
  return atol(msg + n + 1);
}

int main(int argc, char **argv) {
  const long port = argc > 1 ? atol(argv[1]) : 7777;
  const int s = my_syscall3(__NR_socket, LS_AF_INET, LS_SOCK_DGRAM, 0);
  if (s < 0) return fail("socket", -s);
  struct ls_sockaddr_in me;
  memset(&me, 0, sizeof me);
  me.family = LS_AF_INET;
  me.port = (uint16_t)(((port & 0xff) << 8) | ((port >> 8) & 0xff));
  const int b = my_syscall3(__NR_bind, s, &me, sizeof me);
  if (b < 0) return fail("bind", -b);
  out("udpecho: listening on port ");
  out(ltoa(port));
  out("\n");
  long last = 0;
  for (;;) {
    char msg[64];
    struct ls_sockaddr_in from;
    uint32_t fromlen = sizeof from;
    const int n = my_syscall6(__NR_recvfrom, s, msg, sizeof msg - 1, 0, &from, &fromlen);
    if (n < 0) {
      if (n == -EINTR) continue;
      return fail("recvfrom", -n);
    }
    msg[n] = 0;
    if (n > 0 && msg[n - 1] == '\n') msg[n - 1] = 0;
    char reply[32];
    long seq = number_after(msg, "seq");
    const long quit = number_after(msg, "quit");
    if (seq >= 0) {
      if (seq == last + 1) {
        last = seq;
        out("udpecho: ");
        out(ltoa(seq));
        out("\n");
      }
      strcpy(reply, "ack ");
      strlcat(reply, ltoa(seq), sizeof reply);
    } else if (quit >= 0) {
      strcpy(reply, "bye ");
      strlcat(reply, ltoa(quit), sizeof reply);
    } else {
      strcpy(reply, "what?");
    }
    const int w = my_syscall6(__NR_sendto, s, reply, strlen(reply), 0, &from, fromlen);
    if (w < 0) return fail("sendto", -w);
    if (quit >= 0) {
      out("udpecho: quit after ");
      out(ltoa(last));
      out("\n");
      return 0;
    }
  }
}
