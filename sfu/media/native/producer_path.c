/*
 * ProducerPath: what a producer's packets need on the C receive path (see
 * receiver.c for the whole path), and path_receive, which takes one packet
 * from its header to every consumer layout's send_all.
 */
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

/* ---- path_receive and its steps ------------------------------------------ */

/* rtp.header_bounds of an RTP packet. */
typedef struct {
    int csrc_end;    /* end of the fixed header and CSRCs */
    int ext_start;   /* the extension block's elements, [ext_start, ext_end) */
    int ext_end;     /* (== csrc_end when there is no block) */
    int payload_end; /* before the padding */
} HeaderBounds;

/* An element of the packet's one-byte block: client id, offset, size. */
typedef struct {
    int id, start, size;
} FoundElement;

/* An element as it goes out: router id and value. */
typedef struct {
    int router_id;
    const unsigned char *value;
    int size;
} Element;

static inline unsigned long
get32(const unsigned char *p)
{
    return ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) |
           ((unsigned long)p[2] << 8) | (unsigned long)p[3];
}

/* rtp.header_bounds: 0 when the header is bad (Python's to count). */
static inline int
parse_header_bounds(const unsigned char *p, int length, HeaderBounds *bounds)
{
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
    bounds->csrc_end = csrc_end;
    bounds->ext_start = ext_start;
    bounds->ext_end = ext_end;
    bounds->payload_end = payload_end;
    return 1;
}

/* The elements of a one-byte block (rtp.iter_one_byte_extensions) into
 * ``found``: their count, or -1 when the packet is Python's (a two-byte
 * block, more elements than MAX_ELEMENTS). */
static inline int
find_one_byte_elements(const unsigned char *p, const HeaderBounds *bounds,
                       FoundElement found[MAX_ELEMENTS])
{
    int ext_start = bounds->ext_start, ext_end = bounds->ext_end;
    if (ext_end <= ext_start)
        return 0;
    int profile = (p[bounds->csrc_end] << 8) | p[bounds->csrc_end + 1];
    if ((profile & 0xFFF0) == 0x1000)
        return -1; /* two-byte elements: Python */
    if (profile != 0xBEDE)
        return 0;
    int count = 0, pos = ext_start;
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
        if (count == MAX_ELEMENTS)
            return -1;
        found[count].id = id;
        found[count].start = start;
        found[count].size = size;
        count++;
        pos = start + size;
    }
    return count;
}

/* RtpStreamRecv.receive of the next packet in order (the only one taken
 * here: no loss to note, no duplicate, late packet or restart), and the
 * producer's counters. */
static inline void
stream_take_next(ProducerPath *path, RtpStreamState *stream, int seq, unsigned long timestamp,
                 int length, double now)
{
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
}

/* sink(producer, level); 0, or (as path_failed) 1 when it raised an
 * Exception, -1 anything else. */
static inline int
call_audio_level_sink(ProducerPath *path, int level)
{
    PyObject *sink = Py_NewRef(path->audio_level_sink);
    PyObject *producer = Py_NewRef(path->producer);
    PyObject *level_object = PyLong_FromLong(level);
    PyObject *result = NULL;
    if (level_object != NULL) {
        PyObject *call_args[2] = {producer, level_object};
        result = PyObject_Vectorcall(sink, call_args, 2, NULL);
        Py_DECREF(level_object);
    }
    Py_DECREF(producer);
    Py_DECREF(sink);
    if (result == NULL)
        return path_failed(path) < 0 ? -1 : 1;
    Py_DECREF(result);
    return 0;
}

/* rtp.abs_send_time_now: 6.18 fixed-point seconds of the wall clock. */
static inline void
abs_send_time_now(unsigned char value[3])
{
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    double seconds = (double)wall.tv_sec + (double)wall.tv_nsec / 1e9;
    unsigned long fixed = (unsigned long)(long long)(seconds * (double)(1 << 18)) & 0xFFFFFF;
    value[0] = (unsigned char)(fixed >> 16);
    value[1] = (unsigned char)(fixed >> 8);
    value[2] = (unsigned char)fixed;
}

#define ELEMENTS_STOP -2 /* map_elements: the sink failed or closed the producer */

/* The packet's elements as they go out (Producer.receive_rtp's loop over
 * them): the audio level to the sink, ids mapped, abs-send-time refreshed
 * into ``abs_send_time``. Their count, ELEMENTS_STOP (the packet is taken,
 * nothing more to do) or -1 (an exception that is not an Exception). */
static inline int
map_elements(ProducerPath *path, const unsigned char *p, const FoundElement *found,
             int found_count, Element elements[MAX_ELEMENTS],
             unsigned char abs_send_time[MAX_ELEMENTS][3])
{
    int count = 0;
    for (int i = 0; i < found_count; i++) {
        int id = found[i].id;
        if (id == path->audio_level_id && path->audio_level_sink != NULL &&
            path->audio_level_sink != Py_None) {
            int status = call_audio_level_sink(path, p[found[i].start] & 0x7F);
            if (status != 0)
                return status < 0 ? -1 : ELEMENTS_STOP;
            if (!path->enabled)
                return ELEMENTS_STOP; /* the sink closed the producer */
        }
        int router_id = path->ext_forward[id];
        if (router_id == 0)
            continue;
        Element *element = &elements[count++];
        element->router_id = router_id;
        if (id == path->abs_send_time_id) {
            abs_send_time_now(abs_send_time[i]);
            element->value = abs_send_time[i];
            element->size = 3;
        }
        else {
            element->value = p + found[i].start;
            element->size = found[i].size;
        }
    }
    return count;
}

/* rtp.build_extension_block of the elements whose router id is in ``mask``,
 * into ``block``: its length (0: no block). */
static inline int
build_extension_block(const Element *elements, int count, unsigned int mask,
                      unsigned char *block)
{
    int length = 0;
    for (int i = 0; i < count; i++) {
        if (!(mask & (1u << elements[i].router_id)))
            continue;
        if (length == 0) {
            block[0] = 0xBE;
            block[1] = 0xDE;
            length = 4;
        }
        block[length++] = (unsigned char)((elements[i].router_id << 4) | (elements[i].size - 1));
        memcpy(block + length, elements[i].value, (size_t)elements[i].size);
        length += elements[i].size;
    }
    if (length) {
        while (length % 4)
            block[length++] = 0;
        block[2] = (unsigned char)(((length - 4) / 4) >> 8);
        block[3] = (unsigned char)((length - 4) / 4);
    }
    return length;
}

/* What every layout's send shares: the packet, its fields and the Python
 * objects made once for all layouts. */
typedef struct {
    const unsigned char *p;
    int length;
    HeaderBounds bounds;
    unsigned long b1;
    unsigned long seq;
    unsigned long timestamp;
    double now;
    const Element *elements;
    int element_count;
    PyObject *b1_object, *seq_object, *timestamp_object, *now_object;
    PyObject *packet; /* the packet as bytes, made for a follow-up only */
} Forward;

/* producer._follow_up(consumers, pending, b0, b1, tail, seq, timestamp,
 * packet, ext_end, payload_end, now) for the consumers send_all left to
 * Python (to sync first, or whose send failed), with the packet for its
 * keyframe check. Returns the call's result (NULL: it raised). */
static inline PyObject *
call_follow_up(ProducerPath *path, Forward *forward, PyObject *consumers, PyObject *pending,
               PyObject *b0_object, PyObject *tail)
{
    PyObject *result = NULL;
    if (forward->packet == NULL)
        forward->packet = PyBytes_FromStringAndSize((const char *)forward->p, forward->length);
    PyObject *ext_end_object = PyLong_FromLong(forward->bounds.ext_end);
    PyObject *payload_end_object = PyLong_FromLong(forward->bounds.payload_end);
    if (forward->packet && ext_end_object && payload_end_object) {
        PyObject *call_args[11] = {consumers,
                                   pending,
                                   b0_object,
                                   forward->b1_object,
                                   tail,
                                   forward->seq_object,
                                   forward->timestamp_object,
                                   forward->packet,
                                   ext_end_object,
                                   payload_end_object,
                                   forward->now_object};
        PyObject *follow_up = Py_NewRef(path->follow_up);
        result = PyObject_Vectorcall(follow_up, call_args, 11, NULL);
        Py_DECREF(follow_up);
    }
    Py_XDECREF(ext_end_object);
    Py_XDECREF(payload_end_object);
    return result;
}

/* One consumer layout ``(mask, rewriters, consumers)``: its tail (CSRCs, the
 * block of the elements it takes, the payload), send_all_core over its
 * rewriters, and the follow-up of those left to Python. 0: go on with the
 * next layout; 1: stop, the packet is taken (a follow-up closed the producer
 * or failed); -1: an exception that is not an Exception. */
static inline int
send_layout(ProducerPath *path, Forward *forward, PyObject *layout, unsigned int mask)
{
    const unsigned char *p = forward->p;
    int csrc_length = forward->bounds.csrc_end - 12;
    int payload_length = forward->length - forward->bounds.ext_end;
    unsigned char block[4 + MAX_ELEMENTS * 17 + 3];
    int block_length =
        build_extension_block(forward->elements, forward->element_count, mask, block);
    PyObject *tail = PyBytes_FromStringAndSize(NULL, csrc_length + block_length + payload_length);
    if (tail == NULL)
        return path_failed(path) < 0 ? -1 : 1;
    char *out = PyBytes_AS_STRING(tail);
    memcpy(out, p + 12, (size_t)csrc_length);
    memcpy(out + csrc_length, block, (size_t)block_length);
    memcpy(out + csrc_length + block_length, p + forward->bounds.ext_end, (size_t)payload_length);
    unsigned long b0 = (p[0] & 0xEF) | (block_length ? 0x10 : 0);
    PyObject *b0_object = PyLong_FromUnsignedLong(b0);
    if (b0_object == NULL) {
        Py_DECREF(tail);
        return path_failed(path) < 0 ? -1 : 1;
    }
    PyObject *send_args[6] = {b0_object,           forward->b1_object,
                              tail,                forward->seq_object,
                              forward->timestamp_object, forward->now_object};
    Py_buffer tail_buffer;
    tail_buffer.buf = PyBytes_AS_STRING(tail);
    tail_buffer.len = PyBytes_GET_SIZE(tail);
    PyObject *pending = send_all_core(PyTuple_GET_ITEM(layout, 1), send_args, b0, forward->b1,
                                      &tail_buffer, forward->seq, forward->timestamp, forward->now);
    int status = 0;
    if (pending == NULL) {
        /* not an Exception (send_all_core keeps those), or out of memory */
        status = path_failed(path) < 0 ? -1 : 1;
    }
    else {
        if (pending != Py_None && path->follow_up != NULL) {
            PyObject *result =
                call_follow_up(path, forward, PyTuple_GET_ITEM(layout, 2), pending, b0_object, tail);
            if (result == NULL)
                status = path_failed(path) < 0 ? -1 : 1;
            else
                Py_DECREF(result);
        }
        Py_DECREF(pending);
        if (status == 0 && path->follow_up == NULL)
            status = 1; /* closed by a follow-up */
    }
    Py_DECREF(b0_object);
    Py_DECREF(tail);
    return status;
}

/* The packet to every consumer layout, unless the producer is paused or
 * has no consumers. 1 (taken), or -1 (an exception that is not an
 * Exception). */
static inline int
forward_to_layouts(ProducerPath *path, Forward *forward)
{
    if (path->paused || path->layout_count == 0 || path->layouts == NULL)
        return 1;
    int status = 1;
    /* Our own copy of the layouts and their masks: a callback (a Python
     * sender, a follow-up) may replace them while we go through them. */
    PyObject *layouts = Py_NewRef(path->layouts);
    int layout_count = path->layout_count;
    unsigned int layout_masks[MAX_LAYOUTS];
    memcpy(layout_masks, path->layout_masks, sizeof(unsigned int) * (size_t)layout_count);
    forward->b1_object = PyLong_FromLong((long)forward->b1);
    forward->seq_object = PyLong_FromLong((long)forward->seq);
    forward->timestamp_object = PyLong_FromUnsignedLong(forward->timestamp);
    forward->now_object = PyFloat_FromDouble(forward->now);
    forward->packet = NULL;
    if (forward->b1_object == NULL || forward->seq_object == NULL ||
        forward->timestamp_object == NULL || forward->now_object == NULL)
        status = path_failed(path) < 0 ? -1 : 1;
    else
        for (int index = 0; index < layout_count && index < PyTuple_GET_SIZE(layouts); index++) {
            int sent = send_layout(path, forward, PyTuple_GET_ITEM(layouts, index),
                                   layout_masks[index]);
            if (sent != 0) {
                status = sent;
                break;
            }
        }
    Py_DECREF(layouts);
    Py_XDECREF(forward->b1_object);
    Py_XDECREF(forward->seq_object);
    Py_XDECREF(forward->timestamp_object);
    Py_XDECREF(forward->now_object);
    Py_XDECREF(forward->packet);
    return status;
}

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
    Forward forward;
    if (!parse_header_bounds(p, length, &forward.bounds))
        return 0;
    int router_pt = path->pt_map[p[1] & 0x7F];
    if (router_pt < 0)
        return 0;
    int seq = (p[2] << 8) | p[3];
    if (((seq - stream->max_seq) & 0xFFFF) != 1)
        return 0; /* not the next in order: Python notes the loss, the duplicate... */
    unsigned long timestamp = get32(p + 4);
    FoundElement found[MAX_ELEMENTS];
    int found_count = find_one_byte_elements(p, &forward.bounds, found);
    if (found_count < 0)
        return 0;

    /* Taken: from here on, as Producer.receive_rtp. */
    stream_take_next(path, stream, seq, timestamp, length, now);
    Element elements[MAX_ELEMENTS];
    unsigned char abs_send_time[MAX_ELEMENTS][3];
    int element_count = map_elements(path, p, found, found_count, elements, abs_send_time);
    if (element_count < 0)
        return element_count == ELEMENTS_STOP ? 1 : -1;
    forward.p = p;
    forward.length = length;
    forward.b1 = (unsigned long)((p[1] & 0x80) | router_pt);
    forward.seq = (unsigned long)seq;
    forward.timestamp = timestamp;
    forward.now = now;
    forward.elements = elements;
    forward.element_count = element_count;
    return forward_to_layouts(path, &forward);
}
