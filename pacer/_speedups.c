/* Optional C speed-up for pacer.Detokenizer.feed and .ingest: the quick paths of one id.
 *
 * A FeedMethod stands on the Detokenizer class in place of ``feed``, and another in
 * place of ``ingest`` (what a pipeline calls). Each instance keeps a TableState in a
 * ``__slots__`` member (``_lookup_state``), read at its offset. The Detokenizer sets
 * the state's ``mode``; for one exact ``int`` id:
 *
 * - mode 1 or 2, no bytes of an unfinished character pending, the id in the table (a
 *   tuple indexed by id, ``None`` where the id has no fixed text): that text;
 * - mode 2, the id has bytes (``pieces``, ``None`` where it may not be decoded alone):
 *   the pending bytes and these, decoded as ``codecs.utf_8_decode(data, errors, False)``
 *   decodes them (the same C function), the bytes of a character not yet finished
 *   kept in ``pending`` for the next id;
 * - mode 4 (decoders with transformers' clean-up), nothing pending, the id in the
 *   ``inert`` table (the texts the clean-up leaves as they are): that text;
 * - mode 3 (decoders with byte-fallback runs, HF ``ByteFallback``): ``runs`` says what
 *   the id is to a run. A byte (0-255) joins the pending run, an id skipped (-2)
 *   leaves it, and any other id with a table text closes it: the run's UTF-8, or one
 *   U+FFFD a byte if any of it is invalid, then the id's text.
 *
 * The pure-Python paths read and write ``pending`` too: it is the one place those
 * bytes live.
 *
 * ``feed`` returns ``[text]`` (``[]`` for a decode that completes nothing); ``ingest``
 * returns ``[Chunk(text, now)]``, or ``[]`` for an empty text. That is what the
 * pure-Python paths do, without the cost of a Python-level call. Anything else
 * (another type, a time argument to ``feed``, an id in neither table, mode 0) calls
 * the pure-Python method, which owns every rule and every error. Nothing here refers
 * back to an instance: no reference cycles.
 *
 * Cost: one type check, one tuple index, at most one UTF-8 decode of a few bytes and
 * one one-element list per token (and one Chunk, for ``ingest``).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* The per-instance state the fast path reads: a Detokenizer keeps one in a slot. */
typedef struct {
    PyObject_HEAD
    PyObject *table;   /* tuple: id -> str, or None */
    PyObject *pieces;  /* tuple: id -> bytes, or None */
    PyObject *errors;  /* str: the UTF-8 decoder's error handler */
    PyObject *pending; /* bytes of an unfinished character or run (set by the Python paths too) */
    PyObject *runs;    /* tuple: id -> its byte, -2 (skipped) or -1; empty without runs */
    PyObject *inert;   /* tuple: id -> str the clean-up leaves as it is, or None; may be empty */
    Py_ssize_t count;  /* ids the fast path has taken */
    int mode;          /* set by the Detokenizer: 0 none, 2 the table and the bytes, 3 runs, 4 inert */
} TableState;

static int
TableState_init(TableState *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"table", "pieces", "errors", "runs", "inert", NULL};
    PyObject *table, *pieces, *errors, *runs = NULL, *inert = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!U|O!O!:TableState", names, &PyTuple_Type, &table,
                                     &PyTuple_Type, &pieces, &errors, &PyTuple_Type, &runs, &PyTuple_Type,
                                     &inert)) {
        return -1;
    }
    Py_XSETREF(self->runs, runs == NULL ? PyTuple_New(0) : Py_NewRef(runs));
    Py_XSETREF(self->inert, inert == NULL ? PyTuple_New(0) : Py_NewRef(inert));
    if (self->runs == NULL || self->inert == NULL) {
        return -1;
    }
    if (PyUnicode_AsUTF8(errors) == NULL) {
        return -1;
    }
    Py_XSETREF(self->table, Py_NewRef(table));
    Py_XSETREF(self->pieces, Py_NewRef(pieces));
    Py_XSETREF(self->errors, Py_NewRef(errors));
    Py_XSETREF(self->pending, PyBytes_FromStringAndSize(NULL, 0));
    self->count = 0;
    self->mode = 0;
    return self->pending == NULL ? -1 : 0;
}

static void
TableState_dealloc(TableState *self)
{
    Py_CLEAR(self->table);
    Py_CLEAR(self->pieces);
    Py_CLEAR(self->errors);
    Py_CLEAR(self->pending);
    Py_CLEAR(self->runs);
    Py_CLEAR(self->inert);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *TableState_run(TableState *s, Py_ssize_t id, int *taken);

static PyMemberDef TableState_members[] = {
    {"mode", T_INT, offsetof(TableState, mode), 0, "0: no quick path; 2: the table and the bytes; 3: runs; 4: the inert table."},
    {"count", T_PYSSIZET, offsetof(TableState, count), 0, "Ids taken by the fast path."},
    {"pending", T_OBJECT_EX, offsetof(TableState, pending), 0, "Bytes of an unfinished character."},
    {NULL},
};

/* Where the valid UTF-8 in ``data[0:size]`` (at most 4 bytes) stands: 1 with ``*cp`` set
 * when it is exactly one whole character, 0 when it is the valid start of one not yet
 * finished, -1 for anything else (several characters, or bytes the decoder would report
 * as invalid: the general decoder then says what they give). The ranges are the
 * decoder's own (Unicode's well-formed sequences, table 3-7): no overlong form, no
 * surrogate, nothing above U+10FFFF. */
static int
utf8_one(const unsigned char *data, Py_ssize_t size, Py_UCS4 *cp)
{
    if (size < 1 || size > 4) {
        return -1;
    }
    unsigned char lead = data[0];
    int need;
    unsigned char lo = 0x80, hi = 0xBF; /* the second byte's range */
    if (lead >= 0xC2 && lead <= 0xDF) {
        need = 2;
    }
    else if (lead >= 0xE0 && lead <= 0xEF) {
        need = 3;
        if (lead == 0xE0) {
            lo = 0xA0;
        }
        else if (lead == 0xED) {
            hi = 0x9F;
        }
    }
    else if (lead >= 0xF0 && lead <= 0xF4) {
        need = 4;
        if (lead == 0xF0) {
            lo = 0x90;
        }
        else if (lead == 0xF4) {
            hi = 0x8F;
        }
    }
    else {
        return -1; /* ASCII (several characters are for the general path) or not a lead */
    }
    if (size > need) {
        return -1;
    }
    if (size > 1 && (data[1] < lo || data[1] > hi)) {
        return -1;
    }
    for (Py_ssize_t k = 2; k < size; k++) {
        if (data[k] < 0x80 || data[k] > 0xBF) {
            return -1;
        }
    }
    if (size < need) {
        return 0;
    }
    Py_UCS4 value = lead & (0x7F >> need);
    for (Py_ssize_t k = 1; k < size; k++) {
        value = (value << 6) | (data[k] & 0x3F);
    }
    *cp = value;
    return 1;
}

/* The text ``piece`` completes after the pending bytes; the bytes of a character it leaves
 * unfinished become the pending ones. A new reference, or NULL with an exception set.
 * The usual cases of text split across tokens (a character's first bytes; the bytes that
 * finish one) skip the general decoder and its buffer. */
static PyObject *
TableState_decode(TableState *s, PyObject *piece)
{
    {
        Py_ssize_t held = PyBytes_GET_SIZE(s->pending), size = PyBytes_GET_SIZE(piece);
        if (held + size <= 4) {
            unsigned char both[4];
            memcpy(both, PyBytes_AS_STRING(s->pending), held);
            memcpy(both + held, PyBytes_AS_STRING(piece), size);
            Py_UCS4 cp;
            int found = utf8_one(both, held + size, &cp);
            if (found == 0) { /* still unfinished: all of it waits */
                PyObject *rest = held ? PyBytes_FromStringAndSize((const char *)both, held + size) : Py_NewRef(piece);
                if (rest == NULL) {
                    return NULL;
                }
                Py_SETREF(s->pending, rest);
                return PyUnicode_New(0, 0);
            }
            if (found == 1) {
                PyObject *text = PyUnicode_FromOrdinal((int)cp);
                if (text != NULL && held) {
                    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
                    if (empty == NULL) {
                        Py_CLEAR(text);
                    }
                    else {
                        Py_SETREF(s->pending, empty);
                    }
                }
                return text;
            }
        }
    }
    Py_ssize_t held = PyBytes_GET_SIZE(s->pending), size = PyBytes_GET_SIZE(piece);
    const char *data = PyBytes_AS_STRING(piece);
    char joined[64];
    PyObject *whole = NULL;
    if (held) {
        if (held + size <= (Py_ssize_t)sizeof(joined)) {
            memcpy(joined, PyBytes_AS_STRING(s->pending), held);
            memcpy(joined + held, data, size);
            data = joined;
        }
        else {
            whole = PyBytes_FromStringAndSize(NULL, held + size);
            if (whole == NULL) {
                return NULL;
            }
            memcpy(PyBytes_AS_STRING(whole), PyBytes_AS_STRING(s->pending), held);
            memcpy(PyBytes_AS_STRING(whole) + held, data, size);
            data = PyBytes_AS_STRING(whole);
        }
        size += held;
    }
    Py_ssize_t used = 0;
    PyObject *text = PyUnicode_DecodeUTF8Stateful(data, size, PyUnicode_AsUTF8(s->errors), &used);
    if (text != NULL && (used != size || held)) {
        PyObject *rest = PyBytes_FromStringAndSize(data + used, size - used);
        if (rest == NULL) {
            Py_CLEAR(text);
        }
        else {
            Py_SETREF(s->pending, rest);
        }
    }
    Py_XDECREF(whole);
    return text;
}

static PyTypeObject TableStateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pacer._speedups.TableState",
    .tp_doc = PyDoc_STR("TableState(table): what FeedMethod's fast path reads, per Detokenizer."),
    .tp_basicsize = sizeof(TableState),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)TableState_init,
    .tp_dealloc = (destructor)TableState_dealloc,
    .tp_members = TableState_members,
};

/* Mode 3: what id ``id`` gives with byte-fallback runs. Sets ``*taken`` when the id is
 * this path's: then the text (a new reference; empty for a byte or a skipped id), or
 * NULL with an exception set. Leaves ``*taken`` 0 (and returns NULL, no exception)
 * for an id the Python path must take. */
static PyObject *
TableState_run(TableState *s, Py_ssize_t id, int *taken)
{
    *taken = 0;
    if (id < 0 || id >= PyTuple_GET_SIZE(s->runs) || id >= PyTuple_GET_SIZE(s->table)) {
        return NULL;
    }
    long kind = PyLong_AsLong(PyTuple_GET_ITEM(s->runs, id));
    if (kind == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    Py_ssize_t held = PyBytes_GET_SIZE(s->pending);
    if (kind >= 0 || kind == -2) {
        *taken = 1;
        if (kind >= 0) {
            PyObject *run = PyBytes_FromStringAndSize(NULL, held + 1);
            if (run == NULL) {
                return NULL;
            }
            memcpy(PyBytes_AS_STRING(run), PyBytes_AS_STRING(s->pending), held);
            PyBytes_AS_STRING(run)[held] = (char)kind;
            Py_SETREF(s->pending, run);
        }
        return PyUnicode_FromStringAndSize(NULL, 0);
    }
    PyObject *text = PyTuple_GET_ITEM(s->table, id);
    if (text == Py_None) {
        return NULL;
    }
    *taken = 1;
    if (held == 0) {
        return Py_NewRef(text);
    }
    PyObject *run = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(s->pending), held, "strict");
    if (run == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            return NULL;
        }
        PyErr_Clear();
        run = PyUnicode_New(held, 0xFFFD);
        if (run == NULL) {
            return NULL;
        }
        for (Py_ssize_t k = 0; k < held; k++) {
            PyUnicode_WRITE(PyUnicode_KIND(run), PyUnicode_DATA(run), k, 0xFFFD);
        }
    }
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    if (empty == NULL) {
        Py_DECREF(run);
        return NULL;
    }
    Py_SETREF(s->pending, empty);
    PyObject *joined = PyUnicode_Concat(run, text);
    Py_DECREF(run);
    return joined;
}

/* A method descriptor put on the Detokenizer class in place of ``feed`` (``chunk``
 * NULL) or ``ingest`` (``chunk`` set). Called as ``detokenizer.feed(id)`` or
 * ``detokenizer.ingest(id, now)`` it reads the instance's ``_lookup_state`` and answers
 * from the table when it can; anything else calls the pure-Python ``fallback`` with the
 * same arguments. Being a method descriptor, a call through an instance makes no
 * bound method; ``detokenizer.feed`` on its own gives an ordinary bound method. */
typedef struct {
    PyObject_HEAD
    PyObject *fallback;        /* the pure-Python feed(self, item, now=None) or ingest(self, item, now) */
    PyObject *chunk;           /* NULL for feed; for ingest, what makes a Chunk of (text, now) */
    PyTypeObject *owner_type;  /* the class whose slot holds the TableState */
    Py_ssize_t offset;         /* where that slot is in an instance */
    vectorcallfunc vectorcall;
} FeedMethod;

static PyObject *
FeedMethod_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FeedMethod *self = (FeedMethod *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs == (self->chunk == NULL ? 2 : 3) && kwnames == NULL && PyLong_CheckExact(args[1])
        && PyObject_TypeCheck(args[0], self->owner_type)) {
        PyObject *state = *(PyObject **)((char *)args[0] + self->offset); /* the slot; NULL if unset */
        if (state == NULL) {
            return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
        }
        Py_INCREF(state);
        if (Py_IS_TYPE(state, &TableStateType) && ((TableState *)state)->mode
            && PyBytes_CheckExact(((TableState *)state)->pending)) {
            TableState *s = (TableState *)state;
            Py_ssize_t id = PyLong_AsSsize_t(args[1]);
            if (id == -1 && PyErr_Occurred()) {
                PyErr_Clear(); /* too big for any table: the Python path says what is wrong */
            }
            PyObject *text = NULL; /* a new reference once found */
            int whole = PyBytes_GET_SIZE(s->pending) == 0;
            if (s->mode == 3) {
                int taken;
                text = TableState_run(s, id, &taken);
                if (text == NULL && taken) {
                    Py_DECREF(state);
                    return NULL;
                }
                whole = 0; /* a byte or a skipped id: [] from feed too */
            }
            else if (whole && 0 <= id && id < PyTuple_GET_SIZE(s->mode == 4 ? s->inert : s->table)
                     && PyTuple_GET_ITEM(s->mode == 4 ? s->inert : s->table, id) != Py_None) {
                text = Py_NewRef(PyTuple_GET_ITEM(s->mode == 4 ? s->inert : s->table, id));
            }
            else if (s->mode == 2 && 0 <= id && id < PyTuple_GET_SIZE(s->pieces)
                     && PyBytes_CheckExact(PyTuple_GET_ITEM(s->pieces, id))) {
                text = TableState_decode(s, PyTuple_GET_ITEM(s->pieces, id));
                if (text == NULL) {
                    Py_DECREF(state);
                    return NULL;
                }
                whole = 0; /* feed, like the Python path, gives [] for no text */
            }
            if (text != NULL) {
                PyObject *item;
                if (PyUnicode_GET_LENGTH(text) == 0 && (self->chunk != NULL || !whole)) {
                    s->count++;
                    Py_DECREF(text);
                    Py_DECREF(state);
                    return PyList_New(0);
                }
                if (self->chunk == NULL) {
                    item = text;
                }
                else {
                    PyObject *chunk_args[2] = {text, args[2]};
                    item = PyObject_Vectorcall(self->chunk, chunk_args, 2, NULL);
                    Py_DECREF(text);
                    if (item == NULL) {
                        Py_DECREF(state);
                        return NULL;
                    }
                }
                PyObject *out = PyList_New(1);
                if (out == NULL) {
                    Py_DECREF(item);
                }
                else {
                    PyList_SET_ITEM(out, 0, item);
                    s->count++;
                }
                Py_DECREF(state);
                return out;
            }
        }
        Py_DECREF(state);
    }
    return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
}

static PyObject *
FeedMethod_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

static int
FeedMethod_init(FeedMethod *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"fallback", "slot", "chunk", NULL};
    PyObject *fallback, *slot, *chunk = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!|O:FeedMethod", names, &fallback, &PyMemberDescr_Type,
                                     &slot, &chunk)) {
        return -1;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "FeedMethod: fallback must be callable");
        return -1;
    }
    if (chunk != Py_None && !PyCallable_Check(chunk)) {
        PyErr_SetString(PyExc_TypeError, "FeedMethod: chunk must be callable or None");
        return -1;
    }
    PyMemberDescrObject *member = (PyMemberDescrObject *)slot;
    if (member->d_member->type != T_OBJECT_EX || (member->d_member->flags & READONLY)) {
        PyErr_SetString(PyExc_TypeError, "FeedMethod: slot must be a writable __slots__ member");
        return -1;
    }
    Py_INCREF(fallback);
    Py_INCREF(PyDescr_TYPE(member));
    Py_XSETREF(self->fallback, fallback);
    Py_XSETREF(self->chunk, chunk == Py_None ? NULL : Py_NewRef(chunk));
    Py_XSETREF(self->owner_type, PyDescr_TYPE(member));
    self->offset = member->d_member->offset;
    self->vectorcall = FeedMethod_vectorcall;
    return 0;
}

static PyObject *
FeedMethod_doc(FeedMethod *self, void *closure)
{
    if (self->fallback == NULL) {
        Py_RETURN_NONE;
    }
    return PyObject_GetAttrString(self->fallback, "__doc__");
}

static PyObject *
FeedMethod_wrapped(FeedMethod *self, void *closure)
{
    PyObject *fallback = self->fallback == NULL ? Py_None : self->fallback;
    Py_INCREF(fallback);
    return fallback;
}

static PyGetSetDef FeedMethod_getset[] = {
    {"__doc__", (getter)FeedMethod_doc, NULL, NULL, NULL},
    {"__wrapped__", (getter)FeedMethod_wrapped, NULL, "The pure-Python feed it stands in front of.", NULL},
    {NULL},
};

static int
FeedMethod_traverse(FeedMethod *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fallback);
    Py_VISIT(self->chunk);
    Py_VISIT(self->owner_type);
    return 0;
}

static int
FeedMethod_clear(FeedMethod *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->chunk);
    Py_CLEAR(self->owner_type);
    return 0;
}

static void
FeedMethod_dealloc(FeedMethod *self)
{
    PyObject_GC_UnTrack(self);
    FeedMethod_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject FeedMethodType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pacer._speedups.FeedMethod",
    .tp_basicsize = sizeof(FeedMethod),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
                | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FeedMethod_init,
    .tp_dealloc = (destructor)FeedMethod_dealloc,
    .tp_traverse = (traverseproc)FeedMethod_traverse,
    .tp_clear = (inquiry)FeedMethod_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(FeedMethod, vectorcall),
    .tp_descr_get = FeedMethod_get,
    .tp_getset = FeedMethod_getset,
};

static struct PyModuleDef speedups = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pacer._speedups",
    .m_doc = "Optional C speed-ups; pacer works the same without them.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&TableStateType) < 0 || PyType_Ready(&FeedMethodType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&TableStateType);
    if (PyModule_AddObject(module, "TableState", (PyObject *)&TableStateType) < 0) {
        Py_DECREF(&TableStateType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&FeedMethodType);
    if (PyModule_AddObject(module, "FeedMethod", (PyObject *)&FeedMethodType) < 0) {
        Py_DECREF(&FeedMethodType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
