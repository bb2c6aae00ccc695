/*
 * sfu_bench._counter: what a bench subscriber does with each packet, in C.
 *
 * Why: a load process holds dozens of subscribers. Through asyncio each
 * datagram costs a selector event, a transport callback and our handler:
 * about 40 us of a core per packet (measured: 10.5 % of a core for 50
 * listeners of Opus at 50 packets/s each), so 1000 listeners would need more
 * than the two cores of this machine, the server's included. Most of that
 * is asyncio's own work per readable socket (each listener's socket has one
 * packet at a time), so the sockets leave asyncio's selector altogether: a
 * Poller holds them in an epoll set of its own, and asyncio watches only the
 * Poller. One Poller.drain() reads every socket that is ready with
 * recvmmsg(2), takes the kernel's arrival time from SO_TIMESTAMPNS, and counts
 * RTP by its clear-text header in that socket's RtpCounter: the same counting
 * as sfu_bench.load.RtpCounter, which stays the path when this extension is
 * not built.
 *
 * Every other datagram (STUN, DTLS, SRTCP) goes to a Python callable, as if
 * asyncio had read it. Nothing is decrypted here.
 *
 * Optional: setup.py builds it with optional=True.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../sfu/media/_sockaddr.h"

#define MAX_STREAMS 16
#define MAX_RTX 16
#define BATCH 32
#define DATAGRAM 2048
#define DRAIN_LIMIT 64 /* datagrams per socket and drain(): the event loop gets its turn */
#define EVENTS 256     /* ready sockets per Poller.drain() */
#define MAX_FD 65536

typedef struct {
    uint32_t ssrc;
    int audio;
    PyObject *producer_id;
    unsigned long long packets;
    unsigned long long bytes;
    long long base_seq;
    long long max_seq; /* extended: cycles << 16 | seq */
    uint32_t last_ts;
    int has_ts;
    double first_time;
    double first_frame_time;
} Stream;

typedef struct {
    PyObject_HEAD
    PyObject *recorder; /* sfu_bench.load.Recorder: .recording, .received */
    Stream streams[MAX_STREAMS];
    int stream_count;
    uint32_t rtx[MAX_RTX];
    int rtx_count;
    int watching;
    unsigned long long rtx_packets;
    unsigned long long unknown_packets;
    unsigned long long oversized;
} Counter;

/* One set of receive buffers for the process: drain() holds the GIL, and does
 * not run inside itself (a re-entrant call returns at once: the datagrams wait
 * in the socket, and the level-triggered selector calls again). */
static unsigned char buffers[BATCH][DATAGRAM];
static struct mmsghdr messages[BATCH];
static struct iovec vectors[BATCH];
static struct sockaddr_storage addresses[BATCH];
static char controls[BATCH][CMSG_SPACE(sizeof(struct timespec))];
static int draining;

static PyObject *recording_name, *received_name;

static double
clock_seconds(clockid_t clock)
{
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static int
Counter_init(Counter *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"recorder", NULL};
    PyObject *recorder;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O", keywords, &recorder))
        return -1;
    Py_XSETREF(self->recorder, Py_NewRef(recorder));
    return 0;
}

static int
Counter_traverse(Counter *self, visitproc visit, void *arg)
{
    Py_VISIT(self->recorder);
    for (int i = 0; i < self->stream_count; i++)
        Py_VISIT(self->streams[i].producer_id);
    return 0;
}

static int
Counter_clear(Counter *self)
{
    Py_CLEAR(self->recorder);
    for (int i = 0; i < self->stream_count; i++)
        Py_CLEAR(self->streams[i].producer_id);
    self->stream_count = 0;
    return 0;
}

static void
Counter_dealloc(Counter *self)
{
    PyObject_GC_UnTrack(self);
    Counter_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* add_stream(ssrc, producer_id, audio): count this SSRC (a consumer's). */
static PyObject *
Counter_add_stream(Counter *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "add_stream(ssrc, producer_id, audio)");
        return NULL;
    }
    unsigned long ssrc = PyLong_AsUnsignedLong(args[0]);
    int audio = PyObject_IsTrue(args[2]);
    if ((ssrc == (unsigned long)-1 && PyErr_Occurred()) || audio < 0)
        return NULL;
    for (int i = 0; i < self->stream_count; i++)
        if (self->streams[i].ssrc == (uint32_t)ssrc)
            Py_RETURN_NONE; /* as RtpCounter.add_stream: the first one stays */
    if (self->stream_count == MAX_STREAMS) {
        PyErr_SetString(PyExc_OverflowError, "too many streams for one subscriber");
        return NULL;
    }
    Stream *stream = &self->streams[self->stream_count++];
    memset(stream, 0, sizeof(*stream));
    stream->ssrc = (uint32_t)ssrc;
    stream->audio = audio;
    stream->producer_id = Py_NewRef(args[1]);
    Py_RETURN_NONE;
}

/* add_rtx(ssrc): packets of this SSRC are retransmissions: counted apart. */
static PyObject *
Counter_add_rtx(Counter *self, PyObject *arg)
{
    unsigned long ssrc = PyLong_AsUnsignedLong(arg);
    if (ssrc == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    if (self->rtx_count == MAX_RTX) {
        PyErr_SetString(PyExc_OverflowError, "too many RTX streams for one subscriber");
        return NULL;
    }
    self->rtx[self->rtx_count++] = (uint32_t)ssrc;
    Py_RETURN_NONE;
}

/* watch(fd): ask the kernel to stamp each datagram of this socket with its arrival. */
static PyObject *
Counter_watch(Counter *self, PyObject *arg)
{
    int fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    self->watching++;
    Py_RETURN_NONE;
}

/* The kernel's arrival stamp of message i (CLOCK_REALTIME), or 0. */
static double
arrival_stamp(struct msghdr *header)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(header); c != NULL; c = CMSG_NXTHDR(header, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec stamp;
            memcpy(&stamp, CMSG_DATA(c), sizeof(stamp));
            return (double)stamp.tv_sec + (double)stamp.tv_nsec * 1e-9;
        }
    return 0.0;
}

/* Count one RTP packet. received: the recorder's list while it records, else NULL.
 * Returns -1 on error (an exception is set). */
static int
count_rtp(Counter *self, const unsigned char *p, int length, double now, double arrival,
          PyObject *received)
{
    uint32_t ssrc = (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11];
    Stream *stream = NULL;
    for (int i = 0; i < self->stream_count; i++)
        if (self->streams[i].ssrc == ssrc) {
            stream = &self->streams[i];
            break;
        }
    if (stream == NULL) {
        for (int i = 0; i < self->rtx_count; i++)
            if (self->rtx[i] == ssrc) {
                self->rtx_packets++;
                return 0;
            }
        self->unknown_packets++;
        return 0;
    }
    long long seq = (long long)(p[2] << 8 | p[3]);
    uint32_t ts = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
    if (stream->packets == 0) {
        stream->base_seq = stream->max_seq = seq;
        stream->first_time = now;
    } else {
        long long delta = (seq - stream->max_seq) & 0xFFFF;
        if (delta < 0x8000)
            stream->max_seq += delta;
    }
    stream->packets++;
    stream->bytes += (unsigned long long)length;
    if (stream->first_frame_time == 0.0 && (stream->audio || (p[1] & 0x80)))
        stream->first_frame_time = now; /* the end of the first whole frame */
    if (!stream->has_ts || ts != stream->last_ts) {
        stream->has_ts = 1;
        stream->last_ts = ts;
        if (received != NULL) {
            PyObject *sample = Py_BuildValue("(Okdd)", stream->producer_id, (unsigned long)ts,
                                             arrival, now);
            if (sample == NULL)
                return -1;
            int status = PyList_Append(received, sample);
            Py_DECREF(sample);
            if (status < 0)
                return -1;
        }
    }
    return 0;
}

/* The recorder's list of latency samples while it records (a new reference), else
 * NULL; -1 on error. */
static int
recording_list(Counter *self, PyObject **received)
{
    *received = NULL;
    if (self->recorder == NULL)
        return 0;
    PyObject *recording = PyObject_GetAttr(self->recorder, recording_name);
    if (recording == NULL)
        return -1;
    int on = PyObject_IsTrue(recording);
    Py_DECREF(recording);
    if (on <= 0)
        return on;
    if ((*received = PyObject_GetAttr(self->recorder, received_name)) == NULL)
        return -1;
    if (!PyList_Check(*received)) {
        Py_CLEAR(*received);
        PyErr_SetString(PyExc_TypeError, "recorder.received is not a list");
        return -1;
    }
    return 0;
}

/* Read the datagrams waiting on fd: count RTP, give the rest to fallback(data,
 * address). Returns -1 to stop (an exception that is not an Exception is set). */
static int
drain_socket(Counter *self, int fd, PyObject *fallback)
{
    if (draining)
        return 0;
    PyObject *received;
    if (recording_list(self, &received) < 0)
        return -1;
    Py_INCREF(self); /* a fallback may drop the last reference to us */
    draining = 1;
    int status = 0;
    for (int total = 0; total < DRAIN_LIMIT;) {
        for (int i = 0; i < BATCH; i++) {
            vectors[i].iov_base = buffers[i];
            vectors[i].iov_len = DATAGRAM;
            memset(&messages[i].msg_hdr, 0, sizeof(messages[i].msg_hdr));
            messages[i].msg_hdr.msg_name = &addresses[i];
            messages[i].msg_hdr.msg_namelen = sizeof(addresses[i]);
            messages[i].msg_hdr.msg_iov = &vectors[i];
            messages[i].msg_hdr.msg_iovlen = 1;
            messages[i].msg_hdr.msg_control = controls[i];
            messages[i].msg_hdr.msg_controllen = sizeof(controls[i]);
        }
        int count = recvmmsg(fd, messages, BATCH, MSG_DONTWAIT, NULL);
        if (count < 0) {
            if (errno == EINTR)
                continue;
            break; /* EAGAIN; or an ICMP error, which aioice's consent check deals with */
        }
        if (count == 0)
            break;
        total += count;
        double now = clock_seconds(CLOCK_MONOTONIC);
        double offset = clock_seconds(CLOCK_REALTIME) - now; /* realtime - monotonic */
        for (int i = 0; i < count; i++) {
            const unsigned char *p = buffers[i];
            int length = (int)messages[i].msg_len;
            if (messages[i].msg_hdr.msg_flags & MSG_TRUNC) {
                self->oversized++;
                continue;
            }
            /* RFC 7983: 128..191 is RTP/RTCP; RTCP packet types are 192..223. */
            if (length >= 12 && p[0] > 127 && p[0] < 192 && !(p[1] > 191 && p[1] < 224)) {
                double stamp = arrival_stamp(&messages[i].msg_hdr);
                double arrival = stamp > 0.0 && stamp - offset < now ? stamp - offset : now;
                if (count_rtp(self, p, length, now, arrival, received) < 0) {
                    status = -1;
                    goto done;
                }
                continue;
            }
            PyObject *data = PyBytes_FromStringAndSize((const char *)p, length);
            PyObject *address = data ? address_tuple(&addresses[i]) : NULL;
            PyObject *call_result = NULL;
            if (address != NULL) {
                PyObject *call_args[2] = {data, address};
                call_result = PyObject_Vectorcall(fallback, call_args, 2, NULL);
            }
            Py_XDECREF(data);
            Py_XDECREF(address);
            if (call_result == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_Exception)) {
                    status = -1;
                    goto done;
                }
                PyErr_WriteUnraisable(fallback); /* as asyncio logs a protocol's error */
            } else {
                Py_DECREF(call_result);
            }
        }
        if (count < BATCH)
            break;
    }
done:
    draining = 0;
    Py_XDECREF(received);
    Py_DECREF(self);
    return status;
}

/* streams(): (ssrc, packets, bytes, base_seq, max_seq, first_time, first_frame_time) each. */
static PyObject *
Counter_streams(Counter *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(self->stream_count);
    if (list == NULL)
        return NULL;
    for (int i = 0; i < self->stream_count; i++) {
        Stream *s = &self->streams[i];
        PyObject *item = Py_BuildValue("(kKKLLdd)", (unsigned long)s->ssrc, s->packets, s->bytes,
                                       s->base_seq, s->max_seq, s->first_time,
                                       s->first_frame_time);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyMethodDef Counter_methods[] = {
    {"add_stream", (PyCFunction)(void (*)(void))Counter_add_stream, METH_FASTCALL,
     "Count this SSRC: add_stream(ssrc, producer_id, audio)."},
    {"add_rtx", (PyCFunction)Counter_add_rtx, METH_O, "Count this SSRC as retransmissions."},
    {"watch", (PyCFunction)Counter_watch, METH_O, "Turn on arrival stamps for a socket."},
    {"streams", (PyCFunction)Counter_streams, METH_NOARGS,
     "(ssrc, packets, bytes, base_seq, max_seq, first_time, first_frame_time) per stream."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Counter_members[] = {
    {"watching", T_INT, offsetof(Counter, watching), READONLY, "sockets watch()ed"},
    {"rtx_packets", T_ULONGLONG, offsetof(Counter, rtx_packets), READONLY, NULL},
    {"unknown_packets", T_ULONGLONG, offsetof(Counter, unknown_packets), READONLY, NULL},
    {"oversized", T_ULONGLONG, offsetof(Counter, oversized), READONLY,
     "datagrams longer than the buffer, dropped"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu_bench._counter.RtpCounter",
    .tp_basicsize = sizeof(Counter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A bench subscriber's RTP counter that reads its sockets itself.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Counter_init,
    .tp_dealloc = (destructor)Counter_dealloc,
    .tp_traverse = (traverseproc)Counter_traverse,
    .tp_clear = (inquiry)Counter_clear,
    .tp_methods = Counter_methods,
    .tp_members = Counter_members,
};

/* Poller: the sockets of many RtpCounters in one epoll set, which asyncio watches. */
typedef struct {
    PyObject *counter;
    PyObject *fallback;
} Entry;

typedef struct {
    PyObject_HEAD
    int epfd;
    Entry *entries; /* by fd */
    int capacity;
    int count;
} Poller;

static int
Poller_init(Poller *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "", keywords))
        return -1;
    if (self->epfd <= 0 && (self->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static int
Poller_traverse(Poller *self, visitproc visit, void *arg)
{
    for (int i = 0; i < self->capacity; i++) {
        Py_VISIT(self->entries[i].counter);
        Py_VISIT(self->entries[i].fallback);
    }
    return 0;
}

static int
Poller_clear(Poller *self)
{
    for (int i = 0; i < self->capacity; i++) {
        Py_CLEAR(self->entries[i].counter);
        Py_CLEAR(self->entries[i].fallback);
    }
    self->count = 0;
    return 0;
}

static void
Poller_dealloc(Poller *self)
{
    PyObject_GC_UnTrack(self);
    Poller_clear(self);
    PyMem_Free(self->entries);
    if (self->epfd > 0)
        close(self->epfd);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* add(fd, counter, fallback): read fd for counter from now on. */
static PyObject *
Poller_add(Poller *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyObject_TypeCheck(args[1], &CounterType)) {
        PyErr_SetString(PyExc_TypeError, "add(fd, counter: RtpCounter, fallback)");
        return NULL;
    }
    int fd = PyLong_AsLong(args[0]);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd >= MAX_FD || self->epfd <= 0) {
        PyErr_SetString(PyExc_ValueError, "bad file descriptor, or a closed Poller");
        return NULL;
    }
    if (fd >= self->capacity) {
        int capacity = self->capacity ? self->capacity : 256;
        while (capacity <= fd)
            capacity *= 2;
        Entry *entries = PyMem_Realloc(self->entries, sizeof(Entry) * (size_t)capacity);
        if (entries == NULL)
            return PyErr_NoMemory();
        memset(entries + self->capacity, 0, sizeof(Entry) * (size_t)(capacity - self->capacity));
        self->entries = entries;
        self->capacity = capacity;
    }
    struct epoll_event event = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &event) < 0 &&
        (errno != EEXIST || epoll_ctl(self->epfd, EPOLL_CTL_MOD, fd, &event) < 0))
        return PyErr_SetFromErrno(PyExc_OSError);
    Entry *entry = &self->entries[fd];
    if (entry->counter == NULL)
        self->count++;
    Py_XSETREF(entry->counter, Py_NewRef(args[1]));
    Py_XSETREF(entry->fallback, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

/* remove(fd): stop reading fd (before it is closed; a closed fd leaves the set anyway). */
static PyObject *
Poller_remove(Poller *self, PyObject *arg)
{
    int fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd >= self->capacity || self->entries[fd].counter == NULL)
        Py_RETURN_NONE;
    struct epoll_event event = {0};
    epoll_ctl(self->epfd, EPOLL_CTL_DEL, fd, &event); /* ENOENT/EBADF: already gone */
    self->count--;
    Py_CLEAR(self->entries[fd].counter);
    Py_CLEAR(self->entries[fd].fallback);
    Py_RETURN_NONE;
}

/* drain(): every socket that is ready, each through its counter. */
static PyObject *
Poller_drain(Poller *self, PyObject *Py_UNUSED(ignored))
{
    struct epoll_event events[EVENTS];
    if (self->epfd <= 0)
        Py_RETURN_NONE;
    int ready = epoll_wait(self->epfd, events, EVENTS, 0);
    for (int i = 0; i < ready; i++) {
        int fd = events[i].data.fd;
        if (fd < 0 || fd >= self->capacity || self->entries[fd].counter == NULL)
            continue; /* removed by a fallback of this round */
        /* Our own references: a fallback may remove this entry. */
        PyObject *counter = Py_NewRef(self->entries[fd].counter);
        PyObject *fallback = Py_NewRef(self->entries[fd].fallback);
        int status = drain_socket((Counter *)counter, fd, fallback);
        Py_DECREF(counter);
        Py_DECREF(fallback);
        if (status < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Poller_fileno(Poller *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->epfd);
}

static PyObject *
Poller_close(Poller *self, PyObject *Py_UNUSED(ignored))
{
    Poller_clear(self);
    if (self->epfd > 0)
        close(self->epfd);
    self->epfd = -1;
    Py_RETURN_NONE;
}

static PyMethodDef Poller_methods[] = {
    {"add", (PyCFunction)(void (*)(void))Poller_add, METH_FASTCALL,
     "Read fd for counter: add(fd, counter, fallback)."},
    {"remove", (PyCFunction)Poller_remove, METH_O, "Stop reading fd."},
    {"drain", (PyCFunction)Poller_drain, METH_NOARGS, "Read every ready socket."},
    {"fileno", (PyCFunction)Poller_fileno, METH_NOARGS, "The epoll descriptor, for asyncio."},
    {"close", (PyCFunction)Poller_close, METH_NOARGS, "Close the epoll set; drop references."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Poller_members[] = {
    {"sockets", T_INT, offsetof(Poller, count), READONLY, "sockets read"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject PollerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu_bench._counter.Poller",
    .tp_basicsize = sizeof(Poller),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The sockets of many RtpCounters, read from one epoll set.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Poller_init,
    .tp_dealloc = (destructor)Poller_dealloc,
    .tp_traverse = (traverseproc)Poller_traverse,
    .tp_clear = (inquiry)Poller_clear,
    .tp_methods = Poller_methods,
    .tp_members = Poller_members,
};

static struct PyModuleDef counter_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sfu_bench._counter",
    .m_doc = "The bench subscribers' RTP counting, in C (optional).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__counter(void)
{
    if (PyType_Ready(&CounterType) < 0 || PyType_Ready(&PollerType) < 0)
        return NULL;
    if (recording_name == NULL && (recording_name = PyUnicode_InternFromString("recording")) == NULL)
        return NULL;
    if (received_name == NULL && (received_name = PyUnicode_InternFromString("received")) == NULL)
        return NULL;
    PyObject *module = PyModule_Create(&counter_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "RtpCounter", (PyObject *)&CounterType) < 0 ||
        PyModule_AddObjectRef(module, "Poller", (PyObject *)&PollerType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
