/* RTMP server side, as a pure state machine: bytes in -> events (callbacks) + bytes out.
 * No sockets, threads or clock: the caller reads the socket, feeds the bytes, writes what the
 * `send` callback is given, and closes the connection on its own timeouts.
 *
 * References: Adobe RTMP specification 1.0 (5.2 handshake, 5.3 chunking, 5.4 protocol control
 * messages, 6.2 user control, 7.2 commands), Adobe AMF0 specification, Veovera Enhanced RTMP
 * (media bodies are passed through untouched for pyrec_flv_parse_body).
 *
 * Handshake: C0 must be 3 (6 = RTMPE and anything else is MALFORMED). After C0+C1 the server
 * sends S0 + S1 (time = epoch_ms, zero version field, pseudo-random bytes) + S2 (an echo of C1).
 * The digest (FP9) handshake is NOT implemented: because S1's version field is zero, digest
 * clients (librtmp/OBS, ffmpeg) treat the reply as a simple handshake, which they accept when
 * publishing. C2 is read and not checked.
 *
 * Chunk stream: basic headers of 1-3 bytes, message header types 0-3, extended timestamps,
 * interleaved chunk streams, messages reassembled up to limits.max_message_size. Timestamps:
 * type 0 is absolute; types 1/2 add their delta; a type-3 chunk that starts a new message adds
 * the previous header's timestamp field (for a type-0 predecessor that is its absolute value:
 * the ffmpeg/librtmp convention). Deltas wrap at 32 bits. Extended timestamp on type-3
 * continuation chunks of a message whose header used one: the first time this happens the
 * next 4 bytes are compared with the header's extended value; equal means the peer repeats
 * it (ffmpeg, librtmp, spec), else the peer omits it; the decision holds for the connection.
 * A type 0/1/2 header on a chunk stream with a partial message drops the partial (counted).
 *
 * Sent to the client: after an accepted `connect`: Window Acknowledgement Size, Set Peer
 * Bandwidth (dynamic), Set Chunk Size (out_chunk_size), then `_result`. Acknowledgements when
 * the received byte count crosses the client's window (its Window Acknowledgement Size, at
 * least 4096; until it sends one: limits.window_ack_size). Ping responses. StreamBegin and
 * onStatus NetStream.Publish.Start on an accepted publish.
 *
 * Commands (AMF0 type 20, or AMF3 type 17 with its leading 0 byte): connect, releaseStream,
 * FCPublish (+ onFCPublish), createStream (ids from 1, at most PYREC_RTMP_MAX_STREAMS),
 * publish, FCUnpublish, deleteStream, closeStream, play (refused: NetStream.Play.Failed),
 * getStreamLength/_checkbw/_result/_error/onStatus/onBWDone (ignored); other commands with
 * a transaction id > 0 get `_error` NetConnection.Call.Failed. A command other than connect
 * before connect, a second connect, or a malformed command is MALFORMED.
 *
 * Data (AMF0 type 18, or AMF3 type 15 with its leading 0): "@setDataFrame","onMetaData",v
 * (or "onMetaData",v) on a publishing stream -> on_metadata(v); other data, data on streams
 * that do not publish, and data that is not valid AMF0 are ignored (counted). Audio (8) and
 * video (9) on a publishing stream -> on_media (empty ones and those on other streams are
 * ignored, counted). Aggregate messages (22) are split into their FLV tags.
 *
 * Errors are sticky: once feed() fails every later call returns the same code, the state is
 * CLOSED and wants_close is 1; pyrec_rtmp_conn_error() says what and at which stream byte
 * offset (the start of the chunk header, or of the message's first chunk). After a refusal
 * (connect/publish/play) the reply is sent, wants_close becomes 1, the state CLOSED, and the
 * rest of the input is ignored (feed returns 0). Memory per connection is bounded by the
 * limits: at most max_chunk_streams chunk streams, each buffering at most one message of at
 * most max_message_size bytes, grown as its chunks arrive (never from the declared length). */
#ifndef PYREC_RTMP_H
#define PYREC_RTMP_H

#include <stddef.h>
#include <stdint.h>

#include "pyrec/error.h"

#define PYREC_RTMP_MAX_STREAMS 8 /* createStream per connection */
#define PYREC_RTMP_BADNAME 0x4e414d45 /* on_publish return: NetStream.Publish.BadName */

enum {
  PYREC_RTMP_HANDSHAKE = 0,  /* waiting for C0/C1/C2 */
  PYREC_RTMP_CONNECTED = 1,  /* handshake done (`connect` may still be pending: see app) */
  PYREC_RTMP_PUBLISHING = 2, /* at least one stream publishes */
  PYREC_RTMP_CLOSED = 3,     /* refused, failed or ended: the caller should close */
};

typedef struct pyrec_rtmp_limits {
  uint32_t max_message_size;  /* 0 = 16 MiB (2^24-1, the field's maximum); above -> TOOBIG */
  uint32_t max_chunk_streams; /* 0 = 64 chunk stream ids in use; one more -> TOOBIG */
  uint32_t window_ack_size;   /* 0 = 2500000: sent to the client; also our initial window */
  uint32_t out_chunk_size;    /* 0 = 4096: our chunk size after connect (128..65536) */
} pyrec_rtmp_limits;

typedef struct pyrec_rtmp_callbacks {
  /* Bytes for the peer (called at most once per feed, at its end, and from eof). Non-zero
   * fails the connection with PYREC_E_IO. Required. */
  int (*send)(void *opaque, const uint8_t *data, size_t len);
  /* 0 accepts; non-zero replies `_error` NetConnection.Connect.Rejected and closes.
   * app/tcurl are NUL-terminated ("" when absent). NULL callback = accept. */
  int (*on_connect)(void *opaque, const char *app, const char *tcurl);
  /* name is the full publish name (a "?query" included: the caller strips it); type is
   * "live", "record", "append" or what the client sent. 0 accepts; PYREC_RTMP_BADNAME ->
   * NetStream.Publish.BadName; other non-zero -> NetStream.Publish.Denied; both then close.
   * NULL callback = accept. */
  int (*on_publish)(void *opaque, uint32_t stream_id, const char *name, const char *type);
  /* Once per accepted publish: FCUnpublish, closeStream, deleteStream or eof. */
  void (*on_unpublish)(void *opaque, uint32_t stream_id);
  /* Audio (8) / video (9) message bodies (FLV tag bodies), absolute 32-bit ms timestamps.
   * body is borrowed for the call. Non-zero fails the connection with PYREC_E_CALLBACK. */
  int (*on_media)(void *opaque, uint32_t stream_id, uint8_t type, uint32_t timestamp,
                  const uint8_t *body, size_t len);
  /* One AMF0 value (normally an ECMA array): the onMetaData payload, validated as AMF0. */
  void (*on_metadata)(void *opaque, uint32_t stream_id, const uint8_t *amf, size_t len);
  void *opaque;
} pyrec_rtmp_callbacks;

typedef struct pyrec_rtmp_stats {
  uint64_t bytes_in, bytes_out;
  uint64_t messages;          /* complete messages received (any type) */
  uint64_t media_messages;    /* delivered through on_media */
  uint64_t ignored_messages;  /* media/data not delivered, unknown types and commands */
  uint64_t dropped_partials;  /* partial messages dropped by Abort or a new header */
  uint64_t acks_sent;
  uint32_t chunk_streams;     /* chunk stream ids in use */
  uint32_t in_chunk_size;     /* the client's chunk size */
  uint32_t out_chunk_size;    /* ours */
  uint32_t window_ack_size;   /* the window our acknowledgements follow */
  size_t buffered;            /* bytes allocated for partial messages (capacity) */
} pyrec_rtmp_stats;

typedef struct pyrec_rtmp_conn pyrec_rtmp_conn;

/* lim may be NULL (defaults); cb is copied. Errors: INVAL (no send callback, chunk size out
 * of range), NOMEM. */
int pyrec_rtmp_conn_new(pyrec_rtmp_conn **out, const pyrec_rtmp_limits *lim,
                        const pyrec_rtmp_callbacks *cb, uint32_t epoch_ms);
/* Bytes from the peer, split anywhere: the same events and output for any split. */
int pyrec_rtmp_conn_feed(pyrec_rtmp_conn *c, const uint8_t *data, size_t len);
/* The peer went away: on_unpublish for each stream still publishing; state CLOSED. */
void pyrec_rtmp_conn_eof(pyrec_rtmp_conn *c);
int pyrec_rtmp_conn_state(const pyrec_rtmp_conn *c);
int pyrec_rtmp_conn_wants_close(const pyrec_rtmp_conn *c);
const pyrec_errinfo *pyrec_rtmp_conn_error(const pyrec_rtmp_conn *c); /* code 0 = none */
void pyrec_rtmp_conn_stats(const pyrec_rtmp_conn *c, pyrec_rtmp_stats *out);
const char *pyrec_rtmp_conn_app(const pyrec_rtmp_conn *c);   /* "" before connect */
const char *pyrec_rtmp_conn_tcurl(const pyrec_rtmp_conn *c); /* "" before connect */
/* Deferred acknowledgements: when on, crossing the peer's window only marks an
 * Acknowledgement as due (pyrec_rtmp_conn_ack_due) and the owner sends it with
 * pyrec_rtmp_conn_send_due_ack once the peer has gone quiet. A publisher that closes its socket
 * while bytes it has not read arrive makes its kernel reset the connection and drop whatever
 * it still had queued for us (the tail of the stream); one that waits for the acknowledgement
 * goes quiet at once, so it gets it a moment later. Off by default (sent when due). */
void pyrec_rtmp_conn_set_defer_acks(pyrec_rtmp_conn *c, int on);
int pyrec_rtmp_conn_ack_due(const pyrec_rtmp_conn *c);
/* Sends the due acknowledgement (sequence number: every byte received so far) through the send
 * callback; 0, or the callback's failure (as pyrec_rtmp_conn_feed reports it). */
int pyrec_rtmp_conn_send_due_ack(pyrec_rtmp_conn *c);
/* The name a stream publishes under, NULL if it does not publish. */
const char *pyrec_rtmp_conn_stream_name(const pyrec_rtmp_conn *c, uint32_t stream_id);
void pyrec_rtmp_conn_free(pyrec_rtmp_conn *c);

#endif
