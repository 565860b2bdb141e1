/* Optional C speed-up for pacer.Detokenizer.feed and .ingest: the steady-state table lookup.
 *
 * A FeedMethod stands on the Detokenizer class in place of ``feed``, and another in
 * place of ``ingest`` (what a pipeline calls). Each instance keeps a TableState in a
 * ``__slots__`` member (``_lookup_state``), read at its offset. While the state is
 * steady, one exact ``int`` id with text in its table (a tuple indexed by id, ``None``
 * where the id has no fixed text) is counted and answered: ``feed`` returns
 * ``[text]``; ``ingest`` returns ``[Chunk(text, now)]``, or ``[]`` for an empty text.
 * That is all the pure-Python fast path does, without the cost of a Python-level call.
 * Anything else (another type, a time argument to ``feed``, an id not in the table,
 * a state that is not steady) calls the pure-Python method, which owns every rule and
 * every error. Nothing here refers back to an instance: no reference cycles.
 *
 * Cost: one type check, one tuple index and one one-element list per token (and
 * one Chunk, for ``ingest``).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* The per-instance state the fast path reads: a Detokenizer keeps one in a slot. */
typedef struct {
    PyObject_HEAD
    PyObject *table;  /* tuple: id -> str, or None */
    Py_ssize_t count; /* ids the fast path has taken */
    int steady;       /* set by the Detokenizer: the table alone decides a token's text */
} TableState;

static int
TableState_init(TableState *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"table", NULL};
    PyObject *table;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!:TableState", names, &PyTuple_Type, &table)) {
        return -1;
    }
    Py_INCREF(table);
    Py_XSETREF(self->table, table);
    self->count = 0;
    self->steady = 0;
    return 0;
}

static void
TableState_dealloc(TableState *self)
{
    Py_CLEAR(self->table);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef TableState_members[] = {
    {"steady", T_INT, offsetof(TableState, steady), 0, "The table alone decides a token's text."},
    {"count", T_PYSSIZET, offsetof(TableState, count), 0, "Ids taken by the fast path."},
    {NULL},
};

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
        if (Py_IS_TYPE(state, &TableStateType) && ((TableState *)state)->steady) {
            TableState *s = (TableState *)state;
            Py_ssize_t id = PyLong_AsSsize_t(args[1]);
            if (id == -1 && PyErr_Occurred()) {
                PyErr_Clear(); /* too big for any table: the Python path says what is wrong */
            }
            PyObject *text = 0 <= id && id < PyTuple_GET_SIZE(s->table) ? PyTuple_GET_ITEM(s->table, id) : Py_None;
            if (text != Py_None) {
                PyObject *item;
                if (self->chunk == NULL) {
                    Py_INCREF(text);
                    item = text;
                }
                else if (PyUnicode_GET_LENGTH(text) == 0) {
                    s->count++;
                    Py_DECREF(state);
                    return PyList_New(0);
                }
                else {
                    PyObject *chunk_args[2] = {text, args[2]};
                    item = PyObject_Vectorcall(self->chunk, chunk_args, 2, NULL);
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
