/*
 * sfu.media._native: the last step of forwarding one RTP packet to one
 * consumer, in C.
 *
 * Why: measured side by side on loopback (see README, "Benchmark"), a C loop
 * of srtp_protect + sendto costs about 10 us per forwarded packet, and the same
 * two calls made from Python (struct.pack_into, a memoryview copy, a cffi call,
 * socket.sendto) cost 20-25 us. Everything around them (which consumer, which
 * sequence number) stays in Python.
 *
 * What it does not do: crypto. It calls libsrtp's srtp_protect, the copy inside
 * pylibsrtp, through a function pointer and a session pointer that
 * sfu/aiortc_adapter.py takes from pylibsrtp's cffi binding. The session is
 * the one pylibsrtp created from the DTLS-SRTP keys, so the Python path
 * (RTX, RTCP) and this one share its rollover counter and replay state.
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

/* libsrtp: srtp_err_status_t srtp_protect(srtp_t ctx, void *rtp_hdr, int *len_ptr) */
typedef int (*srtp_protect_fn)(void *ctx, void *rtp_hdr, int *len_ptr);

#define BUFFER_SIZE 2048
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
    unsigned long fields[5];
    for (int i = 0; i < 5; i++) {
        fields[i] = PyLong_AsUnsignedLongMask(args[i]);
        if (fields[i] == (unsigned long)-1 && PyErr_Occurred())
            return NULL;
    }
    Py_buffer tail;
    if (PyObject_GetBuffer(args[5], &tail, PyBUF_SIMPLE) < 0)
        return NULL;
    long result;
    if (tail.len > MAX_PACKET - 12) {
        result = PROTECT_FAILED;
    } else {
        unsigned char *p = self->buffer;
        p[0] = (unsigned char)fields[0];
        p[1] = (unsigned char)fields[1];
        p[2] = (unsigned char)(fields[2] >> 8);
        p[3] = (unsigned char)fields[2];
        put32(p + 4, fields[3]);
        put32(p + 8, fields[4]);
        memcpy(p + 12, tail.buf, (size_t)tail.len);
        int length = 12 + (int)tail.len;
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

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "sfu.media._native",
    .m_doc = "The per-consumer send of the forwarding path, in C (optional).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__native(void)
{
    if (PyType_Ready(&SrtpSenderType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&native_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "SrtpSender", (PyObject *)&SrtpSenderType) < 0 ||
        PyModule_AddIntConstant(module, "PROTECT_FAILED", PROTECT_FAILED) < 0 ||
        PyModule_AddIntConstant(module, "SEND_FAILED", SEND_FAILED) < 0 ||
        PyModule_AddIntConstant(module, "MAX_PACKET", MAX_PACKET) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
