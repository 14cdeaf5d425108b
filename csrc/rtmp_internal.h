/* RTMP internals shared by rtmp_handshake.c, rtmp_chunk.c, rtmp_conn.c and rtmp_cmd.c. */
#ifndef PYREC_RTMP_INTERNAL_H
#define PYREC_RTMP_INTERNAL_H

#include "pyrec/buf.h"
#include "pyrec/error.h"
#include "pyrec/rtmp.h"

#define RTMP_HS_SIZE 1536

/* ---- handshake (rtmp_handshake.c) ------------------------------------------------------- */

typedef struct rtmp_hs {
  int st;                   /* 0 C0, 1 C1, 2 C2, 3 done */
  size_t have;              /* bytes of the current part */
  uint32_t epoch;
  uint8_t c1[RTMP_HS_SIZE];
} rtmp_hs;

void rtmp_hs_init(rtmp_hs *h, uint32_t epoch_ms);
/* Consume up to len bytes (*used says how many); appends S0+S1+S2 to out once C1 is in.
 * pos: stream offset of p[0] (for errors). */
int rtmp_hs_feed(rtmp_hs *h, const uint8_t *p, size_t len, size_t *used, pyrec_buf *out,
                 pyrec_errinfo *err, int64_t pos);
static inline int rtmp_hs_done(const rtmp_hs *h) { return h->st == 3; }

/* ---- chunk stream (rtmp_chunk.c) -------------------------------------------------------- */

typedef struct rtmp_msg {
  uint32_t csid, msid, ts, len;
  uint8_t type;
  const uint8_t *data; /* borrowed for the callback */
  int64_t offset;      /* stream offset of the message's first chunk header */
} rtmp_msg;

/* 0 = go on; -1 = stop quietly (feed returns -1); > 0 = error (already in err). */
typedef int (*rtmp_msg_cb)(void *opaque, const rtmp_msg *m);

typedef struct rtmp_cstream {
  uint32_t csid;
  uint32_t ts;       /* absolute timestamp of the current (or last) message */
  uint32_t ts_field; /* the last header's timestamp field, extended value resolved */
  uint32_t len, msid;
  uint8_t type;
  uint8_t seen;      /* a type-0 header was seen */
  uint8_t ext;       /* the last type 0/1/2 header used the extended timestamp */
  uint8_t in_msg;    /* a message is partially received */
  uint32_t have;     /* its bytes so far */
  int64_t msg_off;
  pyrec_buf payload;
} rtmp_cstream;

typedef struct rtmp_chunk_reader {
  uint32_t chunk_size; /* incoming chunk size (128 until Set Chunk Size) */
  uint32_t max_msg, max_cs;
  rtmp_cstream *cs;
  uint32_t ncs, cap_cs;
  uint32_t last; /* index of the last used chunk stream (lookup cache) */
  /* header assembly */
  uint8_t hdr[20];
  size_t hlen, hneed;
  int stage;           /* 0 basic byte, 1 headers, 2 extended timestamp, 3 body */
  int peek;            /* the 4 extended-timestamp bytes are being peeked at */
  int ext_cont;        /* extended ts on continuations: 0 unknown, 1 present, 2 absent */
  rtmp_cstream *cur;
  uint32_t chunk_left; /* payload bytes left in the current chunk */
  int64_t pos;         /* stream offset of the next byte */
  int64_t chunk_off;   /* stream offset of the current chunk header */
  int64_t limit;       /* stop when pos reaches this (ack window); < 0 = none */
  rtmp_msg_cb cb;
  void *opaque;
  pyrec_errinfo *err;
  uint64_t chunks, dropped;
} rtmp_chunk_reader;

void rtmp_chunk_init(rtmp_chunk_reader *r, uint32_t max_msg, uint32_t max_cs, rtmp_msg_cb cb,
                     void *opaque, pyrec_errinfo *err);
void rtmp_chunk_free(rtmp_chunk_reader *r);
/* Consume bytes until len or r->limit; *used says how many. 0, -1 (callback stop) or error. */
int rtmp_chunk_feed(rtmp_chunk_reader *r, const uint8_t *p, size_t len, size_t *used);
/* Abort message: drop the partial message of csid (no-op if none). */
void rtmp_chunk_abort(rtmp_chunk_reader *r, uint32_t csid);

/* Write one message as chunks (type 0 header, type 3 continuations; extended timestamp
 * repeated on continuations when used). csid 2..65599. */
void rtmp_chunk_write(pyrec_buf *out, uint32_t chunk_size, uint32_t csid, uint8_t type,
                      uint32_t msid, uint32_t ts, const uint8_t *p, size_t len);

/* ---- connection (rtmp_conn.c, rtmp_cmd.c) ---------------------------------------------- */

#define RTMP_CSID_CTRL 2
#define RTMP_CSID_CMD 3
#define RTMP_CSID_STREAM 5

typedef struct rtmp_stream {
  uint32_t id;        /* 0 = free slot */
  int publishing;
  char name[512];
} rtmp_stream;

struct pyrec_rtmp_conn {
  pyrec_rtmp_limits lim;
  pyrec_rtmp_callbacks cb;
  int state;
  int wants_close;
  int connected; /* connect accepted */
  pyrec_errinfo err;
  rtmp_hs hs;
  rtmp_chunk_reader rd;
  pyrec_buf out; /* bytes queued for send() */
  pyrec_buf tmp; /* message body being built */
  uint32_t out_chunk;  /* our chunk size in effect */
  uint32_t window;     /* acknowledgement window */
  uint64_t last_ack;   /* bytes_in at the last acknowledgement (or when one fell due) */
  int defer_acks;      /* acknowledgements wait for pyrec_rtmp_conn_send_due_ack() */
  int ack_due;         /* a window was crossed and its acknowledgement is not sent yet */
  uint32_t next_stream_id;
  rtmp_stream streams[PYREC_RTMP_MAX_STREAMS];
  char app[256];
  char tcurl[1024];
  pyrec_rtmp_stats st;
};

/* rtmp_conn.c */
void rtmp_send_msg(pyrec_rtmp_conn *c, uint32_t csid, uint8_t type, uint32_t msid,
                   const uint8_t *p, size_t len);
void rtmp_refuse(pyrec_rtmp_conn *c); /* wants_close, state CLOSED */
void rtmp_update_state(pyrec_rtmp_conn *c);
/* rtmp_cmd.c: AMF command (type 20/17) and data (18/15) messages. Same return contract as
 * rtmp_msg_cb. body/len exclude the AMF3 leading byte. */
int rtmp_on_command(pyrec_rtmp_conn *c, const rtmp_msg *m, const uint8_t *body, size_t len);
int rtmp_on_data(pyrec_rtmp_conn *c, const rtmp_msg *m, const uint8_t *body, size_t len);
rtmp_stream *rtmp_find_stream(pyrec_rtmp_conn *c, uint32_t id);
void rtmp_unpublish(pyrec_rtmp_conn *c, rtmp_stream *s);

#endif
