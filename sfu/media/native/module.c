/*
 * sfu.media._native: the per-packet part of forwarding RTP, in C.
 *
 * - send.c, SrtpSender: writes the header and the tail into its buffer,
 *   protects it and sendto()s it, for one transport;
 * - rewrite.c, RtpRewriter: a consumer's sequence number and timestamp
 *   rewrite, its NACK history and counters (the same as
 *   sfu/media/rtp_rewriter.py, which runs when this extension is not built),
 *   and send_all: the rewriters of one consumer layout, in one call;
 * - stream_state.c, RtpStreamState: an incoming stream's receive statistics;
 * - producer_path.c, ProducerPath: a producer's mappings and layouts, and
 *   path_receive, one packet from its header to send_all;
 * - receiver.c, RtpReceiver: a transport's socket reader, which takes the
 *   common packet all the way in C (see "The receive path" there); every
 *   other packet goes to the Python path unchanged;
 * - common.h: what they share; this file: the module itself.
 *
 * Why: measured side by side on loopback (see docs/benchmark.md), a C loop
 * of srtp_protect + sendto costs 10-13 us per forwarded packet; the same two
 * calls made from Python (struct.pack_into, a memoryview copy, a cffi call,
 * socket.sendto) cost 20-25 us, and the rewrite before them 8-10 us more.
 * What is not per packet stays in Python: which consumers get a packet,
 * keyframe waits, where numbering continues after a pause, RTCP, loss and
 * NACKs, RTX, new SSRCs.
 *
 * What it does not do: crypto. It calls libsrtp's srtp_protect and
 * srtp_unprotect, the copy inside pylibsrtp, through function pointers and
 * session pointers that sfu/media/fastpath.py hands it (taken from
 * pylibsrtp's cffi binding by sfu/aiortc_adapter.py). The sessions are the
 * ones pylibsrtp created from the DTLS-SRTP keys, so the Python path (RTX,
 * RTCP) and this one share their rollover counters and replay state.
 *
 * Optional: setup.py builds it with optional=True, and without it the server
 * runs the same path in Python.
 */
#include "common.h"

/* One translation unit (a unity build), so that the hot path's calls across
 * parts inline as before; setup.py compiles this file only, and lists the
 * parts as its dependencies. */
#include "send.c"
#include "rewrite.c"
#include "stream_state.c"
#include "producer_path.c"
#include "receiver.c"

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
