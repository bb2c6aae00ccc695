/*
 * What every part of sfu.media._native shares: includes, libsrtp's function
 * types, the packet buffer's size and the little helpers (see module.c).
 */
#ifndef SFU_NATIVE_COMMON_H
#define SFU_NATIVE_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "../_sockaddr.h"

/* libsrtp: srtp_err_status_t srtp_protect(srtp_t ctx, void *rtp_hdr, int *len_ptr) */
typedef int (*srtp_protect_fn)(void *ctx, void *rtp_hdr, int *len_ptr);

/* As pylibsrtp's session buffer, so that both paths take the same packets. */
#define BUFFER_SIZE 1500
#define MAX_TRAILER 144 /* SRTP_MAX_TRAILER_LEN: tag + MKI */
#define MAX_PACKET (BUFFER_SIZE - MAX_TRAILER)

/* Results of send_fields below 0. */
#define PROTECT_FAILED -1
#define SEND_FAILED -2

/* libsrtp: srtp_err_status_t srtp_unprotect(srtp_t ctx, void *srtp_hdr, int *len_ptr) */
typedef int (*srtp_unprotect_fn)(void *ctx, void *srtp_hdr, int *len_ptr);

static inline void
put32(unsigned char *p, unsigned long v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

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

#endif /* SFU_NATIVE_COMMON_H */
