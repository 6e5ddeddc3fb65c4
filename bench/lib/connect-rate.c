/*
 * Connection-rate load process for tcp-rate (C, epoll, non-blocking): keeps
 * CONCURRENCY loops of connect -> write 1 byte -> read the echo -> close in
 * flight for SECONDS from START_AT_MS (epoch ms, so several processes measure
 * the same window) and prints
 * {"type":"result","connections":N,"errors":E,"lastError":"...","seconds":S}.
 * With WAIT_EOF = 1 a loop closes only once the peer has closed after the
 * echo (server closes first: no TIME_WAIT on the client's ephemeral ports).
 * Built by bench/lib/echo.ts with `cc -O2`; the Node fallback is
 * connect-rate.ts.
 *
 *   connect-rate PORT CONCURRENCY SECONDS START_AT_MS [WAIT_EOF]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct sockaddr_in addr;
static int ep;
static long long counted, errors;
static char last_error[128] = "";
#define MAX_FDS 65536
static unsigned echoed_fds[MAX_FDS];

static int open_one(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) { errors++; snprintf(last_error, sizeof last_error, "socket: %s", strerror(errno)); return -1; }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
    errors++;
    snprintf(last_error, sizeof last_error, "connect: %s", strerror(errno));
    close(fd);
    return -1;
  }
  struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
  epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 5) { fprintf(stderr, "usage: connect-rate PORT CONCURRENCY SECONDS START_AT_MS\n"); return 2; }
  int port = atoi(argv[1]), concurrency = atoi(argv[2]);
  double seconds = atof(argv[3]);
  long long start_at = atoll(argv[4]);
  int wait_eof = argc > 5 && atoi(argv[5]) != 0;
  if (start_at < now_ms()) start_at = now_ms();
  long long end_at = start_at + (long long)(seconds * 1000);
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ep = epoll_create1(0);
  long long wait = start_at - now_ms() - 200;
  if (wait > 0) usleep((useconds_t)(wait * 1000));
  int live = 0;
  for (int i = 0; i < concurrency; i++) if (open_one() == 0) live++;
  struct epoll_event events[256];
  char buf[64];
  while (live > 0) {
    int n = epoll_wait(ep, events, 256, 100);
    long long t = now_ms();
    if (n <= 0) {
      /* errored loops back off: refill up to the concurrency while the window is open */
      while (t < end_at && live < concurrency && open_one() == 0) live++;
      continue;
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      int done = 0, ok = 0;
      unsigned *echoed = &echoed_fds[fd & (MAX_FDS - 1)];
      if (events[i].events & (EPOLLERR | EPOLLHUP)) {
        int err = 0; socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        snprintf(last_error, sizeof last_error, "%s", err != 0 ? strerror(err) : "closed before the echo");
        done = 1;
      } else if (events[i].events & EPOLLOUT) {
        if (write(fd, "x", 1) == 1) {
          struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
          epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
        } else { snprintf(last_error, sizeof last_error, "write: %s", strerror(errno)); done = 1; }
      } else if (events[i].events & EPOLLIN) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0 && wait_eof) { *echoed = 1; continue; }
        if (r > 0) ok = 1;
        else if (r < 0 && errno == EAGAIN) continue;
        else if (r == 0 && *echoed) ok = 1;
        else snprintf(last_error, sizeof last_error, "%s", r == 0 ? "closed before the echo" : strerror(errno));
        done = 1;
      }
      if (!done) continue;
      *echoed = 0;
      close(fd); /* epoll forgets closed fds */
      live--;
      if (ok) { if (t >= start_at && t < end_at) counted++; }
      else errors++;
      if (t < end_at && (ok || errors % 64 != 0) && open_one() == 0) live++;
    }
  }
  printf("{\"type\":\"result\",\"connections\":%lld,\"errors\":%lld,\"lastError\":\"%s\",\"seconds\":%g}\n", counted, errors, last_error, seconds);
  return 0;
}
