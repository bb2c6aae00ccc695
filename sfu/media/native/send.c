/*
 * SrtpSender: writes a consumer's RTP header and the shared tail into its
 * buffer, protects it (libsrtp's srtp_protect on pylibsrtp's session) and
 * sendto()s it, for one transport and its selected tuple.
 */
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
