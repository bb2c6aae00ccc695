/*
 * sfu.media._native: the per-packet part of forwarding RTP, in C.
 *
 * - RtpRewriter: a consumer's sequence number and timestamp rewrite, its NACK
 *   history and counters (the same as sfu/media/rtp_rewriter.py, which runs
 *   when this extension is not built);
 * - SrtpSender: writes the header and the tail into its buffer, protects it
 *   and sendto()s it, for one transport;
 * - send_all: the rewriters of one consumer layout, in one call;
 * - RtpReceiver, ProducerPath, RtpStreamState: the receive side, from the
 *   socket to send_all, for the common packet (see "The receive path"
 *   below); every other packet goes to the Python path unchanged.
 *
 * Why: measured side by side on loopback (see README, "Benchmark"), a C loop
 * of srtp_protect + sendto costs 10-13 us per forwarded packet; the same two
 * calls made from Python (struct.pack_into, a memoryview copy, a cffi call,
 * socket.sendto) cost 20-25 us, and the rewrite before them 8-10 us more.
 * What is not per packet stays in Python: which consumers get a packet,
 * keyframe waits, where numbering continues after a pause, RTCP, loss and
 * NACKs, RTX, new SSRCs.
 *
 * What it does not do: crypto. It calls libsrtp's srtp_protect and
 * srtp_unprotect, the copy inside pylibsrtp, through function pointers and
 * session pointers that sfu/aiortc_adapter.py takes from pylibsrtp's cffi
 * binding. The sessions are the ones pylibsrtp created from the DTLS-SRTP
 * keys, so the Python path (RTX, RTCP) and this one share their rollover
 * counters and replay state.
 *
 * Optional: setup.py builds it with optional=True, and without it the server
 * runs the same path in Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "_sockaddr.h"

/* libsrtp: srtp_err_status_t srtp_protect(srtp_t ctx, void *rtp_hdr, int *len_ptr) */
typedef int (*srtp_protect_fn)(void *ctx, void *rtp_hdr, int *len_ptr);

/* As pylibsrtp's session buffer, so that both paths take the same packets. */
#define BUFFER_SIZE 1500
#define MAX_TRAILER 144 /* SRTP_MAX_TRAILER_LEN: tag + MKI */
#define MAX_PACKET (BUFFER_SIZE - MAX_TRAILER)

/* Results of send_fields below 0. */
#define PROTECT_FAILED -1
#define SEND_FAILED -2

typedef struct {
    PyObject_HEAD
    srtp_protect_fn protect;
    void *session;
    int fd;
    struct sockaddr_storage address;
    socklen_t address_length;
    PyObject *owner; /* keeps the pylibsrtp session and the socket alive */
    /* Counters, read by the transport for its stats. */
    unsigned long long packets;          /* protected (sent, or refused by the socket) */
    unsigned long long bytes;            /* sent */
    unsigned long long protect_failures; /* too long, or refused by libsrtp */
    unsigned long long send_failures;    /* refused by the socket */
    unsigned char buffer[BUFFER_SIZE];
} SrtpSender;

static int
SrtpSender_init(SrtpSender *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"protect", "session", "fd", "host", "port", "owner", NULL};
    unsigned long long protect, session;
    int fd, port;
    const char *host;
    PyObject *owner;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "KKisiO", keywords, &protect, &session, &fd,
                                     &host, &port, &owner))
        return -1;
    if (!protect || !session || fd < 0 || port <= 0 || port > 65535) {
        PyErr_SetString(PyExc_ValueError, "invalid SRTP session, socket or port");
        return -1;
    }
    memset(&self->address, 0, sizeof(self->address));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&self->address;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&self->address;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        self->address_length = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        self->address_length = sizeof(*v6);
    } else {
        PyErr_Format(PyExc_ValueError, "not a numeric IP address: %s", host);
        return -1;
    }
    self->protect = (srtp_protect_fn)(uintptr_t)protect;
    self->session = (void *)(uintptr_t)session;
    self->fd = fd;
    Py_XSETREF(self->owner, Py_NewRef(owner));
    return 0;
}

static void
SrtpSender_dealloc(SrtpSender *self)
{
    Py_XDECREF(self->owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline void
put32(unsigned char *p, unsigned long v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Write header + tail into the sender's buffer, protect, send, count.
 * Returns the bytes sent, PROTECT_FAILED or SEND_FAILED. */
static long
srtp_sender_send(SrtpSender *self, unsigned long b0, unsigned long b1, unsigned long seq,
                 unsigned long timestamp, unsigned long ssrc, const void *tail, Py_ssize_t tail_length)
{
    long result;
    if (tail_length > MAX_PACKET - 12) {
        result = PROTECT_FAILED;
    } else {
        unsigned char *p = self->buffer;
        p[0] = (unsigned char)b0;
        p[1] = (unsigned char)b1;
        p[2] = (unsigned char)(seq >> 8);
        p[3] = (unsigned char)seq;
        put32(p + 4, timestamp);
        put32(p + 8, ssrc);
        memcpy(p + 12, tail, (size_t)tail_length);
        int length = 12 + (int)tail_length;
        if (self->protect(self->session, p, &length) != 0) {
            result = PROTECT_FAILED;
        } else {
            ssize_t sent = sendto(self->fd, p, (size_t)length, MSG_DONTWAIT,
                                  (struct sockaddr *)&self->address, self->address_length);
            result = sent < 0 ? SEND_FAILED : (long)sent;
        }
    }
    if (result >= 0) {
        self->packets++;
        self->bytes += (unsigned long long)result;
    } else if (result == SEND_FAILED) {
        self->packets++;
        self->send_failures++;
    } else {
        self->protect_failures++;
    }
    return result;
}

/* send_fields(b0, b1, seq, timestamp, ssrc, tail) -> int
 *
 * Writes the 12-byte RTP header from its fields and ``tail`` (CSRCs, header
 * extensions, payload) into this sender's buffer, protects it in place and
 * sends it. Returns the bytes sent, PROTECT_FAILED (too long or refused by
 * libsrtp) or SEND_FAILED (a full socket buffer, an unreachable peer), and
 * counts each in this sender's counters. */
static PyObject *
SrtpSender_send_fields(SrtpSender *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "send_fields takes 6 arguments");
        return NULL;
    }
    if (self->protect == NULL) {
        PyErr_SetString(PyExc_ValueError, "SrtpSender was not initialised");
        return NULL;
    }
    unsigned long fields[5];
    for (int i = 0; i < 5; i++) {
        fields[i] = PyLong_AsUnsignedLongMask(args[i]);
        if (fields[i] == (unsigned long)-1 && PyErr_Occurred())
            return NULL;
    }
    Py_buffer tail;
    if (PyObject_GetBuffer(args[5], &tail, PyBUF_SIMPLE) < 0)
        return NULL;
    long result = srtp_sender_send(self, fields[0], fields[1], fields[2], fields[3], fields[4],
                                   tail.buf, tail.len);
    PyBuffer_Release(&tail);
    return PyLong_FromLong(result);
}

static PyMethodDef SrtpSender_methods[] = {
    {"send_fields", (PyCFunction)(void (*)(void))SrtpSender_send_fields, METH_FASTCALL,
     "Protect header(b0, b1, seq, timestamp, ssrc) + tail and send it; bytes sent or < 0."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef SrtpSender_members[] = {
    {"packets_sent", T_ULONGLONG, offsetof(SrtpSender, packets), READONLY,
     "packets protected (sent, or refused by the socket)"},
    {"bytes_sent", T_ULONGLONG, offsetof(SrtpSender, bytes), READONLY, "bytes sent"},
    {"protect_failures", T_ULONGLONG, offsetof(SrtpSender, protect_failures), READONLY,
     "packets too long or refused by libsrtp"},
    {"send_failures", T_ULONGLONG, offsetof(SrtpSender, send_failures), READONLY,
     "packets refused by the socket"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject SrtpSenderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu.media._native.SrtpSender",
    .tp_basicsize = sizeof(SrtpSender),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SRTP-protect and send RTP packets to one address from one socket.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SrtpSender_init,
    .tp_dealloc = (destructor)SrtpSender_dealloc,
    .tp_methods = SrtpSender_methods,
    .tp_members = SrtpSender_members,
};


/* ------------------------------------------------------------------------
 * RtpRewriter: a consumer's per-packet rewrite (sfu/media/rtp_rewriter.py
 * has the same in Python, and says what each field means). The consumer
 * keeps everything that is not per packet: keyframe waits, where numbering
 * continues after a sync, pause and resume.
 */

#define HISTORY_SIZE 1024 /* a power of two, as rtp_rewriter.HISTORY_SIZE */
#define MAX_LATE_PACKETS 64 /* loss_repair.REPAIR_WINDOW; test_loss_repair holds them equal */
#define SYNC_TRAIL 0x1000 /* as rtp_rewriter.SYNC_TRAIL: how far sync_seq trails */

typedef struct {
    PyObject_HEAD
    char active;
    char needs_sync;
    int sync_seq;
    int seq_offset;
    unsigned int ts_offset;
    int max_out_seq;
    unsigned int last_out_ts;
    double last_send_time;
    unsigned int ssrc;
    unsigned long long packets_sent;
    unsigned long long bytes_sent;
    unsigned long long packets_dropped_late;
    PyObject *send;          /* a callable send_fields(b0, b1, seq, ts, ssrc, tail) */
    SrtpSender *srtp_sender; /* or the C sender itself, called directly */
    /* What went out under each out seq, for NACKs; the tails are shared. */
    int history_seq[HISTORY_SIZE];
    unsigned char history_b0[HISTORY_SIZE];
    unsigned char history_b1[HISTORY_SIZE];
    unsigned int history_ts[HISTORY_SIZE];
    PyObject *history_tail[HISTORY_SIZE];
} RtpRewriter;

static int
RtpRewriter_init(RtpRewriter *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"ssrc", NULL};
    unsigned int ssrc;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "I", keywords, &ssrc))
        return -1;
    self->ssrc = ssrc;
    self->needs_sync = 1;
    for (int i = 0; i < HISTORY_SIZE; i++) {
        self->history_seq[i] = -1;
        Py_CLEAR(self->history_tail[i]);
    }
    return 0;
}

static int
RtpRewriter_traverse(RtpRewriter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->send);
    Py_VISIT(self->srtp_sender);
    /* Tails are bytes in practice, but any buffer is accepted. */
    for (int i = 0; i < HISTORY_SIZE; i++)
        Py_VISIT(self->history_tail[i]);
    return 0;
}

static int
RtpRewriter_clear(RtpRewriter *self)
{
    Py_CLEAR(self->send);
    Py_CLEAR(self->srtp_sender);
    for (int i = 0; i < HISTORY_SIZE; i++) {
        self->history_seq[i] = -1;
        Py_CLEAR(self->history_tail[i]);
    }
    return 0;
}

static void
RtpRewriter_dealloc(RtpRewriter *self)
{
    PyObject_GC_UnTrack(self);
    RtpRewriter_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* use_sender(send): send_fields of the transport's C sender (called
 * directly), or any callable with its signature. None: send nothing. */
static PyObject *
RtpRewriter_use_sender(RtpRewriter *self, PyObject *send)
{
    Py_CLEAR(self->send);
    Py_CLEAR(self->srtp_sender);
    if (send == Py_None)
        Py_RETURN_NONE;
    if (!PyCallable_Check(send)) {
        PyErr_SetString(PyExc_TypeError, "the sender must be callable");
        return NULL;
    }
    PyObject *bound_to = PyCFunction_Check(send) ? PyCFunction_GET_SELF(send) : NULL;
    if (bound_to != NULL && Py_IS_TYPE(bound_to, &SrtpSenderType)) {
        if (((SrtpSender *)bound_to)->protect == NULL) {
            PyErr_SetString(PyExc_ValueError, "SrtpSender was not initialised");
            return NULL;
        }
        self->srtp_sender = (SrtpSender *)Py_NewRef(bound_to);
    }
    else
        self->send = Py_NewRef(send);
    Py_RETURN_NONE;
}

/* The part of send() after the active and sync checks: drop late packets,
 * record the history, count, send. ``args`` are send()'s arguments (the
 * Python sender gets b0, b1 and tail as they came); ``tail`` is the buffer of
 * args[2]. Returns 0, or -1 with an exception set (the Python sender raised). */
static int
rewriter_forward(RtpRewriter *self, PyObject *const *args, unsigned long b0, unsigned long b1,
                 const Py_buffer *tail, unsigned long seq, unsigned long timestamp, double now)
{
    if (((seq - (unsigned long)self->sync_seq) & 0xFFFF) >= 0x8000)
        return 0; /* older than the sync point: its number would collide */
    int out_seq = (int)((seq - (unsigned long)self->seq_offset) & 0xFFFF);
    int behind = (int)(((unsigned int)self->max_out_seq - (unsigned int)out_seq) & 0xFFFF);
    if (MAX_LATE_PACKETS < behind && behind < 0x8000) {
        self->packets_dropped_late++;
        return 0;
    }
    unsigned int out_ts = (unsigned int)((timestamp - self->ts_offset) & 0xFFFFFFFFUL);
    int slot = out_seq & (HISTORY_SIZE - 1);
    self->history_seq[slot] = out_seq;
    self->history_b0[slot] = (unsigned char)b0;
    self->history_b1[slot] = (unsigned char)b1;
    self->history_ts[slot] = out_ts;
    Py_XSETREF(self->history_tail[slot], Py_NewRef(args[2]));
    if ((((unsigned int)out_seq - (unsigned int)self->max_out_seq) & 0xFFFF) < 0x8000) {
        self->max_out_seq = out_seq;
        self->last_out_ts = out_ts;
        self->last_send_time = now;
        /* Else, half the sequence space on, every packet looks older than it. */
        if (((seq - (unsigned long)self->sync_seq) & 0xFFFF) > SYNC_TRAIL)
            self->sync_seq = (int)((seq - SYNC_TRAIL) & 0xFFFF);
    }
    self->packets_sent++;
    self->bytes_sent += 12 + (unsigned long long)tail->len;
    if (self->srtp_sender != NULL) {
        srtp_sender_send(self->srtp_sender, b0, b1, (unsigned long)out_seq, out_ts, self->ssrc,
                         tail->buf, tail->len);
        return 0;
    }
    if (self->send == NULL)
        return 0;
    PyObject *call_args[6] = {args[0], args[1], NULL, NULL, NULL, args[2]};
    call_args[2] = PyLong_FromLong(out_seq);
    call_args[3] = PyLong_FromUnsignedLong(out_ts);
    call_args[4] = PyLong_FromUnsignedLong(self->ssrc);
    PyObject *result = NULL;
    /* Our own reference for the call: the callee may replace the sender. */
    PyObject *send = Py_NewRef(self->send);
    if (call_args[2] && call_args[3] && call_args[4])
        result = PyObject_Vectorcall(send, call_args, 6, NULL);
    Py_DECREF(send);
    Py_XDECREF(call_args[2]);
    Py_XDECREF(call_args[3]);
    Py_XDECREF(call_args[4]);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* send()'s arguments: b0, b1, seq, timestamp (masked), now, and the buffer of
 * the tail (release it after). One conversion at a time: none may run with an
 * exception set. */
static int
parse_send_args(PyObject *const *args, unsigned long *b0, unsigned long *b1, Py_buffer *tail,
                unsigned long *seq, unsigned long *timestamp, double *now)
{
    if ((*b0 = PyLong_AsUnsignedLongMask(args[0])) == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if ((*b1 = PyLong_AsUnsignedLongMask(args[1])) == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if ((*seq = PyLong_AsUnsignedLongMask(args[3])) == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if ((*timestamp = PyLong_AsUnsignedLongMask(args[4])) == (unsigned long)-1 && PyErr_Occurred())
        return -1;
    if ((*now = PyFloat_AsDouble(args[5])) == -1.0 && PyErr_Occurred())
        return -1;
    return PyObject_GetBuffer(args[2], tail, PyBUF_SIMPLE);
}

/* send(b0, b1, tail, seq, timestamp, now) -> bool
 *
 * Rewrite and send one packet (consumer.Consumer.send_rtp). True when the
 * consumer must sync first: nothing was done, and it calls again after. */
static PyObject *
RtpRewriter_send(RtpRewriter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "send takes 6 arguments");
        return NULL;
    }
    if (!self->active)
        Py_RETURN_FALSE;
    if (self->needs_sync)
        Py_RETURN_TRUE;
    unsigned long b0, b1, seq, timestamp;
    double now;
    Py_buffer tail;
    if (parse_send_args(args, &b0, &b1, &tail, &seq, &timestamp, &now) < 0)
        return NULL;
    int status = rewriter_forward(self, args, b0, b1, &tail, seq, timestamp, now);
    PyBuffer_Release(&tail);
    if (status < 0)
        return NULL;
    Py_RETURN_FALSE;
}

/* sent(out_seq) -> (b0, b1, out_ts, tail) | None: what went out under out_seq. */
static PyObject *
RtpRewriter_sent(RtpRewriter *self, PyObject *arg)
{
    long out_seq = PyLong_AsLong(arg);
    if (out_seq == -1 && PyErr_Occurred())
        return NULL;
    if (out_seq < 0 || out_seq > 0xFFFF)
        Py_RETURN_NONE;
    int slot = (int)out_seq & (HISTORY_SIZE - 1);
    if (self->history_seq[slot] != out_seq || self->history_tail[slot] == NULL)
        Py_RETURN_NONE;
    return Py_BuildValue("(iiIO)", self->history_b0[slot], self->history_b1[slot],
                         self->history_ts[slot], self->history_tail[slot]);
}

/* close(): drop the sender and the history (the consumer closed). */
static PyObject *
RtpRewriter_close(RtpRewriter *self, PyObject *Py_UNUSED(ignored))
{
    self->active = 0;
    RtpRewriter_clear(self);
    Py_RETURN_NONE;
}

static PyMethodDef RtpRewriter_methods[] = {
    {"send", (PyCFunction)(void (*)(void))RtpRewriter_send, METH_FASTCALL,
     "Rewrite and send one packet; True when the consumer must sync first."},
    {"use_sender", (PyCFunction)RtpRewriter_use_sender, METH_O, "Send through this."},
    {"sent", (PyCFunction)RtpRewriter_sent, METH_O, "(b0, b1, out_ts, tail) sent as out_seq."},
    {"close", (PyCFunction)RtpRewriter_close, METH_NOARGS, "Drop the sender and the history."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef RtpRewriter_members[] = {
    {"active", T_BOOL, offsetof(RtpRewriter, active), 0, NULL},
    {"needs_sync", T_BOOL, offsetof(RtpRewriter, needs_sync), 0, NULL},
    {"sync_seq", T_INT, offsetof(RtpRewriter, sync_seq), 0, NULL},
    {"seq_offset", T_INT, offsetof(RtpRewriter, seq_offset), 0, NULL},
    {"ts_offset", T_UINT, offsetof(RtpRewriter, ts_offset), 0, NULL},
    {"max_out_seq", T_INT, offsetof(RtpRewriter, max_out_seq), 0, NULL},
    {"last_out_ts", T_UINT, offsetof(RtpRewriter, last_out_ts), 0, NULL},
    {"last_send_time", T_DOUBLE, offsetof(RtpRewriter, last_send_time), 0, NULL},
    {"ssrc", T_UINT, offsetof(RtpRewriter, ssrc), READONLY, NULL},
    {"packets_sent", T_ULONGLONG, offsetof(RtpRewriter, packets_sent), READONLY, NULL},
    {"bytes_sent", T_ULONGLONG, offsetof(RtpRewriter, bytes_sent), READONLY, NULL},
    {"packets_dropped_late", T_ULONGLONG, offsetof(RtpRewriter, packets_dropped_late), READONLY,
     NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RtpRewriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu.media._native.RtpRewriter",
    .tp_basicsize = sizeof(RtpRewriter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A consumer's per-packet RTP rewrite, history and send.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RtpRewriter_init,
    .tp_dealloc = (destructor)RtpRewriter_dealloc,
    .tp_traverse = (traverseproc)RtpRewriter_traverse,
    .tp_clear = (inquiry)RtpRewriter_clear,
    .tp_methods = RtpRewriter_methods,
    .tp_members = RtpRewriter_members,
};

static PyObject *send_name; /* "send", interned at import */

/* The exception now set, taken out as a value with its traceback. */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value != NULL && traceback != NULL)
        PyException_SetTraceback(value, traceback);
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

/* send_all(rewriters, b0, b1, tail, seq, timestamp, now)
 *     -> list[tuple[int, BaseException | None]] | None
 *
 * rewriter.send(b0, b1, tail, seq, timestamp, now) for every rewriter of a
 * tuple (one consumer layout), without a Python call per consumer.
 * Returns None when every call returned False (the common case), else the
 * (index, None) of those that returned True (must sync) and the
 * (index, exception) of those that raised an Exception: one consumer's
 * failure does not stop the others. Items that are not this module's RtpRewriter are called
 * through their own send method. Bad arguments raise before any send. */
static PyObject *send_all_core(PyObject *rewriters, PyObject *const *send_args,
                               unsigned long b0, unsigned long b1, Py_buffer *tail,
                               unsigned long seq, unsigned long timestamp, double now);

static PyObject *
native_send_all(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "send_all takes 7 arguments");
        return NULL;
    }
    PyObject *rewriters = args[0];
    if (!PyTuple_Check(rewriters)) {
        PyErr_SetString(PyExc_TypeError, "send_all takes a tuple of rewriters");
        return NULL;
    }
    PyObject *const *send_args = args + 1; /* b0, b1, tail, seq, timestamp, now */
    unsigned long b0, b1, seq, timestamp;
    double now;
    Py_buffer tail;
    if (parse_send_args(send_args, &b0, &b1, &tail, &seq, &timestamp, &now) < 0)
        return NULL;
    PyObject *result = send_all_core(rewriters, send_args, b0, b1, &tail, seq, timestamp, now);
    PyBuffer_Release(&tail);
    return result;
}

/* send_all's loop, its arguments parsed: ``send_args`` are the objects
 * (b0, b1, tail, seq, timestamp, now), ``tail`` the buffer of send_args[2]
 * (the caller releases it). */
static PyObject *
send_all_core(PyObject *rewriters, PyObject *const *send_args, unsigned long b0,
              unsigned long b1, Py_buffer *tail, unsigned long seq, unsigned long timestamp,
              double now)
{
    PyObject *pending = NULL;
    Py_ssize_t count = PyTuple_GET_SIZE(rewriters);
    for (Py_ssize_t index = 0; index < count; index++) {
        PyObject *item = PyTuple_GET_ITEM(rewriters, index);
        int status; /* 0: done, 1: must sync, -1: raised */
        if (Py_IS_TYPE(item, &RtpRewriterType)) {
            RtpRewriter *rewriter = (RtpRewriter *)item;
            if (!rewriter->active)
                continue;
            if (rewriter->needs_sync)
                status = 1;
            else
                status = rewriter_forward(rewriter, send_args, b0, b1, tail, seq, timestamp, now);
        }
        else {
            /* The Python twin, or anything with its send. */
            PyObject *call_args[7] = {item,         send_args[0], send_args[1], send_args[2],
                                      send_args[3], send_args[4], send_args[5]};
            PyObject *result = PyObject_VectorcallMethod(send_name, call_args, 7, NULL);
            status = result == NULL ? -1 : PyObject_IsTrue(result);
            Py_XDECREF(result);
        }
        if (status == 0)
            continue;
        if (status < 0 && !PyErr_ExceptionMatches(PyExc_Exception))
            goto fail; /* KeyboardInterrupt, SystemExit: not one consumer's failure */
        PyObject *error = status < 0 ? take_exception() : Py_NewRef(Py_None);
        PyObject *entry = Py_BuildValue("(nN)", index, error);
        if (entry == NULL)
            goto fail;
        if (pending == NULL && (pending = PyList_New(0)) == NULL) {
            Py_DECREF(entry);
            goto fail;
        }
        int appended = PyList_Append(pending, entry);
        Py_DECREF(entry);
        if (appended < 0)
            goto fail;
    }
    if (pending == NULL)
        Py_RETURN_NONE;
    return pending;
fail:
    Py_XDECREF(pending);
    return NULL;
}

/* ------------------------------------------------------------------------
 * The receive path (the per-incoming-packet part, after measuring that a
 * Python frame per datagram costs more than the parsing it does: see
 * README, "Benchmark"). A WebRtcTransport's RtpReceiver is the event loop's
 * reader of its socket. It drains the socket and takes the common case all
 * the way in C: an SRTP packet from the selected ICE tuple, of a known media
 * SSRC, next in sequence, with one-byte header extensions. It unprotects it
 * (libsrtp, through pylibsrtp's session), accounts it in the stream's
 * receive statistics, maps the payload type and extension ids, builds each
 * consumer layout's tail and calls send_all_core for that layout.
 *
 * Everything else goes to Python unchanged, before any state is touched:
 * datagrams from other addresses, STUN, DTLS, RTCP (on_datagram), and
 * unprotected RTP it does not take (on_rtp): unknown SSRCs, RTX, gaps,
 * duplicates, reordering, restarts, two-byte extensions, bad headers. So
 * the Python path stays the reference, and the C path is only ever its
 * shortcut for packets whose outcome is the same.
 */

/* libsrtp: srtp_err_status_t srtp_unprotect(srtp_t ctx, void *srtp_hdr, int *len_ptr) */
typedef int (*srtp_unprotect_fn)(void *ctx, void *srtp_hdr, int *len_ptr);

/* RtpStreamState: the fields of rtp_stream.RtpStreamRecv (its base class
 * when this module is used), so that both paths update the same numbers. */
typedef struct {
    PyObject_HEAD
    unsigned int ssrc;
    int clock_rate;
    char started;
    int base_seq;
    int max_seq;
    long long cycles;
    long long received;
    long long bytes_received;
    long long expected_prior;
    long long received_prior;
    double transit;
    double jitter;
    PyObject *missing;
    unsigned long long last_sr_ntp;
    unsigned int last_sr_rtp;
    double last_sr_arrival;
    double last_packet_time;
    int fraction_lost;
} RtpStreamState;

static int
RtpStreamState_traverse(RtpStreamState *self, visitproc visit, void *arg)
{
    Py_VISIT(self->missing);
    return 0;
}

static int
RtpStreamState_clear(RtpStreamState *self)
{
    Py_CLEAR(self->missing);
    return 0;
}

/* Also the base part of a Python subclass's dealloc (subtype_dealloc, which
 * releases the subclass itself). */
static void
RtpStreamState_dealloc(RtpStreamState *self)
{
    PyObject_GC_UnTrack(self);
    RtpStreamState_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef RtpStreamState_members[] = {
    {"ssrc", T_UINT, offsetof(RtpStreamState, ssrc), 0, NULL},
    {"clock_rate", T_INT, offsetof(RtpStreamState, clock_rate), 0, NULL},
    {"started", T_BOOL, offsetof(RtpStreamState, started), 0, NULL},
    {"base_seq", T_INT, offsetof(RtpStreamState, base_seq), 0, NULL},
    {"max_seq", T_INT, offsetof(RtpStreamState, max_seq), 0, NULL},
    {"cycles", T_LONGLONG, offsetof(RtpStreamState, cycles), 0, NULL},
    {"received", T_LONGLONG, offsetof(RtpStreamState, received), 0, NULL},
    {"bytes_received", T_LONGLONG, offsetof(RtpStreamState, bytes_received), 0, NULL},
    {"expected_prior", T_LONGLONG, offsetof(RtpStreamState, expected_prior), 0, NULL},
    {"received_prior", T_LONGLONG, offsetof(RtpStreamState, received_prior), 0, NULL},
    {"transit", T_DOUBLE, offsetof(RtpStreamState, transit), 0, NULL},
    {"jitter", T_DOUBLE, offsetof(RtpStreamState, jitter), 0, NULL},
    {"missing", T_OBJECT_EX, offsetof(RtpStreamState, missing), 0, NULL},
    {"last_sr_ntp", T_ULONGLONG, offsetof(RtpStreamState, last_sr_ntp), 0, NULL},
    {"last_sr_rtp", T_UINT, offsetof(RtpStreamState, last_sr_rtp), 0, NULL},
    {"last_sr_arrival", T_DOUBLE, offsetof(RtpStreamState, last_sr_arrival), 0, NULL},
    {"last_packet_time", T_DOUBLE, offsetof(RtpStreamState, last_packet_time), 0, NULL},
    {"fraction_lost", T_INT, offsetof(RtpStreamState, fraction_lost), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RtpStreamStateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu.media._native.RtpStreamState",
    .tp_basicsize = sizeof(RtpStreamState),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The fields of one incoming stream's receive statistics (rtp_stream.py).",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)RtpStreamState_dealloc,
    .tp_traverse = (traverseproc)RtpStreamState_traverse,
    .tp_clear = (inquiry)RtpStreamState_clear,
    .tp_members = RtpStreamState_members,
};

/* ProducerPath: what a producer's packets need on the C path. */
#define MAX_LAYOUTS 16
#define MAX_ELEMENTS 16

typedef struct {
    PyObject_HEAD
    PyObject *producer;
    PyObject *audio_level_sink; /* sink(producer, level), or None */
    PyObject *follow_up;        /* producer._follow_up(...), see path_receive */
    PyObject *fail;             /* producer.fail(error) */
    PyObject *layouts;          /* ((mask, rewriters, consumers), ...), as set_layouts got it */
    unsigned int layout_masks[MAX_LAYOUTS]; /* bit n: router extension id n */
    int layout_count;
    short pt_map[128];               /* client payload type -> router's, or -1 */
    unsigned char ext_forward[16];   /* client one-byte id -> router id, or 0 */
    int abs_send_time_id;
    int audio_level_id;
    char paused;
    char enabled; /* 0: every packet to Python (ids the one-byte form cannot carry) */
    unsigned long long packets_received;
    unsigned long long bytes_received;
} ProducerPath;

static int
ProducerPath_traverse(ProducerPath *self, visitproc visit, void *arg)
{
    Py_VISIT(self->producer);
    Py_VISIT(self->audio_level_sink);
    Py_VISIT(self->follow_up);
    Py_VISIT(self->fail);
    Py_VISIT(self->layouts);
    return 0;
}

static int
ProducerPath_clear(ProducerPath *self)
{
    Py_CLEAR(self->producer);
    Py_CLEAR(self->audio_level_sink);
    Py_CLEAR(self->follow_up);
    Py_CLEAR(self->fail);
    Py_CLEAR(self->layouts);
    self->layout_count = 0;
    self->enabled = 0;
    return 0;
}

static void
ProducerPath_dealloc(ProducerPath *self)
{
    PyObject_GC_UnTrack(self);
    ProducerPath_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* ProducerPath(producer, pt_map, ext_forward, abs_send_time_id, audio_level_id,
 *              follow_up, fail): pt_map and ext_forward are dicts of int -> int. */
static int
ProducerPath_init(ProducerPath *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"producer",       "pt_map",    "ext_forward", "abs_send_time_id",
                               "audio_level_id", "follow_up", "fail",        NULL};
    PyObject *producer, *pt_map, *ext_forward, *follow_up, *fail;
    int abs_send_time_id, audio_level_id;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO!O!iiOO", keywords, &producer, &PyDict_Type,
                                     &pt_map, &PyDict_Type, &ext_forward, &abs_send_time_id,
                                     &audio_level_id, &follow_up, &fail))
        return -1;
    if (!PyCallable_Check(follow_up) || !PyCallable_Check(fail)) {
        PyErr_SetString(PyExc_TypeError, "follow_up and fail must be callable");
        return -1;
    }
    ProducerPath_clear(self);
    for (int i = 0; i < 128; i++)
        self->pt_map[i] = -1;
    memset(self->ext_forward, 0, sizeof(self->ext_forward));
    self->enabled = 1;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(pt_map, &pos, &key, &value)) {
        long from = PyLong_AsLong(key), to = PyLong_AsLong(value);
        if ((from == -1 || to == -1) && PyErr_Occurred())
            return -1;
        if (from >= 0 && from < 128 && to >= 0 && to < 128)
            self->pt_map[from] = (short)to;
    }
    pos = 0;
    while (PyDict_Next(ext_forward, &pos, &key, &value)) {
        long from = PyLong_AsLong(key), to = PyLong_AsLong(value);
        if ((from == -1 || to == -1) && PyErr_Occurred())
            return -1;
        if (from > 0 && from < 15 && to > 0 && to < 15)
            self->ext_forward[from] = (unsigned char)to;
        else if (to <= 0 || to >= 15)
            self->enabled = 0; /* needs the two-byte form out: Python builds it */
        /* else a client id above 14: only a two-byte block carries it, which
         * goes to Python anyway. */
    }
    self->abs_send_time_id = abs_send_time_id;
    self->audio_level_id = audio_level_id;
    self->producer = Py_NewRef(producer);
    self->follow_up = Py_NewRef(follow_up);
    self->fail = Py_NewRef(fail);
    self->audio_level_sink = Py_NewRef(Py_None);
    return 0;
}

/* set_layouts(((extension id mask, rewriters, consumers), ...)): the
 * producer's send groups; a follow-up gets the layout's consumers tuple. */
static PyObject *
ProducerPath_set_layouts(ProducerPath *self, PyObject *layouts)
{
    if (!PyTuple_Check(layouts)) {
        PyErr_SetString(PyExc_TypeError, "set_layouts takes a tuple");
        return NULL;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(layouts);
    unsigned int masks[MAX_LAYOUTS];
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyTuple_GET_ITEM(layouts, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3 ||
            !PyTuple_Check(PyTuple_GET_ITEM(item, 1)) ||
            !PyTuple_Check(PyTuple_GET_ITEM(item, 2))) {
            PyErr_SetString(PyExc_TypeError, "a layout is (mask, rewriters, consumers)");
            return NULL;
        }
        unsigned long mask = PyLong_AsUnsignedLongMask(PyTuple_GET_ITEM(item, 0));
        if (mask == (unsigned long)-1 && PyErr_Occurred())
            return NULL;
        if (i < MAX_LAYOUTS)
            masks[i] = (unsigned int)(mask & 0x7FFF);
    }
    if (count > MAX_LAYOUTS) {
        /* More layouts than we keep masks for: Python sends them all. */
        Py_CLEAR(self->layouts);
        self->layout_count = -1;
        Py_RETURN_NONE;
    }
    memcpy(self->layout_masks, masks, sizeof(unsigned int) * (size_t)count);
    Py_XSETREF(self->layouts, Py_NewRef(layouts));
    self->layout_count = (int)count;
    Py_RETURN_NONE;
}

static PyObject *
ProducerPath_close(ProducerPath *self, PyObject *Py_UNUSED(ignored))
{
    ProducerPath_clear(self);
    Py_RETURN_NONE;
}

static int path_receive(ProducerPath *path, RtpStreamState *stream, unsigned char *p, int length,
                        double now);

/* receive(stream, packet, now) -> bool: the C path for one unprotected packet
 * (for tests: the receiver calls it directly). False: not taken, nothing was
 * touched, the Python path must take it. */
static PyObject *
ProducerPath_receive(ProducerPath *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyObject_TypeCheck(args[0], &RtpStreamStateType)) {
        PyErr_SetString(PyExc_TypeError, "receive takes (stream, packet, now)");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[2]);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    Py_buffer packet;
    if (PyObject_GetBuffer(args[1], &packet, PyBUF_SIMPLE) < 0)
        return NULL;
    unsigned char copy[BUFFER_SIZE];
    int taken = 0;
    if (packet.len <= BUFFER_SIZE) {
        memcpy(copy, packet.buf, (size_t)packet.len);
        taken = path_receive(self, (RtpStreamState *)args[0], copy, (int)packet.len, now);
    }
    PyBuffer_Release(&packet);
    if (taken < 0)
        return NULL;
    return PyBool_FromLong(taken);
}

static PyMethodDef ProducerPath_methods[] = {
    {"set_layouts", (PyCFunction)ProducerPath_set_layouts, METH_O,
     "The send groups: ((extension id mask, rewriters, consumers), ...)."},
    {"receive", (PyCFunction)(void (*)(void))ProducerPath_receive, METH_FASTCALL,
     "Take one unprotected packet on the C path; False: left to Python."},
    {"close", (PyCFunction)ProducerPath_close, METH_NOARGS, "Drop every reference."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef ProducerPath_members[] = {
    {"paused", T_BOOL, offsetof(ProducerPath, paused), 0, NULL},
    {"enabled", T_BOOL, offsetof(ProducerPath, enabled), READONLY, NULL},
    {"audio_level_sink", T_OBJECT, offsetof(ProducerPath, audio_level_sink), 0, NULL},
    {"packets_received", T_ULONGLONG, offsetof(ProducerPath, packets_received), 0, NULL},
    {"bytes_received", T_ULONGLONG, offsetof(ProducerPath, bytes_received), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ProducerPathType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu.media._native.ProducerPath",
    .tp_basicsize = sizeof(ProducerPath),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A producer's mappings and consumer layouts, for the C receive path.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ProducerPath_init,
    .tp_dealloc = (destructor)ProducerPath_dealloc,
    .tp_traverse = (traverseproc)ProducerPath_traverse,
    .tp_clear = (inquiry)ProducerPath_clear,
    .tp_methods = ProducerPath_methods,
    .tp_members = ProducerPath_members,
};

/* A Python callback raised ``Exception``: the producer's failure, as
 * transport._receive_rtp does with it (0). Anything else (KeyboardInterrupt,
 * SystemExit) goes on up (-1). */
static int
path_failed(ProducerPath *path)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *error = take_exception();
    if (path->fail == NULL) {
        Py_XDECREF(error);
        return 0;
    }
    PyObject *fail = Py_NewRef(path->fail);
    PyObject *result = PyObject_CallOneArg(fail, error);
    Py_DECREF(fail);
    Py_XDECREF(error);
    if (result == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return -1;
        PyErr_WriteUnraisable(path->producer);
        return 0;
    }
    Py_DECREF(result);
    return 0;
}

typedef struct {
    int router_id;
    const unsigned char *value;
    int size;
} Element;

/* The C path for one unprotected RTP packet ``p`` of ``stream``. Returns 0
 * when the packet is left to Python (nothing touched), 1 when it was taken,
 * -1 with an exception that is not an Exception. The conditions are
 * producer.Producer.receive_rtp's for a packet that needs none of its rare
 * branches; each step mirrors that code. */
static int
path_receive(ProducerPath *path, RtpStreamState *stream, unsigned char *p, int length, double now)
{
    if (!path->enabled || path->layout_count < 0 || !stream->started || length < 12)
        return 0;
    /* rtp.header_bounds; a bad header is Python's to count */
    unsigned int b0 = p[0];
    if ((b0 >> 6) != 2)
        return 0;
    int csrc_end = 12 + 4 * (int)(b0 & 0x0F);
    if (csrc_end > length)
        return 0;
    int ext_start = csrc_end, ext_end = csrc_end;
    if (b0 & 0x10) {
        if (csrc_end + 4 > length)
            return 0;
        ext_start = csrc_end + 4;
        ext_end = ext_start + 4 * ((p[csrc_end + 2] << 8) | p[csrc_end + 3]);
        if (ext_end > length)
            return 0;
    }
    int payload_end = length;
    if (b0 & 0x20) {
        int padding = p[length - 1];
        if (padding == 0 || ext_end + padding > length)
            return 0;
        payload_end -= padding;
    }
    int router_pt = path->pt_map[p[1] & 0x7F];
    if (router_pt < 0)
        return 0;
    int seq = (p[2] << 8) | p[3];
    /* RtpStreamRecv.receive: only the next packet in order (no loss to note,
     * no NACK to send, no duplicate, late packet or restart). */
    if (((seq - stream->max_seq) & 0xFFFF) != 1)
        return 0;
    unsigned long timestamp = ((unsigned long)p[4] << 24) | ((unsigned long)p[5] << 16) |
                              ((unsigned long)p[6] << 8) | (unsigned long)p[7];

    /* The elements of a one-byte block (rtp.iter_one_byte_extensions). */
    struct {
        int id, start, size;
    } found[MAX_ELEMENTS];
    int found_count = 0;
    if (ext_end > ext_start) {
        int profile = (p[csrc_end] << 8) | p[csrc_end + 1];
        if (profile == 0xBEDE) {
            int pos = ext_start;
            while (pos < ext_end) {
                int byte = p[pos];
                if (byte == 0) {
                    pos++;
                    continue;
                }
                int id = byte >> 4;
                if (id == 15)
                    break;
                int size = (byte & 0x0F) + 1, start = pos + 1;
                if (start + size > ext_end)
                    break;
                if (found_count == MAX_ELEMENTS)
                    return 0;
                found[found_count].id = id;
                found[found_count].start = start;
                found[found_count].size = size;
                found_count++;
                pos = start + size;
            }
        }
        else if ((profile & 0xFFF0) == 0x1000)
            return 0; /* two-byte elements: Python */
    }

    /* Taken: from here on, as Producer.receive_rtp. */
    path->packets_received++;
    path->bytes_received += (unsigned long long)length;
    stream->last_packet_time = now;
    if (seq < stream->max_seq)
        stream->cycles += 0x10000;
    stream->max_seq = seq;
    double transit = now * stream->clock_rate - (double)timestamp;
    double d = transit - stream->transit;
    stream->transit = transit;
    stream->jitter += ((d < 0 ? -d : d) - stream->jitter) / 16.0;
    stream->received++;
    stream->bytes_received += length;

    Element elements[MAX_ELEMENTS];
    int element_count = 0;
    unsigned char abs_send_time[MAX_ELEMENTS][3];
    for (int i = 0; i < found_count; i++) {
        int id = found[i].id;
        if (id == path->audio_level_id && path->audio_level_sink != NULL &&
            path->audio_level_sink != Py_None) {
            PyObject *sink = Py_NewRef(path->audio_level_sink);
            PyObject *producer = Py_NewRef(path->producer);
            PyObject *level = PyLong_FromLong(p[found[i].start] & 0x7F);
            PyObject *result = NULL;
            if (level != NULL) {
                PyObject *call_args[2] = {producer, level};
                result = PyObject_Vectorcall(sink, call_args, 2, NULL);
                Py_DECREF(level);
            }
            Py_DECREF(producer);
            Py_DECREF(sink);
            if (result == NULL)
                return path_failed(path) < 0 ? -1 : 1;
            Py_DECREF(result);
            if (!path->enabled)
                return 1; /* the sink closed the producer */
        }
        int router_id = path->ext_forward[id];
        if (router_id == 0)
            continue;
        Element *element = &elements[element_count++];
        element->router_id = router_id;
        if (id == path->abs_send_time_id) {
            /* rtp.abs_send_time_now: 6.18 fixed-point seconds of the wall clock */
            struct timespec wall;
            clock_gettime(CLOCK_REALTIME, &wall);
            double seconds = (double)wall.tv_sec + (double)wall.tv_nsec / 1e9;
            unsigned long value = (unsigned long)(long long)(seconds * (double)(1 << 18)) & 0xFFFFFF;
            abs_send_time[i][0] = (unsigned char)(value >> 16);
            abs_send_time[i][1] = (unsigned char)(value >> 8);
            abs_send_time[i][2] = (unsigned char)value;
            element->value = abs_send_time[i];
            element->size = 3;
        }
        else {
            element->value = p + found[i].start;
            element->size = found[i].size;
        }
    }

    if (path->paused || path->layout_count == 0 || path->layouts == NULL)
        return 1;
    int status = 1;
    /* Our own copy of the layouts and their masks: a callback (a Python
     * sender, a follow-up) may replace them while we go through them. */
    PyObject *layouts = Py_NewRef(path->layouts);
    int layout_count = path->layout_count;
    unsigned int layout_masks[MAX_LAYOUTS];
    memcpy(layout_masks, path->layout_masks, sizeof(unsigned int) * (size_t)layout_count);
    PyObject *b1 = PyLong_FromLong((long)((p[1] & 0x80) | router_pt));
    PyObject *seq_object = PyLong_FromLong(seq);
    PyObject *timestamp_object = PyLong_FromUnsignedLong(timestamp);
    PyObject *now_object = PyFloat_FromDouble(now);
    PyObject *packet = NULL; /* made for a follow-up only */
    if (b1 == NULL || seq_object == NULL || timestamp_object == NULL || now_object == NULL)
        goto error;
    int csrc_length = csrc_end - 12, payload_length = length - ext_end;
    for (int index = 0; index < layout_count && index < PyTuple_GET_SIZE(layouts); index++) {
        /* rtp.build_extension_block of the elements this layout takes */
        unsigned char block[4 + MAX_ELEMENTS * 17 + 3];
        int block_length = 0;
        unsigned int mask = layout_masks[index];
        for (int i = 0; i < element_count; i++) {
            if (!(mask & (1u << elements[i].router_id)))
                continue;
            if (block_length == 0) {
                block[0] = 0xBE;
                block[1] = 0xDE;
                block_length = 4;
            }
            block[block_length++] =
                (unsigned char)((elements[i].router_id << 4) | (elements[i].size - 1));
            memcpy(block + block_length, elements[i].value, (size_t)elements[i].size);
            block_length += elements[i].size;
        }
        if (block_length) {
            while (block_length % 4)
                block[block_length++] = 0;
            block[2] = (unsigned char)(((block_length - 4) / 4) >> 8);
            block[3] = (unsigned char)((block_length - 4) / 4);
        }
        PyObject *tail =
            PyBytes_FromStringAndSize(NULL, csrc_length + block_length + payload_length);
        if (tail == NULL)
            goto error;
        char *out = PyBytes_AS_STRING(tail);
        memcpy(out, p + 12, (size_t)csrc_length);
        memcpy(out + csrc_length, block, (size_t)block_length);
        memcpy(out + csrc_length + block_length, p + ext_end, (size_t)payload_length);
        unsigned long out_b0 = (b0 & 0xEF) | (block_length ? 0x10 : 0);
        PyObject *b0_object = PyLong_FromUnsignedLong(out_b0);
        if (b0_object == NULL) {
            Py_DECREF(tail);
            goto error;
        }
        PyObject *send_args[6] = {b0_object, b1, tail, seq_object, timestamp_object, now_object};
        Py_buffer tail_buffer;
        tail_buffer.buf = PyBytes_AS_STRING(tail);
        tail_buffer.len = PyBytes_GET_SIZE(tail);
        PyObject *layout = PyTuple_GET_ITEM(layouts, index);
        PyObject *pending =
            send_all_core(PyTuple_GET_ITEM(layout, 1), send_args, out_b0,
                          (unsigned long)((p[1] & 0x80) | router_pt), &tail_buffer,
                          (unsigned long)seq, timestamp, now);
        if (pending == NULL) {
            Py_DECREF(b0_object);
            Py_DECREF(tail);
            goto error; /* not an Exception: send_all_core keeps those */
        }
        if (pending != Py_None && path->follow_up != NULL) {
            /* Consumers to sync first, or whose send failed: Python, with the
             * packet for its keyframe check. */
            PyObject *result = NULL;
            if (packet == NULL)
                packet = PyBytes_FromStringAndSize((const char *)p, length);
            PyObject *ext_end_object = PyLong_FromLong(ext_end);
            PyObject *payload_end_object = PyLong_FromLong(payload_end);
            if (packet && ext_end_object && payload_end_object) {
                PyObject *call_args[11] = {PyTuple_GET_ITEM(layout, 2), pending, b0_object,
                                           b1,               tail,       seq_object,
                                           timestamp_object, packet,     ext_end_object,
                                           payload_end_object, now_object};
                PyObject *follow_up = Py_NewRef(path->follow_up);
                result = PyObject_Vectorcall(follow_up, call_args, 11, NULL);
                Py_DECREF(follow_up);
            }
            Py_XDECREF(ext_end_object);
            Py_XDECREF(payload_end_object);
            if (result == NULL) {
                Py_DECREF(pending);
                Py_DECREF(b0_object);
                Py_DECREF(tail);
                status = path_failed(path) < 0 ? -1 : 1;
                goto done;
            }
            Py_DECREF(result);
        }
        Py_DECREF(pending);
        Py_DECREF(b0_object);
        Py_DECREF(tail);
        if (path->follow_up == NULL)
            break; /* closed by a follow-up */
    }
    goto done;
error:
    status = PyErr_ExceptionMatches(PyExc_Exception) ? (path_failed(path) < 0 ? -1 : 1) : -1;
done:
    Py_DECREF(layouts);
    Py_XDECREF(b1);
    Py_XDECREF(seq_object);
    Py_XDECREF(timestamp_object);
    Py_XDECREF(now_object);
    Py_XDECREF(packet);
    return status;
}

/* RtpReceiver: the event loop's reader of one WebRtcTransport's socket. */
#define RECEIVE_BUFFER 2048
#define DRAIN_LIMIT 64 /* datagrams per call: other readers get their turn */

typedef struct {
    unsigned int ssrc;
    ProducerPath *path;
    RtpStreamState *stream;
} SsrcEntry;

typedef struct RtpReceiver {
    PyObject_HEAD
    int fd;
    srtp_unprotect_fn unprotect;
    void *session;
    PyObject *session_owner;
    struct sockaddr_storage fast_address; /* the selected ICE tuple */
    socklen_t fast_length;                /* 0: none */
    PyObject *on_datagram; /* transport.datagram_received(data, addr) */
    PyObject *on_rtp;      /* transport's handler of an unprotected RTP packet */
    SsrcEntry *entries;
    Py_ssize_t entry_count;
    Py_ssize_t entry_capacity;
    /* Single-port mode: the shared socket's receiver reads for the
     * transports' receivers (made without a socket), found by their address. */
    struct RtpReceiver **children;
    Py_ssize_t child_count;
    Py_ssize_t child_capacity;
    unsigned long long bytes_received;
    unsigned long long rtp_packets_received;
    unsigned long long unprotect_failures;
    unsigned long long oversized;
    double last_activity;
    unsigned char buffer[RECEIVE_BUFFER];
} RtpReceiver;

static void
receiver_clear_entries(RtpReceiver *self)
{
    /* Detached first: a finalizer run by a decref may call back into us. */
    SsrcEntry *entries = self->entries;
    Py_ssize_t count = self->entry_count;
    self->entries = NULL;
    self->entry_count = self->entry_capacity = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_DECREF(entries[i].path);
        Py_DECREF(entries[i].stream);
    }
    PyMem_Free(entries);
}

static void
receiver_clear_children(RtpReceiver *self)
{
    struct RtpReceiver **children = self->children;
    Py_ssize_t count = self->child_count;
    self->children = NULL;
    self->child_count = self->child_capacity = 0;
    for (Py_ssize_t i = 0; i < count; i++)
        Py_DECREF(children[i]);
    PyMem_Free(children);
}

static int
RtpReceiver_traverse(RtpReceiver *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->child_count; i++)
        Py_VISIT(self->children[i]);
    Py_VISIT(self->session_owner);
    Py_VISIT(self->on_datagram);
    Py_VISIT(self->on_rtp);
    for (Py_ssize_t i = 0; i < self->entry_count; i++) {
        Py_VISIT(self->entries[i].path);
        Py_VISIT(self->entries[i].stream);
    }
    return 0;
}

static int
RtpReceiver_clear(RtpReceiver *self)
{
    self->fd = -1;
    self->session = NULL;
    self->fast_length = 0;
    Py_CLEAR(self->session_owner);
    Py_CLEAR(self->on_datagram);
    Py_CLEAR(self->on_rtp);
    receiver_clear_entries(self);
    receiver_clear_children(self);
    return 0;
}

static void
RtpReceiver_dealloc(RtpReceiver *self)
{
    PyObject_GC_UnTrack(self);
    RtpReceiver_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* RtpReceiver(fd, unprotect, on_datagram, on_rtp); fd -1: a transport's
 * receiver on a shared socket, which the socket's receiver reads for. */
static int
RtpReceiver_init(RtpReceiver *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"fd", "unprotect", "on_datagram", "on_rtp", NULL};
    int fd;
    unsigned long long unprotect;
    PyObject *on_datagram, *on_rtp;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iKOO", keywords, &fd, &unprotect,
                                     &on_datagram, &on_rtp))
        return -1;
    if (fd < -1 || !unprotect || !PyCallable_Check(on_datagram) || !PyCallable_Check(on_rtp)) {
        PyErr_SetString(PyExc_ValueError, "invalid socket, unprotect function or callbacks");
        return -1;
    }
    RtpReceiver_clear(self);
    self->fd = fd;
    self->unprotect = (srtp_unprotect_fn)(uintptr_t)unprotect;
    self->on_datagram = Py_NewRef(on_datagram);
    self->on_rtp = Py_NewRef(on_rtp);
    return 0;
}

/* set_session(session, owner): the srtp_t of the incoming keys (0: none
 * yet); ``owner`` keeps it alive. */
static PyObject *
RtpReceiver_set_session(RtpReceiver *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "set_session takes (session, owner)");
        return NULL;
    }
    unsigned long long session = PyLong_AsUnsignedLongLong(args[0]);
    if (session == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    self->session = (void *)(uintptr_t)session;
    Py_XSETREF(self->session_owner, session ? Py_NewRef(args[1]) : NULL);
    Py_RETURN_NONE;
}

/* set_address(address): the tuple whose SRTP the C path takes (a validated
 * ICE tuple: (host, port) or (host, port, 0, 0)); None: none. */
static PyObject *
RtpReceiver_set_address(RtpReceiver *self, PyObject *address)
{
    self->fast_length = 0;
    if (address == Py_None)
        Py_RETURN_NONE;
    const char *host;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    if (!PyArg_ParseTuple(address, "si|II", &host, &port, &flowinfo, &scope_id))
        return NULL;
    struct sockaddr_storage storage;
    memset(&storage, 0, sizeof(storage));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&storage;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&storage;
    if (port <= 0 || port > 65535 || flowinfo || scope_id)
        Py_RETURN_NONE; /* not one the C path takes: Python does */
    if (PyTuple_GET_SIZE(address) == 2 && inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        memcpy(&self->fast_address, &storage, sizeof(storage));
        self->fast_length = sizeof(*v4);
    }
    else if (PyTuple_GET_SIZE(address) == 4 && inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        memcpy(&self->fast_address, &storage, sizeof(storage));
        self->fast_length = sizeof(*v6);
    }
    Py_RETURN_NONE;
}

/* add_stream(ssrc, path, stream): packets of ``ssrc`` go to that producer's
 * path and stream. */
static PyObject *
RtpReceiver_add_stream(RtpReceiver *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !Py_IS_TYPE(args[1], &ProducerPathType) ||
        !PyObject_TypeCheck(args[2], &RtpStreamStateType)) {
        PyErr_SetString(PyExc_TypeError, "add_stream takes (ssrc, ProducerPath, stream)");
        return NULL;
    }
    unsigned long ssrc = PyLong_AsUnsignedLongMask(args[0]);
    if (ssrc == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    for (Py_ssize_t i = 0; i < self->entry_count; i++) {
        if (self->entries[i].ssrc == (unsigned int)ssrc) {
            Py_SETREF(self->entries[i].path, (ProducerPath *)Py_NewRef(args[1]));
            Py_SETREF(self->entries[i].stream, (RtpStreamState *)Py_NewRef(args[2]));
            Py_RETURN_NONE;
        }
    }
    if (self->entry_count == self->entry_capacity) {
        Py_ssize_t capacity = self->entry_capacity ? self->entry_capacity * 2 : 8;
        SsrcEntry *entries = PyMem_Realloc(self->entries, sizeof(SsrcEntry) * (size_t)capacity);
        if (entries == NULL)
            return PyErr_NoMemory();
        self->entries = entries;
        self->entry_capacity = capacity;
    }
    SsrcEntry *entry = &self->entries[self->entry_count++];
    entry->ssrc = (unsigned int)ssrc;
    entry->path = (ProducerPath *)Py_NewRef(args[1]);
    entry->stream = (RtpStreamState *)Py_NewRef(args[2]);
    Py_RETURN_NONE;
}

static PyObject *
RtpReceiver_remove_stream(RtpReceiver *self, PyObject *arg)
{
    unsigned long ssrc = PyLong_AsUnsignedLongMask(arg);
    if (ssrc == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    for (Py_ssize_t i = 0; i < self->entry_count; i++) {
        if (self->entries[i].ssrc == (unsigned int)ssrc) {
            ProducerPath *path = self->entries[i].path;
            RtpStreamState *stream = self->entries[i].stream;
            self->entries[i] = self->entries[--self->entry_count];
            Py_DECREF(path);
            Py_DECREF(stream);
            break;
        }
    }
    Py_RETURN_NONE;
}

static PyTypeObject RtpReceiverType;

/* add_child(receiver): read for a transport's receiver on this shared socket. */
static PyObject *
RtpReceiver_add_child(RtpReceiver *self, PyObject *child)
{
    if (!Py_IS_TYPE(child, &RtpReceiverType) || child == (PyObject *)self) {
        PyErr_SetString(PyExc_TypeError, "add_child takes another RtpReceiver");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < self->child_count; i++)
        if (self->children[i] == (RtpReceiver *)child)
            Py_RETURN_NONE;
    if (self->child_count == self->child_capacity) {
        Py_ssize_t capacity = self->child_capacity ? self->child_capacity * 2 : 16;
        struct RtpReceiver **children =
            PyMem_Realloc(self->children, sizeof(*children) * (size_t)capacity);
        if (children == NULL)
            return PyErr_NoMemory();
        self->children = children;
        self->child_capacity = capacity;
    }
    self->children[self->child_count++] = (RtpReceiver *)Py_NewRef(child);
    Py_RETURN_NONE;
}

static PyObject *
RtpReceiver_remove_child(RtpReceiver *self, PyObject *child)
{
    for (Py_ssize_t i = 0; i < self->child_count; i++) {
        if (self->children[i] == (RtpReceiver *)child) {
            self->children[i] = self->children[--self->child_count];
            Py_DECREF(child);
            break;
        }
    }
    Py_RETURN_NONE;
}

static int
is_fast_address(const RtpReceiver *self, const struct sockaddr_storage *address)
{
    if (self->fast_length == 0 || address->ss_family != self->fast_address.ss_family)
        return 0;
    if (address->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)address;
        const struct sockaddr_in *b = (const struct sockaddr_in *)&self->fast_address;
        return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)address;
    const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)&self->fast_address;
    return a->sin6_port == b->sin6_port && a->sin6_flowinfo == 0 && a->sin6_scope_id == 0 &&
           memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
}

/* Call a Python handler with a packet; its own exceptions it handles (the
 * transport contains them), so one that gets here is not an Exception, or
 * is reported and dropped. Returns -1 to stop draining. */
static int
receiver_call(PyObject *handler, PyObject *packet, PyObject *address)
{
    /* Our own reference: the call may close the receiver, which drops its own. */
    PyObject *callee = Py_NewRef(handler);
    PyObject *result = NULL;
    if (packet != NULL && !(address == NULL && PyErr_Occurred())) {
        PyObject *call_args[2] = {packet, address};
        result = PyObject_Vectorcall(callee, call_args, address ? 2 : 1, NULL);
    }
    Py_XDECREF(packet);
    Py_XDECREF(address);
    int status = 0;
    if (result != NULL)
        Py_DECREF(result);
    else if (!PyErr_ExceptionMatches(PyExc_Exception))
        status = -1;
    else
        PyErr_WriteUnraisable(callee);
    Py_DECREF(callee);
    return status;
}

/* One SRTP packet from ``target``'s selected tuple (its session is set):
 * unprotect it, and take it on the C path or hand it to target's on_rtp.
 * Returns -1 to stop draining (an exception that is not an Exception). */
static int
receiver_take(RtpReceiver *target, unsigned char *p, int length)
{
    target->bytes_received += (unsigned long long)length;
    if (length > BUFFER_SIZE || target->unprotect(target->session, p, &length) != 0) {
        /* as SrtpCodec.unprotect: longer than its buffer, or refused */
        target->unprotect_failures++;
        return 0;
    }
    ProducerPath *path = NULL;
    RtpStreamState *stream = NULL;
    if (length >= 12) {
        unsigned int ssrc = ((unsigned int)p[8] << 24) | ((unsigned int)p[9] << 16) |
                            ((unsigned int)p[10] << 8) | (unsigned int)p[11];
        for (Py_ssize_t i = 0; i < target->entry_count; i++) {
            if (target->entries[i].ssrc == ssrc) {
                path = target->entries[i].path;
                stream = target->entries[i].stream;
                break;
            }
        }
    }
    int taken = 0;
    if (path != NULL) {
        struct timespec monotonic;
        clock_gettime(CLOCK_MONOTONIC, &monotonic);
        double now = (double)monotonic.tv_sec + (double)monotonic.tv_nsec / 1e9;
        /* Our references: a callback may remove the entry. */
        Py_INCREF(path);
        Py_INCREF(stream);
        taken = path_receive(path, stream, p, length, now);
        Py_DECREF(path);
        Py_DECREF(stream);
        if (taken < 0)
            return -1;
        if (taken) {
            target->rtp_packets_received++;
            target->last_activity = now;
        }
    }
    if (!taken && target->on_rtp != NULL)
        return receiver_call(target->on_rtp, PyBytes_FromStringAndSize((const char *)p, length),
                             NULL);
    return 0;
}

/* drain(): read every datagram waiting (up to DRAIN_LIMIT) and handle each. */
static PyObject *
RtpReceiver_drain(RtpReceiver *self, PyObject *Py_UNUSED(ignored))
{
    for (int count = 0; count < DRAIN_LIMIT && self->fd >= 0; count++) {
        struct sockaddr_storage address;
        socklen_t address_length = sizeof(address);
        unsigned char *p = self->buffer;
        ssize_t received = recvfrom(self->fd, p, RECEIVE_BUFFER, MSG_DONTWAIT | MSG_TRUNC,
                                    (struct sockaddr *)&address, &address_length);
        if (received < 0) {
            if (errno == EINTR)
                continue;
            break; /* EAGAIN; or an ICMP error (ECONNREFUSED...), which the consent check handles */
        }
        if (received > RECEIVE_BUFFER) {
            self->oversized++; /* longer than any packet of ours: dropped */
            continue;
        }
        int length = (int)received;
        int first = length ? p[0] : 0;
        RtpReceiver *target = NULL;
        if (length > 0 && first > 127 && first < 192 && !(length > 1 && p[1] > 191 && p[1] < 224)) {
            if (is_fast_address(self, &address))
                target = self;
            else
                for (Py_ssize_t i = 0; i < self->child_count; i++)
                    if (is_fast_address(self->children[i], &address)) {
                        target = self->children[i];
                        break;
                    }
        }
        if (target == NULL || target->session == NULL) {
            /* STUN, DTLS, RTCP, other addresses, no keys yet: Python. */
            if (self->on_datagram == NULL)
                continue;
            if (receiver_call(self->on_datagram,
                              PyBytes_FromStringAndSize((const char *)p, length),
                              address_tuple(&address)) < 0)
                return NULL;
            continue;
        }
        Py_INCREF(target); /* a callback may close and drop it */
        int status = receiver_take(target, p, length);
        Py_DECREF(target);
        if (status < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
RtpReceiver_close(RtpReceiver *self, PyObject *Py_UNUSED(ignored))
{
    RtpReceiver_clear(self);
    Py_RETURN_NONE;
}

static PyMethodDef RtpReceiver_methods[] = {
    {"set_session", (PyCFunction)(void (*)(void))RtpReceiver_set_session, METH_FASTCALL,
     "The incoming SRTP session (0: none) and what keeps it alive."},
    {"set_address", (PyCFunction)RtpReceiver_set_address, METH_O,
     "The tuple whose SRTP the C path takes, or None."},
    {"add_stream", (PyCFunction)(void (*)(void))RtpReceiver_add_stream, METH_FASTCALL,
     "Route an SSRC to a producer's path and stream."},
    {"remove_stream", (PyCFunction)RtpReceiver_remove_stream, METH_O, "Forget an SSRC."},
    {"add_child", (PyCFunction)RtpReceiver_add_child, METH_O,
     "Single-port mode: read for a transport's receiver (made with fd -1)."},
    {"remove_child", (PyCFunction)RtpReceiver_remove_child, METH_O, "Stop reading for it."},
    {"drain", (PyCFunction)RtpReceiver_drain, METH_NOARGS, "Read and handle waiting datagrams."},
    {"close", (PyCFunction)RtpReceiver_close, METH_NOARGS, "Read nothing more; drop references."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef RtpReceiver_members[] = {
    {"bytes_received", T_ULONGLONG, offsetof(RtpReceiver, bytes_received), READONLY,
     "bytes of the datagrams the C path took"},
    {"rtp_packets_received", T_ULONGLONG, offsetof(RtpReceiver, rtp_packets_received), READONLY,
     "RTP packets the C path forwarded"},
    {"unprotect_failures", T_ULONGLONG, offsetof(RtpReceiver, unprotect_failures), READONLY,
     "SRTP packets libsrtp refused on the C path"},
    {"oversized", T_ULONGLONG, offsetof(RtpReceiver, oversized), READONLY,
     "datagrams longer than RECEIVE_BUFFER, dropped"},
    {"last_activity", T_DOUBLE, offsetof(RtpReceiver, last_activity), READONLY,
     "time.monotonic() of the newest packet the C path took"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RtpReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu.media._native.RtpReceiver",
    .tp_basicsize = sizeof(RtpReceiver),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A WebRtcTransport's socket reader, with the C path for common RTP packets.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RtpReceiver_init,
    .tp_dealloc = (destructor)RtpReceiver_dealloc,
    .tp_traverse = (traverseproc)RtpReceiver_traverse,
    .tp_clear = (inquiry)RtpReceiver_clear,
    .tp_methods = RtpReceiver_methods,
    .tp_members = RtpReceiver_members,
};

static PyMethodDef native_functions[] = {
    {"send_all", (PyCFunction)(void (*)(void))native_send_all, METH_FASTCALL,
     "rewriter.send(...) for each rewriter of a tuple; None, or the (index, error) to follow up."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sfu.media._native",
    .m_doc = "The per-consumer send of the forwarding path, in C (optional).",
    .m_size = -1,
    .m_methods = native_functions,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    if (PyType_Ready(&SrtpSenderType) < 0 || PyType_Ready(&RtpRewriterType) < 0 ||
        PyType_Ready(&RtpStreamStateType) < 0 || PyType_Ready(&ProducerPathType) < 0 ||
        PyType_Ready(&RtpReceiverType) < 0)
        return NULL;
    if (send_name == NULL && (send_name = PyUnicode_InternFromString("send")) == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "SrtpSender", (PyObject *)&SrtpSenderType) < 0 ||
        PyModule_AddObjectRef(module, "RtpRewriter", (PyObject *)&RtpRewriterType) < 0 ||
        PyModule_AddObjectRef(module, "RtpStreamState", (PyObject *)&RtpStreamStateType) < 0 ||
        PyModule_AddObjectRef(module, "ProducerPath", (PyObject *)&ProducerPathType) < 0 ||
        PyModule_AddObjectRef(module, "RtpReceiver", (PyObject *)&RtpReceiverType) < 0 ||
        PyModule_AddIntConstant(module, "PROTECT_FAILED", PROTECT_FAILED) < 0 ||
        PyModule_AddIntConstant(module, "SEND_FAILED", SEND_FAILED) < 0 ||
        PyModule_AddIntConstant(module, "MAX_PACKET", MAX_PACKET) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
