/*
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

static PyObject *send_name; /* "send", interned at import (module.c) */


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
