/*
 * replicator._speedups: an optional C accelerator for replicator/convert.py, events.py and plan.py.
 *
 * Why this exists: converting DynamoDB-JSON images is the hot loop of the replicator. The
 * pure-Python converter in convert.py (class Converter, convert_number, _decimal128, _binary and
 * the set handlers) is THE REFERENCE and the fallback; this module only makes the common,
 * well-formed case faster (the measured speed lives in BENCHMARKS.md). It reproduces the
 * reference's lossless number mode value for value and type for type.
 *
 * The contract: for anything unusual or invalid (a Mapping that is not exactly a dict, a str
 * subclass, a tuple where a list is expected, bytearray, odd base64, a number needing the
 * reference's general path, nesting deeper than MAX_DEPTH, ...) image() returns None and valid()
 * returns False, meaning "not handled": the Python caller then runs the reference, which gives the
 * same result or raises the precise error with the field path. So nothing here produces error
 * messages, and neither function raises anything but MemoryError-type failures.
 *
 * API:
 *   configure(decimal128_type, decimal_type)  once, by replicator.accelerator.configure
 *   image(image) -> dict | None                convert a top-level image (lossless numbers)
 *   valid(image) -> bool                       True iff image(image) would return a dict; builds
 *                                              nothing (False means "ask the reference")
 *   document(image, document_id) -> dict | None   {"_id": document_id, **image(image)}
 *   has_dollar_name(document) -> bool | None   a top-level name starting with "$"
 *   configure_events(...), parse_changes(records)   replicator.events.parse_record's well-formed
 *                                              case, for a whole batch (None: ask the reference)
 *   configure_planner(PlannedWrite, slots), plan_records(records, key_schema, guard, sequence_field,
 *       ttl_as_delete[, stream_arn[, figures]]) -> list of PlannedWrite | None   (figures: a
 *       list set to the batch's [first, last, highest, plain]) replicator.plan.Planner's plan of a
 *                                              whole batch of raw records, common case only
 *                                              (None: Python parses and plans the batch)
 *
 * C99, public CPython API only (3.10 to 3.13).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Deeper than this is left to the reference, which applies MongoDB's 100-level limit exactly
 * (convert.MAX_NESTING; depth 0 here is the document, level 1). DynamoDB items nest at most 32
 * levels, so the common case stays here, and the recursion below stays shallow. */
#define MAX_DEPTH 63

/* Decimal128's exponent range for a coefficient of at most 34 digits (IEEE 754-2008 BID). */
#define BID_EXPONENT_MIN (-6176)
#define BID_EXPONENT_MAX 6111
#define BID_EXPONENT_BIAS 6176
#define DECIMAL128_DIGITS 34
/* An exponent part ("e+12") longer than this takes the reference's general path. */
#define MAX_EXPONENT_PART 8

/* -- configuration ------------------------------------------------------------------------- */
static PyObject *g_decimal128_type = NULL; /* bson.decimal128.Decimal128 */
static PyObject *g_decimal_type = NULL;    /* decimal.Decimal */
/* The member descriptors of Decimal128's two private slots, when the direct path passed its
 * self-check at configure() time; NULL means "use the public constructor Decimal128((hi, lo))". */
static PyObject *g_high_slot = NULL;
static PyObject *g_low_slot = NULL;

static int
configured(void)
{
    return g_decimal128_type != NULL && g_decimal_type != NULL;
}

/* -- small helpers ------------------------------------------------------------------------- */

/* The bytes of an exact, ready, all-ASCII str; 0 when it is anything else. */
static int
ascii_of(PyObject *text, const char **data, Py_ssize_t *size)
{
    if (!PyUnicode_CheckExact(text)) {
        return 0;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (!PyUnicode_IS_READY(text)) {
        return 0;
    }
#endif
    if (!PyUnicode_IS_ASCII(text)) {
        return 0;
    }
    *data = (const char *)PyUnicode_DATA(text);
    *size = PyUnicode_GET_LENGTH(text);
    return 1;
}

/* 1 when MongoDB can store text: UTF-8 can encode it (no lone surrogate; a 1-byte-kind str,
 * Latin-1, cannot hold one) and, for a field name (is_name), it has no NUL (BSON names are
 * NUL-terminated). 0 otherwise: the reference refuses it with its field path. */
static int
storable_text(PyObject *text, int is_name)
{
#if PY_VERSION_HEX < 0x030C0000
    if (!PyUnicode_IS_READY(text)) {
        return 0;
    }
#endif
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    if (kind == PyUnicode_1BYTE_KIND) {
        return !is_name || memchr(data, 0, (size_t)length) == NULL;
    }
    for (Py_ssize_t i = 0; i < length; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if ((c >= 0xD800 && c <= 0xDFFF) || (is_name && c == 0)) {
            return 0;
        }
    }
    return 1;
}

static int
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

enum tag { T_BAD, T_S, T_N, T_B, T_M, T_L, T_SS, T_NS, T_BS, T_BOOL, T_NULL };

static enum tag
tag_of(PyObject *tag)
{
    const char *s;
    Py_ssize_t n;
    if (!ascii_of(tag, &s, &n)) {
        return T_BAD;
    }
    switch (n) {
    case 1:
        switch (s[0]) {
        case 'S': return T_S;
        case 'N': return T_N;
        case 'B': return T_B;
        case 'M': return T_M;
        case 'L': return T_L;
        default: return T_BAD;
        }
    case 2:
        if (s[1] != 'S') {
            return T_BAD;
        }
        switch (s[0]) {
        case 'S': return T_SS;
        case 'N': return T_NS;
        case 'B': return T_BS;
        default: return T_BAD;
        }
    case 4:
        if (memcmp(s, "BOOL", 4) == 0) {
            return T_BOOL;
        }
        if (memcmp(s, "NULL", 4) == 0) {
            return T_NULL;
        }
        return T_BAD;
    default:
        return T_BAD;
    }
}

/* -- numbers (convert_number(text, "lossless")) ------------------------------------------- */

enum number_kind { NUM_NO, NUM_INT, NUM_D128, NUM_BIG };

typedef struct {
    enum number_kind kind;
    int negative;
    long long ivalue;  /* NUM_INT */
    uint64_t high;     /* NUM_D128: the BID bits */
    uint64_t low;
    /* NUM_BIG (35 or more significant digits): digit positions first..last (inclusive) of the
     * mantissa digit sequence (whole + fraction, the '.' skipped), and the exponent. */
    const char *mantissa;
    Py_ssize_t whole_len;
    Py_ssize_t first, last;
    int64_t exponent;
} number;

/* The k-th digit of whole + fraction, skipping the '.' that follows the whole part. */
static char
digit_at(const char *mantissa, Py_ssize_t whole_len, Py_ssize_t k)
{
    return k < whole_len ? mantissa[k] : mantissa[k + 1];
}

/* Parse and classify the text of an N value; NUM_NO when it is not handled here. */
static void
parse_number(const char *s, Py_ssize_t n, number *out)
{
    Py_ssize_t i = 0, whole_len = 0, fraction_len = 0, total, lead, trail, sig_len;
    const char *mantissa;
    int64_t exponent_part = 0, exponent;

    out->kind = NUM_NO;
    /* [+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?, as a full match */
    out->negative = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        out->negative = s[i] == '-';
        i++;
    }
    mantissa = s + i;
    while (i < n && is_digit(s[i])) {
        i++;
        whole_len++;
    }
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && is_digit(s[i])) {
            i++;
            fraction_len++;
        }
    }
    if (whole_len == 0 && fraction_len == 0) {
        return;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        Py_ssize_t part_start = i, digits_start;
        int exponent_negative = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            exponent_negative = s[i] == '-';
            i++;
        }
        digits_start = i;
        while (i < n && is_digit(s[i])) {
            i++;
        }
        if (i == digits_start || i != n || i - part_start > MAX_EXPONENT_PART) {
            return; /* no match, or the reference's general path */
        }
        for (Py_ssize_t j = digits_start; j < i; j++) {
            exponent_part = exponent_part * 10 + (s[j] - '0'); /* at most 7 digits */
        }
        if (exponent_negative) {
            exponent_part = -exponent_part;
        }
    }
    if (i != n) {
        return;
    }

    /* digits = (whole + fraction).lstrip("0"); significant = digits.rstrip("0") */
    total = whole_len + fraction_len;
    lead = 0;
    while (lead < total && digit_at(mantissa, whole_len, lead) == '0') {
        lead++;
    }
    if (lead == total) {
        out->kind = NUM_INT; /* no negative zero */
        out->negative = 0;
        out->ivalue = 0;
        return;
    }
    trail = 0;
    while (digit_at(mantissa, whole_len, total - 1 - trail) == '0') {
        trail++;
    }
    sig_len = total - lead - trail;
    exponent = (int64_t)trail - (int64_t)fraction_len + exponent_part;

    if (exponent >= 0 && sig_len + exponent <= 19) {
        /* below 10**19 < 2**64 */
        uint64_t magnitude = 0;
        for (Py_ssize_t k = lead; k < lead + sig_len; k++) {
            magnitude = magnitude * 10 + (uint64_t)(digit_at(mantissa, whole_len, k) - '0');
        }
        for (int64_t e = 0; e < exponent; e++) {
            magnitude *= 10;
        }
        if (!out->negative && magnitude <= (uint64_t)INT64_MAX) {
            out->kind = NUM_INT;
            out->ivalue = (long long)magnitude;
            return;
        }
        if (out->negative && magnitude <= (uint64_t)INT64_MAX + 1) {
            out->kind = NUM_INT;
            out->ivalue = -(long long)(magnitude - 1) - 1;
            return;
        }
    }
    if (sig_len <= DECIMAL128_DIGITS) {
        /* The significand is below 10**34 < 2**113: accumulate it in two 64-bit words. */
        uint64_t high = 0, low = 0;
        if (exponent < BID_EXPONENT_MIN || exponent > BID_EXPONENT_MAX) {
            return; /* the reference's checked path */
        }
        for (Py_ssize_t k = lead; k < lead + sig_len; k++) {
            uint64_t d = (uint64_t)(digit_at(mantissa, whole_len, k) - '0');
            if (high == 0 && low < UINT64_MAX / 10 - 1) {
                low = low * 10 + d;
            }
            else {
                /* (high, low) * 10 = (x << 3) + (x << 1), then + d, with carries */
                uint64_t h8 = (high << 3) | (low >> 61), l8 = low << 3;
                uint64_t h2 = (high << 1) | (low >> 63), l2 = low << 1;
                uint64_t l = l8 + l2;
                uint64_t h = h8 + h2 + (l < l8);
                low = l + d;
                high = h + (low < l);
            }
        }
        out->kind = NUM_D128;
        out->high = ((uint64_t)(exponent + BID_EXPONENT_BIAS) << 49) | high;
        if (out->negative) {
            out->high |= (uint64_t)1 << 63;
        }
        out->low = low;
        return;
    }
    out->kind = NUM_BIG;
    out->mantissa = mantissa;
    out->whole_len = whole_len;
    out->first = lead;
    out->last = lead + sig_len - 1;
    out->exponent = exponent;
}

static int
handled_number(PyObject *text)
{
    const char *s;
    Py_ssize_t n;
    number num;
    if (!ascii_of(text, &s, &n)) {
        return 0;
    }
    parse_number(s, n, &num);
    return num.kind != NUM_NO;
}

/* The offset in its instances of a writable object slot a member descriptor stands for, where
 * storing and reading it directly does what member_set / member_get do without their checks; 0
 * (use the descriptor) for any other descriptor, and before 3.12 or on a free-threaded build. */
static Py_ssize_t
slot_offset(PyObject *descriptor)
{
#if PY_VERSION_HEX >= 0x030C0000 && !defined(Py_GIL_DISABLED)
    PyMemberDef *member = Py_IS_TYPE(descriptor, &PyMemberDescr_Type)
                              ? ((PyMemberDescrObject *)descriptor)->d_member : NULL;
    if (member != NULL && member->type == Py_T_OBJECT_EX && !(member->flags & Py_READONLY)) {
        return member->offset;
    }
#endif
    return 0;
}

/* descriptor.__set__(obj, value) for a type setup_maker checked obj is an instance of: directly
 * where slot_offset allows (issue 21: ~45 instructions a slot, ~8 slots an operation), storing a
 * new reference and releasing the old one. */
static int
set_slot(PyObject *descriptor, PyObject *obj, PyObject *value)
{
    Py_ssize_t offset = value != NULL ? slot_offset(descriptor) : 0;
    if (offset != 0) {
        PyObject **slot = (PyObject **)((char *)obj + offset);
        Py_XSETREF(*slot, Py_NewRef(value));
        return 0;
    }
    return Py_TYPE(descriptor)->tp_descr_set(descriptor, obj, value);
}

/* Decimal128 from its BID bits, either directly (slots) or with the public constructor. */
static PyObject *
make_decimal128(uint64_t high, uint64_t low, int direct)
{
    PyObject *h, *l, *result = NULL;
    h = PyLong_FromUnsignedLongLong(high);
    if (h == NULL) {
        return NULL;
    }
    l = PyLong_FromUnsignedLongLong(low);
    if (l == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    if (direct) {
        PyTypeObject *type = (PyTypeObject *)g_decimal128_type;
        result = type->tp_alloc(type, 0);
        if (result != NULL
            && (set_slot(g_high_slot, result, h) < 0 || set_slot(g_low_slot, result, l) < 0)) {
            Py_CLEAR(result);
        }
    }
    else {
        PyObject *pair = PyTuple_Pack(2, h, l);
        if (pair != NULL) {
            result = PyObject_CallOneArg(g_decimal128_type, pair);
            Py_DECREF(pair);
        }
    }
    Py_DECREF(h);
    Py_DECREF(l);
    return result;
}

/* str(Decimal(f"{'-' if negative else ''}{significant}E{exponent}")) */
static PyObject *
make_big(const number *num)
{
    char exponent_text[32];
    int exponent_len;
    Py_ssize_t digits = num->last - num->first + 1, length, at = 0;
    PyObject *text, *decimal, *result;
    Py_UCS1 *out;

    exponent_len = snprintf(exponent_text, sizeof exponent_text, "E%lld", (long long)num->exponent);
    if (exponent_len < 0 || (size_t)exponent_len >= sizeof exponent_text) {
        return NULL; /* cannot happen: |exponent| is bounded by the text's length */
    }
    length = (num->negative ? 1 : 0) + digits + exponent_len;
    text = PyUnicode_New(length, 127);
    if (text == NULL) {
        return NULL;
    }
    out = PyUnicode_1BYTE_DATA(text);
    if (num->negative) {
        out[at++] = '-';
    }
    for (Py_ssize_t k = num->first; k <= num->last; k++) {
        out[at++] = (Py_UCS1)digit_at(num->mantissa, num->whole_len, k);
    }
    memcpy(out + at, exponent_text, (size_t)exponent_len);
    decimal = PyObject_CallOneArg(g_decimal_type, text);
    Py_DECREF(text);
    if (decimal == NULL) {
        return NULL;
    }
    result = PyObject_Str(decimal);
    Py_DECREF(decimal);
    return result;
}

/* The converted N value (new reference); NULL without an exception set means "not handled". */
static PyObject *
convert_number(PyObject *text)
{
    const char *s;
    Py_ssize_t n;
    number num;
    if (!ascii_of(text, &s, &n)) {
        return NULL;
    }
    parse_number(s, n, &num);
    switch (num.kind) {
    case NUM_INT:
        return PyLong_FromLongLong(num.ivalue);
    case NUM_D128:
        return make_decimal128(num.high, num.low, g_high_slot != NULL);
    case NUM_BIG:
        return make_big(&num);
    default:
        return NULL;
    }
}

/* -- binary (base64.b64decode(value, validate=True), canonical form only) ------------------ */

static signed char b64_table[256];

static void
init_b64_table(void)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    memset(b64_table, -1, sizeof b64_table);
    for (int i = 0; i < 64; i++) {
        b64_table[(unsigned char)alphabet[i]] = (signed char)i;
    }
}

/* The decoded length of canonical base64 text, or -1 when it is not canonical. */
static Py_ssize_t
base64_length(const char *s, Py_ssize_t n)
{
    Py_ssize_t padding = 0;
    if (n % 4 != 0) {
        return -1;
    }
    if (n == 0) {
        return 0;
    }
    if (s[n - 1] == '=') {
        padding = s[n - 2] == '=' ? 2 : 1;
    }
    for (Py_ssize_t i = 0; i < n - padding; i++) {
        if (b64_table[(unsigned char)s[i]] < 0) {
            return -1;
        }
    }
    return n / 4 * 3 - padding;
}

/* The 6-bit value of an alphabet character (already checked by base64_length). */
static uint32_t
sextet(char c)
{
    return (uint32_t)(unsigned char)b64_table[(unsigned char)c];
}

static int
handled_binary(PyObject *value)
{
    const char *s;
    Py_ssize_t n;
    if (PyBytes_CheckExact(value)) {
        return 1;
    }
    return ascii_of(value, &s, &n) && base64_length(s, n) >= 0;
}

static PyObject *
convert_binary(PyObject *value)
{
    const char *s;
    Py_ssize_t n, size, i, at = 0;
    PyObject *result;
    unsigned char *out;
    if (PyBytes_CheckExact(value)) {
        return Py_NewRef(value);
    }
    if (!ascii_of(value, &s, &n) || (size = base64_length(s, n)) < 0) {
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, size);
    if (result == NULL || size == 0) {
        return result;
    }
    out = (unsigned char *)PyBytes_AS_STRING(result);
    for (i = 0; i + 4 <= n; i += 4) {
        uint32_t quad = (sextet(s[i]) << 18) | (sextet(s[i + 1]) << 12);
        out[at++] = (unsigned char)(quad >> 16);
        if (s[i + 2] == '=') {
            break; /* the last quad, "xx==": leftover bits ignored as binascii does */
        }
        quad |= sextet(s[i + 2]) << 6;
        out[at++] = (unsigned char)(quad >> 8);
        if (s[i + 3] == '=') {
            break; /* the last quad, "xxx=" */
        }
        quad |= sextet(s[i + 3]);
        out[at++] = (unsigned char)quad;
    }
    return result;
}

/* -- the walk that builds (image) ----------------------------------------------------------- *
 * Every convert_* returns a new reference, or NULL: with an exception set on a real failure
 * (memory), without one for "not handled". Input objects are held by strong references while
 * converting, since building a Decimal128 or collecting garbage can run Python code. */

static PyObject *convert_value(PyObject *value, int depth);

/* An empty dict with room for `size` entries: filling a PyDict_New() of a 1 KB image resized
 * it twice (issue 21: ~1,000 instructions per image). _PyDict_NewPresized is CPython's own
 * (exported, not in the limited API; kept from 3.11 to 3.13), hence the fallback. Also for a
 * PlannedWrite's __dict__ of 7 fields (one resize less: -1,100 instructions per event). */
static PyObject *
new_dict(Py_ssize_t size)
{
#if PY_VERSION_HEX < 0x030E0000
    return _PyDict_NewPresized(size);
#else
    (void)size;
    return PyDict_New();
#endif
}

/* Converts the attributes of source into out (which may hold entries already); 0 or -1. With
 * `dollar` (not NULL), *dollar is set to 1 when a name of source starts with "$" (else left):
 * has_dollar_name of the top level, found in the same walk (issue 21: a second walk of every
 * document cost ~800 instructions per event). */
static int
convert_map_names_into(PyObject *out, PyObject *source, int depth, int *dollar)
{
    Py_ssize_t position = 0, size, before;
    PyObject *name, *value;
    if (!PyDict_CheckExact(source) || depth > MAX_DEPTH) {
        return -1;
    }
    size = PyDict_GET_SIZE(source);
    before = PyDict_GET_SIZE(out);
    while (PyDict_Next(source, &position, &name, &value)) {
        PyObject *converted;
        int status;
        if (!PyUnicode_CheckExact(name) || !storable_text(name, 1)) {
            return -1;
        }
        if (dollar != NULL && PyUnicode_GET_LENGTH(name) > 0
            && PyUnicode_READ_CHAR(name, 0) == '$') {
            *dollar = 1;
        }
        Py_INCREF(name);
        Py_INCREF(value);
        converted = convert_value(value, depth);
        Py_DECREF(value);
        if (converted == NULL) {
            Py_DECREF(name);
            return -1;
        }
        status = PyDict_SetItem(out, name, converted);
        Py_DECREF(name);
        Py_DECREF(converted);
        if (status < 0) {
            return -1;
        }
    }
    if (PyDict_GET_SIZE(source) != size || PyDict_GET_SIZE(out) != before + size) {
        return -1; /* changed while being read, or a name already in out: the reference decides */
    }
    return 0;
}

static int
convert_map_into(PyObject *out, PyObject *source, int depth)
{
    return convert_map_names_into(out, source, depth, NULL);
}

static PyObject *
convert_map(PyObject *source, int depth)
{
    PyObject *out = new_dict(PyDict_CheckExact(source) ? PyDict_GET_SIZE(source) : 0);
    if (out == NULL) {
        return NULL;
    }
    if (convert_map_into(out, source, depth) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *
convert_list(PyObject *source, int depth)
{
    Py_ssize_t size;
    PyObject *out;
    if (!PyList_CheckExact(source) || depth > MAX_DEPTH) {
        return NULL;
    }
    size = PyList_GET_SIZE(source);
    out = PyList_New(size);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        PyObject *item, *converted;
        if (i >= PyList_GET_SIZE(source)) {
            goto fail;
        }
        item = Py_NewRef(PyList_GET_ITEM(source, i));
        converted = convert_value(item, depth);
        Py_DECREF(item);
        if (converted == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(out, i, converted);
    }
    if (PyList_GET_SIZE(source) != size) {
        goto fail;
    }
    return out;
fail:
    Py_DECREF(out); /* a list with unfilled (NULL) slots deallocates fine */
    return NULL;
}

/* a < b for two exact 1-byte str, as str compares them */
static int
one_byte_less(PyObject *a, PyObject *b)
{
    Py_ssize_t na = PyUnicode_GET_LENGTH(a), nb = PyUnicode_GET_LENGTH(b);
    int order = memcmp(PyUnicode_1BYTE_DATA(a), PyUnicode_1BYTE_DATA(b),
                       (size_t)(na < nb ? na : nb));
    return order < 0 || (order == 0 && na < nb);
}

static PyObject *
convert_string_set(PyObject *source)
{
    PyObject *out;
    if (!PyList_CheckExact(source)) {
        return NULL;
    }
    out = PyList_GetSlice(source, 0, PyList_GET_SIZE(source)); /* a copy: checked, then sorted */
    if (out == NULL) {
        return NULL;
    }
    Py_ssize_t size = PyList_GET_SIZE(out);
    int one_byte = 1;
    for (Py_ssize_t i = 0; i < size; i++) {
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(out, i))
            || !storable_text(PyList_GET_ITEM(out, i), 0)) {
            Py_DECREF(out);
            return NULL;
        }
        one_byte &= PyUnicode_KIND(PyList_GET_ITEM(out, i)) == PyUnicode_1BYTE_KIND;
    }
    if (one_byte && size <= 16) {
        /* A stable insertion sort by str's order for 1-byte strings (bytes, then length): the
         * order PyList_Sort gives, without its set-up (issue 21: ~400 instructions a set). */
        PyObject **members = &PyList_GET_ITEM(out, 0);
        for (Py_ssize_t i = 1; i < size; i++) {
            PyObject *member = members[i];
            Py_ssize_t j = i;
            for (; j > 0 && one_byte_less(member, members[j - 1]); j--) {
                members[j] = members[j - 1];
            }
            members[j] = member;
        }
        return out;
    }
    if (PyList_Sort(out) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

static PyObject *
convert_binary_set(PyObject *source)
{
    PyObject *items, *out = NULL;
    Py_ssize_t size;
    if (!PyList_CheckExact(source)) {
        return NULL;
    }
    items = PyList_GetSlice(source, 0, PyList_GET_SIZE(source));
    if (items == NULL) {
        return NULL;
    }
    size = PyList_GET_SIZE(items);
    out = PyList_New(size);
    if (out == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        PyObject *converted = convert_binary(PyList_GET_ITEM(items, i));
        if (converted == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(out, i, converted);
    }
    if (PyList_Sort(out) < 0) {
        goto fail;
    }
    Py_DECREF(items);
    return out;
fail:
    Py_XDECREF(out);
    Py_DECREF(items);
    return NULL;
}

/* A member of the small-integer NS fast path: 1 to 18 ASCII digits, no sign. */
static int
small_digits(PyObject *item, long long *value)
{
    const char *s;
    Py_ssize_t n;
    long long v = 0;
    if (!ascii_of(item, &s, &n) || n < 1 || n >= 19) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!is_digit(s[i])) {
            return 0;
        }
        v = v * 10 + (s[i] - '0');
    }
    *value = v;
    return 1;
}

static int
compare_long_long(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* sorted(map(int, source)) when every member is 1 to 18 ASCII digits, straight from the source
 * list (nothing here runs Python code, so it cannot change meanwhile) and sorted as C integers
 * (issue 21: the copy and PyList_Sort cost ~600 instructions a set); NULL without an error when
 * a member is not such a number, NULL with one on an error. */
static PyObject *
small_number_set(PyObject *source)
{
    Py_ssize_t size = PyList_GET_SIZE(source);
    long long stack[16], *values = stack;
    for (Py_ssize_t i = 0; i < size; i++) {
        if (!small_digits(PyList_GET_ITEM(source, i), &stack[0])) {
            return NULL;
        }
    }
    if (size > 16) {
        values = PyMem_Malloc((size_t)size * sizeof(long long));
        if (values == NULL) {
            return PyErr_NoMemory();
        }
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        (void)small_digits(PyList_GET_ITEM(source, i), &values[i]);
    }
    if (size <= 16) {
        for (Py_ssize_t i = 1; i < size; i++) { /* insertion sort: a set has few members */
            long long value = values[i];
            Py_ssize_t j = i;
            for (; j > 0 && values[j - 1] > value; j--) {
                values[j] = values[j - 1];
            }
            values[j] = value;
        }
    }
    else {
        qsort(values, (size_t)size, sizeof(long long), compare_long_long);
    }
    PyObject *out = PyList_New(size);
    for (Py_ssize_t i = 0; out != NULL && i < size; i++) {
        PyObject *value = PyLong_FromLongLong(values[i]);
        if (value == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, value);
    }
    if (values != stack) {
        PyMem_Free(values);
    }
    return out;
}

static PyObject *
convert_number_set(PyObject *source)
{
    PyObject *items, *out = NULL, *keyed = NULL;
    Py_ssize_t size, i;
    long long small;
    int all_small = 1;
    if (!PyList_CheckExact(source)) {
        return NULL;
    }
    out = small_number_set(source);
    if (out != NULL || PyErr_Occurred()) {
        return out;
    }
    items = PyList_GetSlice(source, 0, PyList_GET_SIZE(source));
    if (items == NULL) {
        return NULL;
    }
    size = PyList_GET_SIZE(items);
    for (i = 0; i < size && all_small; i++) {
        all_small = small_digits(PyList_GET_ITEM(items, i), &small);
    }
    out = PyList_New(size);
    if (out == NULL) {
        goto fail;
    }
    if (all_small) {
        /* sorted(map(int, items)) */
        for (i = 0; i < size; i++) {
            PyObject *value;
            (void)small_digits(PyList_GET_ITEM(items, i), &small);
            value = PyLong_FromLongLong(small);
            if (value == NULL) {
                goto fail;
            }
            PyList_SET_ITEM(out, i, value);
        }
        if (PyList_Sort(out) < 0) {
            goto fail;
        }
        Py_DECREF(items);
        return out;
    }
    /* Sorted by exact value, stably: (Decimal(text), position, converted) tuples. */
    keyed = PyList_New(size);
    if (keyed == NULL) {
        goto fail;
    }
    for (i = 0; i < size; i++) {
        PyObject *text = PyList_GET_ITEM(items, i), *converted, *key, *position, *triple;
        converted = convert_number(text);
        if (converted == NULL) {
            goto fail;
        }
        key = PyObject_CallOneArg(g_decimal_type, text);
        position = PyLong_FromSsize_t(i);
        triple = PyTuple_New(3);
        if (key == NULL || position == NULL || triple == NULL) {
            Py_DECREF(converted);
            Py_XDECREF(key);
            Py_XDECREF(position);
            Py_XDECREF(triple);
            goto fail;
        }
        PyTuple_SET_ITEM(triple, 0, key);
        PyTuple_SET_ITEM(triple, 1, position);
        PyTuple_SET_ITEM(triple, 2, converted);
        PyList_SET_ITEM(keyed, i, triple);
    }
    if (PyList_Sort(keyed) < 0) {
        goto fail;
    }
    for (i = 0; i < size; i++) {
        PyList_SET_ITEM(out, i, Py_NewRef(PyTuple_GET_ITEM(PyList_GET_ITEM(keyed, i), 2)));
    }
    Py_DECREF(keyed);
    Py_DECREF(items);
    return out;
fail:
    Py_XDECREF(keyed);
    Py_XDECREF(out);
    Py_DECREF(items);
    return NULL;
}

static PyObject *
convert_tagged(enum tag tag, PyObject *payload, int depth)
{
    switch (tag) {
    case T_S:
        return PyUnicode_CheckExact(payload) && storable_text(payload, 0) ? Py_NewRef(payload)
                                                                           : NULL;
    case T_N:
        return convert_number(payload);
    case T_BOOL:
        return payload == Py_True || payload == Py_False ? Py_NewRef(payload) : NULL;
    case T_NULL:
        return payload == Py_True ? Py_NewRef(Py_None) : NULL;
    case T_M:
        return convert_map(payload, depth + 1);
    case T_L:
        return convert_list(payload, depth + 1);
    case T_B:
        return convert_binary(payload);
    case T_SS:
        return convert_string_set(payload);
    case T_NS:
        return convert_number_set(payload);
    case T_BS:
        return convert_binary_set(payload);
    default:
        return NULL;
    }
}

static PyObject *
convert_value(PyObject *value, int depth)
{
    Py_ssize_t position = 0;
    PyObject *tag, *payload, *result;
    if (!PyDict_CheckExact(value)) {
        return NULL;
    }
    switch (PyDict_GET_SIZE(value)) {
    case 0:
        return PyDict_New(); /* DynamoDB Local's bare {} for an empty map */
    case 1:
        break;
    default:
        return NULL;
    }
    if (!PyDict_Next(value, &position, &tag, &payload)) {
        return NULL;
    }
    Py_INCREF(payload);
    result = convert_tagged(tag_of(tag), payload, depth);
    Py_DECREF(payload);
    return result;
}

/* -- the walk that only checks (valid) ------------------------------------------------------ *
 * The same decisions as above, building nothing and running no Python code: 1 = handled. */

static int valid_value(PyObject *value, int depth);

static int
valid_map(PyObject *source, int depth)
{
    Py_ssize_t position = 0;
    PyObject *name, *value;
    if (!PyDict_CheckExact(source) || depth > MAX_DEPTH) {
        return 0;
    }
    while (PyDict_Next(source, &position, &name, &value)) {
        if (!PyUnicode_CheckExact(name) || !storable_text(name, 1)
            || !valid_value(value, depth)) {
            return 0;
        }
    }
    return 1;
}

static int
valid_list(PyObject *source, int depth)
{
    if (!PyList_CheckExact(source) || depth > MAX_DEPTH) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(source); i++) {
        if (!valid_value(PyList_GET_ITEM(source, i), depth)) {
            return 0;
        }
    }
    return 1;
}

static int
valid_tagged(enum tag tag, PyObject *payload, int depth)
{
    Py_ssize_t i;
    switch (tag) {
    case T_S:
        return PyUnicode_CheckExact(payload) && storable_text(payload, 0);
    case T_N:
        return handled_number(payload);
    case T_BOOL:
        return payload == Py_True || payload == Py_False;
    case T_NULL:
        return payload == Py_True;
    case T_M:
        return valid_map(payload, depth + 1);
    case T_L:
        return valid_list(payload, depth + 1);
    case T_B:
        return handled_binary(payload);
    case T_SS:
    case T_NS:
    case T_BS:
        if (!PyList_CheckExact(payload)) {
            return 0;
        }
        for (i = 0; i < PyList_GET_SIZE(payload); i++) {
            PyObject *item = PyList_GET_ITEM(payload, i);
            int ok = tag == T_SS   ? PyUnicode_CheckExact(item) && storable_text(item, 0)
                     : tag == T_NS ? handled_number(item)
                                   : handled_binary(item);
            if (!ok) {
                return 0;
            }
        }
        return 1;
    default:
        return 0;
    }
}

static int
valid_value(PyObject *value, int depth)
{
    Py_ssize_t position = 0;
    PyObject *tag, *payload;
    if (!PyDict_CheckExact(value)) {
        return 0;
    }
    switch (PyDict_GET_SIZE(value)) {
    case 0:
        return 1;
    case 1:
        break;
    default:
        return 0;
    }
    if (!PyDict_Next(value, &position, &tag, &payload)) {
        return 0;
    }
    return valid_tagged(tag_of(tag), payload, depth);
}

/* -- module functions ----------------------------------------------------------------------- */

/* After a NULL from the walk: None for "not handled". A MemoryError, or a BaseException that is
 * not an Exception (KeyboardInterrupt while Python code ran), propagates; any other exception
 * (none is expected) is cleared, and the reference decides. */
static PyObject *
not_handled(void)
{
    if (PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError)
            || !PyErr_ExceptionMatches(PyExc_Exception)) {
            return NULL;
        }
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

static PyObject *
speedups_image(PyObject *Py_UNUSED(module), PyObject *image)
{
    PyObject *result;
    if (!configured()) {
        Py_RETURN_NONE;
    }
    result = convert_map(image, 0);
    return result != NULL ? result : not_handled();
}

static PyObject *
speedups_valid(PyObject *Py_UNUSED(module), PyObject *image)
{
    return PyBool_FromLong(configured() && valid_map(image, 0));
}

static PyObject *s_id = NULL; /* "_id" */

/* document(image, document_id) -> {"_id": document_id, **image(image)} | None; an image with an
 * attribute named _id is left to the reference (which checks it against the key's _id). */
static PyObject *
speedups_document(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *image, *out;
    int has_id;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "document() takes (image, document_id)");
        return NULL;
    }
    image = args[0];
    if (!configured() || !PyDict_CheckExact(image)) {
        Py_RETURN_NONE;
    }
    if (s_id == NULL && (s_id = PyUnicode_InternFromString("_id")) == NULL) {
        return NULL;
    }
    has_id = PyDict_Contains(image, s_id);
    if (has_id != 0) {
        return has_id < 0 ? not_handled() : Py_NewRef(Py_None);
    }
    out = PyDict_New();
    if (out == NULL) {
        return NULL;
    }
    if (PyDict_SetItem(out, s_id, args[1]) < 0 || convert_map_into(out, image, 0) < 0) {
        Py_DECREF(out);
        return not_handled();
    }
    return out;
}

/* Whether a top-level name of document starts with "$": 1 or 0, -1 when document is not exactly
 * a dict of str names (the caller decides). */
static int
has_dollar_name(PyObject *document)
{
    Py_ssize_t position = 0;
    PyObject *name, *value;
    if (!PyDict_CheckExact(document)) {
        return -1;
    }
    while (PyDict_Next(document, &position, &name, &value)) {
        if (!PyUnicode_CheckExact(name)) {
            return -1;
        }
        if (PyUnicode_GET_LENGTH(name) > 0 && PyUnicode_READ_CHAR(name, 0) == '$') {
            return 1;
        }
    }
    return 0;
}

/* has_dollar_name(document) -> bool | None (None: not a plain dict of str names). */
static PyObject *
speedups_has_dollar_name(PyObject *Py_UNUSED(module), PyObject *document)
{
    int found = has_dollar_name(document);
    if (found < 0) {
        Py_RETURN_NONE;
    }
    return PyBool_FromLong(found);
}

/* The BID bits of -19.99 and of -9.999...9E+6111 (34 nines): the self-check's values. */
static const uint64_t check_bits[][2] = {
    {((uint64_t)(-2 + BID_EXPONENT_BIAS) << 49) | ((uint64_t)1 << 63), 1999},
    {((uint64_t)(BID_EXPONENT_MAX + BID_EXPONENT_BIAS) << 49) | ((uint64_t)1 << 63)
         | 0x1ed09bead87c0ULL,
     0x378d8e63ffffffffULL},
};

/* 1 if building through the slots gives the same type and BID as the public constructor. */
static int
direct_path_agrees(void)
{
    for (size_t i = 0; i < sizeof check_bits / sizeof check_bits[0]; i++) {
        PyObject *direct, *public_, *direct_bid = NULL, *public_bid = NULL;
        int same = 0;
        direct = make_decimal128(check_bits[i][0], check_bits[i][1], 1);
        public_ = make_decimal128(check_bits[i][0], check_bits[i][1], 0);
        if (direct != NULL && public_ != NULL && Py_TYPE(direct) == Py_TYPE(public_)
            && (PyObject *)Py_TYPE(direct) == g_decimal128_type) {
            direct_bid = PyObject_GetAttrString(direct, "bid");
            public_bid = PyObject_GetAttrString(public_, "bid");
            if (direct_bid != NULL && public_bid != NULL) {
                same = PyObject_RichCompareBool(direct_bid, public_bid, Py_EQ);
            }
        }
        Py_XDECREF(direct);
        Py_XDECREF(public_);
        Py_XDECREF(direct_bid);
        Py_XDECREF(public_bid);
        if (same != 1) {
            PyErr_Clear();
            return 0;
        }
    }
    return 1;
}

/* The member descriptor of one of Decimal128's private slots, or NULL (no exception). */
static PyObject *
slot_descriptor(PyObject *type, const char *name)
{
    PyObject *descriptor = PyObject_GetAttrString(type, name);
    if (descriptor == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (!Py_IS_TYPE(descriptor, &PyMemberDescr_Type)
        || Py_TYPE(descriptor)->tp_descr_set == NULL) {
        Py_DECREF(descriptor);
        return NULL;
    }
    return descriptor;
}

static PyObject *
speedups_configure(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *decimal128_type, *decimal_type;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "configure(decimal128_type, decimal_type)");
        return NULL;
    }
    decimal128_type = args[0];
    decimal_type = args[1];
    if (!PyCallable_Check(decimal128_type) || !PyCallable_Check(decimal_type)) {
        PyErr_SetString(PyExc_TypeError, "configure() takes two types");
        return NULL;
    }
    Py_CLEAR(g_high_slot);
    Py_CLEAR(g_low_slot);
    Py_XSETREF(g_decimal128_type, Py_NewRef(decimal128_type));
    Py_XSETREF(g_decimal_type, Py_NewRef(decimal_type));

    /* The direct path: allocate without __init__ and set the two slots, when the type looks
     * like pymongo's pure-Python Decimal128 (no __new__ of its own, slots as member
     * descriptors) and the result matches the public constructor's. */
    if (PyType_Check(decimal128_type)
        && ((PyTypeObject *)decimal128_type)->tp_new == PyBaseObject_Type.tp_new) {
        g_high_slot = slot_descriptor(decimal128_type, "_Decimal128__high");
        g_low_slot = slot_descriptor(decimal128_type, "_Decimal128__low");
        if (g_high_slot == NULL || g_low_slot == NULL || !direct_path_agrees()) {
            Py_CLEAR(g_high_slot);
            Py_CLEAR(g_low_slot);
        }
    }
    Py_RETURN_NONE;
}

/* Which way Decimal128 values are built: "slots", "constructor", or None before configure(). */
static PyObject *
speedups_decimal128_path(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    if (!configured()) {
        Py_RETURN_NONE;
    }
    return PyUnicode_FromString(g_high_slot != NULL ? "slots" : "constructor");
}

/* ---- Records -> Change objects -------------------------------------------------------------
 *
 * parse_changes(records) does what replicator.events.parse_record does for a well-formed record
 * and answers None for any other, so that Python (the reference) parses it or raises the error
 * that names the record and the field path. configure_events() hands over the Change class and
 * the lookup tables once, from events.py.
 */

/* object.__new__(cls) for a plain class (its tp_new is object's, as configure_events and
 * configure_planner check): the call object.__new__'s wrapper makes, without the generic call
 * path around it, which cost as much as the rest of building a PlannedWrite. */
static PyObject *
new_instance(PyObject *cls)
{
    static PyObject *no_arguments = NULL;
    if (no_arguments == NULL && (no_arguments = PyTuple_New(0)) == NULL) {
        return NULL;
    }
    return PyBaseObject_Type.tp_new((PyTypeObject *)cls, no_arguments, NULL);
}

/* The check new_instance relies on; a TypeError otherwise. */
static int
check_plain_class(PyObject *cls)
{
    if (!PyType_Check(cls) || ((PyTypeObject *)cls)->tp_new != PyBaseObject_Type.tp_new) {
        PyErr_Format(PyExc_TypeError, "%R is not a plain class (object.__new__ builds it)", cls);
        return -1;
    }
    return 0;
}

static PyObject *ev_change_type = NULL;   /* replicator.events.Change */
static PyObject *ev_event_names = NULL;   /* {"INSERT": EventName.INSERT, ...} */
static PyObject *ev_view_types = NULL;    /* {"NEW_IMAGE": StreamViewType.NEW_IMAGE, ...} */
static PyObject *ev_epochs = NULL;        /* events._EPOCHS: epoch seconds -> datetime */
static PyObject *ev_ttl_principal = NULL; /* "dynamodb.amazonaws.com" */
static PyObject *ev_remove = NULL;        /* EventName.REMOVE */
static PyObject *ev_view_new_and_old = NULL;
static PyObject *ev_view_new = NULL;

static PyObject *s___dict__, *s_index, *s_event_name, *s_keys,
    *s_sequence_number, *s_stream_view_type, *s_new_image, *s_old_image, *s_created_at,
    *s_is_ttl_delete, *s_event_id, *s_event_source_arn, *s_raw;

/* var = sys.intern(text), once; for functions that return -1 on an error. */
#define INTERN(var, text)                                   \
    if ((var) == NULL) {                                    \
        (var) = PyUnicode_InternFromString(text);           \
        if ((var) == NULL) return -1;                       \
    }

/* var = sys.intern(text), once; for functions that return NULL on an error. */
#define INTERN_OR_NULL(var, text)                           \
    if ((var) == NULL) {                                    \
        (var) = PyUnicode_InternFromString(text);           \
        if ((var) == NULL) return NULL;                     \
    }

static PyObject *s_sequence_number_key = NULL; /* "SequenceNumber" (batch figures) */
static PyObject *s_created_key = NULL; /* "ApproximateCreationDateTime" (batch figures) */

static int
intern_event_names(void)
{
    INTERN(s___dict__, "__dict__");
    INTERN(s_index, "index");
    INTERN(s_event_name, "event_name");
    INTERN(s_keys, "keys");
    INTERN(s_sequence_number, "sequence_number");
    INTERN(s_stream_view_type, "stream_view_type");
    INTERN(s_new_image, "new_image");
    INTERN(s_old_image, "old_image");
    INTERN(s_created_at, "created_at");
    INTERN(s_is_ttl_delete, "is_ttl_delete");
    INTERN(s_event_id, "event_id");
    INTERN(s_event_source_arn, "event_source_arn");
    INTERN(s_raw, "raw");
    INTERN(s_sequence_number_key, "SequenceNumber");
    INTERN(s_created_key, "ApproximateCreationDateTime");
    return 0;
}

/* frozen.build(cls, fields): a plain frozen dataclass with fields as its __dict__, set by
 * object.__setattr__ past the dataclass's own __setattr__ (fields is borrowed). */
static PyObject *
build_frozen(PyObject *cls, PyObject *fields)
{
    PyObject *instance = new_instance(cls);
    if (instance != NULL && PyObject_GenericSetAttr(instance, s___dict__, fields) < 0) {
        Py_CLEAR(instance);
    }
    return instance;
}

static PyObject *
configure_events(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *change_type, *event_names, *view_types, *epochs, *ttl_principal,
        *remove, *view_new_and_old, *view_new;
    if (!PyArg_ParseTuple(args, "OO!O!O!O!OOO:configure_events", &change_type,
                          &PyDict_Type, &event_names, &PyDict_Type, &view_types, &PyDict_Type,
                          &epochs, &PyUnicode_Type, &ttl_principal, &remove, &view_new_and_old,
                          &view_new)) {
        return NULL;
    }
    if (intern_event_names() < 0 || check_plain_class(change_type) < 0) {
        return NULL;
    }
    Py_XSETREF(ev_change_type, Py_NewRef(change_type));
    Py_XSETREF(ev_event_names, Py_NewRef(event_names));
    Py_XSETREF(ev_view_types, Py_NewRef(view_types));
    Py_XSETREF(ev_epochs, Py_NewRef(epochs));
    Py_XSETREF(ev_ttl_principal, Py_NewRef(ttl_principal));
    Py_XSETREF(ev_remove, Py_NewRef(remove));
    Py_XSETREF(ev_view_new_and_old, Py_NewRef(view_new_and_old));
    Py_XSETREF(ev_view_new, Py_NewRef(view_new));
    Py_RETURN_NONE;
}

/* A string of 1 to 40 ASCII digits (a sequence number). */
static int
is_sequence_number(PyObject *text)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text)) {
        return 0;
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (length < 1 || length > 40) {
        return 0;
    }
    const char *chars = (const char *)PyUnicode_DATA(text);
    for (Py_ssize_t i = 0; i < length; i++) {
        if (chars[i] < '0' || chars[i] > '9') {
            return 0;
        }
    }
    return 1;
}

/* A well-formed record's fields, borrowed from it (see read_entries). */
typedef struct {
    PyObject *event_id, *event_name, *keys, *sequence, *view_type, *new_image, *old_image,
        *created, *is_ttl, *arn;
} record_fields;

/* Years 1970 to 9999: epoch seconds datetime.fromtimestamp turns into a time on any platform. */
#define EPOCH_SECONDS_MAX 253402300799.0

/* 1 when raw is a record parse_record accepts (fields filled, borrowed), 0 when Python must
 * decide, -1 on an error. created_cached: ApproximateCreationDateTime must be one the epoch cache
 * holds (parse_one hands out that datetime); otherwise a number in range is enough (the planner
 * never reads it). */
/* The entries of a dict this module reads, found in one pass over it (cheaper than a lookup
 * per name, and a pass sees every key, so it also checks that all are exact str): values[i] is
 * dict[names[i]] (borrowed) or Py_None when absent. 0 when a key is anything but an exact, ready
 * str (Python decides), 1 otherwise. Only PyDict_Next and memcmp: no Python code runs. */
typedef struct {
    const char *text;
    Py_ssize_t length;
} entry_name;
#define ENTRY_NAME(text) {text, (Py_ssize_t)sizeof(text) - 1}

static int
read_entries(PyObject *dict, const entry_name *names, Py_ssize_t count, PyObject **values)
{
    Py_ssize_t position = 0;
    PyObject *key, *value;
    for (Py_ssize_t i = 0; i < count; i++) {
        values[i] = Py_None;
    }
    while (PyDict_Next(dict, &position, &key, &value)) {
        const char *text;
        Py_ssize_t length;
        if (!PyUnicode_CheckExact(key)) {
            return 0;
        }
        if (!ascii_of(key, &text, &length)) {
#if PY_VERSION_HEX < 0x030C0000
            if (!PyUnicode_IS_READY(key)) {
                return 0;
            }
#endif
            continue; /* a non-ASCII name is none of ours */
        }
        for (Py_ssize_t i = 0; i < count; i++) {
            if (names[i].length == length && memcmp(names[i].text, text, (size_t)length) == 0) {
                values[i] = value;
                break;
            }
        }
    }
    return 1;
}

static const entry_name record_names[] = {
    ENTRY_NAME("eventID"), ENTRY_NAME("dynamodb"), ENTRY_NAME("eventName"),
    ENTRY_NAME("userIdentity"), ENTRY_NAME("eventSourceARN"),
};
enum { R_EVENT_ID, R_DYNAMODB, R_EVENT_NAME, R_USER_IDENTITY, R_ARN, R_COUNT };
static const entry_name body_names[] = {
    ENTRY_NAME("SequenceNumber"), ENTRY_NAME("NewImage"), ENTRY_NAME("OldImage"),
    ENTRY_NAME("Keys"), ENTRY_NAME("StreamViewType"), ENTRY_NAME("ApproximateCreationDateTime"),
};
/* The Lambda event spells it principalId, GetRecords (boto3) PrincipalId: events.TTL_PRINCIPAL */
static const entry_name identity_names[] = {ENTRY_NAME("principalId"), ENTRY_NAME("PrincipalId")};
enum { B_SEQUENCE, B_NEW_IMAGE, B_OLD_IMAGE, B_KEYS, B_VIEW, B_CREATED, B_COUNT };

/* Two exact str equal, as str == says (the same kind, length and data). */
static int
same_text(PyObject *a, PyObject *b)
{
#if PY_VERSION_HEX < 0x030C0000
    if (!PyUnicode_IS_READY(a) || !PyUnicode_IS_READY(b)) {
        return 0; /* a legacy string: the callers then decline or compare with == */
    }
#endif
    Py_ssize_t length = PyUnicode_GET_LENGTH(a);
    int kind = PyUnicode_KIND(a);
    return a == b
           || (PyUnicode_GET_LENGTH(b) == length && PyUnicode_KIND(b) == kind
               && memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)length * (size_t)kind) == 0);
}

/* dict[text] (borrowed; NULL, no error, when absent) for the few-entry name tables this module
 * is configured with, whose keys are exact str: found by comparing the text, not hashing it -- a
 * record's eventName and StreamViewType are fresh strings whose hash is not computed yet (issue
 * 21: a hashing lookup cost ~360 instructions, two a record). */
static PyObject *
name_lookup(PyObject *dict, PyObject *text)
{
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &position, &key, &value)) {
        if (PyUnicode_CheckExact(key) && same_text(key, text)) {
            return value;
        }
    }
    return NULL;
}

static int
read_record(PyObject *raw, record_fields *f, int created_cached)
{
    PyObject *entries[R_COUNT], *fields[B_COUNT];
    /* Borrowed references throughout: nothing below runs Python code (see read_entries). */
    if (!PyDict_CheckExact(raw) || !read_entries(raw, record_names, R_COUNT, entries)) {
        return 0;
    }
    PyObject *event_id = entries[R_EVENT_ID];
    if (!PyUnicode_CheckExact(event_id)) {
        event_id = Py_None;
    }
    PyObject *body = entries[R_DYNAMODB];
    if (!PyDict_CheckExact(body) || !read_entries(body, body_names, B_COUNT, fields)) {
        return 0;
    }
    PyObject *sequence = fields[B_SEQUENCE];
    if (!is_sequence_number(sequence)) {
        return 0;
    }
    PyObject *new_image = fields[B_NEW_IMAGE], *old_image = fields[B_OLD_IMAGE];
    if ((new_image != Py_None && !PyDict_CheckExact(new_image))
        || (old_image != Py_None && !PyDict_CheckExact(old_image))) {
        return 0;
    }
    PyObject *name = entries[R_EVENT_NAME];
    if (!PyUnicode_CheckExact(name)) {
        return 0;
    }
    PyObject *event_name = name_lookup(ev_event_names, name);
    if (event_name == NULL) {
        return 0; /* DynamoDB Local's TTL name, or an unknown one: Python decides */
    }
    PyObject *is_ttl = Py_False;
    PyObject *identity = entries[R_USER_IDENTITY];
    if (identity != Py_None) {
        PyObject *principals[2];
        if (!PyDict_CheckExact(identity)
            || !read_entries(identity, identity_names, 2, principals)) {
            return 0;
        }
        for (int k = 0; k < 2; k++) {
            PyObject *principal = principals[k];
            if (principal == Py_None) {
                continue;
            }
            if (!PyUnicode_CheckExact(principal)) {
                return 0;
            }
            int same = PyUnicode_Compare(principal, ev_ttl_principal);
            if (same == -1 && PyErr_Occurred()) return -1;
            if (same == 0) is_ttl = Py_True;
        }
    }
    PyObject *keys = fields[B_KEYS];
    if (!PyDict_CheckExact(keys) || PyDict_GET_SIZE(keys) == 0) {
        return 0;
    }
    Py_ssize_t position = 0;
    PyObject *key_name, *key_value;
    while (PyDict_Next(keys, &position, &key_name, &key_value)) {
        if (!PyDict_CheckExact(key_value) || PyDict_GET_SIZE(key_value) != 1) {
            return 0;
        }
    }
    PyObject *view_type = Py_None;
    PyObject *view = fields[B_VIEW];
    if (view != Py_None) {
        if (!PyUnicode_CheckExact(view)) {
            return 0;
        }
        view_type = name_lookup(ev_view_types, view);
        if (view_type == NULL) {
            return 0;
        }
    }
    if (new_image == Py_None && event_name != ev_remove
        && (view_type == ev_view_new_and_old || view_type == ev_view_new)) {
        return 0; /* an INSERT or MODIFY that needs a NewImage: Python raises */
    }
    PyObject *created = fields[B_CREATED];
    if (created != Py_None) {
        if (!created_cached && PyDateTime_Check(created)) {
            /* GetRecords' shape: parse_record takes any datetime */
        }
        else if (!PyLong_CheckExact(created) && !PyFloat_CheckExact(created)) {
            return 0;
        }
        else if (created_cached) {
            created = PyDict_GetItemWithError(ev_epochs, created);
            if (created == NULL) {
                /* not seen yet: Python converts it and remembers it */
                return PyErr_Occurred() ? -1 : 0;
            }
        }
        else {
            double seconds = PyLong_CheckExact(created) ? PyLong_AsDouble(created)
                                                        : PyFloat_AS_DOUBLE(created);
            if (seconds == -1.0 && PyErr_Occurred()) {
                PyErr_Clear(); /* too large for a double: Python decides */
                return 0;
            }
            if (!(seconds >= 0.0 && seconds <= EPOCH_SECONDS_MAX)) {
                return 0; /* NaN, negative or beyond year 9999: Python decides */
            }
        }
    }
    PyObject *arn = entries[R_ARN];
    f->event_id = event_id;
    f->event_name = event_name;
    f->keys = keys;
    f->sequence = sequence;
    f->view_type = view_type;
    f->new_image = new_image;
    f->old_image = old_image;
    f->created = created;
    f->is_ttl = is_ttl;
    f->arn = arn;
    return 1;
}

/* The Change for one record, Py_None (new reference) when Python must decide, NULL on error. */
static PyObject *
parse_one(PyObject *raw, Py_ssize_t index)
{
    record_fields f;
    int status = read_record(raw, &f, 1);
    if (status <= 0) {
        return status < 0 ? NULL : Py_NewRef(Py_None);
    }

    PyObject *fields = PyDict_New();
    if (fields == NULL) return NULL;
    PyObject *index_object = PyLong_FromSsize_t(index);
    if (index_object == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    /* The order of the dataclass's fields, as Change(...) would fill __dict__. */
    if (PyDict_SetItem(fields, s_index, index_object) < 0
        || PyDict_SetItem(fields, s_event_name, f.event_name) < 0
        || PyDict_SetItem(fields, s_keys, f.keys) < 0
        || PyDict_SetItem(fields, s_sequence_number, f.sequence) < 0
        || PyDict_SetItem(fields, s_stream_view_type, f.view_type) < 0
        || PyDict_SetItem(fields, s_new_image, f.new_image) < 0
        || PyDict_SetItem(fields, s_old_image, f.old_image) < 0
        || PyDict_SetItem(fields, s_created_at, f.created) < 0
        || PyDict_SetItem(fields, s_is_ttl_delete, f.is_ttl) < 0
        || PyDict_SetItem(fields, s_event_id, f.event_id) < 0
        || PyDict_SetItem(fields, s_event_source_arn, f.arn) < 0
        || PyDict_SetItem(fields, s_raw, raw) < 0) {
        Py_DECREF(index_object);
        Py_DECREF(fields);
        return NULL;
    }
    Py_DECREF(index_object);
    PyObject *change = build_frozen(ev_change_type, fields);
    Py_DECREF(fields);
    return change;
}

/* parse_changes(records) -> (list of Change or None, how many None) */
static PyObject *
parse_changes(PyObject *Py_UNUSED(module), PyObject *records)
{
    if (ev_change_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "configure_events() was not called");
        return NULL;
    }
    if (!PyList_CheckExact(records)) {
        PyErr_SetString(PyExc_TypeError, "records must be a list");
        return NULL;
    }
    /* A private copy: nothing else can shrink it while the loop reads it. */
    PyObject *own = PyList_GetSlice(records, 0, PyList_GET_SIZE(records));
    if (own == NULL) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(own);
    PyObject *out = PyList_New(count);
    if (out == NULL) {
        Py_DECREF(own);
        return NULL;
    }
    Py_ssize_t holes = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *change = parse_one(PyList_GET_ITEM(own, i), i);
        if (change == NULL) {
            Py_DECREF(own);
            Py_DECREF(out);
            return NULL;
        }
        if (change == Py_None) holes++;
        PyList_SET_ITEM(out, i, change); /* steals the reference */
    }
    Py_DECREF(own);
    return Py_BuildValue("(Nn)", out, holes);
}

/* ---- Records -> write plan, the common case -------------------------------------------------
 *
 * plan_records(records, key_schema, guard, sequence_field, ttl_as_delete) does, in one pass,
 * what replicator.plan.Planner.plan(*parse_records(records)) gives when the planner has no
 * transforms, no shard key and no id mapping (Planner.plan_records checks that), and every record
 * is well formed: the list of PlannedWrite, one per _id, in the order the _ids first appear. It
 * answers None ("Python decides") as soon as anything differs from that case: a record
 * parse_changes would not take, a bad image, an attribute named _id, a key that is not S or an
 * int64 N, a record that needs a read-back, a TTL delete when TTL deletes are not plain deletes.
 * Python then parses and plans the whole batch, so bad records, quarantine and every setting
 * stay in one place (plan.py), which is the reference; tests/replicator/test_speedups.py checks that
 * both give equal plans.
 */

static PyObject *pl_planned_write = NULL; /* replicator.plan.PlannedWrite */

/* PlannedWrite's fields in declaration order, each a __slots__ member (configure_planner checks
 * the class has exactly these): the planner fills the slots and the readers below read them
 * directly (issue 21: a __dict__ per write, copied from a template, filled and freed, cost
 * ~1,000 instructions per event). */
enum { PW_KIND, PW_FILTER, PW_DOCUMENT, PW_UPSERT, PW_SEQUENCE_NUMBERS, PW_COLLECTION,
       PW_SHARD_KEY_MOVE, PW_ORDER_KEY, PW_DECIDED_OVER, PW_COUNT };
static const char *const pw_names[PW_COUNT] = {
    "kind", "filter", "document", "upsert", "sequence_numbers", "collection", "shard_key_move",
    "order_key", "decided_over"};
static PyObject *pw_descriptors[PW_COUNT]; /* the class's member descriptors */
static PyObject *pw_name_objects[PW_COUNT];
static Py_ssize_t pw_offsets[PW_COUNT]; /* a slot's offset in the instance; 0: use the descriptor */
static PyObject *s_replace, *s_update, *s_delete, *s_main, *s_not, *s_gte, *s_replace_with,
    *s_literal;

static PyObject *pl_replace_one, *pl_delete_one, *pl_update_one, *pl_upsert_names;

/* Building a pymongo operation by filling its slots, as accelerator.slot_template describes how
 * the class fills them: its __init__ (validation of what is right here by construction, a chain of
 * Python calls) cost as much as converting the document. Used only when what it builds equals,
 * slot for slot, what calling the class builds (checked at configure_operations); otherwise, and
 * for anything but a plain __slots__ class, the class is called. */
typedef struct {
    PyObject *cls; /* NULL: call the class */
    PyObject *descriptors, *values, *unset;
    Py_ssize_t filter_at, document_at;
} slot_maker;

static slot_maker replace_maker, delete_maker;

static void
clear_maker(slot_maker *maker)
{
    Py_CLEAR(maker->cls);
    Py_CLEAR(maker->descriptors);
    Py_CLEAR(maker->values);
    Py_CLEAR(maker->unset);
}

static PyObject *
fill_slots(const slot_maker *maker, PyObject *filter, PyObject *document)
{
    PyObject *operation = new_instance(maker->cls);
    if (operation == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(maker->descriptors); i++) {
        PyObject *value = i == maker->filter_at     ? filter
                          : i == maker->document_at ? document
                                                    : PyTuple_GET_ITEM(maker->values, i);
        if (value != maker->unset
            && set_slot(PyTuple_GET_ITEM(maker->descriptors, i), operation, value) < 0) {
            Py_DECREF(operation);
            return NULL;
        }
    }
    return operation;
}

/* 1 when both have the same value (or both none) in every slot and compare equal. */
static int
same_operation(const slot_maker *maker, PyObject *mine, PyObject *theirs)
{
    if (Py_TYPE(mine) != Py_TYPE(theirs) || PyObject_RichCompareBool(mine, theirs, Py_EQ) != 1) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(maker->descriptors); i++) {
        PyObject *descriptor = PyTuple_GET_ITEM(maker->descriptors, i);
        descrgetfunc get = Py_TYPE(descriptor)->tp_descr_get;
        PyObject *a = get(descriptor, mine, (PyObject *)Py_TYPE(mine));
        if (a == NULL) PyErr_Clear();
        PyObject *b = get(descriptor, theirs, (PyObject *)Py_TYPE(theirs));
        if (b == NULL) PyErr_Clear();
        int same = (a == NULL && b == NULL)
                   || (a != NULL && b != NULL && PyObject_RichCompareBool(a, b, Py_EQ) == 1);
        Py_XDECREF(a);
        Py_XDECREF(b);
        if (PyErr_Occurred()) PyErr_Clear();
        if (!same) return 0;
    }
    return 1;
}

/* Takes accelerator.slot_template's answer (or None) for cls; 0, or -1 with a TypeError for a
 * malformed template. A template whose result differs from calling cls is not used. */
static int setup_maker_checked(slot_maker *maker, PyObject *cls, PyObject *template,
                               int with_document, PyObject *document, PyObject *upsert);

static int
setup_maker(slot_maker *maker, PyObject *cls, PyObject *template, int with_document)
{
    PyObject *document = Py_BuildValue("{sisi}", "_id", 2, "document", 3);
    if (document == NULL) {
        return -1;
    }
    int done = setup_maker_checked(maker, cls, template, with_document, document, Py_True);
    Py_DECREF(document);
    return done;
}

/* setup_maker, checked with ``document`` as the operation's document (an update must name an
 * operator) and ``upsert`` passed as upsert= (NULL: not passed, the class's default). */
static int
setup_maker_checked(slot_maker *maker, PyObject *cls, PyObject *template, int with_document,
                    PyObject *check_document, PyObject *upsert)
{
    PyObject *descriptors, *values, *unset;
    Py_ssize_t filter_at, document_at;
    clear_maker(maker);
    if (template == Py_None) {
        return 0;
    }
    if (!PyArg_ParseTuple(template, "O!O!nnO:slot template", &PyTuple_Type, &descriptors,
                          &PyTuple_Type, &values, &filter_at, &document_at, &unset)) {
        return -1;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(descriptors);
    int valid = check_plain_class(cls) == 0 && PyTuple_GET_SIZE(values) == count
                && filter_at >= 0 && filter_at < count
                && (with_document ? document_at >= 0 && document_at < count
                                        && document_at != filter_at
                                  : document_at == -1);
    for (Py_ssize_t i = 0; valid && i < count; i++) {
        PyObject *descriptor = PyTuple_GET_ITEM(descriptors, i);
        valid = Py_IS_TYPE(descriptor, &PyMemberDescr_Type)
                && Py_TYPE(descriptor)->tp_descr_set != NULL
                && PyType_IsSubtype((PyTypeObject *)cls,
                                    ((PyMemberDescrObject *)descriptor)->d_common.d_type);
    }
    if (!valid) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "not a slot template of %R", cls);
        }
        return -1;
    }
    maker->cls = Py_NewRef(cls);
    maker->descriptors = Py_NewRef(descriptors);
    maker->values = Py_NewRef(values);
    maker->unset = Py_NewRef(unset);
    maker->filter_at = filter_at;
    maker->document_at = document_at;

    /* The check: the same operation as the class builds, for a filter and a document. */
    PyObject *filter = Py_BuildValue("{si}", "_id", 1);
    PyObject *document = Py_NewRef(check_document);
    PyObject *mine = NULL, *theirs = NULL;
    if (filter != NULL) {
        mine = fill_slots(maker, filter, with_document ? document : NULL);
        if (with_document && upsert != NULL) {
            PyObject *call[3] = {filter, document, upsert};
            theirs = PyObject_Vectorcall(cls, call, 2, pl_upsert_names);
        }
        else if (with_document) {
            PyObject *call[2] = {filter, document};
            theirs = PyObject_Vectorcall(cls, call, 2, NULL);
        }
        else {
            theirs = PyObject_CallOneArg(cls, filter);
        }
    }
    int agrees = mine != NULL && theirs != NULL && same_operation(maker, mine, theirs);
    Py_XDECREF(filter);
    Py_XDECREF(document);
    Py_XDECREF(mine);
    Py_XDECREF(theirs);
    if (PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError)) return -1;
        PyErr_Clear();
    }
    if (!agrees) {
        clear_maker(maker);
    }
    return 0;
}


static int
intern_planner_names(void)
{
    /* write_get's names: here, not in configure_planner, because the readers need only
     * configure_operations / configure_tombstones (both call this), and a refused or never run
     * configure_planner must not leave them a NULL name to look up (see write_names_ready) */
    for (int i = 0; i < PW_COUNT; i++) {
        INTERN(pw_name_objects[i], pw_names[i]);
    }
    INTERN(s_id, "_id");
    INTERN(s_replace, "replace");
    INTERN(s_update, "update");
    INTERN(s_delete, "delete");
    INTERN(s_main, "main");
    INTERN(s_not, "$not");
    INTERN(s_gte, "$gte");
    INTERN(s_replace_with, "$replaceWith");
    INTERN(s_literal, "$literal");
    return 0;
}

/* Every name write_get may look up is interned (the last is set after all the others). */
static int
write_names_ready(void)
{
    return pw_name_objects[PW_COUNT - 1] != NULL;
}

/* write.field = value, through the slot where configure_planner found it, else the descriptor. */
static int
write_set(PyObject *write, int field, PyObject *value)
{
    if (pw_offsets[field] != 0) {
        PyObject **slot = (PyObject **)((char *)write + pw_offsets[field]);
        Py_XSETREF(*slot, Py_NewRef(value));
        return 0;
    }
    PyObject *descriptor = pw_descriptors[field];
    return Py_TYPE(descriptor)->tp_descr_set(descriptor, write, value);
}

/* write.field (new reference): the slot of a PlannedWrite of exactly the configured class where
 * it is set, else the generic lookup (which raises AttributeError for an unset slot). */
static PyObject *
write_get(PyObject *write, int field)
{
    if ((PyObject *)Py_TYPE(write) == pl_planned_write && pw_offsets[field] != 0) {
        PyObject *value = *(PyObject **)((char *)write + pw_offsets[field]);
        if (value != NULL) {
            return Py_NewRef(value);
        }
    }
    return PyObject_GetAttr(write, pw_name_objects[field]);
}

/* A PlannedWrite of the main collection without a shard key move (new reference): kind, filter,
 * document and upsert given, collection "main", shard_key_move, order_key and decided_over None
 * (the class's defaults), sequence_numbers left for planned_write to set. */
static PyObject *
write_fields(PyObject *kind, PyObject *filter, PyObject *document, PyObject *upsert)
{
    PyTypeObject *type = (PyTypeObject *)pl_planned_write;
    /* object.__new__ without its argument checks (configure_planner checked tp_new is it) */
    PyObject *write = type->tp_alloc(type, 0);
    if (write == NULL) {
        return NULL;
    }
    PyObject *values[PW_COUNT] = {kind, filter, document, upsert, NULL, s_main, Py_None, Py_None,
                                  Py_None};
    for (int i = 0; i < PW_COUNT; i++) {
        if (values[i] != NULL && write_set(write, i, values[i]) < 0) {
            Py_DECREF(write);
            return NULL;
        }
    }
    return write;
}

/* configure_planner(PlannedWrite, slots): the class plan_records builds and its fields' member
 * descriptors in declaration order (accelerator.configure); a TypeError unless they are exactly
 * pw_names' slots of a plain class and a write built here equals the class's own. */
static PyObject *
configure_planner(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *planned_write, *slots;
    if (!PyArg_ParseTuple(args, "OO!:configure_planner", &planned_write, &PyTuple_Type, &slots)) {
        return NULL;
    }
    if (intern_event_names() < 0 || intern_planner_names() < 0
        || check_plain_class(planned_write) < 0) {
        return NULL;
    }
    int valid = PyTuple_GET_SIZE(slots) == PW_COUNT;
    for (int i = 0; valid && i < PW_COUNT; i++) {
        PyObject *descriptor = PyTuple_GET_ITEM(slots, i);
        valid = Py_IS_TYPE(descriptor, &PyMemberDescr_Type)
                && (PyObject *)((PyMemberDescrObject *)descriptor)->d_common.d_type == planned_write
                && PyUnicode_CompareWithASCIIString(PyDescr_NAME(descriptor), pw_names[i]) == 0
                && Py_TYPE(descriptor)->tp_descr_set != NULL;
    }
    if (!valid) {
        PyErr_Format(PyExc_TypeError, "%R: not the slots (%s, ...) of a plain class", slots,
                     pw_names[0]);
        return NULL;
    }
    for (int i = 0; i < PW_COUNT; i++) {
        PyObject *descriptor = PyTuple_GET_ITEM(slots, i);
        Py_XSETREF(pw_descriptors[i], Py_NewRef(descriptor));
        pw_offsets[i] = slot_offset(descriptor);
    }
    Py_XSETREF(pl_planned_write, Py_NewRef(planned_write));

    /* The check: a write built here equals the class's own (dataclass == compares every field,
     * so the defaults filled above must be the class's). */
    PyObject *filter = Py_BuildValue("{si}", "_id", 1), *document = Py_BuildValue("{si}", "_id", 1);
    PyObject *numbers = Py_BuildValue("(s)", "1"), *mine = NULL, *theirs = NULL;
    if (filter != NULL && document != NULL && numbers != NULL) {
        mine = write_fields(s_replace, filter, document, Py_True);
        if (mine != NULL && write_set(mine, PW_SEQUENCE_NUMBERS, numbers) < 0) {
            Py_CLEAR(mine);
        }
        PyObject *call[5] = {s_replace, filter, document, Py_True, numbers};
        theirs = mine == NULL ? NULL : PyObject_Vectorcall(planned_write, call, 5, NULL);
    }
    int same = theirs == NULL ? -1 : PyObject_RichCompareBool(mine, theirs, Py_EQ);
    Py_XDECREF(filter);
    Py_XDECREF(document);
    Py_XDECREF(numbers);
    Py_XDECREF(mine);
    Py_XDECREF(theirs);
    if (same != 1) {
        Py_CLEAR(pl_planned_write);
        if (same == 0) {
            PyErr_Format(PyExc_TypeError, "%R: a write built by its slots differs from the "
                         "class's own", planned_write);
        }
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- Planned writes -> pymongo operations, at the edge (replicator.operations) -------------- */

static PyObject *
configure_operations(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *replace_one, *delete_one, *update_one, *replace_template, *delete_template;
    if (!PyArg_ParseTuple(args, "OOOOO:configure_operations", &replace_one, &delete_one,
                          &update_one, &replace_template, &delete_template)) {
        return NULL;
    }
    if (intern_planner_names() < 0) {
        return NULL;
    }
    if (pl_upsert_names == NULL && (pl_upsert_names = Py_BuildValue("(s)", "upsert")) == NULL) {
        return NULL;
    }
    Py_XSETREF(pl_replace_one, Py_NewRef(replace_one));
    Py_XSETREF(pl_delete_one, Py_NewRef(delete_one));
    Py_XSETREF(pl_update_one, Py_NewRef(update_one));
    if (setup_maker(&replace_maker, replace_one, replace_template, 1) < 0
        || setup_maker(&delete_maker, delete_one, delete_template, 0) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* One planned write's pymongo operation; Py_None (new) when Python builds it. */
static PyObject *
operation_of(PyObject *write)
{
    PyObject *kind = NULL, *filter = NULL, *document = NULL, *upsert = NULL, *out = NULL;
    kind = write_get(write, PW_KIND);
    filter = kind == NULL ? NULL : write_get(write, PW_FILTER);
    document = filter == NULL ? NULL : write_get(write, PW_DOCUMENT);
    upsert = document == NULL ? NULL : write_get(write, PW_UPSERT);
    if (upsert == NULL) {
        goto done;
    }
    if (!PyDict_CheckExact(filter)) {
        out = Py_NewRef(Py_None);
    }
    else if (kind == s_replace && upsert == Py_True && PyDict_CheckExact(document)) {
        out = replace_maker.cls != NULL ? fill_slots(&replace_maker, filter, document)
                                        : Py_NewRef(Py_None);
    }
    else if (kind == s_delete) {
        out = delete_maker.cls != NULL ? fill_slots(&delete_maker, filter, NULL)
                                       : Py_NewRef(Py_None);
    }
    else if (kind == s_update && PyBool_Check(upsert) && pl_update_one != NULL) {
        PyObject *call[3] = {filter, document, upsert};
        out = PyObject_Vectorcall(pl_update_one, call, 2, pl_upsert_names);
    }
    else {
        out = Py_NewRef(Py_None);
    }
done:
    Py_XDECREF(kind);
    Py_XDECREF(filter);
    Py_XDECREF(document);
    Py_XDECREF(upsert);
    return out;
}

/* operations(writes) -> list | None: the pymongo operation of each PlannedWrite, built as
 * operations.operation builds it; None when one is not of the planner's usual shapes (Python then
 * builds them all). */
static PyObject *
speedups_operations(PyObject *Py_UNUSED(module), PyObject *writes)
{
    if (!PyList_CheckExact(writes)) {
        PyErr_SetString(PyExc_TypeError, "operations: writes must be a list");
        return NULL;
    }
    if (pl_replace_one == NULL || !write_names_ready()) {
        Py_RETURN_NONE;
    }
    Py_ssize_t count = PyList_GET_SIZE(writes);
    PyObject *out = PyList_New(count);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *operation = operation_of(PyList_GET_ITEM(writes, i));
        if (operation == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        if (operation == Py_None) {
            Py_DECREF(out);
            return operation;
        }
        PyList_SET_ITEM(out, i, operation);
    }
    return out;
}

/* ---- The tombstones' markers and probe (replicator.tombstones.TombstoneStore.guard) ---------- */

static slot_maker marker_maker, probe_maker;
static PyObject *tb_update_one, *tb_update_many;
static PyObject *s_max, *s_in, *s_gt, *s_empty;

/* configure_tombstones(UpdateOne, UpdateMany, update_one_template, update_many_template): what
 * tombstone_operations builds with (templates: accelerator.slot_template of
 * UpdateOne(f, u, upsert=True) and UpdateMany(f, u)); each checked against the class, as
 * configure_operations checks its own. */
static PyObject *
configure_tombstones(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *update_one, *update_many, *one_template, *many_template;
    if (!PyArg_ParseTuple(args, "OOOO:configure_tombstones", &update_one, &update_many,
                          &one_template, &many_template)) {
        return NULL;
    }
    if (intern_planner_names() < 0) {
        return NULL;
    }
    INTERN_OR_NULL(s_max, "$max");
    INTERN_OR_NULL(s_in, "$in");
    INTERN_OR_NULL(s_gt, "$gt");
    INTERN_OR_NULL(s_empty, "");
    if (pl_upsert_names == NULL && (pl_upsert_names = Py_BuildValue("(s)", "upsert")) == NULL) {
        return NULL;
    }
    PyObject *check = Py_BuildValue("{s{si}}", "$max", "seq", 1);
    if (check == NULL) {
        return NULL;
    }
    int failed = setup_maker_checked(&marker_maker, update_one, one_template, 1, check, Py_True) < 0
                 || setup_maker_checked(&probe_maker, update_many, many_template, 1, check,
                                        NULL) < 0;
    Py_DECREF(check);
    if (failed) {
        return NULL;
    }
    Py_XSETREF(tb_update_one, Py_NewRef(update_one));
    Py_XSETREF(tb_update_many, Py_NewRef(update_many));
    Py_RETURN_NONE;
}

static PyObject *padded_sequence(PyObject *sequence); /* zfill(40) of 1 to 40 digits */
static int padded_compare(PyObject *a, PyObject *b); /* by zfill(40) value */

/* One operation with its slots filled (maker) or by calling the class (cls(filter, update[,
 * upsert=True])). Steals nothing. */
static PyObject *
update_operation(const slot_maker *maker, PyObject *cls, PyObject *filter, PyObject *update,
                 int upsert)
{
    if (maker->cls != NULL) {
        return fill_slots(maker, filter, update);
    }
    if (upsert) {
        PyObject *call[3] = {filter, update, Py_True};
        return PyObject_Vectorcall(cls, call, 2, pl_upsert_names);
    }
    PyObject *call[2] = {filter, update};
    return PyObject_Vectorcall(cls, call, 2, NULL);
}

/* tombstone_operations(writes, now, seq, deleted_at) -> (deletes, upserts, operations) | None:
 * what TombstoneStore.guard builds in Python -- the writes split into deletes and upserts (in
 * order), one UpdateOne({"_id": id}, {"$max": {seq: padded, deleted_at: now}},
 * upsert=True) per delete, then, when there are upserts, UpdateMany({"_id": {"$in": ids}, seq:
 * {"$gt": the lowest padded sequence number}}, {"$max": {seq: ""}}). None (Python builds them)
 * for a write that is not of the planner's usual shape: a dict filter naming _id, a tuple of
 * sequence numbers of 1 to 40 digits, a str kind, no order key (a Kinesis change's). */
static PyObject *
tombstone_operations(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_CheckExact(args[0]) || !PyUnicode_CheckExact(args[2])
        || !PyUnicode_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "tombstone_operations(writes: list, now, seq: str, deleted_at: str)");
        return NULL;
    }
    if (tb_update_one == NULL || !write_names_ready()) {
        Py_RETURN_NONE;
    }
    PyObject *writes = args[0], *now = args[1], *seq = args[2], *deleted_at = args[3];
    Py_ssize_t count = PyList_GET_SIZE(writes);
    PyObject *deletes = PyList_New(0), *upserts = PyList_New(0), *operations = PyList_New(0);
    PyObject *ids = PyList_New(0), *lowest = NULL, *result = NULL;
    if (deletes == NULL || upserts == NULL || operations == NULL || ids == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *write = PyList_GET_ITEM(writes, i);
        PyObject *kind = NULL, *filter = NULL, *numbers = NULL, *order = NULL, *padded = NULL;
        PyObject *document_id, *last;
        int ok = 0, is_delete = 0;
        kind = write_get(write, PW_KIND);
        filter = kind == NULL ? NULL : write_get(write, PW_FILTER);
        numbers = filter == NULL ? NULL : write_get(write, PW_SEQUENCE_NUMBERS);
        order = numbers == NULL ? NULL : write_get(write, PW_ORDER_KEY);
        if (order == NULL) {
            goto failed;
        }
        /* A Kinesis change's marker holds its order key (tombstones._sequence), which this
         * builder does not know: Python builds the batch (a Kinesis sequence number of 1 to 40
         * digits would otherwise pass for a DynamoDB one). */
        if (order != Py_None || !PyUnicode_CheckExact(kind) || !PyDict_CheckExact(filter)
            || !PyTuple_CheckExact(numbers) || PyTuple_GET_SIZE(numbers) < 1) {
            goto not_mine;
        }
        last = PyTuple_GET_ITEM(numbers, PyTuple_GET_SIZE(numbers) - 1);
        if (!is_sequence_number(last)) {
            goto not_mine;
        }
        document_id = PyDict_GetItemWithError(filter, s_id);
        if (document_id == NULL) {
            if (PyErr_Occurred()) goto failed;
            goto not_mine;
        }
        is_delete = kind == s_delete
                    || (kind != s_replace && kind != s_update
                        && PyUnicode_Compare(kind, s_delete) == 0);
        if (is_delete) {
            if ((padded = padded_sequence(last)) == NULL) {
                goto failed;
            }
            PyObject *marker = NULL;
            /* {"$max": {seq: padded, deleted_at: now}}: tombstones._operations says why */
            PyObject *id_filter = PyDict_New(), *update = PyDict_New();
            PyObject *highest = PyDict_New();
            if (id_filter != NULL && update != NULL && highest != NULL
                && PyDict_SetItem(id_filter, s_id, document_id) == 0
                && PyDict_SetItem(highest, seq, padded) == 0
                && PyDict_SetItem(highest, deleted_at, now) == 0
                && PyDict_SetItem(update, s_max, highest) == 0) {
                marker = update_operation(&marker_maker, tb_update_one, id_filter, update, 1);
            }
            Py_XDECREF(id_filter);
            Py_XDECREF(update);
            Py_XDECREF(highest);
            if (marker == NULL || PyList_Append(operations, marker) < 0
                || PyList_Append(deletes, write) < 0) {
                Py_XDECREF(marker);
                goto failed;
            }
            Py_DECREF(marker);
        }
        else {
            if (PyList_Append(upserts, write) < 0 || PyList_Append(ids, document_id) < 0) {
                goto failed;
            }
            /* the lowest by padded value, padded once below (issue 21: a padded string per
             * upsert cost ~180 instructions) */
            if (lowest == NULL || padded_compare(last, lowest) < 0) {
                Py_XSETREF(lowest, Py_NewRef(last));
            }
        }
        ok = 1;
        goto next;
    not_mine:
        ok = 2;
        goto next;
    failed:
        ok = 0;
    next:
        Py_XDECREF(kind);
        Py_XDECREF(filter);
        Py_XDECREF(numbers);
        Py_XDECREF(order);
        Py_XDECREF(padded);
        if (ok == 0) goto done;
        if (ok == 2) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    }
    if (PyList_GET_SIZE(upserts) > 0) {
        PyObject *probe = NULL;
        Py_SETREF(lowest, padded_sequence(lowest));
        if (lowest == NULL) {
            goto done;
        }
        PyObject *probe_filter = Py_BuildValue("{O{OO}O{OO}}", s_id, s_in, ids, seq, s_gt, lowest);
        PyObject *update = Py_BuildValue("{O{OO}}", s_max, seq, s_empty);
        if (probe_filter != NULL && update != NULL) {
            probe = update_operation(&probe_maker, tb_update_many, probe_filter, update, 0);
        }
        Py_XDECREF(probe_filter);
        Py_XDECREF(update);
        if (probe == NULL || PyList_Append(operations, probe) < 0) {
            Py_XDECREF(probe);
            goto done;
        }
        Py_DECREF(probe);
    }
    result = PyTuple_Pack(3, deletes, upserts, operations);
done:
    Py_XDECREF(deletes);
    Py_XDECREF(upserts);
    Py_XDECREF(operations);
    Py_XDECREF(ids);
    Py_XDECREF(lowest);
    return result;
}

/* ---- A batch's figures (replicator.core) ---------------------------------------------------- */

/* The record's dynamodb dict (borrowed) when the record is a plain dict holding one, else NULL
 * (no error set). */
static PyObject *
record_body(PyObject *record)
{
    static PyObject *s_dynamodb = NULL;
    if (s_dynamodb == NULL && (s_dynamodb = PyUnicode_InternFromString("dynamodb")) == NULL) {
        return NULL;
    }
    if (!PyDict_CheckExact(record)) {
        return NULL;
    }
    PyObject *body = PyDict_GetItemWithError(record, s_dynamodb);
    return body != NULL && PyDict_CheckExact(body) ? body : NULL;
}

/* a.zfill(40) compared with b.zfill(40) (<0, 0, >0), for strings of 1 to 40 ASCII digits:
 * leading zeros count for nothing, as in the padded strings. */
static int
padded_compare(PyObject *a, PyObject *b)
{
    const char *x = (const char *)PyUnicode_DATA(a), *y = (const char *)PyUnicode_DATA(b);
    Py_ssize_t nx = PyUnicode_GET_LENGTH(a), ny = PyUnicode_GET_LENGTH(b);
    if (a == b) {
        return 0;
    }
    while (nx > 0 && *x == '0') { /* the value's significant digits */
        x++;
        nx--;
    }
    while (ny > 0 && *y == '0') {
        y++;
        ny--;
    }
    if (nx != ny) {
        return nx < ny ? -1 : 1;
    }
    int order = memcmp(x, y, (size_t)nx);
    return order < 0 ? -1 : order > 0;
}

/* sequence_range(records) -> (first, last) | None: the lowest SequenceNumber (the first of
 * equal ones) and the highest (the last of equal ones) by their zero-padded value, as core's
 * min/max with pad_sequence_number; (None, None) when no record has one. None (Python decides)
 * unless every record is a plain dict whose dynamodb dict holds a SequenceNumber of 1 to 40
 * digits. */
static PyObject *
sequence_range(PyObject *Py_UNUSED(module), PyObject *records)
{
    if (!PyList_CheckExact(records) || s_sequence_number_key == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *first = NULL, *last = NULL; /* borrowed */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records); i++) {
        PyObject *body = record_body(PyList_GET_ITEM(records, i));
        if (body == NULL) {
            if (PyErr_Occurred()) return NULL;
            Py_RETURN_NONE;
        }
        PyObject *sequence = PyDict_GetItemWithError(body, s_sequence_number_key);
        if (sequence == NULL || !is_sequence_number(sequence)) {
            if (PyErr_Occurred()) return NULL;
            Py_RETURN_NONE;
        }
        if (first == NULL) {
            first = last = sequence;
            continue;
        }
        if (padded_compare(sequence, first) < 0) first = sequence;
        if (padded_compare(sequence, last) >= 0) last = sequence;
    }
    if (first == NULL) {
        return Py_BuildValue("(OO)", Py_None, Py_None);
    }
    return PyTuple_Pack(2, first, last);
}

/* newest_created(records, wanted) -> (highest, latest) | None: among the records whose
 * SequenceNumber is in the set ``wanted``, the highest ApproximateCreationDateTime that is an
 * exact int or float (epoch seconds, a Lambda event's) and the latest that is an aware datetime
 * (a copy's or GetRecords'), the first of equal ones, None where there is none; None (Python
 * decides) unless every record is a plain dict holding a dynamodb dict whose time, where wanted,
 * is one of those or absent. */
static PyObject *
newest_created(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyList_CheckExact(args[0]) || !PyAnySet_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "newest_created(records: list, wanted: set)");
        return NULL;
    }
    if (s_sequence_number_key == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *records = args[0], *wanted = args[1], *highest = NULL, *latest = NULL; /* borrowed */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(records); i++) {
        PyObject *body = record_body(PyList_GET_ITEM(records, i));
        if (body == NULL) {
            if (PyErr_Occurred()) return NULL;
            Py_RETURN_NONE;
        }
        PyObject *sequence = PyDict_GetItemWithError(body, s_sequence_number_key);
        if (sequence == NULL || !PyUnicode_CheckExact(sequence)) {
            if (PyErr_Occurred()) return NULL;
            continue;
        }
        int in = PySet_Contains(wanted, sequence);
        if (in < 0) return NULL;
        if (!in) continue;
        PyObject *value = PyDict_GetItemWithError(body, s_created_key);
        if (value == NULL) {
            if (PyErr_Occurred()) return NULL;
            continue;
        }
        if (value == Py_None) continue;
        if (PyDateTime_CheckExact(value)) {
            PyObject *zone = PyDateTime_DATE_GET_TZINFO(value);
            if (zone == Py_None) {
                Py_RETURN_NONE; /* naive: Python takes it as UTC */
            }
            int later = latest == NULL ? 1 : PyObject_RichCompareBool(value, latest, Py_GT);
            if (later < 0) return NULL;
            if (later) latest = value;
            continue;
        }
        if (!PyLong_CheckExact(value) && !PyFloat_CheckExact(value)) {
            Py_RETURN_NONE;
        }
        if (highest == NULL) {
            highest = value;
            continue;
        }
        int greater = PyObject_RichCompareBool(value, highest, Py_GT);
        if (greater < 0) return NULL;
        if (greater) highest = value;
    }
    return PyTuple_Pack(2, highest != NULL ? highest : Py_None, latest != NULL ? latest : Py_None);
}

/* covered_sequences(writes) -> set | None: the sequence numbers of every record the
 * PlannedWrites stand for (core._newest_created's ``wanted``), read from their slots; None
 * (Python builds it) unless writes is a list whose every sequence_numbers is a tuple of str. */
static PyObject *
covered_sequences(PyObject *Py_UNUSED(module), PyObject *writes)
{
    if (!PyList_CheckExact(writes) || !write_names_ready()) {
        Py_RETURN_NONE;
    }
    PyObject *wanted = PySet_New(NULL);
    if (wanted == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(writes); i++) {
        PyObject *write = PyList_GET_ITEM(writes, i);
        PyObject *numbers = write_get(write, PW_SEQUENCE_NUMBERS);
        if (numbers == NULL) {
            goto fail;
        }
        int plain = PyTuple_CheckExact(numbers);
        for (Py_ssize_t j = 0; plain && j < PyTuple_GET_SIZE(numbers); j++) {
            PyObject *number = PyTuple_GET_ITEM(numbers, j);
            if (!PyUnicode_CheckExact(number)) {
                plain = 0;
            }
            else if (PySet_Add(wanted, number) < 0) {
                Py_DECREF(numbers);
                goto fail;
            }
        }
        Py_DECREF(numbers);
        if (!plain) {
            Py_DECREF(wanted);
            Py_RETURN_NONE;
        }
    }
    return wanted;
fail:
    Py_DECREF(wanted);
    return NULL;
}

/* How tombstone_operations() builds the markers (UpdateOne) and the probe (UpdateMany): "slots"
 * or "constructor" for each; None before configure_tombstones. */
static PyObject *
speedups_tombstone_path(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    if (tb_update_one == NULL) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(ss)", marker_maker.cls != NULL ? "slots" : "constructor",
                         probe_maker.cls != NULL ? "slots" : "constructor");
}

/* How operations() builds ReplaceOne and DeleteOne: "slots" or "constructor" for each. */
static PyObject *
speedups_operation_path(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(ss)", replace_maker.cls != NULL ? "slots" : "constructor",
                         delete_maker.cls != NULL ? "slots" : "constructor");
}

/* One record of the batch, as the planner keeps it (owned references). */
typedef struct {
    PyObject *sequence, *new_image, *old_image;
    int is_remove;
    Py_ssize_t group;
} plan_record;

/* Sorting a group: sequence numbers compare as zero-padded strings (all have 1 to 40 digits, so
 * that is: fewer significant digits first, then the digits), ties in reverse batch order, as
 * Planner's sorted(key=(zfill(40), -index)): the first of equal sequence numbers sorts last and
 * is written, as the guard lets the first applied one win across batches. */
typedef struct {
    const char *digits; /* the significant digits */
    Py_ssize_t count;
    Py_ssize_t index;   /* in the batch */
} sort_entry;

static int
compare_entries(const void *a, const void *b)
{
    const sort_entry *x = a, *y = b;
    if (x->count != y->count) {
        return x->count < y->count ? -1 : 1;
    }
    int order = memcmp(x->digits, y->digits, (size_t)x->count);
    if (order != 0) {
        return order;
    }
    return x->index > y->index ? -1 : (x->index < y->index);
}

/* A key attribute's _id part, as KeyMapper converts it: an S's str, or an N's int when the
 * reference gives an int (int64, integral). New reference; Py_None (new) when Python decides. */
static PyObject *
key_value(PyObject *keys, PyObject *name)
{
    PyObject *typed = PyDict_GetItemWithError(keys, name);
    if (typed == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    /* read_record checked: a dict of one entry */
    Py_ssize_t position = 0;
    PyObject *tag, *payload;
    if (!PyDict_Next(typed, &position, &tag, &payload) || !PyUnicode_CheckExact(tag)) {
        return Py_NewRef(Py_None);
    }
    switch (tag_of(tag)) {
    case T_S:
        return Py_NewRef(PyUnicode_CheckExact(payload) && storable_text(payload, 0) ? payload
                                                                                  : Py_None);
    case T_N: {
        const char *s;
        Py_ssize_t n;
        number num;
        if (!ascii_of(payload, &s, &n)) {
            return Py_NewRef(Py_None);
        }
        parse_number(s, n, &num);
        return num.kind == NUM_INT ? PyLong_FromLongLong(num.ivalue) : Py_NewRef(Py_None);
    }
    default:
        return Py_NewRef(Py_None); /* B, or a type a key cannot have: Python decides */
    }
}

/* The record's _id and the key it is grouped by (new references, 1), 0 when Python decides, -1
 * on an error. One key attribute: its value for both (str and int never compare equal, as
 * keys.identity keeps them apart). Two: {partition: v, sort: v} in key_schema's order, grouped
 * by the tuple of values, which is equal exactly when the BSON of the _ids is (keys.identity)
 * for str and int values. */
static int
record_id(PyObject *keys, PyObject *key_schema, PyObject **document_id, PyObject **group_key)
{
    PyObject *name, *value, *names;
    Py_ssize_t count;
    if (key_schema == Py_None) {
        if (PyDict_GET_SIZE(keys) != 1) {
            return 0; /* a composite key without a key schema: Python raises its error */
        }
        Py_ssize_t position = 0;
        PyObject *ignored;
        PyDict_Next(keys, &position, &name, &ignored);
        names = NULL;
        count = 1;
    }
    else {
        names = key_schema;
        count = PyTuple_GET_SIZE(key_schema);
        name = PyTuple_GET_ITEM(key_schema, 0);
    }
    if (count == 1) {
        value = key_value(keys, name);
        if (value == NULL || value == Py_None) {
            Py_XDECREF(value);
            return value == NULL ? -1 : 0;
        }
        *document_id = value;
        *group_key = Py_NewRef(value);
        return 1;
    }
    PyObject *id = PyDict_New();
    PyObject *values = PyTuple_New(count);
    if (id == NULL || values == NULL) {
        Py_XDECREF(id);
        Py_XDECREF(values);
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        name = PyTuple_GET_ITEM(names, i);
        value = key_value(keys, name);
        if (value != NULL && value != Py_None && PyUnicode_CheckExact(value)
            && PyUnicode_AsUTF8AndSize(value, NULL) == NULL) {
            /* not encodable (a lone surrogate): keys.identity's bson.encode raises there */
            PyErr_Clear();
            Py_SETREF(value, Py_NewRef(Py_None));
        }
        if (value == NULL || value == Py_None || PyDict_SetItem(id, name, value) < 0) {
            int status = (value == Py_None && !PyErr_Occurred()) ? 0 : -1;
            Py_XDECREF(value);
            Py_DECREF(id);
            Py_DECREF(values);
            return status;
        }
        PyTuple_SET_ITEM(values, i, value); /* steals */
    }
    if (PyDict_GET_SIZE(id) != count) {
        Py_DECREF(id);
        Py_DECREF(values);
        return 0; /* the same name twice in key_schema: Python decides */
    }
    *document_id = id;
    *group_key = values;
    return 1;
}

/* {"_id": document_id} plus, with the guard, field: {"$not": {"$gte": sequence}}: Planner._filter
 * (plan.guard_condition says why this shape). */
static PyObject *
guard_filter(PyObject *document_id, PyObject *sequence, int guard, PyObject *field)
{
    /* Built call by call: Py_BuildValue's format parsing cost more than the objects. */
    PyObject *filter = PyDict_New();
    if (filter == NULL || PyDict_SetItem(filter, s_id, document_id) < 0) {
        Py_XDECREF(filter);
        return NULL;
    }
    if (!guard) {
        return filter;
    }
    PyObject *newer = PyDict_New(), *not_newer = PyDict_New();
    int failed = newer == NULL || not_newer == NULL
                 || PyDict_SetItem(newer, s_gte, sequence) < 0
                 || PyDict_SetItem(not_newer, s_not, newer) < 0
                 || PyDict_SetItem(filter, field, not_newer) < 0;
    Py_XDECREF(newer);
    Py_XDECREF(not_newer);
    if (failed) {
        Py_DECREF(filter);
        return NULL;
    }
    return filter;
}

/* sequence.zfill(40) for 1 to 40 ASCII digits. */
static PyObject *
padded_sequence(PyObject *sequence)
{
    Py_ssize_t length = PyUnicode_GET_LENGTH(sequence);
    PyObject *out = PyUnicode_New(40, 127);
    if (out == NULL) {
        return NULL;
    }
    char *data = (char *)PyUnicode_DATA(out);
    memset(data, '0', (size_t)(40 - length));
    memcpy(data + 40 - length, PyUnicode_DATA(sequence), (size_t)length);
    return out;
}

/* What the winner writes, as write_fields: a delete by the guarded filter for a REMOVE (its
 * OldImage must convert, as Planner._delete_for converts it), else a replacement upsert, or the
 * pipeline update of Planner._replacement when a top-level name starts with "$". New reference;
 * Py_None (new) when Python decides. */
static PyObject *
winner_operation(const plan_record *record, PyObject *document_id, int guard, PyObject *field)
{
    PyObject *sequence = padded_sequence(record->sequence);
    if (sequence == NULL) {
        return NULL;
    }
    PyObject *operation = NULL, *document = NULL, *filter = NULL;
    if (record->is_remove) {
        if (record->old_image != Py_None && !valid_map(record->old_image, 0)) {
            operation = Py_NewRef(Py_None);
            goto done;
        }
        filter = guard_filter(document_id, sequence, guard, field);
        if (filter != NULL) {
            operation = write_fields(s_delete, filter, Py_None, Py_False);
        }
        goto done;
    }
    int has_id = PyDict_Contains(record->new_image, s_id);
    if (has_id != 0) {
        operation = has_id < 0 ? NULL : Py_NewRef(Py_None); /* Python checks it against _id */
        goto done;
    }
    if (guard) {
        int reserved = PyDict_Contains(record->new_image, field);
        if (reserved != 0) {
            /* an attribute named like the sequence field: Python quarantines the record */
            operation = reserved < 0 ? NULL : Py_NewRef(Py_None);
            goto done;
        }
    }
    document = new_dict(PyDict_GET_SIZE(record->new_image) + 2); /* + _id and the sequence */
    if (document == NULL || PyDict_SetItem(document, s_id, document_id) < 0) {
        goto done;
    }
    int dollar = 0; /* a name of the image starts with "$" (_id and the sequence field do not) */
    if (convert_map_names_into(document, record->new_image, 0, &dollar) < 0) {
        operation = not_handled();
        goto done;
    }
    if (guard && PyDict_SetItem(document, field, sequence) < 0) {
        goto done;
    }
    filter = guard_filter(document_id, sequence, guard, field);
    if (filter == NULL) {
        goto done;
    }
    if (dollar) {
        /* MongoDB refuses top-level $-names in a replacement; a pipeline writes them literally */
        PyObject *pipeline = Py_BuildValue("[{O{OO}}]", s_replace_with, s_literal, document);
        if (pipeline != NULL) {
            operation = write_fields(s_update, filter, pipeline, Py_True);
            Py_DECREF(pipeline);
        }
    }
    else {
        operation = write_fields(s_replace, filter, document, Py_True);
    }
done:
    Py_DECREF(sequence);
    Py_XDECREF(document);
    Py_XDECREF(filter);
    return operation;
}

/* A superseded change is not written, but Planner still quarantines it when its image cannot be
 * converted (whatever the batching): 1 when it is sure to convert, 0 when Python decides. */
static int
superseded_ok(const plan_record *record, int guard, PyObject *field)
{
    if (record->is_remove) {
        return record->old_image == Py_None || valid_map(record->old_image, 0);
    }
    int has_id = PyDict_Contains(record->new_image, s_id);
    if (has_id != 0) {
        return has_id < 0 ? -1 : 0; /* Planner._write_for checks it */
    }
    if (guard) {
        int reserved = PyDict_Contains(record->new_image, field);
        if (reserved != 0) {
            return reserved < 0 ? -1 : 0; /* Planner._check_new_image refuses it */
        }
    }
    return valid_map(record->new_image, 0);
}

/* 1 when every attribute of Keys is in the new image with an equal typed value (the common case
 * of Planner._check_new_image), 0 when Python decides (it compares converted values and
 * quarantines a disagreement), -1 on an error. */
static int
keys_agree(PyObject *keys, PyObject *image)
{
    Py_ssize_t position = 0;
    PyObject *name, *typed;
    while (PyDict_Next(keys, &position, &name, &typed)) {
        PyObject *found = PyDict_GetItemWithError(image, name);
        if (found == NULL) {
            return PyErr_Occurred() ? -1 : 0;
        }
        if (found == typed) {
            continue;
        }
        if (!PyDict_CheckExact(found) || PyDict_GET_SIZE(found) != 1) {
            return 0;
        }
        /* Only a key's plain payload (str, as S and N and Lambda's B are) is compared here: a
         * crafted nested "key" could make == recurse deeply; Python refuses such a key. */
        Py_ssize_t at = 0;
        PyObject *tag, *payload;
        if (!PyDict_Next(typed, &at, &tag, &payload) || !PyUnicode_CheckExact(payload)) {
            return 0;
        }
        /* The common case without ==: the same tag (an exact str key) and an equal str payload
         * (issue 21: dict == cost ~450 instructions a record); anything else compares below. */
        Py_ssize_t there = 0;
        PyObject *found_tag, *found_payload;
        if (PyDict_Next(found, &there, &found_tag, &found_payload)
            && PyUnicode_CheckExact(tag) && PyUnicode_CheckExact(found_tag)
            && PyUnicode_CheckExact(found_payload) && same_text(tag, found_tag)
            && same_text(payload, found_payload)) {
            continue;
        }
        Py_INCREF(found);
        Py_INCREF(typed);
        int same = PyObject_RichCompareBool(found, typed, Py_EQ);
        Py_DECREF(found);
        Py_DECREF(typed);
        if (same <= 0) {
            return same;
        }
    }
    return 1;
}

/* write_fields' PlannedWrite with its sequence_numbers set: the finished write (new reference). */
static PyObject *
planned_write(PyObject *write, PyObject *sequence_numbers)
{
    if (write_set(write, PW_SEQUENCE_NUMBERS, sequence_numbers) < 0) {
        return NULL;
    }
    return Py_NewRef(write);
}

static PyObject *
plan_records(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 5 || nargs > 7) {
        PyErr_SetString(PyExc_TypeError, "plan_records(records, key_schema, guard, "
                                         "sequence_field, ttl_as_delete[, stream_arn[, "
                                         "figures]])");
        return NULL;
    }
    PyObject *records = args[0], *key_schema = args[1], *field = args[3];
    /* stream_arn: records with an eventSourceARN must have exactly this one (None: none may have
     * one); the Replicator quarantines another table's records. Omitted: not checked. */
    PyObject *stream_arn = nargs >= 6 ? args[5] : NULL;
    if (stream_arn != NULL && stream_arn != Py_None && !PyUnicode_CheckExact(stream_arn)) {
        PyErr_SetString(PyExc_TypeError, "plan_records: stream_arn must be a str or None");
        return NULL;
    }
    /* figures: a list, set to [first, last, highest, plain] when a plan is returned -- the batch
     * figures read in the same pass (issue 21: sequence_range, covered_sequences and
     * newest_created read every record again, ~2,100 instructions per event): first and last as
     * sequence_range(records) gives them ((None, None) for no record), highest the greatest
     * ApproximateCreationDateTime that is an int or float (the first of equal ones; None when no
     * record has one), plain whether every record's time is one of those or absent (otherwise
     * highest says nothing). Untouched when the answer is None. */
    PyObject *figures = nargs == 7 ? args[6] : NULL;
    if (figures != NULL && !PyList_CheckExact(figures)) {
        PyErr_SetString(PyExc_TypeError, "plan_records: figures must be a list");
        return NULL;
    }
    /* first, last: borrowed, each a record's sequence, which items own; highest: owned (a
     * conversion below may run Python code) */
    PyObject *first = NULL, *last = NULL, *highest = NULL;
    int plain = 1;
    int guard = PyObject_IsTrue(args[2]), ttl_as_delete = PyObject_IsTrue(args[4]);
    if (guard < 0 || ttl_as_delete < 0) {
        return NULL;
    }
    if (pl_planned_write == NULL || ev_change_type == NULL || !configured()) {
        PyErr_SetString(PyExc_RuntimeError, "configure(), configure_events() and "
                                            "configure_planner() must be called first");
        return NULL;
    }
    if (!PyList_CheckExact(records) || !PyUnicode_CheckExact(field)
        || (key_schema != Py_None
            && (!PyTuple_CheckExact(key_schema) || PyTuple_GET_SIZE(key_schema) < 1
                || PyTuple_GET_SIZE(key_schema) > 2))) {
        PyErr_SetString(PyExc_TypeError, "plan_records: records must be a list, key_schema a "
                                         "tuple of one or two names or None, sequence_field a str");
        return NULL;
    }
    if (key_schema != Py_None) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(key_schema); i++) {
            if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(key_schema, i))) {
                PyErr_SetString(PyExc_TypeError, "plan_records: key_schema names must be str");
                return NULL;
            }
        }
    }

    PyObject *result = NULL, *writes = NULL, *groups = NULL, *ids = NULL;
    PyObject *own = PyList_GetSlice(records, 0, PyList_GET_SIZE(records));
    if (own == NULL) {
        return NULL;
    }
    /* The process-wide cyclic GC is left as it is (issue 11): the caller owns that switch. */
    Py_ssize_t count = PyList_GET_SIZE(own), filled = 0, group_count = 0;
    plan_record *items = PyMem_Calloc((size_t)(count ? count : 1), sizeof(plan_record));
    sort_entry *entries = PyMem_Calloc((size_t)(count ? count : 1), sizeof(sort_entry));
    Py_ssize_t *sizes = PyMem_Calloc((size_t)(count + 1), sizeof(Py_ssize_t));
    Py_ssize_t *starts = PyMem_Calloc((size_t)(count + 1), sizeof(Py_ssize_t));
    groups = PyDict_New();
    ids = PyList_New(0);
    writes = PyList_New(0);
    if (items == NULL || entries == NULL || sizes == NULL || starts == NULL || groups == NULL
        || ids == NULL || writes == NULL) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto fail;
    }

    /* 1. Read every record and group it by _id, in first-appearance order. */
    for (Py_ssize_t i = 0; i < count; i++) {
        record_fields f;
        int status = read_record(PyList_GET_ITEM(own, i), &f, 0);
        if (status <= 0) {
            goto decline_or_fail;
        }
        int is_remove = f.event_name == ev_remove;
        if ((f.is_ttl == Py_True && !ttl_as_delete) || (!is_remove && f.new_image == Py_None)) {
            goto decline; /* TTL handling, or a read-back: Python decides */
        }
        if (stream_arn != NULL && f.arn != Py_None && f.arn != stream_arn) {
            if (stream_arn == Py_None || !PyUnicode_CheckExact(f.arn)) {
                goto decline; /* not the pinned stream: Python pins or refuses it */
            }
            int same = PyUnicode_Compare(f.arn, stream_arn);
            if (same != 0) {
                goto decline_or_fail;
            }
        }
        if (figures != NULL) { /* as sequence_range and newest_created read them */
            if (first == NULL) {
                first = last = f.sequence;
            }
            else {
                if (padded_compare(f.sequence, first) < 0) first = f.sequence;
                if (padded_compare(f.sequence, last) >= 0) last = f.sequence;
            }
            if (f.created == Py_None) {
            }
            else if (!PyLong_CheckExact(f.created) && !PyFloat_CheckExact(f.created)) {
                plain = 0;
            }
            else if (highest == NULL) {
                highest = Py_NewRef(f.created);
            }
            else {
                int greater = PyObject_RichCompareBool(f.created, highest, Py_GT);
                if (greater < 0) goto fail;
                if (greater) Py_SETREF(highest, Py_NewRef(f.created));
            }
        }
        /* Own what the plan needs before any conversion can run Python code. */
        plan_record *item = &items[filled++];
        item->sequence = Py_NewRef(f.sequence);
        item->new_image = Py_NewRef(f.new_image);
        item->old_image = Py_NewRef(f.old_image);
        item->is_remove = is_remove;
        PyObject *keys = Py_NewRef(f.keys);
        PyObject *document_id, *group_key;
        status = is_remove ? 1 : keys_agree(keys, item->new_image);
        if (status <= 0) {
            Py_DECREF(keys);
            goto decline_or_fail;
        }
        status = record_id(keys, key_schema, &document_id, &group_key);
        Py_DECREF(keys);
        if (status <= 0) {
            goto decline_or_fail;
        }
        /* One dict operation per record (issue 21: a lookup, then an insertion for each new
         * key, cost ~400 instructions a record): the group's number, inserted when new. */
        PyObject *number = PyLong_FromSsize_t(group_count);
        PyObject *known = number == NULL ? NULL : PyDict_SetDefault(groups, group_key, number);
        if (known == NULL) {
            status = -1;
        }
        else if (known != number) {
            item->group = PyLong_AsSsize_t(known);
        }
        else {
            status = PyList_Append(ids, document_id);
            item->group = group_count++;
        }
        Py_XDECREF(number);
        Py_DECREF(document_id);
        Py_DECREF(group_key);
        if (status < 0 || PyErr_Occurred()) {
            goto fail;
        }
        sizes[item->group]++;
    }

    /* 2. Each group in order: sorted by sequence number, the newest is written. */
    for (Py_ssize_t g = 1; g <= group_count; g++) {
        starts[g] = starts[g - 1] + sizes[g - 1];
    }
    memset(sizes, 0, (size_t)(count + 1) * sizeof(Py_ssize_t)); /* now: how many placed */
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t g = items[i].group;
        sort_entry *entry = &entries[starts[g] + sizes[g]++];
        const char *digits = (const char *)PyUnicode_DATA(items[i].sequence);
        Py_ssize_t length = PyUnicode_GET_LENGTH(items[i].sequence);
        while (length > 1 && *digits == '0') {
            digits++;
            length--;
        }
        entry->digits = digits;
        entry->count = length;
        entry->index = i;
    }
    for (Py_ssize_t g = 0; g < group_count; g++) {
        sort_entry *members = &entries[starts[g]];
        Py_ssize_t size = sizes[g];
        if (size > 1) {
            qsort(members, (size_t)size, sizeof(sort_entry), compare_entries);
        }
        for (Py_ssize_t k = 0; k + 1 < size; k++) {
            int ok = superseded_ok(&items[members[k].index], guard, field);
            if (ok <= 0) {
                goto decline_or_fail;
            }
        }
        PyObject *operation = winner_operation(&items[members[size - 1].index],
                                               PyList_GET_ITEM(ids, g), guard, field);
        if (operation == NULL) {
            goto fail;
        }
        if (operation == Py_None) {
            Py_DECREF(operation);
            goto decline;
        }
        PyObject *covered = PyTuple_New(size);
        if (covered == NULL) {
            Py_DECREF(operation);
            goto fail;
        }
        for (Py_ssize_t k = 0; k < size; k++) {
            PyTuple_SET_ITEM(covered, k, Py_NewRef(items[members[k].index].sequence));
        }
        PyObject *write = planned_write(operation, covered);
        Py_DECREF(operation);
        Py_DECREF(covered);
        if (write == NULL || PyList_Append(writes, write) < 0) {
            Py_XDECREF(write);
            goto fail;
        }
        Py_DECREF(write);
    }
    if (figures != NULL) {
        /* own records: first, last and highest are alive until own is released below */
        PyObject *values = Py_BuildValue("[OOOO]", first != NULL ? first : Py_None,
                                         last != NULL ? last : Py_None,
                                         highest != NULL ? highest : Py_None,
                                         plain ? Py_True : Py_False);
        if (values == NULL
            || PyList_SetSlice(figures, 0, PyList_GET_SIZE(figures), values) < 0) {
            Py_XDECREF(values);
            goto fail;
        }
        Py_DECREF(values);
    }
    result = Py_NewRef(writes);
    goto cleanup;

decline_or_fail:
    if (PyErr_Occurred()) goto fail;
decline:
    result = not_handled();
    goto cleanup;
fail:
    result = NULL;
cleanup:
    if (items != NULL) {
        for (Py_ssize_t i = 0; i < filled; i++) {
            Py_XDECREF(items[i].sequence);
            Py_XDECREF(items[i].new_image);
            Py_XDECREF(items[i].old_image);
        }
    }
    PyMem_Free(items);
    PyMem_Free(entries);
    PyMem_Free(sizes);
    PyMem_Free(starts);
    Py_XDECREF(groups);
    Py_XDECREF(ids);
    Py_XDECREF(writes);
    Py_XDECREF(highest);
    Py_DECREF(own);
    return result;
}


static PyObject *export_records(PyObject *, PyObject *const *, Py_ssize_t); /* at the end */

static PyMethodDef speedups_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))speedups_configure, METH_FASTCALL,
     "configure(decimal128_type, decimal_type): the types to build numbers with."},
    {"image", speedups_image, METH_O,
     "image(image) -> dict | None: the converted image (lossless numbers), or None when the\n"
     "reference converter must decide."},
    {"valid", speedups_valid, METH_O,
     "valid(image) -> bool: True iff image(image) would return a dict (builds nothing)."},
    {"document", (PyCFunction)(void (*)(void))speedups_document, METH_FASTCALL,
     "document(image, document_id) -> dict | None: {'_id': document_id, **image(image)}; None\n"
     "when the reference must decide (also when the image has an attribute named _id)."},
    {"has_dollar_name", speedups_has_dollar_name, METH_O,
     "has_dollar_name(document) -> bool | None: a top-level name starts with '$' (None: not a\n"
     "plain dict of str names)."},
    {"configure_events", configure_events, METH_VARARGS,
     "configure_events(Change, event_names, view_types, epochs, ttl_principal,\n"
     "REMOVE, NEW_AND_OLD_IMAGES, NEW_IMAGE): what parse_changes builds with."},
    {"parse_changes", parse_changes, METH_O,
     "parse_changes(records) -> (list of Change or None, count of None): None marks a record\n"
     "replicator.events.parse_record must parse (or refuse with its error)."},
    {"configure_operations", configure_operations, METH_VARARGS,
     "configure_operations(ReplaceOne, DeleteOne, UpdateOne, replace_template, delete_template):\n"
     "what operations() builds with (templates: accelerator.slot_template)."},
    {"operations", speedups_operations, METH_O,
     "operations(writes) -> list | None: the pymongo operation of each PlannedWrite (None: not\n"
     "the planner's usual shapes; operations.operation builds them)."},
    {"configure_tombstones", configure_tombstones, METH_VARARGS,
     "configure_tombstones(UpdateOne, UpdateMany, update_one_template, update_many_template):\n"
     "what tombstone_operations() builds with (templates: accelerator.slot_template)."},
    {"tombstone_operations", (PyCFunction)(void (*)(void))tombstone_operations, METH_FASTCALL,
     "tombstone_operations(writes, now, seq, deleted_at) -> (deletes, upserts, operations) | None:\n"
     "TombstoneStore.guard's markers and probe (None: Python builds them)."},
    {"covered_sequences", covered_sequences, METH_O,
     "covered_sequences(writes) -> set | None: every sequence number the PlannedWrites stand "
     "for (core._newest_created), None when Python decides."},
    {"sequence_range", sequence_range, METH_O,
     "sequence_range(records) -> (first, last) | None: the batch's lowest and highest\n"
     "SequenceNumber as core._close finds them (None: Python decides)."},
    {"newest_created", (PyCFunction)(void (*)(void))newest_created, METH_FASTCALL,
     "newest_created(records, wanted) -> (highest, latest) | None: the highest epoch-seconds and\n"
     "the latest aware-datetime ApproximateCreationDateTime of the wanted records (None: Python\n"
     "decides)."},
    {"_tombstone_path", speedups_tombstone_path, METH_NOARGS,
     "How tombstone_operations() builds its UpdateOne and UpdateMany: 'slots' or 'constructor'."},
    {"_operation_path", speedups_operation_path, METH_NOARGS,
     "How operations() builds ReplaceOne and DeleteOne: 'slots' or 'constructor' for each."},
    {"configure_planner", configure_planner, METH_VARARGS,
     "configure_planner(PlannedWrite, slots): the frozen dataclass plan_records builds and its\n"
     "fields' member descriptors in declaration order (it fills the slots)."},
    {"plan_records", (PyCFunction)(void (*)(void))plan_records, METH_FASTCALL,
     "plan_records(records, key_schema, guard, sequence_field, ttl_as_delete[, stream_arn[, "
     "figures]])\n"
     "-> list of"
     "PlannedWrite | None: Planner.plan(*parse_records(records)).writes for the common case\n"
     "(None: Python plans the batch)."},
    {"_decimal128_path", speedups_decimal128_path, METH_NOARGS,
     "How Decimal128 values are built: 'slots', 'constructor', or None before configure()."},
    {"export_records", (PyCFunction)(void (*)(void))export_records, METH_FASTCALL,
     "export_records(lines, scan_once, full, key_schema, sequence, prefix, source, created)\n"
     "-> (records, missing): export.record_of(json.loads(raw), ...) of each (number, raw) line,\n"
     "None where Python must make it (missing: those indexes)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    "replicator._speedups",
    "Optional C accelerator for replicator.convert and replicator.events (the pure-Python "
    "reference decides anything "
    "unusual).",
    -1,
    speedups_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    init_b64_table();
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    return PyModule_Create(&speedups_module);
}

/* -- export lines as records (replicator.migrate.export, issue 21) -------------------------- *
 * export_records(lines, scan_once, full, key_schema, sequence, prefix, source, created) ->
 * (records, missing): for each (number, raw) of lines -- a data file's lines as
 * export.raw_lines gives them --, the record export.record_of(json.loads(raw), ...) makes
 * (item_record's INSERT, the parsed image handed over as its NewImage), or None where Python must
 * make it or refuse the line with its error (missing: those indexes). json.loads(raw) is done as
 * json.loads does it for a line starting with "{" (UTF-8, "surrogatepass"; scan_once of a
 * JSONDecoder() from index 0; only [ \t\n\r] after the value), through scan_once (the json
 * module's C scanner): the same objects without its Python frames. Anything else -- a line that
 * does not start with "{", one the scanner refuses, not an export line, an image lacking a key
 * attribute, an incremental export's removal -- is left to Python (None), which quarantines a bad
 * line as before. Why in C: the comprehension of record_of / item_record calls cost ~10,600
 * instructions per line (BENCHMARKS.md, issue 21). */
static PyObject *ex_item, *ex_keys, *ex_new_image, *ex_event_id, *ex_event_name, *ex_insert,
    *ex_event_source, *ex_dynamodb, *ex_sequence, *ex_view_key, *ex_view, *ex_created;

static int
intern_export_names(void)
{
#define EX_INTERN(var, text) \
    if (var == NULL && (var = PyUnicode_InternFromString(text)) == NULL) return -1
    EX_INTERN(ex_item, "Item");
    EX_INTERN(ex_keys, "Keys");
    EX_INTERN(ex_new_image, "NewImage");
    EX_INTERN(ex_event_id, "eventID");
    EX_INTERN(ex_event_name, "eventName");
    EX_INTERN(ex_insert, "INSERT");
    EX_INTERN(ex_event_source, "eventSource");
    EX_INTERN(ex_dynamodb, "dynamodb");
    EX_INTERN(ex_sequence, "SequenceNumber");
    EX_INTERN(ex_view_key, "StreamViewType");
    EX_INTERN(ex_view, "NEW_AND_OLD_IMAGES");
    EX_INTERN(ex_created, "ApproximateCreationDateTime");
#undef EX_INTERN
    return 0;
}

/* json.loads(raw) for a line starting with "{": new reference, Py_None (new) when json.loads
 * must run (it raises or decodes otherwise), NULL on a memory error. */
static PyObject *
export_line_json(PyObject *raw, PyObject *scan_once)
{
    if (!PyBytes_CheckExact(raw)) {
        return Py_NewRef(Py_None);
    }
    const char *data = PyBytes_AS_STRING(raw);
    Py_ssize_t size = PyBytes_GET_SIZE(raw);
    /* json.detect_encoding: a first byte "{" and a second byte that is not NUL is UTF-8 */
    if (size < 2 || data[0] != '{' || data[1] == 0) {
        return Py_NewRef(Py_None);
    }
    PyObject *text = PyUnicode_DecodeUTF8(data, size, "surrogatepass");
    if (text == NULL) {
        PyErr_Clear(); /* json.loads raises its UnicodeDecodeError */
        return Py_NewRef(Py_None);
    }
    PyObject *start = PyLong_FromLong(0);
    PyObject *found = start == NULL ? NULL : PyObject_CallFunctionObjArgs(scan_once, text, start,
                                                                          NULL);
    Py_XDECREF(start);
    if (found == NULL) {
        Py_DECREF(text);
        if (PyErr_ExceptionMatches(PyExc_MemoryError)) {
            return NULL;
        }
        PyErr_Clear(); /* StopIteration, JSONDecodeError, RecursionError...: json.loads decides */
        return Py_NewRef(Py_None);
    }
    PyObject *value = NULL;
    Py_ssize_t end = -1;
    if (PyTuple_CheckExact(found) && PyTuple_GET_SIZE(found) == 2
        && PyLong_CheckExact(PyTuple_GET_ITEM(found, 1))) {
        end = PyLong_AsSsize_t(PyTuple_GET_ITEM(found, 1));
        value = PyTuple_GET_ITEM(found, 0);
    }
    if (end == -1 && PyErr_Occurred()) {
        PyErr_Clear();
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    if (value != NULL && end >= 0 && end <= length) {
        int kind = PyUnicode_KIND(text);
        const void *chars = PyUnicode_DATA(text);
        while (end < length) {
            Py_UCS4 c = PyUnicode_READ(kind, chars, end);
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                break;
            }
            end++;
        }
    }
    PyObject *result = (value != NULL && end == length) ? value : Py_None; /* else: Extra data */
    Py_INCREF(result);
    Py_DECREF(found);
    Py_DECREF(text);
    return result;
}

/* item_record(image, key_schema, sequence, event_id, source=source, created=created,
 * owned=True) for an exact dict image holding every key attribute: new reference; Py_None (new)
 * when Python must decide (it raises ConfigurationError for a missing key attribute). */
static PyObject *
export_item_record(PyObject *image, PyObject *key_schema, PyObject *sequence, PyObject *event_id,
                   PyObject *source, PyObject *created)
{
    if (!PyDict_CheckExact(image)) {
        return Py_NewRef(Py_None);
    }
    PyObject *keys = PyDict_New();
    if (keys == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(key_schema); i++) {
        PyObject *name = PyTuple_GET_ITEM(key_schema, i);
        PyObject *value = PyDict_GetItemWithError(image, name);
        if (value == NULL) {
            Py_DECREF(keys);
            return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
        }
        if (PyDict_SetItem(keys, name, value) < 0) {
            Py_DECREF(keys);
            return NULL;
        }
    }
    PyObject *body = PyDict_New(), *record = PyDict_New();
    int failed = body == NULL || record == NULL
                 || PyDict_SetItem(body, ex_keys, keys) < 0
                 || PyDict_SetItem(body, ex_new_image, image) < 0
                 || PyDict_SetItem(body, ex_sequence, sequence) < 0
                 || PyDict_SetItem(body, ex_view_key, ex_view) < 0
                 || PyDict_SetItem(body, ex_created, created) < 0
                 || PyDict_SetItem(record, ex_event_id, event_id) < 0
                 || PyDict_SetItem(record, ex_event_name, ex_insert) < 0
                 || PyDict_SetItem(record, ex_event_source, source) < 0
                 || PyDict_SetItem(record, ex_dynamodb, body) < 0;
    Py_DECREF(keys);
    Py_XDECREF(body);
    if (failed) {
        Py_XDECREF(record);
        return NULL;
    }
    return record;
}

/* f"{prefix}{number}" (new reference): PyUnicode_FromFormat's parsing of its format cost ~5,000
 * instructions a line; this copies the prefix and writes the digits. */
static PyObject *
export_event_id(PyObject *prefix, PyObject *number)
{
    int overflow = 0;
    long long value = PyLong_AsLongLongAndOverflow(number, &overflow);
    if (value == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (overflow || value < 0 || PyUnicode_KIND(prefix) != PyUnicode_1BYTE_KIND) {
        return PyUnicode_FromFormat("%U%S", prefix, number); /* not a line number's usual form */
    }
    char reversed[24], digits[24];
    int count = 0;
    do {
        reversed[count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0);
    for (int k = 0; k < count; k++) {
        digits[k] = reversed[count - 1 - k];
    }
    Py_ssize_t length = PyUnicode_GET_LENGTH(prefix);
    PyObject *out = PyUnicode_New(length + count, PyUnicode_MAX_CHAR_VALUE(prefix));
    if (out == NULL) {
        return NULL;
    }
    memcpy(PyUnicode_1BYTE_DATA(out), PyUnicode_1BYTE_DATA(prefix), (size_t)length);
    memcpy(PyUnicode_1BYTE_DATA(out) + length, digits, (size_t)count);
    return out;
}

/* The record of one export line (new reference), Py_None (new) when Python must make it. */
static PyObject *
export_record(PyObject *line, PyObject *scan_once, int full, PyObject *key_schema,
              PyObject *sequence, PyObject *prefix, PyObject *source, PyObject *created)
{
    if (!PyTuple_CheckExact(line) || PyTuple_GET_SIZE(line) != 2
        || !PyLong_CheckExact(PyTuple_GET_ITEM(line, 0))) {
        return Py_NewRef(Py_None);
    }
    PyObject *parsed = export_line_json(PyTuple_GET_ITEM(line, 1), scan_once);
    if (parsed == NULL || parsed == Py_None || !PyDict_CheckExact(parsed)) {
        if (parsed != NULL && parsed != Py_None) {
            Py_SETREF(parsed, Py_NewRef(Py_None)); /* a JSON value but no object: Python raises */
        }
        return parsed;
    }
    PyObject *image = NULL;
    if (full) {
        image = PyDict_GetItemWithError(parsed, ex_item);
    }
    else if (PyDict_GetItemWithError(parsed, ex_keys) != NULL) { /* record_of reads it first */
        image = PyDict_GetItemWithError(parsed, ex_new_image);
        if (image == Py_None) {
            image = NULL; /* a removal: Python makes it */
        }
    }
    if (image == NULL) {
        Py_DECREF(parsed);
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    Py_INCREF(image); /* parsed holds it; hold it while the record is made */
    PyObject *event_id = export_event_id(prefix, PyTuple_GET_ITEM(line, 0));
    PyObject *record = event_id == NULL ? NULL : export_item_record(image, key_schema, sequence,
                                                                    event_id, source, created);
    Py_XDECREF(event_id);
    Py_DECREF(image);
    Py_DECREF(parsed);
    return record;
}

static PyObject *
export_records(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "export_records(lines, scan_once, full, key_schema, "
                                         "sequence, prefix, source, created)");
        return NULL;
    }
    PyObject *lines = args[0], *scan_once = args[1], *key_schema = args[3], *sequence = args[4],
             *prefix = args[5], *source = args[6], *created = args[7];
    int full = PyObject_IsTrue(args[2]);
    if (full < 0) {
        return NULL;
    }
    if (!PyList_CheckExact(lines) || !PyCallable_Check(scan_once)
        || !PyTuple_CheckExact(key_schema) || !PyUnicode_CheckExact(sequence)
        || !PyUnicode_CheckExact(prefix) || !PyUnicode_CheckExact(source)) {
        PyErr_SetString(PyExc_TypeError, "export_records: lines must be a list, scan_once "
                                         "callable, key_schema a tuple, sequence, prefix and "
                                         "source str");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(key_schema); i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(key_schema, i))) {
            PyErr_SetString(PyExc_TypeError, "export_records: key_schema names must be str");
            return NULL;
        }
    }
    if (intern_export_names() < 0) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(lines);
    PyObject *records = PyList_New(count), *missing = PyList_New(0);
    if (records == NULL || missing == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i >= PyList_GET_SIZE(lines)) { /* the scanner ran no Python code, but be safe */
            PyErr_SetString(PyExc_RuntimeError, "export_records: lines changed size");
            goto fail;
        }
        PyObject *line = Py_NewRef(PyList_GET_ITEM(lines, i));
        PyObject *record = export_record(line, scan_once, full, key_schema, sequence, prefix,
                                         source, created);
        Py_DECREF(line);
        if (record == NULL) {
            goto fail;
        }
        PyList_SET_ITEM(records, i, record);
        if (record == Py_None) {
            PyObject *index = PyLong_FromSsize_t(i);
            int status = index == NULL ? -1 : PyList_Append(missing, index);
            Py_XDECREF(index);
            if (status < 0) {
                goto fail;
            }
        }
    }
    PyObject *result = PyTuple_Pack(2, records, missing);
    Py_DECREF(records);
    Py_DECREF(missing);
    return result;
fail:
    Py_XDECREF(records); /* unfilled slots are NULL: a list deallocates them fine */
    Py_XDECREF(missing);
    return NULL;
}
