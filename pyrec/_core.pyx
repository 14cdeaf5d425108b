# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin bindings over the C core. The friendly API lives in pyrec.recorder / pyrec.source."""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset
from cpython.bytes cimport PyBytes_AsString, PyBytes_FromStringAndSize
import enum as _enum



class PyrecError(Exception):
    """An error from the C core: `name` (e.g. "MALFORMED"), `code`, `message`, `offset`
    (input byte offset or -1) and `errno` (for I/O errors, else 0)."""

    def __init__(self, name, code, message, offset=-1, errno=0):
        super().__init__(f"{name}: {message}")
        self.name = name
        self.code = code
        self.message = message
        self.offset = offset
        self.errno = errno


cdef object _error(int code, const pyrec_errinfo *e):
    name = pyrec_errname(code).decode()
    if e != NULL and e.code == code and e.msg[0] != 0:
        msg = e.msg.decode("utf-8", "replace")
        return PyrecError(name, code, msg, e.offset, e.sys_errno)
    return PyrecError(name, code, pyrec_strerror(code).decode(), -1, 0)


def progressive_moov(const uint8_t[::1] moov not None, list tables) -> bytes:
    """The progressive moov of a fragmented pyrec file (csrc/fmp4_moov.c): `moov` is its
    initial moov box, `tables` one tuple per track (track_id, first_dts, sizes uint32,
    durations uint32, ctos int32, keys uint8, chunk offsets uint64, chunk sample counts
    uint32), arrays C-contiguous and of equal length per sample / per chunk."""
    cdef Py_ssize_t n = len(tables), i
    if n > 64:
        raise ValueError("at most 64 tracks")
    cdef pyrec_mp4_table tabs[64]
    cdef const uint32_t[::1] sz, du, cn
    cdef const int32_t[::1] ct
    cdef const uint8_t[::1] ky
    cdef const uint64_t[::1] co
    for i in range(n):
        tid, first, sz, du, ct, ky, co, cn = tables[i]
        if (not (sz.shape[0] == du.shape[0] == ct.shape[0] == ky.shape[0])
                or co.shape[0] != cn.shape[0]):
            raise ValueError(f"track {tid}: per-sample or per-chunk arrays differ in length")
        memset(&tabs[i], 0, sizeof(pyrec_mp4_table))
        tabs[i].track_id = tid
        tabs[i].first_dts = first
        tabs[i].nsamples = sz.shape[0]
        if sz.shape[0]:
            tabs[i].size = &sz[0]
            tabs[i].duration = &du[0]
            tabs[i].cto = &ct[0]
            tabs[i].key = &ky[0]
        tabs[i].nchunks = co.shape[0]
        if co.shape[0]:
            tabs[i].chunk_offset = &co[0]
            tabs[i].chunk_samples = &cn[0]
    cdef pyrec_buf out
    cdef pyrec_errinfo err
    pyrec_buf_init(&out)
    pyrec_clearerr(&err)
    cdef int rc
    cdef const uint8_t *mp = &moov[0] if moov.shape[0] else NULL
    with nogil:
        rc = pyrec_mp4_progressive_moov(&out, mp, <size_t>moov.shape[0], tabs, <unsigned>n, &err)
    try:
        if rc:
            raise _error(rc, &err)
        return PyBytes_FromStringAndSize(<char *>out.data, <Py_ssize_t>out.len)
    finally:
        pyrec_buf_free(&out)


def codec_id(str name) -> int:
    """The C codec id for a codec name ("h264", "hevc", "aac", ...); 0 when unknown."""
    b = name.encode()
    return pyrec_codec_from_name(b)


def codec_name(int codec) -> str | None:
    cdef const char *n = pyrec_codec_name(codec)
    return None if n == NULL else n.decode()


def codec_is_video(int codec) -> bool:
    return pyrec_codec_media(codec) == 1


def error_names() -> dict:
    """{code: (name, message)} for every C error code."""
    out = {}
    cdef int c = 1
    while True:
        n = pyrec_errname(c).decode()
        if n == "UNKNOWN":
            break
        out[c] = (n, pyrec_strerror(c).decode())
        c += 1
    return out


# The one error table (csrc/include/pyrec/error.h) as an IntEnum: Err.NOTRACK == 10.
Err = _enum.IntEnum("Err", {name: code for code, (name, _msg) in error_names().items()})


def make_error(code, message) -> PyrecError:
    """A PyrecError of C error `code` (an Err) raised by Python code, with `message`."""
    return PyrecError(pyrec_errname(code).decode(), int(code), message)


cdef dict _file_dict(const pyrec_rec_file *f):
    tracks = []
    cdef unsigned i
    if f.stats != NULL:
        for i in range(f.stats.ntracks):
            t = &f.stats.track[i]
            tracks.append({"samples": t.samples, "bytes": t.bytes, "first_dts": t.first_dts,
                           "end_dts": t.end_dts, "keyframes": t.keyframes,
                           "skipped": bool(t.skipped)})
    return {"sequence": f.sequence, "fd": f.fd, "start_ms": f.start_ms, "end_ms": f.end_ms,
            "bytes": f.bytes, "payload_bytes": f.payload_bytes, "packets": f.packets,
            "error": (pyrec_errname(f.error).decode() if f.error else None),
            "error_code": f.error,
            "error_message": (f.error_msg.decode("utf-8", "replace") if f.error and f.error_msg != NULL else None),
            "fragments": (f.stats.fragments if f.stats != NULL else 0), "tracks": tracks}


cdef class _Files:
    """The file policy seen from C: opener(seq, start_ms) -> fd, closer(info dict)."""
    cdef object opener
    cdef object closer
    cdef object exc

    def __init__(self, opener, closer):
        self.opener = opener
        self.closer = closer
        self.exc = None

    def take_exception(self):
        e = self.exc
        self.exc = None
        return e


cdef int _open_cb(void *opaque, uint32_t seq, int64_t start_ms, int *fd) noexcept with gil:
    cdef _Files files = <_Files>opaque
    try:
        fd[0] = int(files.opener(seq, start_ms))
        return 0
    except BaseException as e:
        if files.exc is None:
            files.exc = e
        return -1


cdef int _close_cb(void *opaque, const pyrec_rec_file *f) noexcept with gil:
    cdef _Files files = <_Files>opaque
    try:
        files.closer(_file_dict(f))
        return 0
    except BaseException as e:
        if files.exc is None:
            files.exc = e
        return -1


cdef void _rec_opts(pyrec_rec_opts *o, dict kw):
    memset(o, 0, sizeof(pyrec_rec_opts))
    o.part_duration_ms = kw.get("part_duration_ms", 1000)
    o.continuity = 1 if kw.get("continuity", False) else 0
    o.interval_ms = kw.get("interval_ms", 0)
    o.wrap_bits = kw.get("wrap_bits", 0)
    o.jump_threshold_ms = kw.get("jump_threshold_ms", 10000)
    o.interleave_ms = kw.get("interleave_ms", 1000)
    o.max_fragment_bytes = kw.get("max_fragment_bytes", 0)
    o.keep_leading = 1 if kw.get("keep_leading", False) else 0
    for i, ts in enumerate(kw.get("in_timescale", ())[:16]):
        o.in_timescale[i] = ts
    finish = kw.get("finish", "hybrid")
    if finish not in ("hybrid", "fragmented"):
        raise ValueError(f"finish must be 'hybrid' or 'fragmented', got {finish!r}")
    o.finish = 1 if finish == "fragmented" else 0


cdef dict _stats_dict(const pyrec_rec_stats *s):
    tracks = []
    cdef unsigned i
    for i in range(s.ntracks):
        t = &s.track[i]
        tracks.append({"received": t.received, "written": t.written,
                       "dropped_start": t.dropped_start, "rejected": t.rejected,
                       "wrap": t.ts.wrap, "equal": t.ts.equal, "backward": t.ts.backward,
                       "jump_forward": t.ts.jump_forward, "jump_backward": t.ts.jump_backward,
                       "pts_fixed": t.ts.pts_fixed})
    return {"tracks": tracks, "files": s.files, "media_ms": s.media_ms, "queued": s.queued,
            "file": ({"sequence": s.file_sequence, "start_ms": s.file_start_ms,
                      "bytes": s.file_bytes, "payload_bytes": s.file_payload_bytes}
                     if s.file_open else None)}


cdef dict _rec_stats(const pyrec_rec *r):
    cdef pyrec_rec_stats s
    pyrec_rec_get_stats(r, &s)
    return _stats_dict(&s)


cdef class Recorder:
    """pyrec_rec: packets in, fMP4 files out through the opener/closer callbacks.

    tracks: list of (codec_id, timescale, width, height, sample_rate, channels, config bytes).
    """
    cdef pyrec_rec *r
    cdef _Files files
    cdef list _configs

    def __cinit__(self, list tracks, opener, closer, **kw):
        cdef pyrec_track_desc descs[16]
        cdef pyrec_rec_opts o
        cdef pyrec_rec_callbacks cb
        cdef pyrec_errinfo err
        cdef unsigned n = len(tracks)
        if n == 0 or n > 16:
            raise ValueError("a recorder takes 1 to 16 tracks")
        self.files = _Files(opener, closer)
        self._configs = []
        memset(descs, 0, sizeof(descs))
        for i, t in enumerate(tracks):
            codec, timescale, width, height, rate, channels, config = t
            config = bytes(config)
            self._configs.append(config)
            descs[i].codec = codec
            descs[i].timescale = timescale
            descs[i].width = width
            descs[i].height = height
            descs[i].sample_rate = rate
            descs[i].channels = channels
            descs[i].config = <const uint8_t *>PyBytes_AsString(config)
            descs[i].config_len = len(config)
        _rec_opts(&o, kw)
        cb.open_file = _open_cb
        cb.close_file = _close_cb
        cb.opaque = <void *>self.files
        pyrec_clearerr(&err)
        cdef int rc = pyrec_rec_new(&self.r, descs, n, &o, &cb, &err)
        if rc:
            raise _error(rc, &err)

    def __dealloc__(self):
        if self.r != NULL:
            pyrec_rec_free(self.r)
            self.r = NULL

    cdef int _check(self, int rc) except -1:
        exc = self.files.take_exception()
        if exc is not None:
            raise exc
        if rc:
            raise _error(rc, pyrec_rec_error(self.r))
        return 0

    cdef int _live(self) except -1:
        if self.r == NULL:
            raise ValueError("the recorder is closed")
        return 0

    def write(self, unsigned track, int64_t dts, object pts, const uint8_t[::1] data not None,
              bint key=False):
        self._live()
        cdef int64_t p = PYREC_NOPTS if pts is None else <int64_t>pts
        cdef size_t n = data.shape[0]
        cdef const uint8_t *ptr = &data[0] if n else NULL
        cdef int rc = pyrec_rec_write_in(self.r, track, dts, p, PYREC_SAMPLE_KEY if key else 0,
                                      ptr, n)
        self._check(rc)

    def write_batch(self, const int32_t[::1] track not None, const int64_t[::1] dts not None,
                    const int64_t[::1] pts not None, const uint8_t[::1] flags not None,
                    const int64_t[::1] sizes not None, const uint8_t[::1] payload not None):
        """Write n packets; packet i is payload[sum(sizes[:i]) : sum(sizes[:i+1])].
        Malformed packets (e.g. empty) are skipped and counted in stats()["tracks"][t]["rejected"].
        Returns the number of packets rejected."""
        self._live()
        cdef Py_ssize_t n = track.shape[0], i
        if dts.shape[0] != n or pts.shape[0] != n or flags.shape[0] != n or sizes.shape[0] != n:
            raise ValueError("track, dts, pts, flags and sizes must have the same length")
        cdef int64_t total = 0
        for i in range(n):
            if sizes[i] < 0:
                raise ValueError(f"sizes[{i}] is negative")
            total += sizes[i]
        if total > payload.shape[0]:
            raise ValueError(f"sizes add up to {total} bytes but the payload has {payload.shape[0]}")
        cdef const uint8_t *base = &payload[0] if payload.shape[0] else NULL
        cdef int64_t off = 0
        cdef int rc = 0
        cdef Py_ssize_t rejected = 0
        with nogil:
            for i in range(n):
                rc = pyrec_rec_write_in(self.r, <unsigned>track[i], dts[i], pts[i],
                                     PYREC_SAMPLE_KEY if (flags[i] & 1) else 0,
                                     base + off, <size_t>sizes[i])
                off += sizes[i]
                if rc == PYREC_E_MALFORMED:
                    rejected += 1
                    rc = 0
                elif rc:
                    break
        self._check(rc)
        return rejected

    def split(self, at_ms=None):
        self._live()
        self._check(pyrec_rec_split(self.r, PYREC_SPLIT_NOW if at_ms is None else <int64_t>at_ms))

    def flush(self):
        self._live()
        self._check(pyrec_rec_flush(self.r))

    def close(self):
        """Finish every open file. Safe to call twice."""
        if self.r == NULL:
            return
        cdef int rc
        with nogil:
            rc = pyrec_rec_close(self.r)
        stats = _rec_stats(self.r)
        self._check(rc)
        return stats

    def stats(self):
        self._live()
        return _rec_stats(self.r)


cdef void _ready_cb(void *opaque, pyrec_flvsrc *src) noexcept with gil:
    cdef FlvSource self = <FlvSource>opaque
    try:
        if self.on_ready is not None:
            self.on_ready(self)
    except BaseException as e:
        if self.exc is None:
            self.exc = e


cdef class FlvSource:
    """pyrec_flvsrc: one FLV stream (bytes parsed in C) fanned out to recorders (sinks).

    on_ready(source) is called once the tracks are known (before any packet is recorded):
    attach sinks there to record from the first keyframe."""
    cdef pyrec_flvsrc *s
    cdef object on_ready
    cdef object exc
    cdef dict sinks  # id -> _Files
    cdef bint closed

    def __cinit__(self, on_ready=None, *, uint32_t probe_ms=0, uint32_t max_tag_size=0,
                  bint has_video=False, bint has_audio=False):
        cdef pyrec_flvsrc_opts o
        cdef pyrec_errinfo err
        memset(&o, 0, sizeof(o))
        o.probe_ms = probe_ms
        o.max_tag_size = max_tag_size
        o.has_video = has_video
        o.has_audio = has_audio
        o.on_ready = _ready_cb
        o.opaque = <void *>self
        self.on_ready = on_ready
        self.sinks = {}
        pyrec_clearerr(&err)
        cdef int rc = pyrec_flvsrc_new(&self.s, &o, &err)
        if rc:
            raise _error(rc, &err)

    def __dealloc__(self):
        if self.s != NULL:
            pyrec_flvsrc_free(self.s)
            self.s = NULL

    cdef int _check(self, int rc) except -1:
        exc = self.exc
        if exc is not None:
            self.exc = None
            raise exc
        if rc:
            raise _error(rc, pyrec_flvsrc_error(self.s))
        return 0

    def feed(self, const uint8_t[::1] data not None):
        """Parse FLV bytes; a source error (malformed input) raises PyrecError with the
        byte offset. Sink errors do not raise here: see sink_error()."""
        if self.closed:
            raise ValueError("the source is closed")
        cdef size_t n = data.shape[0]
        cdef const uint8_t *p = &data[0] if n else NULL
        cdef int rc
        with nogil:
            rc = pyrec_flvsrc_feed(self.s, p, n)
        self._check(rc)

    def tracks(self) -> list:
        out = []
        cdef unsigned i
        cdef const pyrec_flvsrc_track *t
        for i in range(pyrec_flvsrc_ntracks(self.s)):
            t = pyrec_flvsrc_track_info(self.s, i)
            out.append({"id": i, "kind": "video" if t.media == 1 else "audio",
                        "codec": codec_name(t.codec) if t.codec else None,
                        "unsupported": t.unsupported.decode() if t.unsupported != NULL else None,
                        "sample_rate": t.sample_rate, "channels": t.channels,
                        "config": bytes(t.config[:t.config_len]) if t.config_len else b""})
        return out

    def attach(self, uint32_t track_mask, opener, closer, **kw) -> int:
        """Record the tracks of `track_mask` (bit i = track i) through a new recorder whose
        files come from opener(seq, start_ms) -> fd and go back through closer(info)."""
        cdef pyrec_rec_opts o
        cdef pyrec_rec_callbacks cb
        cdef pyrec_errinfo err
        cdef int sid = -1
        files = _Files(opener, closer)
        _rec_opts(&o, kw)
        cb.open_file = _open_cb
        cb.close_file = _close_cb
        cb.opaque = <void *>files
        pyrec_clearerr(&err)
        cdef int rc = pyrec_flvsrc_attach(self.s, track_mask, &o, &cb, &sid, &err)
        if rc:
            raise _error(rc, &err)
        self.sinks[sid] = files
        return sid

    def detach(self, int sid):
        """Finish the sink's files and remove it; raises its error (or its callback's)."""
        files = self.sinks.pop(sid, None)
        if files is None:
            raise KeyError(sid)
        cdef pyrec_errinfo err
        pyrec_flvsrc_sink_error(self.s, sid, &err)
        cdef int rc
        with nogil:
            rc = pyrec_flvsrc_detach(self.s, sid)
        exc = (<_Files>files).take_exception()
        if exc is not None:
            raise exc
        if rc:
            raise _error(rc, &err if err.code == rc else NULL)

    def sink_error(self, int sid):
        """The sink's error as an exception (its callback's exception first), or None."""
        files = self.sinks.get(sid)
        if files is None:
            raise KeyError(sid)
        exc = (<_Files>files).exc
        if exc is not None:
            return exc
        cdef pyrec_errinfo err
        cdef int rc = pyrec_flvsrc_sink_error(self.s, sid, &err)
        return _error(rc, &err) if rc else None

    def split(self, int sid, at_ms=None):
        cdef pyrec_rec *r = pyrec_flvsrc_sink(self.s, sid)
        if r == NULL:
            raise KeyError(sid)
        pyrec_rec_split(r, PYREC_SPLIT_NOW if at_ms is None else <int64_t>at_ms)

    def sink_stats(self, int sid):
        cdef pyrec_rec *r = pyrec_flvsrc_sink(self.s, sid)
        if r == NULL:
            raise KeyError(sid)
        return _rec_stats(r)

    def close(self):
        """End of input: finish every sink's files. Raises the source's own error."""
        if self.closed:
            return
        self.closed = True
        cdef int rc
        with nogil:
            rc = pyrec_flvsrc_close(self.s)
        self._check(rc)

    def stats(self):
        cdef pyrec_flvsrc_stats st
        pyrec_flvsrc_get_stats(self.s, &st)
        return {"tags": st.tags, "script_tags": st.script_tags, "ignored_tags": st.ignored_tags,
                "config_changes": st.config_changes, "bad_configs": st.bad_configs,
                "media_bytes": st.media_bytes,
                "ntracks": st.ntracks, "ready": bool(st.ready), "sinks": st.sinks}


cdef int _collect_tag(void *opaque, const pyrec_flv_tag *t) noexcept with gil:
    cdef list out = <list>opaque
    out.append({"type": t.type, "timestamp": t.timestamp, "offset": t.offset,
                "codec": codec_name(t.codec) if t.codec else None,
                "codec_label": t.codec_label.decode() if t.codec_label != NULL else None,
                "supported": bool(t.supported), "pkt": t.pkt, "keyframe": bool(t.keyframe),
                "cts": t.cts, "sample_rate": t.sample_rate, "channels": t.channels,
                "size": t.payload_len})
    return 0


def parse_flv(const uint8_t[::1] data not None) -> list:
    """Parse a whole FLV byte string with the C parser; returns the tags as dicts.
    Raises PyrecError (with the byte offset) on malformed input."""
    cdef pyrec_flv_parser p
    cdef list out = []
    pyrec_flv_init(&p, 1, 0, _collect_tag, <void *>out)
    cdef size_t n = data.shape[0]
    cdef int rc = pyrec_flv_feed(&p, &data[0] if n else NULL, n)
    if rc == 0:
        rc = pyrec_flv_finish(&p)
    try:
        if rc:
            raise _error(rc, &p.err)
    finally:
        pyrec_flv_free(&p)
    return out


# ---- RTMP ingest server ------------------------------------------------------------------

RTMP_BADNAME = PYREC_RTMP_BADNAME
# Upper bounds of the loop-lag histogram's buckets (csrc/include/pyrec/server.h); the last
# bucket counts lags above the last bound.
LAG_BOUNDS_US = tuple(pyrec_server_lag_bounds_us()[i] for i in range(19))


cdef void _handler_failed(object handler, BaseException e) noexcept:
    try:
        handler.on_callback_error(e)
    except BaseException:
        pass


cdef int _srv_connect(void *opaque, uint64_t conn, const char *app, const char *tcurl,
                      const char *peer) noexcept with gil:
    cdef Server self = <Server>opaque
    try:
        return int(self.handler.on_connect(conn, app.decode("utf-8", "replace"),
                                           tcurl.decode("utf-8", "replace"), peer.decode()))
    except BaseException as e:
        _handler_failed(self.handler, e)
        return -1


cdef int _srv_publish(void *opaque, uint64_t conn, uint64_t key, const char *app,
                      const char *name, const char *query) noexcept with gil:
    cdef Server self = <Server>opaque
    try:
        return int(self.handler.on_publish(conn, key, app.decode("utf-8", "replace"),
                                           name.decode("utf-8", "replace"),
                                           query.decode("utf-8", "replace")))
    except BaseException as e:
        _handler_failed(self.handler, e)
        return -1


cdef void _srv_ready(void *opaque, uint64_t key) noexcept with gil:
    cdef Server self = <Server>opaque
    try:
        self.handler.on_stream_ready(key)
    except BaseException as e:
        _handler_failed(self.handler, e)


cdef void _srv_closing(void *opaque, uint64_t key) noexcept with gil:
    cdef Server self = <Server>opaque
    try:
        self.handler.on_stream_closing(key)
    except BaseException as e:
        _handler_failed(self.handler, e)


cdef void _srv_end(void *opaque, uint64_t key, const char *reason) noexcept with gil:
    cdef Server self = <Server>opaque
    try:
        for k in [k for k in self.sinks if k[0] == key]:
            del self.sinks[k]
        self.handler.on_stream_end(key, reason.decode())
    except BaseException as e:
        _handler_failed(self.handler, e)


cdef void _srv_log(void *opaque, int level, const char *msg) noexcept with gil:
    cdef Server self = <Server>opaque
    try:
        self.handler.on_log(level, msg.decode("utf-8", "replace"))
    except BaseException as e:
        _handler_failed(self.handler, e)


cdef class Server:
    """pyrec_server: the RTMP ingest loop. `handler` receives the events:
    on_connect(conn, app, tcurl, peer) -> 0 to accept; on_publish(conn, key, app, name, query)
    -> 0 / RTMP_BADNAME / other; on_stream_ready(key); on_stream_end(key, reason);
    on_log(level, msg); on_callback_error(exc). They run on the loop thread."""
    cdef pyrec_server *s
    cdef object handler
    cdef dict sinks  # (key, sid) -> _Files
    cdef dict parked  # parked id -> _Files (kept alive while C holds the recorder)
    cdef bytes _host

    def __cinit__(self, handler, *, str host="0.0.0.0", int port=1935,
                  uint32_t max_connections=0, uint32_t handshake_timeout_ms=0,
                  uint32_t idle_timeout_ms=0, uint32_t probe_ms=0,
                  uint32_t max_message_size=0, uint32_t max_chunk_streams=0):
        cdef pyrec_server_opts o
        cdef pyrec_server_callbacks cb
        cdef pyrec_errinfo err
        memset(&o, 0, sizeof(o))
        self._host = host.encode()
        o.host = self._host
        o.port = port
        o.max_connections = max_connections
        o.handshake_timeout_ms = handshake_timeout_ms
        o.idle_timeout_ms = idle_timeout_ms
        o.probe_ms = probe_ms
        o.rtmp.max_message_size = max_message_size
        o.rtmp.max_chunk_streams = max_chunk_streams
        cb.on_connect = _srv_connect
        cb.on_publish = _srv_publish
        cb.on_stream_ready = _srv_ready
        cb.on_stream_closing = _srv_closing
        cb.on_stream_end = _srv_end
        cb.on_log = _srv_log
        cb.opaque = <void *>self
        self.handler = handler
        self.sinks = {}
        self.parked = {}
        pyrec_clearerr(&err)
        cdef int rc = pyrec_server_new(&self.s, &o, &cb, &err)
        if rc:
            raise _error(rc, &err)

    def __dealloc__(self):
        if self.s != NULL:
            pyrec_server_free(self.s)
            self.s = NULL

    @property
    def port(self) -> int:
        return pyrec_server_port(self.s)

    def run(self):
        """The event loop; returns after stop() (every stream ended, files finished)."""
        cdef int rc
        with nogil:
            rc = pyrec_server_run(self.s)
        if rc:
            raise _error(rc, NULL)

    def stop(self):
        pyrec_server_stop(self.s)

    def attach(self, uint64_t key, uint32_t track_mask, opener, closer, **kw) -> int:
        cdef pyrec_rec_opts o
        cdef pyrec_rec_callbacks cb
        cdef pyrec_errinfo err
        cdef int sid = -1
        cdef int rc
        files = _Files(opener, closer)
        _rec_opts(&o, kw)
        cb.open_file = _open_cb
        cb.close_file = _close_cb
        cb.opaque = <void *>files
        pyrec_clearerr(&err)
        with nogil:
            rc = pyrec_server_attach(self.s, key, track_mask, &o, &cb, &sid, &err)
        if rc:
            raise _error(rc, &err)
        self.sinks[(key, sid)] = files
        return sid

    def detach(self, uint64_t key, int sid):
        """Finish the recording's files; raises its error (its callback's exception first)."""
        files = self.sinks.pop((key, sid), None)
        cdef pyrec_errinfo err
        cdef int rc
        pyrec_clearerr(&err)
        with nogil:
            rc = pyrec_server_detach(self.s, key, sid, &err)
        if files is not None:
            exc = (<_Files>files).take_exception()
            if exc is not None:
                raise exc
        if rc:
            raise _error(rc, &err if err.code == rc else NULL)

    def split(self, uint64_t key, int sid, at_ms=None):
        cdef int64_t at = PYREC_SPLIT_NOW if at_ms is None else <int64_t>at_ms
        cdef int rc
        with nogil:
            rc = pyrec_server_split(self.s, key, sid, at)
        if rc:
            raise _error(rc, NULL)

    def tracks(self, uint64_t key) -> list:
        cdef pyrec_flvsrc_track t[2]
        cdef unsigned n, i
        with nogil:
            n = pyrec_server_tracks(self.s, key, t, 2)
        out = []
        for i in range(n):
            out.append({"id": i, "kind": "video" if t[i].media == 1 else "audio",
                        "codec": codec_name(t[i].codec) if t[i].codec else None,
                        "unsupported": t[i].unsupported.decode() if t[i].unsupported != NULL else None,
                        "sample_rate": t[i].sample_rate, "channels": t[i].channels})
        return out

    def sink_stats(self, uint64_t key, int sid):
        """(stats dict, error or None) of a recording."""
        cdef pyrec_rec_stats st
        cdef pyrec_errinfo err
        cdef int rc
        pyrec_clearerr(&err)
        with nogil:
            rc = pyrec_server_sink_stats(self.s, key, sid, &st, &err)
        if rc == PYREC_E_NOTRACK_:
            raise KeyError((key, sid))
        files = self.sinks.get((key, sid))
        exc = (<_Files>files).exc if files is not None else None
        if exc is None and rc:
            exc = _error(rc, &err)
        return (_stats_dict(&st), exc)

    def park(self, uint64_t key, int sid) -> int:
        """Keep the recording of an ending stream open (call from on_stream_closing)."""
        cdef uint64_t pid = 0
        cdef int rc
        with nogil:
            rc = pyrec_server_park(self.s, key, sid, &pid)
        if rc:
            raise _error(rc, NULL)
        self.parked[pid] = self.sinks.pop((key, sid), None)
        return pid

    def adopt(self, uint64_t pid, uint64_t key, uint32_t track_mask) -> int:
        """Attach a parked recording to a (returning) stream; its file goes on."""
        cdef pyrec_errinfo err
        cdef int sid = -1
        cdef int rc
        pyrec_clearerr(&err)
        with nogil:
            rc = pyrec_server_adopt(self.s, pid, key, track_mask, &sid, &err)
        if rc:
            raise _error(rc, &err)
        self.sinks[(key, sid)] = self.parked.pop(pid, None)
        return sid

    def discard(self, uint64_t pid):
        """Finish a parked recording's files."""
        cdef int rc
        with nogil:
            rc = pyrec_server_discard(self.s, pid)
        files = self.parked.pop(pid, None)
        if files is not None:
            exc = (<_Files>files).take_exception()
            if exc is not None:
                raise exc
        if rc and rc != PYREC_E_NOTRACK_:
            raise _error(rc, NULL)

    def kick(self, uint64_t key):
        cdef int rc
        with nogil:
            rc = pyrec_server_kick(self.s, key)
        return rc == 0

    def stream_stats(self, uint64_t key):
        """One live stream's counters (bytes read from its publisher, its FLV source's tags
        and media bytes, the video picture size from its config), or None when it is gone."""
        cdef pyrec_server_stream_counters st
        cdef int rc
        with nogil:
            rc = pyrec_server_stream_stats(self.s, key, &st)
        if rc:
            return None
        cdef unsigned i
        cdef pyrec_flvsrc_track_stats *t
        tracks = []
        for i in range(st.ntracks):
            t = &st.track[i]
            tracks.append({"frames": t.frames, "bytes": t.bytes, "keyframes": t.keyframes,
                           "gop_frames": t.gop_frames, "first_ts": t.first_ts,
                           "last_ts": t.last_ts, "reordered": bool(t.reordered)})
        return {"bytes_in": st.bytes_in, "tags": st.src.tags, "media_bytes": st.src.media_bytes,
                "ready": bool(st.src.ready), "sinks": st.src.sinks,
                "width": st.width, "height": st.height, "tracks": tracks}

    def stats(self) -> dict:
        cdef pyrec_server_stats st
        with nogil:
            pyrec_server_get_stats(self.s, &st)
        return {"accepted": st.accepted, "refused": st.refused, "closed": st.closed,
                "connections": st.connections, "streams": st.streams,
                "bytes_in": st.bytes_in, "media_messages": st.media_messages,
                "errors": st.errors, "lag_samples": st.lag_samples,
                "lag_sum_us": st.lag_sum_us, "lag_max_us": st.lag_max_us,
                "lag_hist": [st.lag_hist[i] for i in range(20)], "lag_bounds_us": LAG_BOUNDS_US}
