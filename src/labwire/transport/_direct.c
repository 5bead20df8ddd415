/* labwire.transport._direct: small messages sent and received with direct libzmq calls.
 *
 * pyzmq builds a Frame object (or walks its option tables) around every call; for a message of
 * a few hundred bytes that costs several times the send or receive itself. These functions do
 * the same work on the same libzmq socket with plain C calls, and cover only what the hot paths
 * need: receive one part as bytes, ask whether more parts follow, receive a ROUTER's routing id
 * with the part after it, send parts that are all small bytes objects, and send a small request
 * then receive its reply's first part in one call (a client's call). Everything else
 * (zero-copy buffers, socket options, security) stays with pyzmq.
 *
 * One function goes further: serve_compact, the RPC server's lane for its most common request,
 * receives a compact method call, runs its handler and sends the reply without returning to
 * Python in between. It answers only what RPCServer._quick_call would answer by itself; any
 * other message is returned untouched, so the server's Python code stays the reference.
 *
 * The functions of the libzmq that pyzmq loaded are looked up when this module is imported (it
 * imports zmq first). The module refuses to load unless exactly one libzmq is in the process,
 * so every call reaches the library that owns the socket; labwire then uses pyzmq alone.
 *
 * Errors are raised through pyzmq's own zmq.error._check_rc, so callers see the same
 * exception types as from pyzmq. A socket is read from its pyzmq object on every call
 * ("underlying" is NULL once pyzmq has closed it), never cached.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <math.h>
#include <time.h>
#include <string.h>

/* From zmq.h, part of libzmq's stable ABI. */
#define ZMQ_DONTWAIT 1
#define ZMQ_SNDMORE 2
#define ZMQ_RCVMORE 13

typedef struct {
    unsigned char bytes[64];
} __attribute__((aligned(sizeof(void *)))) zmq_msg_t;

static struct {
    int (*msg_init)(zmq_msg_t *);
    int (*msg_recv)(zmq_msg_t *, void *, int);
    int (*msg_close)(zmq_msg_t *);
    void *(*msg_data)(zmq_msg_t *);
    size_t (*msg_size)(const zmq_msg_t *);
    int (*msg_more)(const zmq_msg_t *);
    const char *(*msg_gets)(const zmq_msg_t *, const char *);
    int (*send)(void *, const void *, size_t, int);
    int (*getsockopt)(void *, int, void *, size_t *);
    int (*errno_)(void);
    void (*version)(int *, int *, int *);
} zmq;

static PyObject *check_rc;        /* zmq.error._check_rc */
static PyObject *underlying_name; /* "underlying" */

/* ------------------------------------------------------------------ finding libzmq */

typedef struct {
    int count;
    char path[4096];
} found_t;

static int find_libzmq(struct dl_phdr_info *info, size_t size, void *data) {
    found_t *found = data;
    const char *name = info->dlpi_name;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    (void)size;
    if (strncmp(base, "libzmq", 6) == 0 && strlen(name) < sizeof(found->path)) {
        if (found->count == 0)
            strcpy(found->path, name);
        found->count++;
    }
    return 0;
}

static int bind_libzmq(void) {
    found_t found = {0};
    dl_iterate_phdr(find_libzmq, &found);
    if (found.count != 1) {
        PyErr_Format(PyExc_ImportError, "expected one libzmq in the process, found %d",
                     found.count);
        return -1;
    }
    void *lib = dlopen(found.path, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL) {
        PyErr_Format(PyExc_ImportError, "cannot open %s: %s", found.path, dlerror());
        return -1;
    }
#define BIND(field, symbol)                                                                 \
    *(void **)(&zmq.field) = dlsym(lib, symbol);                                            \
    if (zmq.field == NULL) {                                                                \
        PyErr_Format(PyExc_ImportError, "%s has no %s", found.path, symbol);                \
        return -1;                                                                          \
    }
    BIND(msg_init, "zmq_msg_init");
    BIND(msg_recv, "zmq_msg_recv");
    BIND(msg_close, "zmq_msg_close");
    BIND(msg_data, "zmq_msg_data");
    BIND(msg_size, "zmq_msg_size");
    BIND(msg_more, "zmq_msg_more");
    BIND(msg_gets, "zmq_msg_gets");
    BIND(send, "zmq_send");
    BIND(getsockopt, "zmq_getsockopt");
    BIND(errno_, "zmq_errno");
    BIND(version, "zmq_version");
#undef BIND
    int major, minor, patch;
    zmq.version(&major, &minor, &patch);
    if (major < 4 || (major == 4 && minor < 3)) {
        PyErr_Format(PyExc_ImportError, "libzmq %d.%d.%d is older than 4.3", major, minor,
                     patch);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ helpers */

/* Raise the exception pyzmq raises for this errno; returns NULL. */
static PyObject *raise_errno(int error) {
    PyObject *result = PyObject_CallFunction(check_rc, "ii", -1, error);
    Py_XDECREF(result);
    if (!PyErr_Occurred())
        PyErr_Format(PyExc_RuntimeError, "libzmq error %d was not raised", error);
    return NULL;
}

/* The libzmq socket of a pyzmq socket; NULL with an exception set when it is closed. */
static void *handle_of(PyObject *sock) {
    PyObject *address = PyObject_GetAttr(sock, underlying_name);
    if (address == NULL)
        return NULL;
    void *handle = PyLong_AsVoidPtr(address);
    Py_DECREF(address);
    if (handle == NULL && !PyErr_Occurred())
        raise_errno(ENOTSOCK);
    return handle;
}

/* Receive one part into msg (initialised here). 0: received; 1: nothing (EAGAIN); -1: an
 * exception is set. The GIL is released while a blocking receive waits. */
static int receive(void *handle, zmq_msg_t *msg, int flags) {
    zmq.msg_init(msg);
    for (;;) {
        int rc, error = 0;
        if (flags & ZMQ_DONTWAIT) {
            rc = zmq.msg_recv(msg, handle, flags);
            if (rc < 0)
                error = zmq.errno_();
        } else {
            Py_BEGIN_ALLOW_THREADS
            rc = zmq.msg_recv(msg, handle, flags);
            if (rc < 0)
                error = zmq.errno_();
            Py_END_ALLOW_THREADS
        }
        if (rc >= 0)
            return 0;
        if (error == EINTR) { /* run Python's signal handlers, then wait on */
            if (PyErr_CheckSignals() == 0)
                continue;
        } else if (error == EAGAIN) {
            zmq.msg_close(msg);
            return 1;
        } else {
            raise_errno(error);
        }
        zmq.msg_close(msg);
        return -1;
    }
}

/* The part's bytes; the message is closed either way. */
static PyObject *take_bytes(zmq_msg_t *msg) {
    PyObject *data = PyBytes_FromStringAndSize(zmq.msg_data(msg), (Py_ssize_t)zmq.msg_size(msg));
    zmq.msg_close(msg);
    return data;
}

/* Check the argument count and read the int flags at args[index]; -1 with an exception set. */
static int parse_args(const char *name, Py_ssize_t nargs, Py_ssize_t expected, PyObject *value,
                      int *flags) {
    if (nargs != expected) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, expected,
                     nargs);
        return -1;
    }
    long number = PyLong_AsLong(value);
    if (number == -1 && PyErr_Occurred())
        return -1;
    *flags = (int)number;
    return 0;
}

/* ------------------------------------------------------------------ module functions */

PyDoc_STRVAR(recv_doc, "recv(socket, flags) -> bytes | None\n\n"
                       "Receive one part as bytes; None when nothing is there (EAGAIN).");

static PyObject *direct_recv(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    int flags;
    zmq_msg_t msg;
    (void)module;
    if (parse_args("recv", nargs, 2, nargs == 2 ? args[1] : NULL, &flags) < 0)
        return NULL;
    void *handle = handle_of(args[0]);
    if (handle == NULL)
        return NULL;
    int got = receive(handle, &msg, flags);
    if (got == 1)
        Py_RETURN_NONE;
    return got < 0 ? NULL : take_bytes(&msg);
}

PyDoc_STRVAR(rcvmore_doc, "rcvmore(socket) -> bool\n\n"
                          "Whether more parts of the message being received follow.");

static PyObject *direct_rcvmore(PyObject *module, PyObject *sock) {
    int more = 0;
    size_t size = sizeof(more);
    (void)module;
    void *handle = handle_of(sock);
    if (handle == NULL)
        return NULL;
    if (zmq.getsockopt(handle, ZMQ_RCVMORE, &more, &size) < 0)
        return raise_errno(zmq.errno_());
    return PyBool_FromLong(more);
}

PyDoc_STRVAR(recv_routed_doc,
             "recv_routed(socket, flags) -> (identity, first, more, peer_address) | None\n\n"
             "Receive a ROUTER's routing id and the part after it, as bytes, with whether more\n"
             "parts follow and the sender's address (\"\" when the transport has none). None\n"
             "when nothing is there (EAGAIN).");

/* Receive a ROUTER's routing id as bytes, and the part after it into msg, left open.
 * 0: received; 1: nothing (EAGAIN); -1: an exception is set. */
static int receive_routed(void *handle, int flags, PyObject **identity, zmq_msg_t *msg) {
    int got = receive(handle, msg, flags);
    if (got != 0)
        return got;
    *identity = take_bytes(msg);
    if (*identity == NULL)
        return -1;
    /* A ROUTER delivers the routing id and the sender's parts as one message: the next part
     * is already there, so this receive does not wait. */
    if (receive(handle, msg, ZMQ_DONTWAIT) != 0) {
        Py_CLEAR(*identity);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_RuntimeError, "a routed message ended after its routing id");
        return -1;
    }
    return 0;
}

/* recv_routed()'s tuple for a routing id and the open part after it (closed here), whose
 * bytes are `first`. */
static PyObject *routed_tuple(PyObject *identity, PyObject *first, zmq_msg_t *msg) {
    int more = zmq.msg_more(msg);
    const char *address = zmq.msg_gets(msg, "Peer-Address");
    PyObject *peer = PyUnicode_DecodeUTF8(address ? address : "",
                                          address ? (Py_ssize_t)strlen(address) : 0, "replace");
    zmq.msg_close(msg);
    if (peer == NULL)
        return NULL;
    PyObject *result = PyTuple_Pack(4, identity, first, more ? Py_True : Py_False, peer);
    Py_DECREF(peer);
    return result;
}

static PyObject *direct_recv_routed(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    int flags;
    zmq_msg_t msg;
    PyObject *identity = NULL;
    (void)module;
    if (parse_args("recv_routed", nargs, 2, nargs == 2 ? args[1] : NULL, &flags) < 0)
        return NULL;
    void *handle = handle_of(args[0]);
    if (handle == NULL)
        return NULL;
    int got = receive_routed(handle, flags, &identity, &msg);
    if (got != 0)
        return got == 1 ? Py_NewRef(Py_None) : NULL;
    PyObject *first = PyBytes_FromStringAndSize(zmq.msg_data(&msg), (Py_ssize_t)zmq.msg_size(&msg));
    PyObject *result = NULL;
    if (first != NULL)
        result = routed_tuple(identity, first, &msg);
    else
        zmq.msg_close(&msg);
    Py_DECREF(identity);
    Py_XDECREF(first);
    return result;
}

static PyObject *send_parts(void *handle, PyObject **items, Py_ssize_t count, int flags);

PyDoc_STRVAR(send_doc,
             "send(socket, parts, flags, below) -> bool | NotImplemented\n\n"
             "Send a message whose parts (a list or tuple) are all bytes shorter than `below`,\n"
             "copying each. False when the first part cannot be queued (EAGAIN with\n"
             "ZMQ_DONTWAIT). NotImplemented, with nothing sent, when a part is anything else.");

static PyObject *direct_send(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    int flags;
    (void)module;
    if (parse_args("send", nargs, 4, nargs == 4 ? args[2] : NULL, &flags) < 0)
        return NULL;
    PyObject *parts = args[1];
    if (!PyList_CheckExact(parts) && !PyTuple_CheckExact(parts))
        Py_RETURN_NOTIMPLEMENTED;
    Py_ssize_t below = PyLong_AsSsize_t(args[3]);
    if (below == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(parts);
    PyObject **items = PySequence_Fast_ITEMS(parts);
    if (count == 0)
        Py_RETURN_NOTIMPLEMENTED;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (!PyBytes_CheckExact(items[i]) || PyBytes_GET_SIZE(items[i]) >= below)
            Py_RETURN_NOTIMPLEMENTED;
    }
    void *handle = handle_of(args[0]);
    if (handle == NULL)
        return NULL;
    /* A send that may wait releases the GIL, and another thread could then change a list:
     * such a send works on a tuple of the parts, which nothing else can change. A send that
     * does not wait keeps the GIL, so `parts` itself holds the parts for the whole call. */
    PyObject *held = NULL;
    if (!(flags & ZMQ_DONTWAIT)) {
        held = PySequence_Tuple(parts);
        if (held == NULL)
            return NULL;
        items = PySequence_Fast_ITEMS(held);
    }
    PyObject *result = send_parts(handle, items, count, flags);
    Py_XDECREF(held);
    return result;
}

/* Send `count` bytes objects as one message; see direct_send. */
static PyObject *send_parts(void *handle, PyObject **items, Py_ssize_t count, int flags) {
    for (Py_ssize_t i = 0; i < count; i++) {
        int part_flags = flags | (i + 1 < count ? ZMQ_SNDMORE : 0);
        const char *data = PyBytes_AS_STRING(items[i]);
        size_t size = (size_t)PyBytes_GET_SIZE(items[i]);
        for (;;) {
            int rc, error = 0;
            if (flags & ZMQ_DONTWAIT) {
                rc = zmq.send(handle, data, size, part_flags);
                if (rc < 0)
                    error = zmq.errno_();
            } else {
                Py_BEGIN_ALLOW_THREADS
                rc = zmq.send(handle, data, size, part_flags);
                if (rc < 0)
                    error = zmq.errno_();
                Py_END_ALLOW_THREADS
            }
            if (rc >= 0)
                break;
            if (error == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    return NULL;
                continue;
            }
            /* A multipart message is atomic: once its first part is queued, so are the rest. */
            if (error == EAGAIN && i == 0)
                Py_RETURN_FALSE;
            return raise_errno(error);
        }
    }
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(request_doc,
             "request(socket, part, below) -> bytes | None | False | NotImplemented\n\n"
             "Send `part`, bytes shorter than `below`, as a message without waiting, then receive\n"
             "the first part of the next message, as recv() does. False when the message cannot\n"
             "be queued (EAGAIN); None when it was sent and nothing came (EAGAIN on the receive);\n"
             "NotImplemented, with nothing sent, when `part` is anything else.");

static PyObject *direct_request(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    zmq_msg_t msg;
    (void)module;
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "request() takes 3 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *part = args[1];
    Py_ssize_t below = PyLong_AsSsize_t(args[2]);
    if (below == -1 && PyErr_Occurred())
        return NULL;
    if (!PyBytes_CheckExact(part) || PyBytes_GET_SIZE(part) >= below)
        Py_RETURN_NOTIMPLEMENTED;
    void *handle = handle_of(args[0]);
    if (handle == NULL)
        return NULL;
    PyObject *sent = send_parts(handle, &part, 1, ZMQ_DONTWAIT);
    if (sent != Py_True)
        return sent; /* False, or NULL with an exception set */
    Py_DECREF(sent);
    int got = receive(handle, &msg, 0);
    if (got == 1)
        Py_RETURN_NONE;
    return got < 0 ? NULL : take_bytes(&msg);
}

/* ------------------------------------------------------------------ the RPC server's lane */

/* Attribute names read on every call, interned once. */
static PyObject *one; /* 1 */
static PyObject *name_method, *name_args, *name_kwargs, *name_cid, *name_rid, *name_ttl,
    *name_exp, *name_sid, *name_recent, *name_older, *name_recent_since, *name_retire,
    *name_requests, *name_unroutable;

/* The lane tuple's items (see serve_compact_doc). */
enum {
    LANE_SERVER,
    LANE_DECODE,
    LANE_CALL_TYPE,
    LANE_METHODS,
    LANE_SERVER_ID,
    LANE_JOBS,
    LANE_MAX_BYTES,
    LANE_INT_BOUND,
    LANE_ENCODE,
    LANE_TAKEOVER,
    LANE_REPLY_MAX,
    LANE_ENTRIES,
    LANE_SECONDS,
    LANE_STATS,
    LANE_SIZE
};

static double monotonic(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now); /* the clock of Python's time.monotonic() */
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

/* |value| < bound for an int value, as decode_compact() checks; -1 with an exception set. */
static int int_within(PyObject *value, long long bound) {
    int overflow;
    long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (number == -1 && PyErr_Occurred())
        return -1;
    return !overflow && number > -bound && number < bound;
}

/* Add one to a counter attribute of the server's stats; -1 with an exception set. */
static int count(PyObject *stats, PyObject *name) {
    PyObject *value = PyObject_GetAttr(stats, name);
    if (value == NULL)
        return -1;
    PyObject *more = PyNumber_Add(value, one);
    Py_DECREF(value);
    if (more == NULL)
        return -1;
    int rc = PyObject_SetAttr(stats, name, more);
    Py_DECREF(more);
    return rc;
}

/* Whether the decoded `call` is the common case the lane answers: no keyword arguments, a
 * request id (and wait) within the bound, only scalar arguments, a JSON method, an expiry on
 * this incarnation's clock that has not passed, not a duplicate. Fills `key` and `received`.
 * 1: yes; 0: no (nothing changed); -1: an exception is set. */
static int is_common(PyObject *lane, PyObject *call, PyObject **key, double *received) {
    long long bound = PyLong_AsLongLong(PyTuple_GET_ITEM(lane, LANE_INT_BOUND));
    if (bound == -1 && PyErr_Occurred())
        return -1;
    int common = 0;
    PyObject *kwargs = PyObject_GetAttr(call, name_kwargs);
    PyObject *args = PyObject_GetAttr(call, name_args);
    PyObject *rid = PyObject_GetAttr(call, name_rid);
    PyObject *ttl = PyObject_GetAttr(call, name_ttl);
    PyObject *exp = PyObject_GetAttr(call, name_exp);
    PyObject *sid = PyObject_GetAttr(call, name_sid);
    PyObject *method = PyObject_GetAttr(call, name_method);
    PyObject *cid = PyObject_GetAttr(call, name_cid);
    if (!kwargs || !args || !rid || !ttl || !exp || !sid || !method || !cid) {
        common = -1;
        goto done;
    }
    if (!PyDict_CheckExact(kwargs) || PyDict_GET_SIZE(kwargs) != 0 || !PyList_CheckExact(args))
        goto done;
    if ((common = int_within(rid, bound)) != 1)
        goto done;
    if (ttl != Py_None && (common = int_within(ttl, bound)) != 1)
        goto done;
    common = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(args); i++) {
        PyObject *value = PyList_GET_ITEM(args, i);
        if (PyLong_CheckExact(value)) {
            int within = int_within(value, bound);
            if (within != 1) {
                common = within;
                goto done;
            }
        } else if (!PyUnicode_CheckExact(value) && !PyFloat_CheckExact(value) &&
                   !PyBool_Check(value) && value != Py_None) {
            goto done; /* containers: decode_compact() checks them against the text */
        }
    }
    int listed = PyDict_Contains(PyTuple_GET_ITEM(lane, LANE_METHODS), method);
    if (listed != 1) {
        common = listed;
        goto done;
    }
    if (!PyFloat_CheckExact(exp))
        goto done;
    int same = PyObject_RichCompareBool(sid, PyTuple_GET_ITEM(lane, LANE_SERVER_ID), Py_EQ);
    if (same != 1) {
        common = same;
        goto done;
    }
    *received = monotonic();
    if (*received > PyFloat_AS_DOUBLE(exp))
        goto done;
    PyObject *server = PyTuple_GET_ITEM(lane, LANE_SERVER);
    *key = PyTuple_Pack(2, cid, rid);
    if (*key == NULL) {
        common = -1;
        goto done;
    }
    for (int generation = 0; generation < 2; generation++) {
        PyObject *table = PyObject_GetAttr(server, generation ? name_older : name_recent);
        int seen = table == NULL ? -1 : PyDict_Contains(table, *key);
        Py_XDECREF(table);
        if (seen != 0) {
            Py_CLEAR(*key);
            common = seen > 0 ? 0 : -1;
            goto done;
        }
    }
    common = 1;
done:
    Py_XDECREF(kwargs);
    Py_XDECREF(args);
    Py_XDECREF(rid);
    Py_XDECREF(ttl);
    Py_XDECREF(exp);
    Py_XDECREF(sid);
    Py_XDECREF(method);
    Py_XDECREF(cid);
    return common;
}

/* Keep a sent reply for duplicates, as RPCServer._remember() does; -1 with an exception set. */
static int remember(PyObject *lane, PyObject *key, PyObject *frame, double received) {
    PyObject *server = PyTuple_GET_ITEM(lane, LANE_SERVER);
    Py_ssize_t reply_max = PyLong_AsSsize_t(PyTuple_GET_ITEM(lane, LANE_REPLY_MAX));
    Py_ssize_t entries = PyLong_AsSsize_t(PyTuple_GET_ITEM(lane, LANE_ENTRIES));
    double seconds = PyFloat_AsDouble(PyTuple_GET_ITEM(lane, LANE_SECONDS));
    if (PyErr_Occurred())
        return -1;
    PyObject *recent = PyObject_GetAttr(server, name_recent);
    if (recent == NULL)
        return -1;
    /* The reply as the server keeps it: its frames, or None when it is too big to keep. */
    PyObject *body = Py_NewRef(Py_None);
    if (PyBytes_GET_SIZE(frame) <= reply_max) {
        Py_SETREF(body, PyList_New(1));
        if (body != NULL)
            PyList_SET_ITEM(body, 0, Py_NewRef(frame));
    }
    int stored = body == NULL ? -1 : PyDict_SetItem(recent, key, body);
    Py_XDECREF(body);
    if (stored < 0) {
        Py_DECREF(recent);
        return -1;
    }
    Py_ssize_t size = PyDict_GET_SIZE(recent);
    Py_DECREF(recent);
    PyObject *since = PyObject_GetAttr(server, name_recent_since);
    if (since == NULL)
        return -1;
    double since_value = PyFloat_AsDouble(since);
    Py_DECREF(since);
    if (since_value == -1.0 && PyErr_Occurred())
        return -1;
    if (size >= entries || received - since_value >= seconds) {
        PyObject *now = PyFloat_FromDouble(received);
        PyObject *done = now ? PyObject_CallMethodOneArg(server, name_retire, now) : NULL;
        Py_XDECREF(now);
        if (done == NULL)
            return -1;
        Py_DECREF(done);
    }
    return 0;
}

/* Run the call's handler and answer it: see serve_compact_doc. */
static PyObject *answer(void *handle, PyObject *lane, PyObject *identity, PyObject *call,
                        PyObject *key, double received) {
    PyObject *server = PyTuple_GET_ITEM(lane, LANE_SERVER);
    PyObject *jobs = PyTuple_GET_ITEM(lane, LANE_JOBS);
    PyObject *result = NULL, *outcome = NULL, *frame = NULL, *args = NULL, *function = NULL;
    int failed = 0;
    PyObject *me = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    PyObject *start = PyFloat_FromDouble(received);
    PyObject *job = (me && start) ? PyTuple_Pack(2, start, key) : NULL;
    if (job == NULL || count(PyTuple_GET_ITEM(lane, LANE_STATS), name_requests) < 0 ||
        PyDict_SetItem(jobs, me, job) < 0) /* read by the watchdog */
        goto done;
    PyObject *method = PyObject_GetAttr(call, name_method);
    if (method != NULL) {
        function = PyObject_GetAttr(server, method);
        Py_DECREF(method);
    }
    args = PyObject_GetAttr(call, name_args);
    if (function != NULL && args != NULL)
        outcome = PyObject_Vectorcall(function, PySequence_Fast_ITEMS(args),
                                      (size_t)PyList_GET_SIZE(args), NULL);
    if (outcome == NULL) {
        /* Like the server's `except Exception`: anything else goes on up. */
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            goto done;
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        PyErr_NormalizeException(&type, &value, &traceback);
        if (traceback != NULL)
            PyException_SetTraceback(value, traceback);
        Py_XDECREF(type);
        Py_XDECREF(traceback);
        outcome = value;
        failed = 1;
    } else if (PyLong_CheckExact(outcome) || PyUnicode_CheckExact(outcome) ||
               PyBool_Check(outcome) || outcome == Py_None ||
               (PyFloat_CheckExact(outcome) && isfinite(PyFloat_AS_DOUBLE(outcome)))) {
        PyObject *rid = PyObject_GetAttr(call, name_rid);
        PyObject *reply =
            rid ? PyTuple_Pack(3, rid, PyTuple_GET_ITEM(lane, LANE_SERVER_ID), outcome) : NULL;
        Py_XDECREF(rid);
        if (reply == NULL)
            goto done;
        frame = PyObject_CallOneArg(PyTuple_GET_ITEM(lane, LANE_ENCODE), reply);
        Py_DECREF(reply);
        if (frame == NULL)
            PyErr_Clear(); /* the server's general reply code says what cannot be encoded */
        else if (!PyBytes_CheckExact(frame) || PyBytes_GET_SIZE(frame) >= 65536)
            Py_CLEAR(frame);
    }
    if (PyDict_SetItem(jobs, me, Py_None) < 0)
        goto done;
    /* As RPCServer._finish(): the clock is read after the job is cleared; a handler that ended
     * sooner than the takeover time still holds the socket. */
    double takeover = PyFloat_AsDouble(PyTuple_GET_ITEM(lane, LANE_TAKEOVER));
    if (takeover == -1.0 && PyErr_Occurred())
        goto done;
    if (frame == NULL || monotonic() - received >= takeover) {
        PyObject *start_again = PyFloat_FromDouble(received);
        if (start_again != NULL)
            result = PyTuple_Pack(6, identity, call, start_again, key, outcome,
                                  failed ? Py_True : Py_False);
        Py_XDECREF(start_again);
        goto done;
    }
    PyObject *parts[2] = {identity, frame};
    PyObject *sent = send_parts(handle, parts, 2, ZMQ_DONTWAIT);
    if (sent == NULL)
        goto done;
    int queued = sent == Py_True;
    Py_DECREF(sent);
    if ((!queued && count(PyTuple_GET_ITEM(lane, LANE_STATS), name_unroutable) < 0) ||
        remember(lane, key, frame, received) < 0)
        goto done;
    result = Py_NewRef(Py_True);
done:
    Py_XDECREF(me);
    Py_XDECREF(start);
    Py_XDECREF(job);
    Py_XDECREF(function);
    Py_XDECREF(args);
    Py_XDECREF(outcome);
    Py_XDECREF(frame);
    return result;
}

PyDoc_STRVAR(
    serve_compact_doc,
    "serve_compact(socket, lane) -> True | (identity, first, more, peer_address) | tuple | "
    "None\n\n"
    "The RPC server's lane for its most common request: receive one message on a ROUTER\n"
    "socket, as recv_routed(socket, 0) does; when it is a compact call that RPCServer's quick\n"
    "path would answer without help (decoded by the lane's decoder; no keyword arguments,\n"
    "scalar arguments within the bound, a JSON method, a live expiry on this incarnation's\n"
    "clock, not a duplicate), run its handler here and answer it.\n\n"
    "`lane` is the tuple (server, decode, CompactCall, json_methods, server_id, jobs,\n"
    "max_bytes, int_bound, encode, takeover_seconds, reply_max_bytes, dedup_entries,\n"
    "dedup_seconds, stats). Returns True when the call was answered (its reply sent and kept\n"
    "in server._recent); None when nothing came in time; recv_routed()'s 4-tuple, with\n"
    "nothing done, for any other message; or, when the handler ran but its answer needs the\n"
    "server (it raised, its result is not one JSON scalar, or it ran for the takeover time),\n"
    "(identity, call, started, key, result or exception, raised).");

static PyObject *direct_serve_compact(PyObject *module, PyObject *const *args,
                                      Py_ssize_t nargs) {
    zmq_msg_t msg;
    (void)module;
    if (nargs != 2 || !PyTuple_CheckExact(args[1]) || PyTuple_GET_SIZE(args[1]) != LANE_SIZE) {
        PyErr_SetString(PyExc_TypeError, "serve_compact() takes a socket and a lane tuple");
        return NULL;
    }
    PyObject *lane = args[1];
    Py_ssize_t max_bytes = PyLong_AsSsize_t(PyTuple_GET_ITEM(lane, LANE_MAX_BYTES));
    if (max_bytes == -1 && PyErr_Occurred())
        return NULL;
    void *handle = handle_of(args[0]);
    if (handle == NULL)
        return NULL;
    PyObject *identity = NULL;
    int got = receive_routed(handle, 0, &identity, &msg);
    if (got != 0)
        return got == 1 ? Py_NewRef(Py_None) : NULL;
    int more = zmq.msg_more(&msg);
    size_t size = zmq.msg_size(&msg);
    PyObject *first = PyBytes_FromStringAndSize(zmq.msg_data(&msg), (Py_ssize_t)size);
    PyObject *call = NULL, *key = NULL, *result = NULL;
    double received = 0.0;
    int common = 0;
    if (first == NULL)
        goto fail;
    /* Without a colon the text has no object keys, so no keyword arguments. */
    if (!more && size <= (size_t)max_bytes && memchr(zmq.msg_data(&msg), ':', size) == NULL) {
        call = PyObject_CallOneArg(PyTuple_GET_ITEM(lane, LANE_DECODE), first);
        if (call == NULL)
            PyErr_Clear(); /* the general path decodes it again and says what is wrong */
        else if ((PyObject *)Py_TYPE(call) == PyTuple_GET_ITEM(lane, LANE_CALL_TYPE))
            common = is_common(lane, call, &key, &received);
        if (common < 0)
            goto fail;
    }
    if (common) {
        zmq.msg_close(&msg);
        result = answer(handle, lane, identity, call, key, received);
    } else {
        result = routed_tuple(identity, first, &msg);
    }
    Py_DECREF(identity);
    Py_DECREF(first);
    Py_XDECREF(call);
    Py_XDECREF(key);
    return result;
fail:
    zmq.msg_close(&msg);
    Py_DECREF(identity);
    Py_XDECREF(first);
    Py_XDECREF(call);
    Py_XDECREF(key);
    return NULL;
}

static PyMethodDef methods[] = {
    {"recv", (PyCFunction)(void (*)(void))direct_recv, METH_FASTCALL, recv_doc},
    {"rcvmore", direct_rcvmore, METH_O, rcvmore_doc},
    {"recv_routed", (PyCFunction)(void (*)(void))direct_recv_routed, METH_FASTCALL,
     recv_routed_doc},
    {"send", (PyCFunction)(void (*)(void))direct_send, METH_FASTCALL, send_doc},
    {"request", (PyCFunction)(void (*)(void))direct_request, METH_FASTCALL, request_doc},
    {"serve_compact", (PyCFunction)(void (*)(void))direct_serve_compact, METH_FASTCALL,
     serve_compact_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "labwire.transport._direct",
    "Small messages sent and received with direct libzmq calls (see _direct.c).",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__direct(void) {
    PyObject *error_module = PyImport_ImportModule("zmq.error");
    if (error_module == NULL)
        return NULL;
    check_rc = PyObject_GetAttrString(error_module, "_check_rc");
    Py_DECREF(error_module);
    if (check_rc == NULL)
        return NULL;
    underlying_name = PyUnicode_InternFromString("underlying");
    if (underlying_name == NULL || bind_libzmq() < 0)
        return NULL;
    struct {
        PyObject **name;
        const char *text;
    } names[] = {
        {&name_method, "method"},         {&name_args, "args"},
        {&name_kwargs, "kwargs"},         {&name_cid, "cid"},
        {&name_rid, "rid"},               {&name_ttl, "ttl"},
        {&name_exp, "exp"},               {&name_sid, "sid"},
        {&name_recent, "_recent"},        {&name_older, "_older"},
        {&name_recent_since, "_recent_since"}, {&name_retire, "_retire_replies"},
        {&name_requests, "requests"},     {&name_unroutable, "unroutable"},
    };
    one = PyLong_FromLong(1);
    if (one == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        *names[i].name = PyUnicode_InternFromString(names[i].text);
        if (*names[i].name == NULL)
            return NULL;
    }
    return PyModule_Create(&module_def);
}
