/* The metrics kernel: folds one chunk pair of float32/float64 tensors into the running state of
 * metrics.Accumulator in one pass, computing exactly what its NumPy path computes (kernel.py says what the
 * state arrays hold, metrics.py states the rules).
 *
 * Sums are float64 in LANES lanes: element i of a chunk goes to lane i % LANES, each lane adds front to back
 * from +0.0, and the chunk's sum is (l0 + l1) + (l2 + l3) (metrics.lane_sum is the same order in NumPy).
 * Where the narrow dtype is float32, blocks of BLOCK elements that are finite on both sides are computed with
 * vector operations, LANES elements at a time; a block holding a NaN or an infinity, the tail of a chunk and
 * float64-narrow pairs take the scalar path, which adds into the same lanes. Contracting a * b + c into one fused
 * multiply-add would change roundings: the build turns it off (-ffp-contract=off).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define LANES 4
#define SMALL 65536 /* distances below this are counted exactly (metrics._SMALL) */
#define BLOCK 64    /* elements per block: the vector path checks for NaN, infinity and rare cases once a block */
#define HOT 256     /* distances below this are first counted per lane: a count seldom waits on the one before, as
                       it would where most distances are 0 or 1 */

typedef double vd __attribute__((vector_size(8 * LANES)));
typedef float vf __attribute__((vector_size(4 * LANES)));
typedef int32_t vi __attribute__((vector_size(4 * LANES)));
typedef uint32_t vu __attribute__((vector_size(4 * LANES)));
typedef int64_t vl __attribute__((vector_size(8 * LANES)));

#define INLINE static inline __attribute__((always_inline))

typedef struct {
    vd abs, dot, ref, got, err; /* the lane sums of |err|, ref*got, ref^2, got^2 and err^2 */
} Sums;

typedef struct {
    double max_abs, max_rel, below_rel, atol, rtol;
    int64_t identical, nan_mm, inf_mm, n_fin, viol, n_ulp, nbig;
    uint64_t top, max_ulp;
    int ulp_clause;
    int64_t *small;
    uint64_t *big;
    int64_t hot[HOT][LANES];
} State;

INLINE uint64_t distance(uint64_t a, uint64_t b, uint64_t top_bit) {
    /* |ordered(a) - ordered(b)| for two non-NaN bit patterns (sign-magnitude: +0 and -0 are both 0) */
    uint64_t m = top_bit - 1, ma = a & m, mb = b & m;
    if ((a & top_bit) == (b & top_bit)) return ma > mb ? ma - mb : mb - ma;
    return ma + mb; /* opposite signs: at most 2 * (2**63 - 1), no overflow */
}

INLINE void tally(State *s, uint64_t d, int lane) {
    /* a distance into its histogram bin */
    if (d < HOT) s->hot[d][lane]++;
    else if (d < SMALL) s->small[d]++;
    else s->big[s->nbig++] = d; /* handed back for metrics to bucket (rare, and bucketing needs log2) */
}

INLINE void count(State *s, uint64_t d, int lane) {
    s->n_ulp++;
    if (d > s->top) s->top = d;
    tally(s, d, lane);
}

INLINE void relative(State *s, double r, double ad) {
    /* called where ad / |r| may exceed the running maximum (the 0.1% margin of below_rel covers the product's
     * rounding; an overflowing product means a quotient below max_rel) */
    double rel = r == 0.0 ? (ad == 0.0 ? 0.0 : INFINITY) : ad / fabs(r);
    if (rel > s->max_rel) {
        s->max_rel = rel;
        s->below_rel = rel * 0.999;
    }
}

/* One element. r, g: the values in float64; br, bg: their bits in the narrow dtype. */
INLINE void scalar(State *s, Sums *sums, double r, double g, uint64_t br, uint64_t bg, uint64_t top_bit, int lane) {
    if (fabs(r) < INFINITY && fabs(g) < INFINITY) {
        s->identical += br == bg;
        uint64_t d = distance(br, bg, top_bit);
        count(s, d, lane);
        s->n_fin++;
        double err = r - g, ad = fabs(err);
        if (ad > s->max_abs) s->max_abs = ad;
        if (!(ad < s->below_rel * fabs(r))) relative(s, r, ad);
        sums->abs[lane] += ad;
        sums->dot[lane] += r * g;
        sums->ref[lane] += r * r;
        sums->got[lane] += g * g;
        sums->err[lane] += err * err;
        s->viol += !((ad <= s->atol + s->rtol * fabs(r)) || (s->ulp_clause && d <= s->max_ulp));
        return;
    }
    /* a NaN or an infinity on either side: no error sums (the NumPy path adds 0.0 there, which changes none) */
    int nr = r != r, ng = g != g;
    if (nr && ng) { /* both NaN: identical, no ULP, within tolerance */
        s->identical++;
        return;
    }
    if (nr || ng) { /* a NaN against a number never passes, nor through the ULP clause */
        s->nan_mm++;
        s->viol++;
        return;
    }
    s->identical += br == bg;
    uint64_t d = distance(br, bg, top_bit);
    count(s, d, lane);
    if (r != g) {
        s->inf_mm++;
        if (!(s->ulp_clause && d <= s->max_ulp)) s->viol++;
    }
}

INLINE uint32_t f32_bits(double x) {
    float f = (float)x; /* round to nearest even, as NumPy's astype */
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

INLINE uint64_t f64_bits(double x) {
    uint64_t u;
    memcpy(&u, &x, 8);
    return u;
}

INLINE double load(const void *p, int64_t i, int is64) {
    return is64 ? ((const double *)p)[i] : (double)((const float *)p)[i];
}

INLINE void scalar_at(State *s, Sums *sums, const void *ref, const void *got, int64_t i, int ref64, int got64,
                             int narrow32) {
    double r = load(ref, i, ref64), g = load(got, i, got64);
    int lane = (int)(i % LANES);
    if (narrow32) scalar(s, sums, r, g, f32_bits(r), f32_bits(g), (uint64_t)1 << 31, lane);
    else scalar(s, sums, r, g, f64_bits(r), f64_bits(g), (uint64_t)1 << 63, lane);
}

INLINE void load4(const void *p, int64_t i, int is64, vd *x, vu *bits) {
    if (is64) {
        memcpy(x, (const double *)p + i, sizeof(vd));
        vf f = __builtin_convertvector(*x, vf);
        memcpy(bits, &f, sizeof(vu));
    } else {
        vf f;
        memcpy(&f, (const float *)p + i, sizeof(vf));
        *x = __builtin_convertvector(f, vd);
        memcpy(bits, &f, sizeof(vu));
    }
}

INLINE int any_set(vl m) {
    return ((m[0] | m[1]) | (m[2] | m[3])) != 0;
}

INLINE int finite_block(const void *p, int64_t i, int is64) {
    /* whether the BLOCK elements from i are all finite */
    vl bad = {0};
    for (int k = 0; k < BLOCK; k += LANES) {
        if (is64) {
            vd x;
            memcpy(&x, (const double *)p + i + k, sizeof x);
            bad |= ~((vd)((vl)x & INT64_MAX) < INFINITY);
        } else {
            vu x;
            memcpy(&x, (const float *)p + i + k, sizeof x);
            bad |= __builtin_convertvector((vi)((x & 0x7f800000u) == 0x7f800000u), vl);
        }
    }
    return !any_set(bad);
}

/* The vector path's running state, held in registers while a chunk is folded */
typedef struct {
    vd max_abs;
    vl identical, violations;
    vu top;
    int64_t blocks; /* blocks finite on both sides, all of whose elements took the vector path */
} Vec;

/* LANES elements from i, float32 the narrow dtype, all finite on both sides. Their ULP distances go to dist;
 * check marks where ad / |r| may exceed max_rel, far where a distance is HOT or more. */
INLINE void group32(const State *s, Sums *sums, Vec *v, const void *ref, const void *got, int64_t i, int ref64,
                    int got64, vd below, vd atol, vd rtol, vl *check, vu *far, uint32_t *dist) {
    vd r, g;
    vu rb, gb;
    load4(ref, i, ref64, &r, &rb);
    load4(got, i, got64, &g, &gb);
    v->identical -= __builtin_convertvector((vi)(rb == gb), vl);
    vu ma = rb & 0x7fffffffu, mb = gb & 0x7fffffffu;
    vu gt = (vu)(ma > mb), same_sign = (vu)((rb ^ gb) < 0x80000000u);
    vu diff = ((ma - mb) & gt) | ((mb - ma) & ~gt);
    vu d = (diff & same_sign) | ((ma + mb) & ~same_sign); /* finite float32: below 2**32, no overflow */
    vu up = (vu)(d > v->top);
    v->top = (d & up) | (v->top & ~up);
    *far |= (vu)(d >= HOT);
    memcpy(dist, &d, sizeof d);
    vd err = r - g;
    vd ad = (vd)((vl)err & INT64_MAX);
    vd ar = (vd)((vl)r & INT64_MAX);
    vl more = ad > v->max_abs;
    v->max_abs = (vd)(((vl)ad & more) | ((vl)v->max_abs & ~more));
    *check |= ~(ad < below * ar);
    sums->abs += ad;
    sums->dot += r * g;
    sums->ref += r * r;
    sums->got += g * g;
    sums->err += err * err;
    vl ok = ad <= atol + rtol * ar;
    if (s->ulp_clause) {
        uint32_t limit = s->max_ulp < UINT32_MAX ? (uint32_t)s->max_ulp : UINT32_MAX;
        ok |= __builtin_convertvector((vi)(d <= limit), vl);
    }
    v->violations += ok + 1; /* ok is -1 where the element passes, 0 where it fails */
}

/* BLOCK elements from i, float32 the narrow dtype: the vector path where all are finite on both sides */
INLINE void block32(State *s, Sums *sums, Vec *v, const void *ref, const void *got, int64_t i, int ref64,
                    int got64) {
    if (!finite_block(ref, i, ref64) || !finite_block(got, i, got64)) {
        for (int k = 0; k < BLOCK; k++) scalar_at(s, sums, ref, got, i + k, ref64, got64, 1);
        return;
    }
    vl check = {0};
    vu far = {0};
    uint32_t dist[BLOCK];
    /* copies the compiler keeps in registers: the counts stored below might otherwise change them */
    vd below = {0}, atol = {0}, rtol = {0};
    below += s->below_rel, atol += s->atol, rtol += s->rtol;
    for (int k = 0; k < BLOCK; k += LANES)
        group32(s, sums, v, ref, got, i + k, ref64, got64, below, atol, rtol, &check, &far, dist + k);
    v->blocks++;
    if (any_set(check)) /* rare once max_rel has grown: the candidates again, one by one */
        for (int k = 0; k < BLOCK; k++) {
            double r = load(ref, i + k, ref64), ad = fabs(r - load(got, i + k, got64));
            if (!(ad < s->below_rel * fabs(r))) relative(s, r, ad);
        }
    /* the block's n_ulp and top are counted in v */
    if (any_set(__builtin_convertvector((vi)far, vl)))
        for (int k = 0; k < BLOCK; k++) tally(s, dist[k], k % LANES);
    else
        for (int k = 0; k < BLOCK; k++) s->hot[dist[k]][k % LANES]++;
}

static double lane_total(vd x) {
    return (x[0] + x[1]) + (x[2] + x[3]);
}

INLINE void fold_body(State *s, Sums *out, const void *ref, const void *got, int64_t n, int ref64, int got64,
                             int narrow32) {
    int64_t i = 0;
    Sums sums = {{0}, {0}, {0}, {0}, {0}};
    if (narrow32) {
        Vec v = {{0}, {0}, {0}, {0}, 0};
        for (; i + BLOCK <= n; i += BLOCK) block32(s, &sums, &v, ref, got, i, ref64, got64);
        s->n_fin += BLOCK * v.blocks;
        s->n_ulp += BLOCK * v.blocks;
        for (int k = 0; k < LANES; k++) {
            s->identical += v.identical[k];
            s->viol += v.violations[k];
            if (v.top[k] > s->top) s->top = v.top[k];
            if (v.max_abs[k] > s->max_abs) s->max_abs = v.max_abs[k];
        }
    }
    for (; i < n; i++) scalar_at(s, &sums, ref, got, i, ref64, got64, narrow32);
    *out = sums;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
static void fold_all(State *s, Sums *sums, const void *ref, const void *got, int64_t n, int ref64, int got64, int narrow32) {
    /* one specialised body per dtype pair: the loads and the narrow dtype are constants inside it */
    if (narrow32) {
        if (ref64) fold_body(s, sums, ref, got, n, 1, 0, 1);
        else if (got64) fold_body(s, sums, ref, got, n, 0, 1, 1);
        else fold_body(s, sums, ref, got, n, 0, 0, 1);
    } else {
        fold_body(s, sums, ref, got, n, 1, 1, 0);
    }
}

static int64_t first_worst(const void *ref, const void *got, int64_t n, int ref64, int got64, double max_abs) {
    /* the first element whose |ref - got| is max_abs, both sides finite */
    for (int64_t i = 0; i < n; i++) {
        double r = load(ref, i, ref64), g = load(got, i, got64);
        if (fabs(r - g) == max_abs && fabs(r) < INFINITY && fabs(g) < INFINITY) return i;
    }
    return -1;
}

typedef struct {
    Py_buffer view;
    int held;
} Buf;

static int get(PyObject *obj, Buf *b, int writable, Py_ssize_t at_least, const char *name) {
    if (PyObject_GetBuffer(obj, &b->view, writable ? (PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) : PyBUF_C_CONTIGUOUS) < 0)
        return 0;
    b->held = 1;
    if (b->view.len < at_least) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, at least %zd needed", name, b->view.len, at_least);
        return 0;
    }
    return 1;
}

static PyObject *fold(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *o_ref, *o_got, *o_small, *o_fsum, *o_counts, *o_top, *o_big, *o_worst;
    int ref64, got64, narrow32, ulp_clause;
    double atol, rtol;
    unsigned long long max_ulp;
    long long offset;
    if (!PyArg_ParseTuple(args, "OOpppddpKOOOOOLO", &o_ref, &o_got, &ref64, &got64, &narrow32, &atol, &rtol,
                          &ulp_clause, &max_ulp, &o_small, &o_fsum, &o_counts, &o_top, &o_big, &offset, &o_worst))
        return NULL;
    Buf b[8] = {0};
    PyObject *result = NULL;
    State *s = NULL;
    if (!get(o_ref, &b[0], 0, 0, "ref") || !get(o_got, &b[1], 0, 0, "got")) goto done;
    int64_t n = b[0].view.len / (ref64 ? 8 : 4);
    if (b[1].view.len / (got64 ? 8 : 4) != n || b[0].view.len % (ref64 ? 8 : 4) || b[1].view.len % (got64 ? 8 : 4)) {
        PyErr_SetString(PyExc_ValueError, "ref and got hold different element counts");
        goto done;
    }
    if (!narrow32 && !(ref64 && got64)) {
        PyErr_SetString(PyExc_ValueError, "a float32 side makes float32 the narrow dtype");
        goto done;
    }
    if (!get(o_small, &b[2], 1, SMALL * 8, "small") || !get(o_fsum, &b[3], 1, 7 * 8, "fsum") ||
        !get(o_counts, &b[4], 1, 6 * 8, "counts") || !get(o_top, &b[5], 1, 8, "top") ||
        !get(o_big, &b[6], 1, n * 8, "big") || !get(o_worst, &b[7], 1, 8, "worst"))
        goto done;
    s = PyMem_RawCalloc(1, sizeof(State));
    if (s == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double *fsum = b[3].view.buf;
    int64_t *counts = b[4].view.buf;
    uint64_t *top = b[5].view.buf;
    s->small = b[2].view.buf;
    s->big = b[6].view.buf;
    s->max_abs = fsum[0];
    s->max_rel = fsum[1];
    s->below_rel = fsum[1] * 0.999;
    s->atol = atol;
    s->rtol = rtol;
    s->ulp_clause = ulp_clause;
    s->max_ulp = max_ulp;
    s->top = top[0];
    const void *ref = b[0].view.buf, *got = b[1].view.buf;
    double start_abs = fsum[0];
    int64_t worst = -1;
    Sums sums;
    Py_BEGIN_ALLOW_THREADS
    fold_all(s, &sums, ref, got, n, ref64, got64, narrow32);
    /* This chunk raised the largest error: find its first element in a second, cheap pass (rare after the first
     * chunks). */
    if (s->max_abs > start_abs) worst = first_worst(ref, got, n, ref64, got64, s->max_abs);
    Py_END_ALLOW_THREADS
    int64_t *small = s->small;
    for (int d = 0; d < HOT; d++)
        for (int k = 0; k < LANES; k++) small[d] += s->hot[d][k];
    fsum[0] = s->max_abs;
    fsum[1] = s->max_rel;
    fsum[2] += lane_total(sums.abs);
    fsum[3] += lane_total(sums.dot);
    fsum[4] += lane_total(sums.ref);
    fsum[5] += lane_total(sums.got);
    fsum[6] += lane_total(sums.err);
    counts[0] += s->identical;
    counts[1] += s->nan_mm;
    counts[2] += s->inf_mm;
    counts[3] += s->n_fin;
    counts[4] += s->viol;
    counts[5] += s->n_ulp;
    top[0] = s->top;
    if (worst >= 0) ((int64_t *)b[7].view.buf)[0] = offset + worst;
    result = PyLong_FromLongLong(s->nbig);
done:
    PyMem_RawFree(s);
    for (int k = 0; k < 8; k++)
        if (b[k].held) PyBuffer_Release(&b[k].view);
    return result;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
static void fold_same(const void *x, int64_t n, int is64, vd *squares, int64_t *n_fin, int64_t *n_num) {
    for (int64_t i = 0; i < n; i++) {
        double v = load(x, i, is64);
        if (fabs(v) < INFINITY) {
            (*n_fin)++;
            (*squares)[i % LANES] += v * v;
        }
        *n_num += v == v;
    }
}

static PyObject *fold_identical(PyObject *self, PyObject *args) {
    (void)self;
    /* fold for a chunk compared with a bit-identical copy of itself (a non-negative tolerance): every element
     * identical, no error, distance 0; only the sums of squares and the counts of finite and non-NaN elements
     * remain to compute, in fold's order */
    PyObject *o_x, *o_small, *o_fsum, *o_counts;
    int is64;
    if (!PyArg_ParseTuple(args, "OpOOO", &o_x, &is64, &o_small, &o_fsum, &o_counts)) return NULL;
    Buf b[4] = {0};
    PyObject *result = NULL;
    if (!get(o_x, &b[0], 0, 0, "x") || !get(o_small, &b[1], 1, 8, "small") || !get(o_fsum, &b[2], 1, 7 * 8, "fsum") ||
        !get(o_counts, &b[3], 1, 6 * 8, "counts"))
        goto done;
    int64_t n = b[0].view.len / (is64 ? 8 : 4), n_fin = 0, n_num = 0;
    vd squares = {0};
    const void *x = b[0].view.buf;
    Py_BEGIN_ALLOW_THREADS
    fold_same(x, n, is64, &squares, &n_fin, &n_num);
    Py_END_ALLOW_THREADS
    double s = lane_total(squares);
    double *fsum = b[2].view.buf;
    int64_t *counts = b[3].view.buf;
    fsum[3] += s;
    fsum[4] += s;
    fsum[5] += s;
    counts[0] += n;
    counts[3] += n_fin;
    counts[5] += n_num;
    ((int64_t *)b[1].view.buf)[0] += n_num;
    result = Py_None;
    Py_INCREF(result);
done:
    for (int k = 0; k < 4; k++)
        if (b[k].held) PyBuffer_Release(&b[k].view);
    return result;
}

static PyMethodDef methods[] = {
    {"fold", fold, METH_VARARGS, "Fold one chunk pair into the metrics state; returns how many distances it wrote to big."},
    {"fold_identical", fold_identical, METH_VARARGS, "Fold a chunk compared with a bit-identical copy of itself."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fold", "The metrics kernel (see _fold.c).", -1, methods,
                                     NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__fold(void) { return PyModule_Create(&module); }
