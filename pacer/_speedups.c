/* Optional C speed-up for pacer.Detokenizer.feed and .ingest: the quick paths of one id
 * (and of a list of ids).
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
 * - mode 4 (decoders with transformers' clean-up), nothing pending: while the clean-up
 *   holds nothing (``clean`` 0) and the id is in the ``inert`` table (the texts the
 *   clean-up leaves as they are), that text; else, the id's table text looked up in
 *   ``moves[clean]`` (a dict: text -> (text it gives, next state), the moves the
 *   Python clean-up has remembered): the text it gives, and ``clean`` moves on;
 * - mode 3 (decoders with byte-fallback runs, HF ``ByteFallback``): ``runs`` says what
 *   the id is to a run. A byte (0-255) joins the pending run, an id skipped (-2)
 *   leaves it, and any other id with a table text closes it: the run's UTF-8, or one
 *   U+FFFD a byte if any of it is invalid, then the id's text.
 *
 * A list or tuple of exact ``int`` ids, in mode 2 (every id with bytes) or mode 4
 * (nothing pending, every id's move known), is one text: all ids are checked before
 * anything changes, so an id this path does not take leaves the whole feed to Python.
 *
 * The pure-Python paths read and write ``pending`` and ``clean`` too: each is the one
 * place its state lives.
 *
 * ``feed`` returns ``[text]`` (``[]`` for a decode that completes nothing); ``ingest``
 * returns ``[Chunk(text, now)]``, or ``[]`` for an empty text. That is what the
 * pure-Python paths do, without the cost of a Python-level call. Anything else
 * (another type, a time argument to ``feed``, an id in neither table, mode 0) calls
 * the pure-Python method, which owns every rule and every error. Nothing here refers
 * back to an instance: no reference cycles.
 *
 * Cost: one type check, one tuple index (and one dict lookup while the clean-up holds
 * something), at most one UTF-8 decode of a few bytes and one one-element list per
 * token (and one Chunk, for ``ingest``).
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
    PyObject *moves;   /* list: clean-up state -> dict of text -> (text, next state); may be empty */
    Py_ssize_t count;  /* ids the fast path has taken */
    int mode;          /* set by the Detokenizer: 0 none, 2 the table and the bytes, 3 runs, 4 inert */
    int clean;         /* the clean-up's state, an index into moves (set by the Python paths too) */
} TableState;

static int
TableState_init(TableState *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"table", "pieces", "errors", "runs", "inert", "moves", NULL};
    PyObject *table, *pieces, *errors, *runs = NULL, *inert = NULL, *moves = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O!U|O!O!O!:TableState", names, &PyTuple_Type, &table,
                                     &PyTuple_Type, &pieces, &errors, &PyTuple_Type, &runs, &PyTuple_Type,
                                     &inert, &PyList_Type, &moves)) {
        return -1;
    }
    Py_XSETREF(self->runs, runs == NULL ? PyTuple_New(0) : Py_NewRef(runs));
    Py_XSETREF(self->inert, inert == NULL ? PyTuple_New(0) : Py_NewRef(inert));
    Py_XSETREF(self->moves, moves == NULL ? PyList_New(0) : Py_NewRef(moves));
    if (self->runs == NULL || self->inert == NULL || self->moves == NULL) {
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
    self->clean = 0;
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
    Py_CLEAR(self->moves);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *TableState_run(TableState *s, Py_ssize_t id, int *taken);

static PyMemberDef TableState_members[] = {
    {"mode", T_INT, offsetof(TableState, mode), 0, "0: no quick path; 2: the table and the bytes; 3: runs; 4: the inert table."},
    {"clean", T_INT, offsetof(TableState, clean), 0, "The clean-up's state: an index into moves."},
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

/* ``state.known(ids)``: whether every item of a list or tuple is an exact ``int`` id
 * with a text in the table (so a valid id: the Python path need not check it again). */
static PyObject *
TableState_known(TableState *self, PyObject *ids)
{
    if (!PyList_CheckExact(ids) && !PyTuple_CheckExact(ids)) {
        Py_RETURN_FALSE;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(ids), size = PyTuple_GET_SIZE(self->table);
    PyObject **items = PySequence_Fast_ITEMS(ids);
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t id = PyLong_CheckExact(items[k]) ? PyLong_AsSsize_t(items[k]) : -1;
        if (id < 0 || id >= size || PyTuple_GET_ITEM(self->table, id) == Py_None) {
            PyErr_Clear(); /* an int too big for any table */
            Py_RETURN_FALSE;
        }
    }
    Py_RETURN_TRUE;
}

static PyMethodDef TableState_methods[] = {
    {"known", (PyCFunction)TableState_known, METH_O, "Whether every id is an exact int with a table text."},
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
    .tp_methods = TableState_methods,
};

/* The text the clean-up gives for id's table text in state ``clean``, by a move the
 * Python clean-up has remembered, ``clean`` moved on; NULL when no such move is
 * remembered (the Python path then finds it), or on an error (set). */
static PyObject *
TableState_move(TableState *s, Py_ssize_t id)
{
    if (id < 0 || id >= PyTuple_GET_SIZE(s->table) || s->clean < 0 || s->clean >= PyList_GET_SIZE(s->moves)) {
        return NULL;
    }
    PyObject *key = PyTuple_GET_ITEM(s->table, id);
    PyObject *moves = PyList_GET_ITEM(s->moves, s->clean);
    if (key == Py_None || !PyDict_CheckExact(moves)) {
        return NULL;
    }
    PyObject *found = PyDict_GetItemWithError(moves, key); /* borrowed */
    if (found == NULL || !PyTuple_CheckExact(found) || PyTuple_GET_SIZE(found) != 2
        || !PyUnicode_CheckExact(PyTuple_GET_ITEM(found, 0)) || !PyLong_CheckExact(PyTuple_GET_ITEM(found, 1))) {
        return NULL;
    }
    long next = PyLong_AsLong(PyTuple_GET_ITEM(found, 1));
    if (next < 0 || next > INT_MAX) {
        PyErr_Clear(); /* not a state this lookup can hold: the Python path takes the id */
        return NULL;
    }
    s->clean = (int)next;
    return Py_NewRef(PyTuple_GET_ITEM(found, 0));
}

/* Mode 4, nothing pending: id's text through the clean-up, its ``inert`` text while the
 * clean-up holds nothing, else a remembered move (``clean`` moved on). NULL when neither
 * (no exception: the Python path takes the id), or on an error (set). */
static PyObject *
TableState_cleaned(TableState *s, Py_ssize_t id)
{
    if (s->clean == 0 && 0 <= id && id < PyTuple_GET_SIZE(s->inert) && PyTuple_GET_ITEM(s->inert, id) != Py_None) {
        return Py_NewRef(PyTuple_GET_ITEM(s->inert, id));
    }
    return TableState_move(s, id);
}

/* Mode 2, a list or tuple of ids fed at once: the pending bytes and every id's bytes
 * in one decode. NULL with no exception when some item is not an id this path takes
 * (then nothing has changed, and the Python path takes the whole feed and says what
 * is wrong); NULL with an exception on failure. */
static PyObject *
TableState_join(TableState *s, PyObject *ids)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(ids), size = 0, limit = PyTuple_GET_SIZE(s->pieces);
    PyObject **items = PySequence_Fast_ITEMS(ids);
    for (Py_ssize_t k = 0; k < n; k++) { /* check them all before anything changes */
        if (!PyLong_CheckExact(items[k])) {
            return NULL;
        }
        Py_ssize_t id = PyLong_AsSsize_t(items[k]);
        if (id < 0 || id >= limit || !PyBytes_CheckExact(PyTuple_GET_ITEM(s->pieces, id))) {
            PyErr_Clear(); /* too big for any table, or not this path's */
            return NULL;
        }
        size += PyBytes_GET_SIZE(PyTuple_GET_ITEM(s->pieces, id));
    }
    PyObject *joined = PyBytes_FromStringAndSize(NULL, size);
    if (joined == NULL) {
        return NULL;
    }
    char *at = PyBytes_AS_STRING(joined);
    for (Py_ssize_t k = 0; k < n; k++) { /* no Python code runs between the passes: the same ids */
        PyObject *piece = PyTuple_GET_ITEM(s->pieces, PyLong_AsSsize_t(items[k]));
        memcpy(at, PyBytes_AS_STRING(piece), PyBytes_GET_SIZE(piece));
        at += PyBytes_GET_SIZE(piece);
    }
    PyObject *text = TableState_decode(s, joined);
    Py_DECREF(joined);
    return text;
}

/* Mode 4, a list or tuple of ids fed at once, nothing pending: each id's text through
 * the clean-up (``inert`` while it holds nothing, else a remembered move), joined. NULL
 * with no exception when some item is not an id this path takes or a move is not
 * remembered (then ``clean`` is as it was, and the Python path takes the whole feed);
 * NULL with an exception on failure. */
static PyObject *
TableState_clean_join(TableState *s, PyObject *ids)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(ids);
    PyObject **items = PySequence_Fast_ITEMS(ids);
    PyObject *texts = PyList_New(n);
    if (texts == NULL) {
        return NULL;
    }
    int was = s->clean;
    for (Py_ssize_t k = 0; k < n; k++) {
        Py_ssize_t id = PyLong_CheckExact(items[k]) ? PyLong_AsSsize_t(items[k]) : -1;
        PyObject *text = id < 0 ? NULL : TableState_cleaned(s, id);
        if (text == NULL) {
            s->clean = was;
            Py_DECREF(texts);
            if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_OverflowError)) {
                return NULL;
            }
            PyErr_Clear(); /* an id too big for any table: the Python path says what is wrong */
            return NULL;
        }
        PyList_SET_ITEM(texts, k, text);
    }
    PyObject *empty = PyUnicode_New(0, 0);
    PyObject *joined = empty == NULL ? NULL : PyUnicode_Join(empty, texts);
    Py_XDECREF(empty);
    Py_DECREF(texts);
    if (joined == NULL) {
        s->clean = was;
    }
    return joined;
}

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
    PyTypeObject *owner_type;  /* the class whose slot holds the TableState; NULL until bound */
    PyObject *slot_name;       /* the slot's name, when given by name (bound by __set_name__) */
    Py_ssize_t offset;         /* where that slot is in an instance */
    vectorcallfunc vectorcall;
} FeedMethod;

static PyObject *
FeedMethod_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    FeedMethod *self = (FeedMethod *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    int many = nargs >= 2 && (PyList_CheckExact(args[1]) || PyTuple_CheckExact(args[1])); /* ids fed at once */
    if (nargs == (self->chunk == NULL ? 2 : 3) && kwnames == NULL && (PyLong_CheckExact(args[1]) || many)
        && self->owner_type != NULL && PyObject_TypeCheck(args[0], self->owner_type)) {
        PyObject *state = *(PyObject **)((char *)args[0] + self->offset); /* the slot; NULL if unset */
        if (state == NULL) {
            return PyObject_Vectorcall(self->fallback, args, nargsf, kwnames);
        }
        Py_INCREF(state);
        if (Py_IS_TYPE(state, &TableStateType) && ((TableState *)state)->mode
            && PyBytes_CheckExact(((TableState *)state)->pending)) {
            TableState *s = (TableState *)state;
            Py_ssize_t id = -1, taken_ids = many ? PySequence_Fast_GET_SIZE(args[1]) : 1;
            if (!many && (id = PyLong_AsSsize_t(args[1])) == -1 && PyErr_Occurred()) {
                PyErr_Clear(); /* too big for any table: the Python path says what is wrong */
            }
            PyObject *text = NULL; /* a new reference once found */
            int whole = PyBytes_GET_SIZE(s->pending) == 0;
            if (many) {
                if (s->mode == 2 || (s->mode == 4 && whole)) {
                    text = s->mode == 2 ? TableState_join(s, args[1]) : TableState_clean_join(s, args[1]);
                    if (text == NULL && PyErr_Occurred()) {
                        Py_DECREF(state);
                        return NULL;
                    }
                }
                whole = 0; /* no text: [] from feed too */
            }
            else if (s->mode == 3) {
                int taken;
                text = TableState_run(s, id, &taken);
                if (text == NULL && taken) {
                    Py_DECREF(state);
                    return NULL;
                }
                whole = 0; /* a byte or a skipped id: [] from feed too */
            }
            else if (s->mode == 4) {
                text = whole ? TableState_cleaned(s, id) : NULL;
                if (text == NULL && PyErr_Occurred()) {
                    Py_DECREF(state);
                    return NULL;
                }
                whole = 0; /* a move may give no text: [] from feed too */
            }
            else if (whole && 0 <= id && id < PyTuple_GET_SIZE(s->table) && PyTuple_GET_ITEM(s->table, id) != Py_None) {
                text = Py_NewRef(PyTuple_GET_ITEM(s->table, id));
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
                    s->count += taken_ids;
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
                    s->count += taken_ids;
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

/* Where the TableState lives: ``slot`` is the class's __slots__ member descriptor. */
static int
FeedMethod_bind(FeedMethod *self, PyObject *slot)
{
    if (!PyObject_TypeCheck(slot, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "FeedMethod: slot must be a __slots__ member, got %R", slot);
        return -1;
    }
    PyMemberDescrObject *member = (PyMemberDescrObject *)slot;
    if (member->d_member->type != T_OBJECT_EX || (member->d_member->flags & READONLY)) {
        PyErr_SetString(PyExc_TypeError, "FeedMethod: slot must be a writable __slots__ member");
        return -1;
    }
    Py_INCREF(PyDescr_TYPE(member));
    Py_XSETREF(self->owner_type, PyDescr_TYPE(member));
    self->offset = member->d_member->offset;
    return 0;
}

static int
FeedMethod_init(FeedMethod *self, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"fallback", "slot", "chunk", NULL};
    PyObject *fallback, *slot, *chunk = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:FeedMethod", names, &fallback, &slot, &chunk)) {
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
    if (PyUnicode_Check(slot)) {
        /* A slot's name: the class being defined has no descriptor yet; __set_name__ finds it. */
        Py_XSETREF(self->slot_name, Py_NewRef(slot));
        Py_CLEAR(self->owner_type);
    }
    else if (FeedMethod_bind(self, slot) < 0) {
        return -1;
    }
    Py_INCREF(fallback);
    Py_XSETREF(self->fallback, fallback);
    Py_XSETREF(self->chunk, chunk == Py_None ? NULL : Py_NewRef(chunk));
    self->vectorcall = FeedMethod_vectorcall;
    return 0;
}

/* Called as the class that holds this method is created: bind the named slot. */
static PyObject *
FeedMethod_set_name(FeedMethod *self, PyObject *args)
{
    PyObject *owner, *name;
    if (!PyArg_ParseTuple(args, "OO:__set_name__", &owner, &name)) {
        return NULL;
    }
    if (self->slot_name == NULL) {
        Py_RETURN_NONE; /* given the descriptor itself */
    }
    PyObject *slot = PyObject_GetAttr(owner, self->slot_name);
    if (slot == NULL) {
        return NULL;
    }
    int bound = FeedMethod_bind(self, slot);
    Py_DECREF(slot);
    if (bound < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef FeedMethod_methods[] = {
    {"__set_name__", (PyCFunction)FeedMethod_set_name, METH_VARARGS, NULL},
    {NULL},
};

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
    Py_VISIT(self->slot_name);
    return 0;
}

static int
FeedMethod_clear(FeedMethod *self)
{
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->chunk);
    Py_CLEAR(self->owner_type);
    Py_CLEAR(self->slot_name);
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
    .tp_methods = FeedMethod_methods,
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
