/*
 * The receive path (the per-incoming-packet part, after measuring that a
 * Python frame per datagram costs more than the parsing it does: see
 * docs/benchmark.md). A WebRtcTransport's RtpReceiver is the event loop's
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
