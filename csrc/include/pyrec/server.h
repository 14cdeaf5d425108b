/* RTMP ingest server: an epoll loop (run on one thread) that owns the sockets, drives the RTMP
 * state machine, parses media in C and fans it out to the recorders attached to each stream.
 * Python is called once per event (connect, publish, stream ready, stream end, file opened
 * or closed, log line), never per packet or per read.
 *
 * Threads: pyrec_server_run() runs the loop on the calling thread. Every other function may
 * be called from any thread (they take the server's recursive lock), including from inside
 * the callbacks (which run on the loop thread with the lock held). */
#ifndef PYREC_SERVER_H
#define PYREC_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "pyrec/flvsrc.h"
#include "pyrec/rec.h"
#include "pyrec/rtmp.h"

enum { PYREC_LOG_DEBUG = 10, PYREC_LOG_INFO = 20, PYREC_LOG_WARNING = 30, PYREC_LOG_ERROR = 40 };

typedef struct pyrec_server_opts {
  const char *host;              /* bind address; NULL = "0.0.0.0" */
  uint16_t port;                 /* 0 = an ephemeral port (see pyrec_server_port) */
  uint32_t max_connections;      /* 0 = 4096 */
  uint32_t handshake_timeout_ms; /* handshake + connect + publish must finish in this; 0 = 10000 */
  uint32_t idle_timeout_ms;      /* no bytes for this long closes; 0 = 30000 */
  uint32_t probe_ms;             /* per stream: wait for announced tracks; 0 = 3000 */
  pyrec_rtmp_limits rtmp;        /* per connection */
} pyrec_server_opts;

typedef struct pyrec_server_callbacks {
  /* `connect` for app (tcUrl as sent): 0 accepts. */
  int (*on_connect)(void *opaque, uint64_t conn, const char *app, const char *tcurl,
                    const char *peer);
  /* `publish` of `name` (query removed; `query` without the '?', "" if none) in app:
   * 0 accepts and creates stream `key`; PYREC_RTMP_BADNAME / other non-zero refuse. */
  int (*on_publish)(void *opaque, uint64_t conn, uint64_t key, const char *app,
                    const char *name, const char *query);
  /* The stream's tracks are known; attach recorders now to record from its first keyframe. */
  void (*on_stream_ready)(void *opaque, uint64_t key);
  /* The stream is ending: recorders still attached after this returns are closed. Park
   * them here (pyrec_server_park) to keep their files open for a reconnect. May be NULL. */
  void (*on_stream_closing)(void *opaque, uint64_t key);
  /* The stream ended (unpublish, disconnect, error, server stop); every attached recorder
   * has been closed (files finished) before this is called. `reason` in words. */
  void (*on_stream_end)(void *opaque, uint64_t key, const char *reason);
  void (*on_log)(void *opaque, int level, const char *msg);
  void *opaque;
} pyrec_server_callbacks;

/* Loop lag: a 10 ms timer on the loop; each expiry handled records how late it was handled
 * (what any socket event waits for while the loop is busy) in a histogram whose bucket i
 * counts lags <= PYREC_LAG_BOUNDS_US[i] (the last bucket: above the last bound). */
#define PYREC_LAG_PROBE_MS 10
#define PYREC_LAG_BOUNDS_US                                                                  \
  {50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000, 50000,    \
   100000, 200000, 500000, 1000000}
#define PYREC_LAG_BUCKETS 20

typedef struct pyrec_server_stats {
  uint64_t accepted, refused, closed;  /* connections */
  uint32_t connections;                /* open now */
  uint32_t streams;                    /* publishing now */
  uint64_t bytes_in;
  uint64_t media_messages;
  uint64_t errors;                     /* connections closed for bad input or timeouts */
  uint64_t lag_samples, lag_sum_us, lag_max_us;
  uint64_t lag_hist[PYREC_LAG_BUCKETS]; /* see PYREC_LAG_BOUNDS_US */
} pyrec_server_stats;

typedef struct pyrec_server pyrec_server;

/* Binds and listens (errors: IO with errno, e.g. EADDRINUSE). */
int pyrec_server_new(pyrec_server **out, const pyrec_server_opts *o,
                     const pyrec_server_callbacks *cb, pyrec_errinfo *err);
uint16_t pyrec_server_port(const pyrec_server *s);
/* The loop; returns after pyrec_server_stop (every stream ended, every socket closed). */
int pyrec_server_run(pyrec_server *s);
void pyrec_server_stop(pyrec_server *s); /* any thread; async-signal-safe */
void pyrec_server_free(pyrec_server *s);   /* after run returned (or was never called) */

/* Control plane, by stream key. PYREC_E_NOTRACK for an unknown (ended) stream. */
int pyrec_server_attach(pyrec_server *s, uint64_t key, uint32_t track_mask,
                        const pyrec_rec_opts *o, const pyrec_rec_callbacks *cb, int *sink,
                        pyrec_errinfo *err);
int pyrec_server_detach(pyrec_server *s, uint64_t key, int sink, pyrec_errinfo *err);
int pyrec_server_split(pyrec_server *s, uint64_t key, int sink, int64_t at_ms);
/* Copy out the stream's tracks (up to max) and return how many (0 before ready). */
unsigned pyrec_server_tracks(pyrec_server *s, uint64_t key, pyrec_flvsrc_track *out,
                             unsigned max);
int pyrec_server_sink_stats(pyrec_server *s, uint64_t key, int sink, pyrec_rec_stats *out,
                            pyrec_errinfo *err);
/* Keep a recorder of an ending stream (files open) for the stream's return: returns a
 * parked id. Adopt it into the new stream, or discard it (files finished). */
int pyrec_server_park(pyrec_server *s, uint64_t key, int sink, uint64_t *parked);
int pyrec_server_adopt(pyrec_server *s, uint64_t parked, uint64_t key, uint32_t track_mask,
                       int *sink, pyrec_errinfo *err);
int pyrec_server_discard(pyrec_server *s, uint64_t parked);
/* Close the publisher's connection (stream ends as on disconnect). */
int pyrec_server_kick(pyrec_server *s, uint64_t key);
void pyrec_server_get_stats(pyrec_server *s, pyrec_server_stats *out);

/* One live stream's counters (for the stream/stats APIs; read on demand, nothing per packet). */
typedef struct pyrec_server_stream_counters {
  uint64_t bytes_in;        /* read from the publisher's connection (RTMP framing included) */
  pyrec_flvsrc_stats src;   /* its FLV source: tags, media bytes, tracks */
  uint32_t width, height;   /* the video track's picture size from its config; 0 when unknown */
  unsigned ntracks;
  pyrec_flvsrc_track_stats track[2]; /* by track id */
} pyrec_server_stream_counters;
/* PYREC_E_NOTRACK when no such stream. */
int pyrec_server_stream_stats(pyrec_server *s, uint64_t key, pyrec_server_stream_counters *out);
/* PYREC_LAG_BOUNDS_US as an array of PYREC_LAG_BUCKETS - 1 bounds (for bindings). */
const uint64_t *pyrec_server_lag_bounds_us(void);

#endif
