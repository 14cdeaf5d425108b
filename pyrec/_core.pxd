# Declarations of the C core (csrc/include/pyrec/*.h) used by _core.pyx.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "pyrec/error.h" nogil:
    ctypedef struct pyrec_errinfo:
        int code
        int sys_errno
        int64_t offset
        char msg[200]
    const char *pyrec_errname(int code)
    const char *pyrec_strerror(int code)
    void pyrec_clearerr(pyrec_errinfo *e)
    int PYREC_E_MALFORMED
    int PYREC_E_NOTRACK_ "PYREC_E_NOTRACK"
    int PYREC_E_CALLBACK


cdef extern from "pyrec/codec.h" nogil:
    ctypedef struct pyrec_track_desc:
        int codec
        uint32_t timescale
        uint32_t width, height
        uint32_t sample_rate
        uint32_t channels
        const uint8_t *config
        size_t config_len
    const char *pyrec_codec_name(int codec)
    int pyrec_codec_from_name(const char *name)
    int pyrec_codec_media(int codec)


cdef extern from "pyrec/tsfix.h" nogil:
    int64_t PYREC_NOPTS
    ctypedef struct pyrec_tsfix_counts:
        uint64_t packets, wrap, equal, backward, jump_forward, jump_backward, pts_fixed


cdef extern from "pyrec/buf.h" nogil:
    ctypedef struct pyrec_buf:
        uint8_t *data
        size_t len
        size_t cap
        int oom
    void pyrec_buf_init(pyrec_buf *b)
    void pyrec_buf_free(pyrec_buf *b)


cdef extern from "pyrec/fmp4.h" nogil:
    unsigned PYREC_SAMPLE_KEY
    ctypedef struct pyrec_mp4_table:
        uint32_t track_id
        int64_t first_dts
        size_t nsamples
        const uint32_t *size
        const uint32_t *duration
        const int32_t *cto
        const uint8_t *key
        size_t nchunks
        const uint64_t *chunk_offset
        const uint32_t *chunk_samples
    int pyrec_mp4_progressive_moov(pyrec_buf *out, const uint8_t *moov, size_t len,
                                   const pyrec_mp4_table *tables, unsigned ntables,
                                   pyrec_errinfo *err)
    ctypedef struct pyrec_mp4w_track_stats:
        uint64_t samples
        uint64_t bytes
        int64_t first_dts
        int64_t end_dts
        uint64_t keyframes
        int skipped
    ctypedef struct pyrec_mp4w_stats:
        uint64_t file_bytes
        uint64_t fragments
        unsigned ntracks
        pyrec_mp4w_track_stats track[16]


cdef extern from "pyrec/rec.h" nogil:
    ctypedef struct pyrec_rec_opts:
        uint32_t part_duration_ms
        int continuity
        int64_t interval_ms
        int wrap_bits
        int64_t jump_threshold_ms
        uint32_t interleave_ms
        uint32_t max_fragment_bytes
        int keep_leading
        uint32_t in_timescale[16]
        int finish
    ctypedef struct pyrec_rec_file:
        uint32_t sequence
        int fd
        int64_t start_ms, end_ms
        uint64_t bytes
        uint64_t payload_bytes
        uint64_t packets
        int error
        const char *error_msg
        const pyrec_mp4w_stats *stats
    ctypedef struct pyrec_rec_callbacks:
        int (*open_file)(void *opaque, uint32_t sequence, int64_t start_ms, int *fd) noexcept
        int (*close_file)(void *opaque, const pyrec_rec_file *file) noexcept
        void *opaque
    ctypedef struct pyrec_rec_track_stats:
        pyrec_tsfix_counts ts
        uint64_t received, written, dropped_start, rejected
    ctypedef struct pyrec_rec_stats:
        unsigned ntracks
        uint32_t files
        int64_t media_ms
        uint64_t queued
        int file_open
        uint32_t file_sequence
        int64_t file_start_ms
        uint64_t file_bytes
        uint64_t file_payload_bytes
        pyrec_rec_track_stats track[16]
    ctypedef struct pyrec_rec:
        pass
    int64_t PYREC_SPLIT_NOW
    int pyrec_rec_new(pyrec_rec **out, const pyrec_track_desc *tracks, unsigned ntracks,
                      const pyrec_rec_opts *opts, const pyrec_rec_callbacks *cb,
                      pyrec_errinfo *err)
    int pyrec_rec_write_in(pyrec_rec *r, unsigned track, int64_t dts, int64_t pts,
                           unsigned flags, const uint8_t *data, size_t len)
    int pyrec_rec_write(pyrec_rec *r, unsigned track, int64_t dts, int64_t pts, unsigned flags,
                        const uint8_t *data, size_t len)
    int pyrec_rec_split(pyrec_rec *r, int64_t at_ms)
    int pyrec_rec_flush(pyrec_rec *r)
    int pyrec_rec_close(pyrec_rec *r)
    void pyrec_rec_free(pyrec_rec *r)
    void pyrec_rec_get_stats(const pyrec_rec *r, pyrec_rec_stats *out)
    const pyrec_errinfo *pyrec_rec_error(const pyrec_rec *r)


cdef extern from "pyrec/flv.h" nogil:
    ctypedef struct pyrec_flv_tag:
        uint8_t type
        uint32_t timestamp
        int64_t offset
        int codec
        const char *codec_label
        int supported
        int pkt
        int keyframe
        int32_t cts
        uint32_t sample_rate
        uint32_t channels
        const uint8_t *payload
        size_t payload_len
    ctypedef int (*pyrec_flv_tag_cb)(void *opaque, const pyrec_flv_tag *tag) noexcept
    ctypedef struct pyrec_flv_parser:
        int has_audio, has_video
        int64_t pos
        uint64_t tags
        uint64_t skipped
        pyrec_errinfo err
    void pyrec_flv_init(pyrec_flv_parser *p, int expect_header, uint32_t max_tag_size,
                        pyrec_flv_tag_cb cb, void *opaque)
    void pyrec_flv_free(pyrec_flv_parser *p)
    int pyrec_flv_feed(pyrec_flv_parser *p, const uint8_t *data, size_t len)
    int pyrec_flv_finish(pyrec_flv_parser *p)


cdef extern from "pyrec/flvsrc.h" nogil:
    ctypedef struct pyrec_flvsrc:
        pass
    ctypedef struct pyrec_flvsrc_opts:
        uint32_t probe_ms
        uint32_t max_tag_size
        uint32_t max_probe_bytes
        int has_video, has_audio
        void (*on_ready)(void *opaque, pyrec_flvsrc *s) noexcept
        void *opaque
    ctypedef struct pyrec_flvsrc_track:
        int media
        int codec
        const char *unsupported
        uint32_t sample_rate, channels
        const uint8_t *config
        size_t config_len
    ctypedef struct pyrec_flvsrc_stats:
        uint64_t tags, script_tags, ignored_tags, config_changes, bad_configs, media_bytes
        unsigned ntracks
        int ready
        unsigned sinks
    int pyrec_flvsrc_new(pyrec_flvsrc **out, const pyrec_flvsrc_opts *o, pyrec_errinfo *err)
    int pyrec_flvsrc_feed(pyrec_flvsrc *s, const uint8_t *data, size_t len)
    int pyrec_flvsrc_close(pyrec_flvsrc *s)
    void pyrec_flvsrc_free(pyrec_flvsrc *s)
    unsigned pyrec_flvsrc_ntracks(const pyrec_flvsrc *s)
    const pyrec_flvsrc_track *pyrec_flvsrc_track_info(const pyrec_flvsrc *s, unsigned i)
    int pyrec_flvsrc_attach(pyrec_flvsrc *s, uint32_t track_mask, const pyrec_rec_opts *o,
                            const pyrec_rec_callbacks *cb, int *id, pyrec_errinfo *err)
    int pyrec_flvsrc_detach(pyrec_flvsrc *s, int id)
    pyrec_rec *pyrec_flvsrc_sink(pyrec_flvsrc *s, int id)
    int pyrec_flvsrc_sink_error(const pyrec_flvsrc *s, int id, pyrec_errinfo *out)
    void pyrec_flvsrc_get_stats(const pyrec_flvsrc *s, pyrec_flvsrc_stats *out)
    ctypedef struct pyrec_flvsrc_track_stats:
        uint64_t frames, bytes, keyframes, last_key_frame, gop_frames
        uint32_t first_ts, last_ts
        int reordered
    const pyrec_errinfo *pyrec_flvsrc_error(const pyrec_flvsrc *s)


cdef extern from "pyrec/rtmp.h" nogil:
    ctypedef struct pyrec_rtmp_limits:
        uint32_t max_message_size
        uint32_t max_chunk_streams
        uint32_t window_ack_size
        uint32_t out_chunk_size
    int PYREC_RTMP_BADNAME


cdef extern from "pyrec/server.h" nogil:
    ctypedef struct pyrec_server:
        pass
    ctypedef struct pyrec_server_opts:
        const char *host
        uint16_t port
        uint32_t max_connections
        uint32_t handshake_timeout_ms
        uint32_t idle_timeout_ms
        uint32_t probe_ms
        pyrec_rtmp_limits rtmp
    ctypedef struct pyrec_server_callbacks:
        int (*on_connect)(void *opaque, uint64_t conn, const char *app, const char *tcurl,
                          const char *peer) noexcept
        int (*on_publish)(void *opaque, uint64_t conn, uint64_t key, const char *app,
                          const char *name, const char *query) noexcept
        void (*on_stream_ready)(void *opaque, uint64_t key) noexcept
        void (*on_stream_closing)(void *opaque, uint64_t key) noexcept
        void (*on_stream_end)(void *opaque, uint64_t key, const char *reason) noexcept
        void (*on_log)(void *opaque, int level, const char *msg) noexcept
        void *opaque
    ctypedef struct pyrec_server_stats:
        uint64_t accepted, refused, closed
        uint32_t connections
        uint32_t streams
        uint64_t bytes_in
        uint64_t media_messages
        uint64_t errors
        uint64_t lag_samples, lag_sum_us, lag_max_us
        uint64_t lag_hist[20]
    int pyrec_server_new(pyrec_server **out, const pyrec_server_opts *o,
                         const pyrec_server_callbacks *cb, pyrec_errinfo *err)
    uint16_t pyrec_server_port(const pyrec_server *s)
    int pyrec_server_run(pyrec_server *s)
    void pyrec_server_stop(pyrec_server *s)
    void pyrec_server_free(pyrec_server *s)
    int pyrec_server_attach(pyrec_server *s, uint64_t key, uint32_t track_mask,
                            const pyrec_rec_opts *o, const pyrec_rec_callbacks *cb, int *sink,
                            pyrec_errinfo *err)
    int pyrec_server_detach(pyrec_server *s, uint64_t key, int sink, pyrec_errinfo *err)
    int pyrec_server_split(pyrec_server *s, uint64_t key, int sink, int64_t at_ms)
    unsigned pyrec_server_tracks(pyrec_server *s, uint64_t key, pyrec_flvsrc_track *out,
                                 unsigned max)
    int pyrec_server_sink_stats(pyrec_server *s, uint64_t key, int sink, pyrec_rec_stats *out,
                                pyrec_errinfo *err)
    int pyrec_server_park(pyrec_server *s, uint64_t key, int sink, uint64_t *parked)
    int pyrec_server_adopt(pyrec_server *s, uint64_t parked, uint64_t key, uint32_t track_mask,
                           int *sink, pyrec_errinfo *err)
    int pyrec_server_discard(pyrec_server *s, uint64_t parked)
    int pyrec_server_kick(pyrec_server *s, uint64_t key)
    void pyrec_server_get_stats(pyrec_server *s, pyrec_server_stats *out)
    ctypedef struct pyrec_server_stream_counters:
        uint64_t bytes_in
        pyrec_flvsrc_stats src
        uint32_t width, height
        unsigned ntracks
        pyrec_flvsrc_track_stats track[2]
    int pyrec_server_stream_stats(pyrec_server *s, uint64_t key, pyrec_server_stream_counters *out)
    const uint64_t *pyrec_server_lag_bounds_us()
