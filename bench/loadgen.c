/* RTMP load generator: N publishers from one process, each replaying one FLV file at real-time
 * pace (or unpaced), over one epoll loop with a pacing timer.
 *
 *   cc -O2 -o loadgen bench/loadgen.c
 *   loadgen [options] HOST PORT FILE.flv
 *     -n N          publishers (default 1)
 *     -a APP        RTMP app (default live)
 *     -p PREFIX     stream names PREFIX0 .. PREFIX{N-1} (default s)
 *     -d SECONDS    media seconds to send per stream (default: the whole file once);
 *                   the file is looped when SECONDS is longer than it
 *     -r MS         spread the N connection starts over MS milliseconds (default 2000)
 *     -u            unpaced: send as fast as the socket takes it
 *     -R            raw: send the whole client byte stream without waiting for replies
 *                   (for bench/sink.c, which only receives)
 *     -t SECONDS    give up after this long (default: duration + ramp + 60)
 *
 * Client side of RTMP (Adobe RTMP spec 1.0): handshake C0/C1/C2, Set Chunk Size 4096,
 * connect / createStream / publish with AMF0 commands, @setDataFrame onMetaData from the
 * file's script tag, then the audio/video tags as messages on their own chunk streams, with
 * a type-0 header for the first message and type-1 headers (timestamp delta) after it,
 * type-3 headers on continuation chunks. At the end: FCUnpublish + deleteStream, then
 * shutdown(SHUT_WR) and read until the server closes, so no RST throws away data in flight.
 *
 * Prints one JSON object on stdout: totals, and per stream the media packets and bytes sent,
 * the worst lateness against the schedule (ms) and the state reached.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 4096
#define HS 1536

/* ---- the FLV file, parsed once ---------------------------------------------------------- */

typedef struct {
  uint8_t type; /* 8 audio, 9 video, 18 script */
  uint8_t config; /* AVC/AAC sequence header, or AVC end of sequence: not a media packet */
  uint32_t ts;
  const uint8_t *data;
  uint32_t len;
} tag;

static tag *tags;
static size_t ntags;
static long meta_i = -1; /* index of the script tag (onMetaData), if any */
static uint32_t file_dur_ms;

static void load_flv(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(2);
  }
  struct stat st;
  fstat(fileno(f), &st);
  uint8_t *b = malloc((size_t)st.st_size);
  if (fread(b, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
    perror("read");
    exit(2);
  }
  fclose(f);
  size_t n = (size_t)st.st_size;
  if (n < 13 || memcmp(b, "FLV", 3)) {
    fprintf(stderr, "%s: not an FLV file\n", path);
    exit(2);
  }
  size_t off = ((size_t)b[5] << 24 | b[6] << 16 | b[7] << 8 | b[8]) + 4;
  size_t cap = 1024;
  tags = malloc(cap * sizeof *tags);
  while (off + 11 <= n) {
    uint8_t type = b[off] & 0x1f;
    uint32_t len = (uint32_t)b[off + 1] << 16 | b[off + 2] << 8 | b[off + 3];
    uint32_t ts = (uint32_t)b[off + 4] << 16 | b[off + 5] << 8 | b[off + 6] | (uint32_t)b[off + 7] << 24;
    if (off + 11 + len + 4 > n)
      break;
    const uint8_t *d = b + off + 11;
    off += 11 + len + 4;
    if (type != 8 && type != 9 && type != 18)
      continue;
    if (ntags == cap)
      tags = realloc(tags, (cap *= 2) * sizeof *tags);
    tag *t = &tags[ntags++];
    t->type = type;
    t->ts = ts;
    t->data = d;
    t->len = len;
    t->config = (type == 9 && len >= 2 && (d[0] & 0x0f) == 7 && d[1] != 1) ||
                (type == 8 && len >= 2 && (d[0] >> 4) == 10 && d[1] == 0);
    if (type == 18 && meta_i < 0)
      meta_i = (long)(ntags - 1);
    if (type != 18 && ts > file_dur_ms)
      file_dur_ms = ts;
  }
  file_dur_ms += 34; /* one frame past the last timestamp: the loop period */
}

/* ---- byte buffers and AMF0 ------------------------------------------------------------- */

typedef struct {
  uint8_t *p;
  size_t len, cap, off; /* off: bytes already sent / consumed */
} buf;

static void put(buf *b, const void *d, size_t n) {
  if (b->len + n > b->cap) {
    if (b->off) { /* compact first */
      memmove(b->p, b->p + b->off, b->len - b->off);
      b->len -= b->off;
      b->off = 0;
    }
    if (b->len + n > b->cap) {
      b->cap = (b->len + n) * 2;
      b->p = realloc(b->p, b->cap);
    }
  }
  memcpy(b->p + b->len, d, n);
  b->len += n;
}
static void put8(buf *b, uint8_t v) { put(b, &v, 1); }
static void put24(buf *b, uint32_t v) {
  uint8_t x[3] = {(uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  put(b, x, 3);
}
static void put32be(buf *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  put(b, x, 4);
}
static void put32le(buf *b, uint32_t v) {
  uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  put(b, x, 4);
}
static void amf_str(buf *b, const char *s) {
  size_t n = strlen(s);
  put8(b, 2);
  put8(b, (uint8_t)(n >> 8));
  put8(b, (uint8_t)n);
  put(b, s, n);
}
static void amf_key(buf *b, const char *s) {
  size_t n = strlen(s);
  put8(b, (uint8_t)(n >> 8));
  put8(b, (uint8_t)n);
  put(b, s, n);
}
static void amf_num(buf *b, double v) {
  uint64_t u;
  memcpy(&u, &v, 8);
  put8(b, 0);
  for (int i = 7; i >= 0; i--)
    put8(b, (uint8_t)(u >> (i * 8)));
}
static void amf_null(buf *b) { put8(b, 5); }
static void amf_end(buf *b) { put8(b, 0), put8(b, 0), put8(b, 9); }

/* ---- connections ----------------------------------------------------------------------- */

enum { S_CONNECTING, S_HS, S_CONNECT, S_CREATE, S_PUBLISH, S_MEDIA, S_CLOSING, S_DONE, S_FAILED };
static const char *state_names[] = {"connecting", "handshake", "connect", "createStream",
                                    "publish", "media", "closing", "done", "failed"};

typedef struct {
  uint32_t last_ts; /* timestamp of the previous message on this chunk stream */
  int started;      /* a type-0 header was sent */
} csout;

typedef struct conn {
  int idx, fd, state;
  uint64_t start_ms;   /* when it connects */
  uint64_t media_t0;   /* wall ms of media time 0 */
  buf in, out;
  size_t hs_need;
  /* server chunk stream reader (small messages only) */
  uint32_t in_chunk;
  struct {
    uint8_t fmt_seen;
    uint32_t len, type, ts;
    buf msg;
  } ics[16];
  uint32_t msid;
  csout cs[8];
  size_t next;       /* next tag */
  uint32_t loop;     /* times the file has been restarted */
  uint64_t packets, bytes, config_msgs;
  int64_t max_late;  /* ms */
  size_t max_out;
  int want_out;      /* EPOLLOUT armed */
  char err[160];
} conn;

static conn *conns;
static int nconns, ep;
static const char *host, *app = "live", *prefix = "s";
static int port;
static uint32_t dur_ms; /* media to send per stream */
static int unpaced, raw;
static int busy; /* unpaced: some stream could send more without waiting for the socket */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void fail(conn *c, const char *why) {
  if (c->state == S_FAILED || c->state == S_DONE)
    return;
  snprintf(c->err, sizeof c->err, "%s in state %s (errno %d)", why, state_names[c->state], errno);
  c->state = S_FAILED;
  if (c->fd >= 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
  }
}

static void arm(conn *c, int want_out) {
  if (c->fd < 0 || c->want_out == want_out)
    return;
  c->want_out = want_out;
  struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void flush(conn *c) {
  while (c->out.off < c->out.len) {
    ssize_t n = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
    if (n > 0) {
      c->out.off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      arm(c, 1);
      return;
    }
    fail(c, "send failed");
    return;
  }
  c->out.off = c->out.len = 0;
  arm(c, 0);
}

/* One RTMP message, chunked: fmt 0 (or fmt 1 when the chunk stream already has a message
 * with the same stream id), then fmt 3 continuation chunks. */
static void send_msg(conn *c, int csid, uint8_t type, uint32_t msid, uint32_t ts,
                     const uint8_t *d, size_t len) {
  buf *b = &c->out;
  csout *cs = &c->cs[csid];
  int ext;
  if (!cs->started || ts < cs->last_ts) {
    ext = ts >= 0xffffff;
    put8(b, (uint8_t)csid); /* fmt 0 */
    put24(b, ext ? 0xffffff : ts);
    put24(b, (uint32_t)len);
    put8(b, type);
    put32le(b, msid);
    if (ext)
      put32be(b, ts);
    cs->started = 1;
  } else {
    uint32_t delta = ts - cs->last_ts;
    ext = delta >= 0xffffff;
    put8(b, (uint8_t)(0x40 | csid)); /* fmt 1 */
    put24(b, ext ? 0xffffff : delta);
    put24(b, (uint32_t)len);
    put8(b, type);
    if (ext)
      put32be(b, delta);
  }
  cs->last_ts = ts;
  size_t off = 0;
  for (;;) {
    size_t n = len - off < CHUNK ? len - off : CHUNK;
    put(b, d + off, n);
    off += n;
    if (off >= len)
      break;
    put8(b, (uint8_t)(0xc0 | csid)); /* fmt 3 */
    if (ext)
      put32be(b, ts);
  }
}

static void send_cmd(conn *c, buf *amf, uint32_t msid) {
  send_msg(c, 3, 20, msid, 0, amf->p, amf->len);
  amf->len = 0;
}

static void start_rtmp(conn *c) {
  buf a = {0};
  uint8_t scs[4] = {0, 0, CHUNK >> 8, CHUNK & 0xff};
  send_msg(c, 2, 1, 0, 0, scs, 4); /* Set Chunk Size, 5.4.1 */
  char tcurl[256];
  snprintf(tcurl, sizeof tcurl, "rtmp://%s:%d/%s", host, port, app);
  amf_str(&a, "connect");
  amf_num(&a, 1);
  put8(&a, 3);
  amf_key(&a, "app");
  amf_str(&a, app);
  amf_key(&a, "type");
  amf_str(&a, "nonprivate");
  amf_key(&a, "flashVer");
  amf_str(&a, "FMLE/3.0 (compatible; pyrec-loadgen)");
  amf_key(&a, "tcUrl");
  amf_str(&a, tcurl);
  amf_end(&a);
  send_cmd(c, &a, 0);
  free(a.p);
  c->state = S_CONNECT;
}

static void send_create(conn *c) {
  buf a = {0};
  amf_str(&a, "createStream");
  amf_num(&a, 2);
  amf_null(&a);
  send_cmd(c, &a, 0);
  free(a.p);
  c->state = S_CREATE;
}

static void send_publish(conn *c) {
  buf a = {0};
  char name[64];
  snprintf(name, sizeof name, "%s%d", prefix, c->idx);
  amf_str(&a, "publish");
  amf_num(&a, 3);
  amf_null(&a);
  amf_str(&a, name);
  amf_str(&a, "live");
  send_msg(c, 4, 20, c->msid, 0, a.p, a.len);
  free(a.p);
  c->state = S_PUBLISH;
}

static void send_unpublish(conn *c) {
  buf a = {0};
  char name[64];
  snprintf(name, sizeof name, "%s%d", prefix, c->idx);
  amf_str(&a, "FCUnpublish");
  amf_num(&a, 4);
  amf_null(&a);
  amf_str(&a, name);
  send_cmd(c, &a, 0);
  amf_str(&a, "deleteStream");
  amf_num(&a, 5);
  amf_null(&a);
  amf_num(&a, c->msid);
  send_cmd(c, &a, 0);
  free(a.p);
}

static void begin_media(conn *c) {
  c->state = S_MEDIA;
  c->media_t0 = now_ms();
  if (meta_i >= 0) {
    const tag *meta = &tags[meta_i];
    buf a = {0};
    amf_str(&a, "@setDataFrame");
    put(&a, meta->data, meta->len);
    send_msg(c, 5, 18, c->msid, 0, a.p, a.len);
    free(a.p);
  }
}

/* Raw mode (-R): the whole client byte stream without waiting for any reply (for a server
 * that only receives, bench/sink.c): C0 C1 C2, Set Chunk Size, connect, createStream,
 * publish on stream 1, metadata, media. */
static void raw_start(conn *c) {
  static uint8_t c2[HS];
  put(&c->out, c2, HS);
  start_rtmp(c);
  send_create(c);
  c->msid = 1;
  send_publish(c);
  begin_media(c);
}

static int has(const buf *m, const char *s) { return memmem(m->p, m->len, s, strlen(s)) != NULL; }

/* A complete message from the server. */
static void on_server_msg(conn *c, uint32_t type, buf *m) {
  if (type == 1 && m->len >= 4) {
    c->in_chunk = ((uint32_t)m->p[0] << 24 | m->p[1] << 16 | m->p[2] << 8 | m->p[3]) & 0x7fffffff;
    return;
  }
  if (type != 20)
    return;
  static const char amf_error[] = {2, 0, 5, 'e', 'r', 'r', 'o', 'r'}; /* AMF0 "error" */
  if (has(m, "_error") ||
      (has(m, "onStatus") && memmem(m->p, m->len, amf_error, sizeof amf_error))) {
    fail(c, "server refused");
    return;
  }
  if (c->state == S_CONNECT && has(m, "_result")) {
    send_create(c);
  } else if (c->state == S_CREATE && has(m, "_result")) {
    /* _result, txn 2, null, stream id: the last number in the message */
    double id = 1;
    if (m->len >= 9 && m->p[m->len - 9] == 0) {
      uint64_t u = 0;
      for (size_t k = m->len - 8; k < m->len; k++)
        u = u << 8 | m->p[k];
      memcpy(&id, &u, 8);
    }
    c->msid = (uint32_t)id;
    send_publish(c);
  } else if (c->state == S_PUBLISH && has(m, "NetStream.Publish.Start")) {
    begin_media(c);
  }
}

/* Parse the server's chunk stream (any fmt, any csid < 16 with a basic header). */
static void parse_in(conn *c) {
  buf *b = &c->in;
  for (;;) {
    const uint8_t *p = b->p + b->off;
    size_t n = b->len - b->off;
    if (n < 1)
      break;
    int fmt = p[0] >> 6, csid = p[0] & 0x3f;
    if (csid < 2 || csid >= 16) {
      fail(c, "unexpected chunk stream id from server");
      return;
    }
    size_t hl = 1 + (fmt == 0 ? 11 : fmt == 1 ? 7 : fmt == 2 ? 3 : 0);
    if (n < hl)
      break;
    typeof(c->ics[0]) *s = &c->ics[csid];
    uint32_t ts = fmt < 3 ? ((uint32_t)p[1] << 16 | p[2] << 8 | p[3]) : s->ts;
    size_t ext = (fmt < 3 && ts == 0xffffff) ? 4 : 0;
    if (n < hl + ext)
      break;
    uint32_t len = s->len, type = s->type;
    if (fmt <= 1) {
      len = (uint32_t)p[4] << 16 | p[5] << 8 | p[6];
      type = p[7];
    }
    size_t have = s->msg.len;
    size_t want = len - have < c->in_chunk ? len - have : c->in_chunk;
    if (n < hl + ext + want)
      break;
    s->len = len;
    s->type = type;
    s->ts = ts;
    put(&s->msg, p + hl + ext, want);
    b->off += hl + ext + want;
    if (s->msg.len >= len) {
      on_server_msg(c, type, &s->msg);
      s->msg.len = 0;
      if (c->state == S_FAILED)
        return;
    }
  }
  if (b->off == b->len)
    b->off = b->len = 0;
}

static void on_readable(conn *c) {
  uint8_t tmp[16384];
  for (;;) {
    ssize_t n = recv(c->fd, tmp, sizeof tmp, 0);
    if (n > 0) {
      if (c->state == S_HS) {
        put(&c->in, tmp, (size_t)n);
        if (c->in.len - c->in.off >= 1 + 2 * HS) {
          put(&c->out, c->in.p + c->in.off + 1, HS); /* C2 echoes S1 */
          c->in.off += 1 + 2 * HS;
          start_rtmp(c);
          parse_in(c);
          flush(c);
        }
      } else if (c->state == S_CLOSING || c->state == S_MEDIA) {
        /* acks, onStatus: look only for errors during media */
        put(&c->in, tmp, (size_t)n);
        parse_in(c);
      } else {
        put(&c->in, tmp, (size_t)n);
        parse_in(c);
        flush(c);
      }
      if (c->state == S_FAILED)
        return;
      continue;
    }
    if (n == 0) {
      if (c->state == S_CLOSING) {
        c->state = S_DONE;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
      } else {
        fail(c, "server closed the connection");
      }
      return;
    }
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      fail(c, "recv failed");
    return;
  }
}

static void start_conn(conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) {
    fail(c, "socket");
    return;
  }
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &a.sin_addr);
  int rc = connect(c->fd, (struct sockaddr *)&a, sizeof a);
  if (rc < 0 && errno != EINPROGRESS) {
    fail(c, "connect");
    return;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  c->want_out = 1;
  epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
  c->state = S_CONNECTING;
  c->in_chunk = 128;
  /* C0 + C1: version 3, time 0, zero, 1528 bytes of anything */
  uint8_t c1[1 + HS];
  memset(c1, 0, sizeof c1);
  c1[0] = 3;
  for (int i = 9; i < 1 + HS; i++)
    c1[i] = (uint8_t)(i * 31 + c->idx);
  put(&c->out, c1, sizeof c1);
}

/* Send every tag that is due; returns 1 when the stream has sent its duration. */
static int pump(conn *c, uint64_t now) {
  for (;;) {
    if (c->out.len - c->out.off > (unpaced ? 256 * 1024 : 8 * 1024 * 1024)) {
      if (unpaced && !c->want_out)
        busy = 1;
      return 0; /* the socket is full: wait for EPOLLOUT */
    }
    if (c->next >= ntags) {
      c->next = 0;
      c->loop++;
    }
    const tag *t = &tags[c->next];
    uint64_t mts = (uint64_t)t->ts + (uint64_t)c->loop * file_dur_ms;
    if (t->type == 18 || (c->loop && t->config)) { /* metadata sent at start; configs once */
      c->next++;
      continue;
    }
    if (mts >= dur_ms)
      return 1;
    uint64_t due = c->media_t0 + mts;
    if (!unpaced && due > now)
      return 0;
    if (!unpaced && (int64_t)(now - due) > c->max_late)
      c->max_late = (int64_t)(now - due);
    send_msg(c, t->type == 9 ? 6 : 4, t->type, c->msid, (uint32_t)mts, t->data, t->len);
    if (t->config)
      c->config_msgs++;
    else {
      c->packets++;
      c->bytes += t->len;
    }
    c->next++;
  }
}

int main(int argc, char **argv) {
  int n = 1, opt;
  double dur_s = 0, timeout_s = 0;
  int ramp_ms = 2000;
  while ((opt = getopt(argc, argv, "n:a:p:d:r:uRt:")) != -1) {
    switch (opt) {
    case 'n': n = atoi(optarg); break;
    case 'a': app = optarg; break;
    case 'p': prefix = optarg; break;
    case 'd': dur_s = atof(optarg); break;
    case 'r': ramp_ms = atoi(optarg); break;
    case 'u': unpaced = 1; break;
    case 'R': raw = 1; break;
    case 't': timeout_s = atof(optarg); break;
    default:
      fprintf(stderr, "usage: %s [-n N] [-a APP] [-p PREFIX] [-d SECONDS] [-r RAMP_MS] [-u] "
                      "[-R] [-t TIMEOUT_S] HOST PORT FILE.flv\n", argv[0]);
      return 2;
    }
  }
  if (argc - optind != 3) {
    fprintf(stderr, "need HOST PORT FILE.flv\n");
    return 2;
  }
  host = argv[optind];
  port = atoi(argv[optind + 1]);
  load_flv(argv[optind + 2]);
  dur_ms = dur_s > 0 ? (uint32_t)(dur_s * 1000) : file_dur_ms;
  if (timeout_s <= 0)
    timeout_s = dur_ms / 1000.0 + ramp_ms / 1000.0 + 60;
  ep = epoll_create1(0);
  nconns = n;
  conns = calloc((size_t)n, sizeof *conns);
  uint64_t t0 = now_ms();
  for (int i = 0; i < n; i++) {
    conns[i].idx = i;
    conns[i].fd = -1;
    conns[i].state = -1; /* not started */
    conns[i].start_ms = t0 + (n > 1 ? (uint64_t)ramp_ms * (uint64_t)i / (uint64_t)(n - 1) : 0);
  }
  struct epoll_event evs[512];
  int started = 0, finished = 0;
  uint64_t deadline = t0 + (uint64_t)(timeout_s * 1000);
  while (finished < n) {
    uint64_t now = now_ms();
    if (now > deadline)
      break;
    while (started < n && conns[started].start_ms <= now)
      start_conn(&conns[started++]);
    int timeout = unpaced ? (busy ? 0 : 1) : 2;
    busy = 0;
    int k = epoll_wait(ep, evs, 512, timeout);
    now = now_ms();
    for (int i = 0; i < k; i++) {
      conn *c = evs[i].data.ptr;
      if (c->state == S_FAILED || c->state == S_DONE)
        continue;
      if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN)) {
        fail(c, "socket error");
        continue;
      }
      if (c->state == S_CONNECTING && (evs[i].events & EPOLLOUT)) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
          errno = err;
          fail(c, "connect failed");
          continue;
        }
        c->state = S_HS;
        if (raw)
          raw_start(c);
      }
      if (evs[i].events & EPOLLIN)
        on_readable(c);
      if (c->state != S_FAILED && c->fd >= 0 && (evs[i].events & EPOLLOUT))
        flush(c);
    }
    /* pacing: every publishing stream sends what is due */
    finished = 0;
    for (int i = 0; i < started; i++) {
      conn *c = &conns[i];
      if (c->state == S_MEDIA) {
        if (pump(c, now)) {
          send_unpublish(c);
          c->state = S_CLOSING;
        }
        size_t pend = c->out.len - c->out.off;
        if (pend > c->max_out)
          c->max_out = pend;
        if (!c->want_out)
          flush(c);
      }
      if (c->state == S_CLOSING && c->fd >= 0 && c->out.off == c->out.len && c->want_out != 2) {
        shutdown(c->fd, SHUT_WR); /* then read until the server closes */
        c->want_out = 2;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
      }
      if (c->state == S_DONE || c->state == S_FAILED)
        finished++;
    }
  }
  uint64_t wall = now_ms() - t0;
  /* report */
  uint64_t packets = 0, bytes = 0;
  int done = 0, failed = 0;
  int64_t late = 0;
  for (int i = 0; i < n; i++) {
    packets += conns[i].packets;
    bytes += conns[i].bytes;
    done += conns[i].state == S_DONE;
    failed += conns[i].state != S_DONE;
    if (conns[i].max_late > late)
      late = conns[i].max_late;
  }
  printf("{\"streams\": %d, \"done\": %d, \"failed\": %d, \"packets\": %llu, \"bytes\": %llu, "
         "\"wall_ms\": %llu, \"media_ms\": %u, \"max_late_ms\": %lld, \"per_stream\": [",
         n, done, failed, (unsigned long long)packets, (unsigned long long)bytes,
         (unsigned long long)wall, dur_ms, (long long)late);
  for (int i = 0; i < n; i++) {
    conn *c = &conns[i];
    printf("%s{\"name\": \"%s%d\", \"packets\": %llu, \"bytes\": %llu, \"max_late_ms\": %lld, "
           "\"max_pending\": %zu, \"state\": \"%s\", \"error\": \"%s\"}",
           i ? ", " : "", prefix, i, (unsigned long long)c->packets,
           (unsigned long long)c->bytes, (long long)c->max_late, c->max_out,
           c->state >= 0 ? state_names[c->state] : "not started", c->err);
  }
  printf("]}\n");
  return failed ? 1 : 0;
}
