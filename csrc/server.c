/* RTMP ingest server: epoll loop, connections, streams, fan-out to recorders. */
#include "pyrec/server.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "pyrec/amf0.h"
#include "pyrec/codec.h"

#define READ_BUF (256 * 1024)
#define READS_PER_WAKE 8 /* fairness: at most this many reads per connection per wake-up */
#define ACK_QUIET_MS 20 /* a due acknowledgement waits until its peer sent nothing this long */
#define TAG_LISTEN ((uint64_t)1)
#define TAG_WAKE ((uint64_t)2)
#define TAG_LAG ((uint64_t)3)

typedef struct sconn sconn;

typedef struct sstream {
  struct sstream *next;
  uint64_t key;
  sconn *conn;
  uint32_t sid; /* RTMP message stream id */
  pyrec_flvsrc *src;
  pyrec_server *srv;
  char name[600]; /* "app/stream" */
} sstream;

struct sconn {
  sconn *prev, *next;
  pyrec_server *srv;
  int fd;
  uint64_t id;
  pyrec_rtmp_conn *rtmp;
  char peer[64];
  uint64_t accepted_ms, last_rx_ms;
  uint64_t bytes_in; /* read from this connection */
  pyrec_buf out;  /* bytes the socket did not take yet */
  int out_dead;   /* the peer stopped reading (reset): output is dropped, input still read */
  int want_out;   /* EPOLLOUT is armed */
  int drained;    /* the last read found the socket empty (nothing more had arrived) */
  int published;  /* published at least once (the handshake timeout no longer applies) */
  int dead;       /* close now */
  sstream *streams[PYREC_RTMP_MAX_STREAMS + 1];
};

typedef struct parked {
  struct parked *next;
  uint64_t id;
  pyrec_rec *rec;
} parked;

struct pyrec_server {
  pyrec_server_opts o;
  pyrec_server_callbacks cb;
  pthread_mutex_t lock;
  int lfd, ep, wake, lagfd;
  uint64_t lag_due_us; /* when the lag timer's next unhandled expiry was due */
  uint16_t port;
  volatile int stopping;
  int kicked; /* some connection has dead set by pyrec_server_kick */
  int acks_waiting; /* some connection has an acknowledgement due (see send_due_acks) */
  sconn *conns;
  sstream *streams;
  parked *parked;
  uint64_t next_id;
  uint8_t *rbuf;
  pyrec_server_stats st;
};

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

__attribute__((format(printf, 3, 4))) static void slog(pyrec_server *s, int level,
                                                       const char *fmt, ...) {
  if (!s->cb.on_log)
    return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  s->cb.on_log(s->cb.opaque, level, msg);
}

/* ---- streams ------------------------------------------------------------------------- */

static sstream *find_stream(pyrec_server *s, uint64_t key) {
  for (sstream *st = s->streams; st; st = st->next)
    if (st->key == key)
      return st;
  return NULL;
}

static void stream_ready(void *opaque, pyrec_flvsrc *src) {
  sstream *st = opaque;
  if (st->srv->cb.on_stream_ready)
    st->srv->cb.on_stream_ready(st->srv->cb.opaque, st->key);
}

/* End a stream: finish every recorder's files, tell the owner, free it. */
static void end_stream(pyrec_server *s, sstream *st, const char *reason) {
  if (s->cb.on_stream_closing)
    s->cb.on_stream_closing(s->cb.opaque, st->key);
  pyrec_flvsrc_close(st->src);
  for (sstream **pp = &s->streams; *pp; pp = &(*pp)->next)
    if (*pp == st) {
      *pp = st->next;
      break;
    }
  if (st->conn)
    st->conn->streams[st->sid] = NULL;
  s->st.streams--;
  slog(s, PYREC_LOG_INFO, "stream %s ended (%s)", st->name, reason);
  if (s->cb.on_stream_end)
    s->cb.on_stream_end(s->cb.opaque, st->key, reason);
  pyrec_flvsrc_free(st->src);
  free(st);
}

/* ---- RTMP callbacks ------------------------------------------------------------------ */

static int on_send(void *opaque, const uint8_t *data, size_t len) {
  sconn *c = opaque;
  pyrec_buf_put(&c->out, data, len);
  return c->out.oom ? -1 : 0;
}

static int on_connect(void *opaque, const char *app, const char *tcurl) {
  sconn *c = opaque;
  pyrec_server *s = c->srv;
  int rc = s->cb.on_connect ? s->cb.on_connect(s->cb.opaque, c->id, app, tcurl, c->peer) : 0;
  if (rc)
    slog(s, PYREC_LOG_WARNING, "%s: connect to app '%s' refused (app not configured)", c->peer,
         app);
  return rc;
}

static int on_publish(void *opaque, uint32_t sid, const char *name, const char *type) {
  sconn *c = opaque;
  pyrec_server *s = c->srv;
  const char *app = pyrec_rtmp_conn_app(c->rtmp);
  if (sid > PYREC_RTMP_MAX_STREAMS || c->streams[sid])
    return -1;
  char bare[256], query[512];
  const char *q = strchr(name, '?');
  size_t n = q ? (size_t)(q - name) : strlen(name);
  if (n == 0 || n >= sizeof bare) {
    slog(s, PYREC_LOG_WARNING, "%s: publish with an empty or too long stream name refused",
         c->peer);
    return -1;
  }
  memcpy(bare, name, n);
  bare[n] = 0;
  snprintf(query, sizeof query, "%s", q ? q + 1 : "");
  uint64_t key = ++s->next_id;
  int rc = s->cb.on_publish ? s->cb.on_publish(s->cb.opaque, c->id, key, app, bare, query) : 0;
  if (rc) {
    slog(s, PYREC_LOG_WARNING, "%s: publish of %s/%s refused%s", c->peer, app, bare,
         rc == PYREC_RTMP_BADNAME ? " (stream name already publishing)" : "");
    return rc;
  }
  sstream *st = calloc(1, sizeof *st);
  if (!st)
    return -1;
  st->key = key;
  st->conn = c;
  st->sid = sid;
  st->srv = s;
  snprintf(st->name, sizeof st->name, "%.300s/%s", app, bare);
  pyrec_flvsrc_opts fo;
  memset(&fo, 0, sizeof fo);
  fo.probe_ms = s->o.probe_ms;
  fo.max_tag_size = s->o.rtmp.max_message_size;
  fo.on_ready = stream_ready;
  fo.opaque = st;
  pyrec_errinfo e;
  if (pyrec_flvsrc_new(&st->src, &fo, &e)) {
    free(st);
    return -1;
  }
  st->next = s->streams;
  s->streams = st;
  c->streams[sid] = st;
  c->published = 1;
  s->st.streams++;
  slog(s, PYREC_LOG_INFO, "%s: publishing %s (%s)", c->peer, st->name, type);
  return 0;
}

static void on_unpublish(void *opaque, uint32_t sid) {
  sconn *c = opaque;
  if (sid <= PYREC_RTMP_MAX_STREAMS && c->streams[sid])
    end_stream(c->srv, c->streams[sid], "unpublished");
}

static int on_media(void *opaque, uint32_t sid, uint8_t type, uint32_t ts, const uint8_t *body,
                    size_t len) {
  sconn *c = opaque;
  sstream *st = sid <= PYREC_RTMP_MAX_STREAMS ? c->streams[sid] : NULL;
  if (!st)
    return 0;
  c->srv->st.media_messages++;
  pyrec_flv_tag tag;
  pyrec_errinfo e;
  int rc = pyrec_flv_parse_body(type, ts, body, len, &tag, &e);
  if (rc) {
    slog(c->srv, PYREC_LOG_WARNING, "%s: %s: bad %s message: %s", c->peer, st->name,
         type == 9 ? "video" : "audio", e.msg);
    return -1;
  }
  if (pyrec_flvsrc_tag(st->src, &tag)) {
    slog(c->srv, PYREC_LOG_WARNING, "%s: %s: %s", c->peer, st->name,
         pyrec_flvsrc_error(st->src)->msg);
    return -1;
  }
  return 0;
}

static void on_metadata(void *opaque, uint32_t sid, const uint8_t *amf, size_t len) {
  sconn *c = opaque;
  sstream *st = sid <= PYREC_RTMP_MAX_STREAMS ? c->streams[sid] : NULL;
  if (!st)
    return;
  pyrec_amf0_reader r;
  pyrec_amf0_value v, f;
  pyrec_amf0_reader_init(&r, amf, len, NULL);
  if (pyrec_amf0_read(&r, &v))
    return;
  int has_v = pyrec_amf0_get(&v, "videocodecid", &f) == 0;
  int has_a = pyrec_amf0_get(&v, "audiocodecid", &f) == 0;
  pyrec_flvsrc_announce(st->src, has_v, has_a);
}

/* ---- connections --------------------------------------------------------------------- */

static void close_conn(pyrec_server *s, sconn *c, const char *why) {
  for (uint32_t i = 0; i <= PYREC_RTMP_MAX_STREAMS; i++)
    if (c->streams[i])
      end_stream(s, c->streams[i], why);
  epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  pyrec_rtmp_conn_free(c->rtmp);
  pyrec_buf_free(&c->out);
  s->st.connections--;
  s->st.closed++;
  slog(s, PYREC_LOG_DEBUG, "%s: connection closed (%s)", c->peer, why);
  free(c);
}

/* Write what is pending; EPOLLOUT only while the socket is full. A peer that stopped
 * reading (it closed with our acknowledgement unread, so the kernel reset the connection)
 * loses our output, but what it sent before is still read and recorded: the connection ends
 * when the input does. */
static void flush_out(pyrec_server *s, sconn *c) {
  size_t off = 0;
  while (off < c->out.len && !c->out_dead) {
    ssize_t n = send(c->fd, c->out.data + off, c->out.len - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    c->out_dead = 1;
  }
  if (c->out_dead)
    off = c->out.len;
  if (off) {
    memmove(c->out.data, c->out.data + off, c->out.len - off);
    c->out.len -= off;
  }
  int want = c->out.len != 0;
  if (want != c->want_out) {
    struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0u), .data.ptr = c};
    epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want;
  }
}

static void accept_all(pyrec_server *s) {
  for (;;) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        slog(s, PYREC_LOG_ERROR, "accept failed: %s", strerror(errno));
      return;
    }
    char peer[64] = "?";
    if (ss.ss_family == AF_INET) {
      struct sockaddr_in *a = (struct sockaddr_in *)&ss;
      char ip[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
      snprintf(peer, sizeof peer, "%s:%u", ip, ntohs(a->sin_port));
    } else if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
      char ip[INET6_ADDRSTRLEN];
      inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
      snprintf(peer, sizeof peer, "[%s]:%u", ip, ntohs(a->sin6_port));
    }
    if (s->st.connections >= s->o.max_connections) {
      s->st.refused++;
      slog(s, PYREC_LOG_WARNING, "%s: refused: %u connections is the limit", peer,
           s->o.max_connections);
      close(fd);
      continue;
    }
    sconn *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->srv = s;
    c->fd = fd;
    c->id = ++s->next_id;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    c->accepted_ms = c->last_rx_ms = now_ms();
    pyrec_buf_init(&c->out);
    pyrec_rtmp_callbacks rcb = {on_send, on_connect, on_publish, on_unpublish,
                                on_media,  on_metadata, c};
    if (pyrec_rtmp_conn_new(&c->rtmp, &s->o.rtmp, &rcb, (uint32_t)c->accepted_ms)) {
      close(fd);
      free(c);
      continue;
    }
    pyrec_rtmp_conn_set_defer_acks(c->rtmp, 1); /* sent by send_due_acks */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev)) {
      pyrec_rtmp_conn_free(c->rtmp);
      close(fd);
      free(c);
      continue;
    }
    c->next = s->conns;
    if (s->conns)
      s->conns->prev = c;
    s->conns = c;
    s->st.accepted++;
    s->st.connections++;
    slog(s, PYREC_LOG_DEBUG, "%s: connected", c->peer);
  }
}

/* Read and feed; returns 0 to keep the connection, or a reason to close it. */
static const char *serve_conn(pyrec_server *s, sconn *c, uint32_t events) {
  if (events & EPOLLOUT)
    flush_out(s, c);
  if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
    return NULL;
  /* Replies (acknowledgements) are sent once the socket is drained, not while a backlog
   * is being read: an acknowledgement that reaches a publisher after its last read makes its
   * kernel reset the connection when it closes, discarding the tail of the stream it still
   * had queued for us (ffmpeg does this with unpaced pushes). */
  int drained = 0;
  for (int i = 0; i < READS_PER_WAKE; i++) {
    ssize_t n = recv(c->fd, s->rbuf, READ_BUF, 0);
    /* No pyrec_rtmp_conn_eof() here: it would end the streams as "unpublished"; close_conn
     * ends them with the real reason (a disconnect is not an unpublish). */
    if (n == 0)
      return "peer closed the connection";
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        drained = 1;
        break;
      }
      return errno == ECONNRESET ? "connection reset by the peer" : "read failed";
    }
    c->last_rx_ms = now_ms();
    s->st.bytes_in += (uint64_t)n;
    c->bytes_in += (uint64_t)n;
    int rc = pyrec_rtmp_conn_feed(c->rtmp, s->rbuf, (size_t)n);
    if (rc) {
      const pyrec_errinfo *e = pyrec_rtmp_conn_error(c->rtmp);
      s->st.errors++;
      slog(s, PYREC_LOG_WARNING, "%s: closing: %s: %s (at byte %lld)", c->peer,
           pyrec_errname(rc), e->msg, (long long)e->offset);
      flush_out(s, c);
      return "bad input";
    }
    if (pyrec_rtmp_conn_wants_close(c->rtmp)) {
      flush_out(s, c);
      return "refused";
    }
    if (pyrec_rtmp_conn_ack_due(c->rtmp))
      s->acks_waiting = 1;
    if ((size_t)n < READ_BUF) {
      drained = 1;
      break;
    }
  }
  c->drained = drained;
  if (drained || c->out.len > 65536)
    flush_out(s, c);
  return NULL;
}

/* Acknowledgements fall due when a publisher crosses its window; each is sent once that
 * connection has been quiet for ACK_QUIET_MS: its socket was found empty and nothing arrived
 * since (a connection the loop has merely not read lately is not quiet). An unpaced publisher that finishes closes its
 * socket with the tail of the stream still queued in its kernel: an acknowledgement arriving
 * then makes that kernel reset the connection and drop the tail (ffmpeg does this; bench/
 * RESULTS.md, anomaly 1). While its bytes keep coming it needs no acknowledgement to go on,
 * and its end comes with EOF, which closes the connection first; a publisher that waits for
 * the acknowledgement goes quiet and gets it ACK_QUIET_MS later. Returns whether some are
 * still waiting. */
static int send_due_acks(pyrec_server *s, uint64_t now) {
  int waiting = 0;
  for (sconn *c = s->conns; c; c = c->next) {
    if (c->dead || !pyrec_rtmp_conn_ack_due(c->rtmp))
      continue;
    if (!c->drained || now - c->last_rx_ms < ACK_QUIET_MS) {
      waiting = 1;
      continue;
    }
    if (pyrec_rtmp_conn_send_due_ack(c->rtmp) == 0) /* a failure closes at the next read */
      flush_out(s, c);
  }
  return waiting;
}

static void check_timeouts(pyrec_server *s) {
  uint64_t now = now_ms();
  sconn *c = s->conns;
  while (c) {
    sconn *next = c->next;
    if (!c->published && now - c->accepted_ms > s->o.handshake_timeout_ms) {
      s->st.errors++;
      slog(s, PYREC_LOG_WARNING, "%s: closing: no publish within %u ms (handshake timeout)",
           c->peer, s->o.handshake_timeout_ms);
      close_conn(s, c, "handshake timeout");
    } else if (now - c->last_rx_ms > s->o.idle_timeout_ms) {
      s->st.errors++;
      slog(s, PYREC_LOG_WARNING, "%s: closing: idle for %u ms", c->peer, s->o.idle_timeout_ms);
      close_conn(s, c, "idle timeout");
    }
    c = next;
  }
}

/* ---- lifecycle ----------------------------------------------------------------------- */

int pyrec_server_new(pyrec_server **out, const pyrec_server_opts *o,
                     const pyrec_server_callbacks *cb, pyrec_errinfo *err) {
  *out = NULL;
  pyrec_server *s = calloc(1, sizeof *s);
  if (!s)
    return pyrec_seterr(err, PYREC_E_NOMEM, -1, "out of memory");
  s->o = *o;
  if (!s->o.max_connections)
    s->o.max_connections = 4096;
  if (!s->o.handshake_timeout_ms)
    s->o.handshake_timeout_ms = 10000;
  if (!s->o.idle_timeout_ms)
    s->o.idle_timeout_ms = 30000;
  if (cb)
    s->cb = *cb;
  s->lfd = s->ep = s->wake = s->lagfd = -1;
  pthread_mutexattr_t ma;
  pthread_mutexattr_init(&ma);
  pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
  pthread_mutex_init(&s->lock, &ma);
  pthread_mutexattr_destroy(&ma);
  s->rbuf = malloc(READ_BUF);
  const char *host = o->host && *o->host ? o->host : "0.0.0.0";
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(o->port);
  int rc = PYREC_OK;
  if (!s->rbuf) {
    rc = pyrec_seterr(err, PYREC_E_NOMEM, -1, "out of memory");
  } else if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    rc = pyrec_seterr(err, PYREC_E_INVAL, -1, "bad IPv4 bind address '%s'", host);
  } else if ((s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0 ||
             setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) ||
             bind(s->lfd, (struct sockaddr *)&a, sizeof a) || listen(s->lfd, 1024)) {
    rc = pyrec_seterr(err, PYREC_E_IO, -1, "cannot listen on %s:%u: %s", host, o->port,
                      strerror(errno));
    if (err)
      err->sys_errno = errno;
  } else if ((s->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
             (s->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
    rc = pyrec_seterr(err, PYREC_E_IO, -1, "epoll/eventfd: %s", strerror(errno));
  } else {
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_LISTEN};
    struct epoll_event wv = {.events = EPOLLIN, .data.u64 = TAG_WAKE};
    epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lfd, &ev);
    epoll_ctl(s->ep, EPOLL_CTL_ADD, s->wake, &wv);
    struct sockaddr_in b;
    socklen_t bl = sizeof b;
    getsockname(s->lfd, (struct sockaddr *)&b, &bl);
    s->port = ntohs(b.sin_port);
    /* The lag probe is a measurement only: without a timerfd the server runs unprobed. */
    s->lagfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (s->lagfd >= 0) {
      struct epoll_event tv = {.events = EPOLLIN, .data.u64 = TAG_LAG};
      epoll_ctl(s->ep, EPOLL_CTL_ADD, s->lagfd, &tv);
    }
  }
  if (rc) {
    pyrec_server_free(s);
    return rc;
  }
  *out = s;
  return PYREC_OK;
}

/* Read what a connection has already queued in the kernel (until EAGAIN, at most 64 MiB)
 * without waiting for more. The connection is marked dead when it ends or fails. */
static void drain_before_stop(pyrec_server *s, sconn *c) {
  uint64_t start = s->st.bytes_in;
  while (!c->dead && s->st.bytes_in - start < (64u << 20)) {
    uint64_t before = s->st.bytes_in;
    if (serve_conn(s, c, EPOLLIN))
      c->dead = 1;
    if (s->st.bytes_in == before)
      break; /* nothing more was queued */
  }
}

uint16_t pyrec_server_port(const pyrec_server *s) { return s->port; }

static const uint64_t lag_bounds[PYREC_LAG_BUCKETS - 1] = PYREC_LAG_BOUNDS_US;

const uint64_t *pyrec_server_lag_bounds_us(void) { return lag_bounds; }

static void lag_add(pyrec_server *s, uint64_t lag) {
  unsigned b = 0;
  while (b < PYREC_LAG_BUCKETS - 1 && lag > lag_bounds[b])
    b++;
  s->st.lag_hist[b]++;
  s->st.lag_samples++;
  s->st.lag_sum_us += lag;
  if (lag > s->st.lag_max_us)
    s->st.lag_max_us = lag;
}

/* The lag timer expired `n` times: the first unhandled expiry was due at lag_due_us. Each
 * expiry is a sample (the k-th waited one period less than the one before it), so a long
 * stall weighs as many samples as the 10 ms ticks it held up, not one. */
static void lag_record(pyrec_server *s, uint64_t n) {
  const uint64_t period = PYREC_LAG_PROBE_MS * 1000u;
  uint64_t now = now_us();
  uint64_t lag = now > s->lag_due_us ? now - s->lag_due_us : 0;
  s->lag_due_us += n * period;
  for (uint64_t k = 0; k < n && k < 100000; k++)
    lag_add(s, lag > k * period ? lag - k * period : 0);
}

static void lag_arm(pyrec_server *s) {
  if (s->lagfd < 0)
    return;
  struct itimerspec it = {.it_interval = {0, PYREC_LAG_PROBE_MS * 1000000L},
                          .it_value = {0, PYREC_LAG_PROBE_MS * 1000000L}};
  s->lag_due_us = now_us() + PYREC_LAG_PROBE_MS * 1000u;
  timerfd_settime(s->lagfd, 0, &it, NULL);
}

int pyrec_server_run(pyrec_server *s) {
  struct epoll_event evs[256];
  uint64_t last_check = now_ms(), last_acks = last_check;
  lag_arm(s);
  while (!s->stopping) {
    int n = epoll_wait(s->ep, evs, 256, s->acks_waiting ? ACK_QUIET_MS / 2 : 200);
    if (n < 0 && errno != EINTR)
      return pyrec_seterr(NULL, PYREC_E_IO, -1, "epoll_wait");
    pthread_mutex_lock(&s->lock);
    /* Connections are closed after the batch: later events of the batch may name them. */
    sconn *doomed[256];
    const char *whys[256];
    int ndoomed = 0;
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == TAG_LISTEN) {
        accept_all(s);
      } else if (evs[i].data.u64 == TAG_WAKE) {
        uint64_t v;
        (void)!read(s->wake, &v, sizeof v);
      } else if (evs[i].data.u64 == TAG_LAG) {
        uint64_t v = 0;
        if (read(s->lagfd, &v, sizeof v) == (ssize_t)sizeof v && v)
          lag_record(s, v);
      } else {
        sconn *c = evs[i].data.ptr;
        if (c->dead)
          continue;
        const char *why = serve_conn(s, c, evs[i].events);
        if (why) {
          c->dead = 1;
          doomed[ndoomed] = c;
          whys[ndoomed++] = why;
        }
      }
    }
    for (int i = 0; i < ndoomed; i++)
      close_conn(s, doomed[i], whys[i]);
    uint64_t now = now_ms();
    if (s->acks_waiting && now - last_acks >= ACK_QUIET_MS / 2) {
      last_acks = now;
      s->acks_waiting = send_due_acks(s, now);
    }
    if (now - last_check >= 250) {
      last_check = now;
      check_timeouts(s);
    }
    if (s->kicked) { /* connections kicked from another thread */
      s->kicked = 0;
      for (sconn *c = s->conns, *nx; c; c = nx) {
        nx = c->next;
        if (c->dead)
          close_conn(s, c, "kicked");
      }
    }
    pthread_mutex_unlock(&s->lock);
  }
  pthread_mutex_lock(&s->lock);
  /* What publishers sent before the stop is already in our receive buffers: record it
   * (bounded) before the connections close, so a stop loses nothing that had arrived. */
  for (sconn *c = s->conns; c; c = c->next)
    if (!c->dead)
      drain_before_stop(s, c);
  while (s->conns)
    close_conn(s, s->conns, "server stopping");
  while (s->parked) /* no reconnect is coming: finish their files */
    pyrec_server_discard(s, s->parked->id);
  pthread_mutex_unlock(&s->lock);
  return PYREC_OK;
}

void pyrec_server_stop(pyrec_server *s) {
  s->stopping = 1;
  uint64_t one = 1;
  if (s->wake >= 0)
    (void)!write(s->wake, &one, sizeof one);
}

void pyrec_server_free(pyrec_server *s) {
  if (!s)
    return;
  while (s->conns) { /* run() was never called, or returned early */
    sconn *c = s->conns;
    close_conn(s, c, "server freed");
  }
  while (s->parked)
    pyrec_server_discard(s, s->parked->id);
  if (s->lfd >= 0)
    close(s->lfd);
  if (s->ep >= 0)
    close(s->ep);
  if (s->wake >= 0)
    close(s->wake);
  if (s->lagfd >= 0)
    close(s->lagfd);
  pthread_mutex_destroy(&s->lock);
  free(s->rbuf);
  free(s);
}

/* ---- control plane ------------------------------------------------------------------- */

int pyrec_server_attach(pyrec_server *s, uint64_t key, uint32_t track_mask,
                        const pyrec_rec_opts *o, const pyrec_rec_callbacks *cb, int *sink,
                        pyrec_errinfo *err) {
  pthread_mutex_lock(&s->lock);
  sstream *st = find_stream(s, key);
  int rc = st ? pyrec_flvsrc_attach(st->src, track_mask, o, cb, sink, err)
              : pyrec_seterr(err, PYREC_E_NOTRACK, -1, "stream %llu has ended",
                             (unsigned long long)key);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int pyrec_server_detach(pyrec_server *s, uint64_t key, int sink, pyrec_errinfo *err) {
  pthread_mutex_lock(&s->lock);
  sstream *st = find_stream(s, key);
  int rc;
  if (!st) {
    rc = pyrec_seterr(err, PYREC_E_NOTRACK, -1, "stream %llu has ended",
                      (unsigned long long)key);
  } else {
    pyrec_flvsrc_sink_error(st->src, sink, err);
    rc = pyrec_flvsrc_detach(st->src, sink);
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int pyrec_server_split(pyrec_server *s, uint64_t key, int sink, int64_t at_ms) {
  pthread_mutex_lock(&s->lock);
  sstream *st = find_stream(s, key);
  pyrec_rec *r = st ? pyrec_flvsrc_sink(st->src, sink) : NULL;
  int rc = r ? pyrec_rec_split(r, at_ms) : PYREC_E_NOTRACK;
  pthread_mutex_unlock(&s->lock);
  return rc;
}

unsigned pyrec_server_tracks(pyrec_server *s, uint64_t key, pyrec_flvsrc_track *out,
                             unsigned max) {
  pthread_mutex_lock(&s->lock);
  sstream *st = find_stream(s, key);
  unsigned n = st ? pyrec_flvsrc_ntracks(st->src) : 0;
  if (n > max)
    n = max;
  for (unsigned i = 0; i < n; i++)
    out[i] = *pyrec_flvsrc_track_info(st->src, i);
  pthread_mutex_unlock(&s->lock);
  return n;
}

int pyrec_server_sink_stats(pyrec_server *s, uint64_t key, int sink, pyrec_rec_stats *out,
                            pyrec_errinfo *err) {
  pthread_mutex_lock(&s->lock);
  sstream *st = find_stream(s, key);
  pyrec_rec *r = st ? pyrec_flvsrc_sink(st->src, sink) : NULL;
  int rc = PYREC_E_NOTRACK;
  if (r) {
    pyrec_rec_get_stats(r, out);
    rc = pyrec_flvsrc_sink_error(st->src, sink, err);
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int pyrec_server_park(pyrec_server *s, uint64_t key, int sink, uint64_t *id) {
  pthread_mutex_lock(&s->lock);
  sstream *st = find_stream(s, key);
  pyrec_rec *r = st ? pyrec_flvsrc_take(st->src, sink) : NULL;
  parked *p = r ? calloc(1, sizeof *p) : NULL;
  int rc = PYREC_E_NOTRACK;
  if (p) {
    p->id = ++s->next_id;
    p->rec = r;
    p->next = s->parked;
    s->parked = p;
    *id = p->id;
    rc = PYREC_OK;
  } else if (r) { /* no memory to park it: finish it now */
    pyrec_rec_close(r);
    pyrec_rec_free(r);
    rc = PYREC_E_NOMEM;
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

static parked *unpark(pyrec_server *s, uint64_t id) {
  for (parked **pp = &s->parked; *pp; pp = &(*pp)->next)
    if ((*pp)->id == id) {
      parked *p = *pp;
      *pp = p->next;
      return p;
    }
  return NULL;
}

int pyrec_server_adopt(pyrec_server *s, uint64_t id, uint64_t key, uint32_t track_mask,
                       int *sink, pyrec_errinfo *err) {
  pthread_mutex_lock(&s->lock);
  sstream *st = find_stream(s, key);
  int rc;
  if (!st) {
    rc = pyrec_seterr(err, PYREC_E_NOTRACK, -1, "stream %llu has ended",
                      (unsigned long long)key);
  } else {
    parked *p = unpark(s, id);
    if (!p) {
      rc = pyrec_seterr(err, PYREC_E_NOTRACK, -1, "no parked recording %llu",
                        (unsigned long long)id);
    } else if ((rc = pyrec_flvsrc_adopt(st->src, p->rec, track_mask, sink, err))) {
      p->next = s->parked; /* still parked: the caller may discard it */
      s->parked = p;
    } else {
      free(p);
    }
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int pyrec_server_discard(pyrec_server *s, uint64_t id) {
  pthread_mutex_lock(&s->lock);
  parked *p = unpark(s, id);
  int rc = PYREC_E_NOTRACK;
  if (p) {
    rc = pyrec_rec_close(p->rec);
    pyrec_rec_free(p->rec);
    free(p);
  }
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int pyrec_server_kick(pyrec_server *s, uint64_t key) {
  pthread_mutex_lock(&s->lock);
  sstream *st = find_stream(s, key);
  if (st && st->conn) {
    st->conn->dead = 1;
    s->kicked = 1;
    uint64_t one = 1;
    (void)!write(s->wake, &one, sizeof one);
  }
  pthread_mutex_unlock(&s->lock);
  return st ? PYREC_OK : PYREC_E_NOTRACK;
}

int pyrec_server_stream_stats(pyrec_server *s, uint64_t key, pyrec_server_stream_counters *out) {
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&s->lock);
  sstream *st = find_stream(s, key);
  if (st) {
    out->bytes_in = st->conn ? st->conn->bytes_in : 0;
    pyrec_flvsrc_get_stats(st->src, &out->src);
    unsigned n = pyrec_flvsrc_ntracks(st->src);
    out->ntracks = n < 2 ? n : 2;
    for (unsigned i = 0; i < out->ntracks; i++)
      pyrec_flvsrc_get_track_stats(st->src, i, &out->track[i]);
    for (unsigned i = 0; i < n; i++) {
      const pyrec_flvsrc_track *t = pyrec_flvsrc_track_info(st->src, i);
      if (t->media != PYREC_MEDIA_VIDEO || t->codec == PYREC_CODEC_NONE)
        continue;
      /* The picture size from the sequence header (SPS / sequence header OBU / vpcC) as the
       * recorder reads it; an empty or unreadable config leaves 0 x 0. */
      pyrec_track_desc d = {.codec = t->codec, .timescale = 1000, .config = t->config,
                            .config_len = t->config_len};
      pyrec_codec_state cs;
      pyrec_errinfo err;
      pyrec_clearerr(&err);
      if (pyrec_codec_init(&cs, &d, &err) == PYREC_OK) {
        out->width = cs.width;
        out->height = cs.height;
      }
      pyrec_codec_free(&cs);
    }
  }
  pthread_mutex_unlock(&s->lock);
  return st ? PYREC_OK : PYREC_E_NOTRACK;
}

void pyrec_server_get_stats(pyrec_server *s, pyrec_server_stats *out) {
  pthread_mutex_lock(&s->lock);
  *out = s->st;
  pthread_mutex_unlock(&s->lock);
}
