/* The floor: a TCP server that receives bytes and writes them to one file per connection,
 * with the same loop shape as pyrec's ingest (csrc/server.c): level-triggered epoll, a
 * 256 KiB receive buffer, at most 8 reads per connection per wake-up, one write() per read.
 * No parsing, no replies.
 *
 *   cc -O2 -o sink bench/sink.c
 *   sink PORT OUTDIR        prints "PORT PID" when listening; SIGTERM/SIGINT to stop, then
 *                           prints "connections N bytes B"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define READ_BUF (256 * 1024)
#define READS_PER_WAKE 8

typedef struct {
  int fd, out;
} conn;

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s, stop = 1; }

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s PORT OUTDIR\n", argv[0]);
    return 2;
  }
  signal(SIGTERM, on_sig);
  signal(SIGINT, on_sig);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 1024)) {
    perror("bind/listen");
    return 1;
  }
  socklen_t al = sizeof a;
  getsockname(lfd, (struct sockaddr *)&a, &al);
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  printf("%u %d\n", ntohs(a.sin_port), (int)getpid());
  fflush(stdout);
  uint8_t *buf = malloc(READ_BUF);
  unsigned long long nconn = 0, bytes = 0;
  struct epoll_event evs[256];
  while (!stop) {
    int n = epoll_wait(ep, evs, 256, 200);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (!c) {
        for (;;) {
          int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
          if (fd < 0)
            break;
          char path[4096];
          snprintf(path, sizeof path, "%s/conn_%llu.raw", argv[2], nconn++);
          c = malloc(sizeof *c);
          c->fd = fd;
          c->out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
          if (c->out < 0) {
            perror(path);
            return 1;
          }
          struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        }
        continue;
      }
      for (int k = 0; k < READS_PER_WAKE; k++) {
        ssize_t r = recv(c->fd, buf, READ_BUF, 0);
        if (r > 0) {
          bytes += (unsigned long long)r;
          for (ssize_t off = 0; off < r;) {
            ssize_t w = write(c->out, buf + off, (size_t)(r - off));
            if (w <= 0) {
              perror("write");
              return 1;
            }
            off += w;
          }
          if (r < READ_BUF)
            break;
          continue;
        }
        if (r < 0 && errno == EINTR)
          continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
          break;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        close(c->out);
        free(c);
        break;
      }
    }
  }
  printf("connections %llu bytes %llu\n", nconn, bytes);
  return 0;
}
