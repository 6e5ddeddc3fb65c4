/*
 * Echo backend for tcp-rate (C, epoll, one thread): echoes what it reads,
 * closes when the client closes. Listens on NPORTS ephemeral ports of
 * 127.0.0.1 and prints {"type":"ready","ports":[...],"port":P,"pid":N}.
 * With CLOSE_AFTER_ECHO = 1 it half-closes (shutdown SHUT_WR) right after
 * the first echo, so the server side closes first and its TIME_WAIT lands on
 * the listening port instead of a client's ephemeral port. Built by
 * bench/lib/echo.ts with `cc -O2`; exits on SIGTERM.
 *
 *   echo-backend [NPORTS] [CLOSE_AFTER_ECHO]
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
#include <unistd.h>

#define MAX_LISTEN 16

int main(int argc, char **argv) {
  int nports = argc > 1 ? atoi(argv[1]) : 1;
  if (nports < 1) nports = 1;
  if (nports > MAX_LISTEN) nports = MAX_LISTEN;
  int close_after_echo = argc > 2 && atoi(argv[2]) != 0;
  int ep = epoll_create1(0);
  int listeners[MAX_LISTEN];
  printf("{\"type\":\"ready\",\"ports\":[");
  int first_port = 0;
  for (int i = 0; i < nports; i++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0) { perror("listen"); return 1; }
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    if (i == 0) first_port = ntohs(a.sin_port);
    printf("%s%d", i == 0 ? "" : ",", ntohs(a.sin_port));
    listeners[i] = fd;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (1ULL << 32) | (unsigned)fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  printf("],\"port\":%d,\"pid\":%d}\n", first_port, getpid());
  fflush(stdout);
  (void)listeners;
  struct epoll_event events[256];
  char buf[65536];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    if (n < 0 && errno == EINTR) continue;
    for (int i = 0; i < n; i++) {
      int fd = (int)(events[i].data.u64 & 0xffffffffu);
      if (events[i].data.u64 >> 32) {
        for (;;) {
          int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK);
          if (c < 0) break;
          int one = 1;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (unsigned)c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
        }
        continue;
      }
      ssize_t r = read(fd, buf, sizeof buf);
      if (r > 0) {
        ssize_t w = write(fd, buf, (size_t)r); /* tiny echoes: the send buffer never fills */
        (void)w;
        if (close_after_echo) shutdown(fd, SHUT_WR);
      } else if (r == 0 || errno != EAGAIN) {
        close(fd);
      }
    }
  }
}
