/*
 * RtpStreamState: the fields of one incoming stream's receive statistics.
 * They are declared once, as sfu.media.fastpath.STREAM_FIELDS; the member
 * table below and _native.pyi are checked against it
 * (tests/unit/test_stream_fields.py).
 */

/* The fields of rtp_stream.RtpStreamRecv (its base class when this module
 * is used), so that both paths update the same numbers. */
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

