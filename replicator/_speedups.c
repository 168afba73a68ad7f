/*
 * replicator._speedups: an optional C accelerator for replicator/convert.py and events.py.
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
 *   configure(decimal128_type, decimal_type)  once, at import of convert.py
 *   image(image) -> dict | None                convert a top-level image (lossless numbers)
 *   valid(image) -> bool                       True iff image(image) would return a dict; builds
 *                                              nothing (False means "ask the reference")
 *   document(image, document_id) -> dict | None   {"_id": document_id, **image(image)}
 *   has_dollar_name(document) -> bool | None   a top-level name starting with "$"
 *   configure_events(...), parse_changes(records)   replicator.events.parse_record's well-formed
 *                                              case, for a whole batch (None: ask the reference)
 *
 * C99, public CPython API only (3.10 to 3.13).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Deeper than this is left to the reference (which is bounded by Python's recursion limit). */
#define MAX_DEPTH 200

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

static int
set_slot(PyObject *descriptor, PyObject *obj, PyObject *value)
{
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

/* Converts the attributes of source into out (which may hold entries already); 0 or -1. */
static int
convert_map_into(PyObject *out, PyObject *source, int depth)
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
        if (!PyUnicode_CheckExact(name)) {
            return -1;
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

static PyObject *
convert_map(PyObject *source, int depth)
{
    PyObject *out = PyDict_New();
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
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(out); i++) {
        if (!PyUnicode_CheckExact(PyList_GET_ITEM(out, i))) {
            Py_DECREF(out);
            return NULL;
        }
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
        return PyUnicode_CheckExact(payload) ? Py_NewRef(payload) : NULL;
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
        if (!PyUnicode_CheckExact(name) || !valid_value(value, depth)) {
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
        return PyUnicode_CheckExact(payload);
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
            int ok = tag == T_SS   ? PyUnicode_CheckExact(item)
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

/* has_dollar_name(document) -> bool | None: whether a top-level name starts with "$" (None when
 * document is not exactly a dict of str names). */
static PyObject *
speedups_has_dollar_name(PyObject *Py_UNUSED(module), PyObject *document)
{
    Py_ssize_t position = 0;
    PyObject *name, *value;
    if (!PyDict_CheckExact(document)) {
        Py_RETURN_NONE;
    }
    while (PyDict_Next(document, &position, &name, &value)) {
        if (!PyUnicode_CheckExact(name)) {
            Py_RETURN_NONE;
        }
        if (PyUnicode_GET_LENGTH(name) > 0 && PyUnicode_READ_CHAR(name, 0) == '$') {
            Py_RETURN_TRUE;
        }
    }
    Py_RETURN_FALSE;
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

static PyObject *ev_change_type = NULL;   /* replicator.events.Change */
static PyObject *ev_object_new = NULL;    /* object.__new__ */
static PyObject *ev_event_names = NULL;   /* {"INSERT": EventName.INSERT, ...} */
static PyObject *ev_view_types = NULL;    /* {"NEW_IMAGE": StreamViewType.NEW_IMAGE, ...} */
static PyObject *ev_epochs = NULL;        /* events._EPOCHS: epoch seconds -> datetime */
static PyObject *ev_ttl_principal = NULL; /* "dynamodb.amazonaws.com" */
static PyObject *ev_remove = NULL;        /* EventName.REMOVE */
static PyObject *ev_view_new_and_old = NULL;
static PyObject *ev_view_new = NULL;

static PyObject *s_eventID, *s_dynamodb, *s_SequenceNumber, *s_NewImage, *s_OldImage,
    *s_eventName, *s_userIdentity, *s_principalId, *s_Keys, *s_StreamViewType,
    *s_ApproximateCreationDateTime, *s_eventSourceARN, *s___dict__, *s_index, *s_event_name,
    *s_keys, *s_sequence_number, *s_stream_view_type, *s_new_image, *s_old_image, *s_created_at,
    *s_is_ttl_delete, *s_event_id, *s_event_source_arn, *s_raw;

static int
intern_event_names(void)
{
#define INTERN(var, text)                                   \
    if ((var) == NULL) {                                    \
        (var) = PyUnicode_InternFromString(text);           \
        if ((var) == NULL) return -1;                       \
    }
    INTERN(s_eventID, "eventID");
    INTERN(s_dynamodb, "dynamodb");
    INTERN(s_SequenceNumber, "SequenceNumber");
    INTERN(s_NewImage, "NewImage");
    INTERN(s_OldImage, "OldImage");
    INTERN(s_eventName, "eventName");
    INTERN(s_userIdentity, "userIdentity");
    INTERN(s_principalId, "principalId");
    INTERN(s_Keys, "Keys");
    INTERN(s_StreamViewType, "StreamViewType");
    INTERN(s_ApproximateCreationDateTime, "ApproximateCreationDateTime");
    INTERN(s_eventSourceARN, "eventSourceARN");
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
#undef INTERN
    return 0;
}

static PyObject *
configure_events(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *change_type, *object_new, *event_names, *view_types, *epochs, *ttl_principal,
        *remove, *view_new_and_old, *view_new;
    if (!PyArg_ParseTuple(args, "OOO!O!O!O!OOO:configure_events", &change_type, &object_new,
                          &PyDict_Type, &event_names, &PyDict_Type, &view_types, &PyDict_Type,
                          &epochs, &PyUnicode_Type, &ttl_principal, &remove, &view_new_and_old,
                          &view_new)) {
        return NULL;
    }
    if (intern_event_names() < 0) {
        return NULL;
    }
    Py_XSETREF(ev_change_type, Py_NewRef(change_type));
    Py_XSETREF(ev_object_new, Py_NewRef(object_new));
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

/* The Change for one record, Py_None (new reference) when Python must decide, NULL on error. */
/* Only exact str keys: then a lookup by a str key runs no Python code, so nothing can change the
 * record while this code holds borrowed references into it. */
static int
has_str_keys(PyObject *dict)
{
    Py_ssize_t position = 0;
    PyObject *key, *value;
    while (PyDict_Next(dict, &position, &key, &value)) {
        if (!PyUnicode_CheckExact(key)) {
            return 0;
        }
    }
    return 1;
}

/* dict[key] (borrowed), Py_None when the key is absent, NULL only on an error: dict.get(key). */
static PyObject *
get_or_none(PyObject *dict, PyObject *key)
{
    PyObject *value = PyDict_GetItemWithError(dict, key);
    if (value == NULL && !PyErr_Occurred()) {
        return Py_None;
    }
    return value;
}

/* An optional image (NewImage, OldImage): 1 with *image a dict or Py_None, 0 when it is anything
 * else (Python decides), -1 on an error. */
static int
optional_image(PyObject *body, PyObject *key, PyObject **image)
{
    *image = get_or_none(body, key);
    if (*image == NULL) {
        return -1;
    }
    return *image == Py_None || PyDict_CheckExact(*image);
}

static PyObject *
parse_one(PyObject *raw, Py_ssize_t index)
{
    if (!PyDict_CheckExact(raw) || !has_str_keys(raw)) {
        Py_RETURN_NONE;
    }
    /* Borrowed references throughout (see has_str_keys). */
    PyObject *event_id = get_or_none(raw, s_eventID);
    if (event_id == NULL) return NULL;
    if (!PyUnicode_CheckExact(event_id)) {
        event_id = Py_None;
    }
    PyObject *body = PyDict_GetItemWithError(raw, s_dynamodb);
    if (body == NULL || !PyDict_CheckExact(body) || !has_str_keys(body)) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    PyObject *sequence = PyDict_GetItemWithError(body, s_SequenceNumber);
    if (sequence == NULL || !is_sequence_number(sequence)) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    PyObject *new_image = NULL, *old_image = NULL;
    int usable = optional_image(body, s_NewImage, &new_image);
    if (usable == 1) {
        usable = optional_image(body, s_OldImage, &old_image);
    }
    if (usable <= 0) {
        if (usable < 0) return NULL;
        Py_RETURN_NONE;
    }
    PyObject *name = PyDict_GetItemWithError(raw, s_eventName);
    if (name == NULL || !PyUnicode_CheckExact(name)) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    PyObject *event_name = PyDict_GetItemWithError(ev_event_names, name);
    if (event_name == NULL) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE; /* DynamoDB Local's TTL name, or an unknown one: Python decides */
    }
    PyObject *is_ttl = Py_False;
    PyObject *identity = get_or_none(raw, s_userIdentity);
    if (identity == NULL) return NULL;
    if (identity != Py_None) {
        if (!PyDict_CheckExact(identity) || !has_str_keys(identity)) {
            Py_RETURN_NONE;
        }
        PyObject *principal = PyDict_GetItemWithError(identity, s_principalId);
        if (principal != NULL) {
            if (!PyUnicode_CheckExact(principal)) {
                Py_RETURN_NONE;
            }
            int same = PyUnicode_Compare(principal, ev_ttl_principal);
            if (same == -1 && PyErr_Occurred()) return NULL;
            if (same == 0) is_ttl = Py_True;
        }
        else if (PyErr_Occurred()) {
            return NULL;
        }
    }
    PyObject *keys = PyDict_GetItemWithError(body, s_Keys);
    if (keys == NULL || !PyDict_CheckExact(keys) || PyDict_GET_SIZE(keys) == 0) {
        if (PyErr_Occurred()) return NULL;
        Py_RETURN_NONE;
    }
    Py_ssize_t position = 0;
    PyObject *key_name, *key_value;
    while (PyDict_Next(keys, &position, &key_name, &key_value)) {
        if (!PyDict_CheckExact(key_value) || PyDict_GET_SIZE(key_value) != 1) {
            Py_RETURN_NONE;
        }
    }
    PyObject *view_type = Py_None;
    PyObject *view = get_or_none(body, s_StreamViewType);
    if (view == NULL) return NULL;
    if (view != Py_None) {
        if (!PyUnicode_CheckExact(view)) {
            Py_RETURN_NONE;
        }
        view_type = PyDict_GetItemWithError(ev_view_types, view);
        if (view_type == NULL) {
            if (PyErr_Occurred()) return NULL;
            Py_RETURN_NONE;
        }
    }
    if (new_image == Py_None && event_name != ev_remove
        && (view_type == ev_view_new_and_old || view_type == ev_view_new)) {
        Py_RETURN_NONE; /* an INSERT or MODIFY that needs a NewImage: Python raises */
    }
    PyObject *created = get_or_none(body, s_ApproximateCreationDateTime);
    if (created == NULL) return NULL;
    if (created != Py_None) {
        if (!PyLong_CheckExact(created) && !PyFloat_CheckExact(created)) {
            Py_RETURN_NONE;
        }
        created = PyDict_GetItemWithError(ev_epochs, created);
        if (created == NULL) {
            if (PyErr_Occurred()) return NULL;
            Py_RETURN_NONE; /* not seen yet: Python converts it and remembers it */
        }
    }
    PyObject *arn = get_or_none(raw, s_eventSourceARN);
    if (arn == NULL) return NULL;

    PyObject *fields = PyDict_New();
    if (fields == NULL) return NULL;
    PyObject *index_object = PyLong_FromSsize_t(index);
    if (index_object == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    /* The order of the dataclass's fields, as Change(...) would fill __dict__. */
    if (PyDict_SetItem(fields, s_index, index_object) < 0
        || PyDict_SetItem(fields, s_event_name, event_name) < 0
        || PyDict_SetItem(fields, s_keys, keys) < 0
        || PyDict_SetItem(fields, s_sequence_number, sequence) < 0
        || PyDict_SetItem(fields, s_stream_view_type, view_type) < 0
        || PyDict_SetItem(fields, s_new_image, new_image) < 0
        || PyDict_SetItem(fields, s_old_image, old_image) < 0
        || PyDict_SetItem(fields, s_created_at, created) < 0
        || PyDict_SetItem(fields, s_is_ttl_delete, is_ttl) < 0
        || PyDict_SetItem(fields, s_event_id, event_id) < 0
        || PyDict_SetItem(fields, s_event_source_arn, arn) < 0
        || PyDict_SetItem(fields, s_raw, raw) < 0) {
        Py_DECREF(index_object);
        Py_DECREF(fields);
        return NULL;
    }
    Py_DECREF(index_object);
    PyObject *change = PyObject_CallOneArg(ev_object_new, ev_change_type);
    if (change == NULL) {
        Py_DECREF(fields);
        return NULL;
    }
    /* object.__setattr__(change, "__dict__", fields): past the frozen dataclass's __setattr__. */
    int failed = PyObject_GenericSetAttr(change, s___dict__, fields);
    Py_DECREF(fields);
    if (failed < 0) {
        Py_DECREF(change);
        return NULL;
    }
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
     "configure_events(Change, object.__new__, event_names, view_types, epochs, ttl_principal,\n"
     "REMOVE, NEW_AND_OLD_IMAGES, NEW_IMAGE): what parse_changes builds with."},
    {"parse_changes", parse_changes, METH_O,
     "parse_changes(records) -> (list of Change or None, count of None): None marks a record\n"
     "replicator.events.parse_record must parse (or refuse with its error)."},
    {"_decimal128_path", speedups_decimal128_path, METH_NOARGS,
     "How Decimal128 values are built: 'slots', 'constructor', or None before configure()."},
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
    return PyModule_Create(&speedups_module);
}
