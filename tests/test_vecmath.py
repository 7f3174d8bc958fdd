"""Accuracy of primitives/vecmath.py against NumPy over the whole float64 and float32
ranges: random bit patterns (every exponent), inf, nan, denormals, negative zero."""
import numba
import numpy as np
import pytest

from primitives import vecmath as vm

rng = np.random.default_rng(1)


def _samples64(n=400_000):
    bits = rng.integers(0, 2 ** 64, n, dtype=np.uint64, endpoint=False).view(np.float64)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2e-308,
                        -2.2e-308, 1e-310, 1.0, -1.0, 0.5, -0.5, 709.78, 709.79, -745.1,
                        -745.2, 710.0, -746.0, 22.0, -22.0, 2.0 ** -28, 2.0 ** -29, 1e-20,
                        np.finfo(np.float64).max, -np.finfo(np.float64).max, 2.5, -2.5,
                        4503599627370495.5, 0.49999999999999994])
    moderate = np.concatenate([rng.uniform(-30, 30, 100_000), rng.uniform(-1, 1, 50_000) * 1e-6,
                               rng.uniform(-800, 800, 50_000)])
    return np.concatenate([bits, special, moderate])


def _samples32(n=200_000):
    bits = rng.integers(0, 2 ** 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-40, 88.7,
                        88.8, -103.9, -104.0, 9.0, 1.0, -1.0], np.float32)
    return np.concatenate([bits, special, rng.uniform(-20, 20, 50_000).astype(np.float32)])


def _ulps(a, b):
    """Distance in units in the last place (of a's dtype), 0 where both are nan."""
    dt = a.dtype
    it = np.int64 if dt == np.float64 else np.int32
    ai = a.view(it).astype(np.int64)
    bi = b.astype(dt).view(it).astype(np.int64)
    lo = np.int64(np.iinfo(it).min)
    ai = np.where(ai < 0, lo - ai, ai)
    bi = np.where(bi < 0, lo - bi, bi)
    d = np.abs(ai - bi).astype(np.float64)
    return np.where(np.isnan(a) & np.isnan(b), 0.0, d)


def _vec(fn):
    @numba.njit(error_model='numpy')
    def k64(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = fn(x[i])
        return out

    @numba.njit(error_model='numpy')
    def k32(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = np.float32(fn(np.float64(x[i])))
        return out
    return k64, k32


CASES = [  # name, reference, max ulps (float64), domain limit
    ('vm_exp', np.exp, 2, None), ('vm_expm1', np.expm1, 3, None), ('vm_log', np.log, 2, None),
    ('vm_log1p', np.log1p, 2, None), ('vm_tanh', np.tanh, 4, None),
    ('vm_logistic', lambda x: np.tanh(x * 0.5) * 0.5 + 0.5, None, None),   # absolute
    ('vm_sin', np.sin, 3, vm.TRIG_LIMIT), ('vm_cos', np.cos, 3, vm.TRIG_LIMIT),
    ('vm_tan', np.tan, 6, vm.TRIG_LIMIT), ('vm_rint', np.rint, 0, None),
]


@pytest.mark.parametrize('name,ref,max_ulps,limit', CASES, ids=[c[0] for c in CASES])
def test_accuracy(name, ref, max_ulps, limit):
    k64, k32 = _vec(getattr(vm, name))
    x = _samples64()
    x32 = _samples32()
    if limit is not None:
        x = np.concatenate([x[~(np.abs(x) > limit)], rng.uniform(-limit, limit, 100_000)])
        x32 = x32[~(np.abs(x32) > limit)]
    with np.errstate(all='ignore'):
        # float32: the float64 result rounded to float32 (NumPy's float32 routines are
        # themselves a few ulp off)
        want, want32 = ref(x), ref(x32.astype(np.float64)).astype(np.float32)
    got, got32 = k64(x), k32(x32)
    if max_ulps is None:    # (logistic near 0 is 0.5 - 0.5: absolute accuracy is the measure)
        ok = np.isclose(got, want, rtol=5e-16, atol=3e-16, equal_nan=True)
        assert ok.all(), x[~ok][:5]
        max_ulps = np.inf
    u = _ulps(got, want)
    worst = int(np.argmax(u))
    assert u.max() <= max_ulps, f"{name}({x[worst]!r}) = {got[worst]!r}, NumPy {want[worst]!r}"
    # specials exactly as NumPy: nan where nan, the same infinities and signed zeros
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.signbit(got[want == 0]), np.signbit(want[want == 0])) or name == 'vm_logistic'
    u32 = _ulps(got32, want32.astype(np.float32))
    if name == 'vm_logistic':   # absolute accuracy near 0, as above
        u32 = np.where(np.abs(want32) < 1e-6, 0, u32)
    worst = int(np.argmax(u32))
    assert u32.max() <= 2, f"{name}({x32[worst]!r}) float32 = {got32[worst]!r}, NumPy {want32[worst]!r}"


def test_trig_guard():
    big = numba.njit(lambda x: vm.trig_big(x))
    assert not big(1e5) and not big(-vm.TRIG_LIMIT)
    assert big(vm.TRIG_LIMIT * 1.5) and big(np.inf) and big(-np.inf) and big(np.nan)


def test_helpers_nan_semantics():
    f = numba.njit(lambda a, b: (vm.fmax(a, b), vm.fmin(a, b)))
    for a, b in [(np.nan, 1.0), (1.0, np.nan), (-0.0, 0.0), (2.0, 3.0), (-np.inf, np.nan)]:
        got = f(a, b)
        want = (np.maximum(a, b), np.minimum(a, b))
        np.testing.assert_array_equal(got, want)
    sm = numba.njit(vm.safe_mul.py_func)
    assert sm(0.0, np.inf) == 0.0 and sm(0.0, np.nan) == 0.0 and np.isnan(sm(1.0, np.nan))
    assert sm(2.0, 3.0) == 6.0
    sign = numba.njit(vm.fsign.py_func)
    for v in (3.0, -2.0, 0.0, -0.0, np.nan, np.inf):
        np.testing.assert_array_equal(sign(v), np.sign(v))
    ir = numba.njit(vm.irem.py_func)
    for a, b in [(7, 3), (-7, 3), (7, -3), (-7, -3), (5, 0)]:
        with np.errstate(all='ignore'):
            assert ir(a, b) == np.fmod(a, b)


def test_loops_vectorise():
    # the point of vecmath: a loop calling these is SIMD code (no libm calls)
    @numba.njit(error_model='numpy')
    def k(x, out):
        for i in range(x.size):
            out[i] = vm.vm_tanh(x[i]) + vm.vm_exp(x[i]) + vm.vm_log(x[i])
    x = np.ones(16)
    k(x, x.copy())
    asm = next(iter(k.inspect_asm().values()))
    assert 'ymm' in asm or 'zmm' in asm
    import re
    assert re.search(r'call\w*\s+\S*(tanh|exp|log)', asm) is None


# float32-native versions (float32 arithmetic throughout): against the float64
# reference rounded to float32, over random bit patterns, dense ranges and specials
CASES32 = [('vm_tanh32', np.tanh, 1), ('vm_exp32', np.exp, 1)]


@pytest.mark.parametrize('name,ref,max_ulps', CASES32, ids=[c[0] for c in CASES32])
def test_accuracy_float32_native(name, ref, max_ulps):
    fn = getattr(vm, name)

    @numba.njit(error_model='numpy')
    def k(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = fn(x[i])
        return out
    x = np.concatenate([_samples32(400_000), np.linspace(-12, 12, 400_001, dtype=np.float32),
                        np.linspace(-110, 95, 200_001, dtype=np.float32)])
    got = k(x)
    assert got.dtype == np.float32
    with np.errstate(all='ignore'):
        want = ref(x.astype(np.float64)).astype(np.float32)
    u = _ulps(got, want)
    worst = int(np.argmax(u))
    assert u.max() <= max_ulps, f"{name}({x[worst]!r}) = {got[worst]!r}, want {want[worst]!r}"
    assert np.array_equal(np.isnan(got), np.isnan(want))
    z = want == 0
    assert np.array_equal(np.signbit(got[z]), np.signbit(want[z]))
    # NumPy's own float32 routine agrees within a few ulp as well
    with np.errstate(all='ignore'):
        assert _ulps(got, ref(x)).max() <= 3


def test_float32_loops_vectorise_in_float32():
    @numba.njit(error_model='numpy')
    def k(x, out):
        for i in range(x.size):
            out[i] = vm.vm_tanh32(x[i]) + vm.vm_exp32(x[i])
    x = np.ones(64, np.float32)
    k(x, x.copy())
    asm = next(iter(k.inspect_asm().values()))
    import re
    assert re.search(r'call\w*\s+\S*(tanh|exp)', asm) is None
    assert re.search(r'v\w+ps\s', asm)                 # packed single precision
    assert 'cvtps2pd' not in asm                        # no widening to float64


def test_tanh_special_values_exactly():
    # tanh keeps -0.0's sign, returns NaN for NaN, is exactly +-1 from |x| = 22 on
    # and x itself below 2^-28 (the selects vm_tanh relies on for these)
    k64, _ = _vec(vm.vm_tanh)
    x = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 22.0, -22.0, 30.0, -1e300,
                  1e-9, -1e-9, 5e-324, -5e-324, 0.549, 0.55, -0.55])
    y = k64(x)
    want = np.tanh(x)
    assert np.array_equal(np.signbit(y), np.signbit(want))
    assert np.isnan(y[2]) and not np.isnan(y[np.arange(len(x)) != 2]).any()
    np.testing.assert_array_equal(y[3:8], [1.0, -1.0, 1.0, -1.0, 1.0])
    assert y[8] == -1.0
    np.testing.assert_array_equal(y[9:13], x[9:13])
    assert np.all(_ulps(y[13:], want[13:]) <= 4)
