/*
 * A datagram's source address as the (host, port[, flowinfo, scope_id]) tuple
 * that asyncio's datagram_received gets. Shared by the C extensions
 * sfu.media._native and sfu_bench._counter (each includes it once).
 */
#ifndef SFU_SOCKADDR_H
#define SFU_SOCKADDR_H

#include <Python.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static PyObject *
address_tuple(const struct sockaddr_storage *address)
{
    char host[INET6_ADDRSTRLEN];
    if (address->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)address;
        if (inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(si)", host, ntohs(v4->sin_port));
    }
    if (address->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)address;
        if (inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host)) == NULL)
            return PyErr_SetFromErrno(PyExc_OSError);
        return Py_BuildValue("(siII)", host, ntohs(v6->sin6_port),
                             (unsigned int)ntohl(v6->sin6_flowinfo),
                             (unsigned int)v6->sin6_scope_id);
    }
    PyErr_SetString(PyExc_OSError, "datagram from an unknown address family");
    return NULL;
}

#endif
