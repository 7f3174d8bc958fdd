"""Top-level jvp of grad by replay (transforms/replay.py, tracer/record.py): the
function is recorded on every call, the transform of its structure is staged once
and replayed. Checked against the eager dual-number path (replay switched off)
and numerical differences, and for eager semantics: control flow on values, side
effects once per call, fresh constants and literals, errors, leaks."""
import importlib
import weakref

import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import lax
from tracer import make_jaxpr, UnexpectedTracerError
from tracer.record import record, structure_key, lift_literals
from tracer import tree_flatten
from transforms import grad, jvp, value_and_grad, hessian

replay = importlib.import_module("transforms.replay")
RNG = np.random.default_rng(5)


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    monkeypatch.setattr(replay, '_cache', {})
    monkeypatch.setattr(replay, '_misses', weakref.WeakKeyDictionary())


def _eager(monkeypatch, fun, primals, tangents):
    with monkeypatch.context() as m:
        m.setattr(replay, 'ENABLED', False)
        return jvp(fun, primals, tangents)


def _numerical_hvp(f, x, v, eps=1e-6):
    g = grad(f)
    return (g(x + eps * v) - g(x - eps * v)) / (2 * eps)


def _w3(a):
    return lambda x: pnp.sum(pnp.tanh(a @ x) ** 2) + 0.5 * pnp.sum(x ** 2)


FUNCS = {
    'w3': lambda n: _w3(RNG.standard_normal((n, n)) / n),
    'softplus': lambda n: (lambda x: pnp.sum(pnp.log1p(pnp.exp(x)) * pnp.cos(x))),
    'ratio': lambda n: (lambda x: pnp.sum(x / (1.0 + x * x)) * pnp.max(pnp.sin(x))),
    'numpy': lambda n: (lambda x: np.sum(np.sqrt(np.exp(x) + x ** 4))),
}


@pytest.mark.parametrize('name', sorted(FUNCS))
@pytest.mark.parametrize('n', [1, 3, 17])
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_hvp_matches_eager_and_numerical(monkeypatch, name, n, dtype):
    f = FUNCS[name](n)
    x = RNG.uniform(-1, 1, n).astype(dtype)
    v = RNG.standard_normal(n).astype(dtype)
    want = _eager(monkeypatch, grad(f), (x,), (v,))
    for _ in range(3):      # staged on the first call, replayed after
        got = jvp(grad(f), (x,), (v,))
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and a.shape == b.shape
            tol = 1e-12 if dtype == np.float64 else 2e-5
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
    assert len(replay._cache) == 1
    if dtype == np.float64:
        np.testing.assert_allclose(got[1], _numerical_hvp(f, x, v), rtol=1e-6, atol=1e-7)


def test_same_numbers_every_call_and_outputs_are_fresh():
    f = FUNCS['w3'](8)
    x, v = RNG.standard_normal(8), RNG.standard_normal(8)
    g1, h1 = jvp(grad(f), (x,), (v,))
    g1c, h1c = g1.copy(), h1.copy()
    g1[:] = 7.0
    h1[:] = 7.0
    g2, h2 = jvp(grad(f), (x,), (v,))
    np.testing.assert_array_equal(g2, g1c)
    np.testing.assert_array_equal(h2, h1c)
    assert g2 is not g1 and h2 is not h1


def test_control_flow_follows_values(monkeypatch):
    """Python branches on traced values: each call records the branch it takes."""
    def f(x):
        if pnp.sum(x) > 0:
            return pnp.sum(pnp.sin(x) ** 3)
        return pnp.sum(pnp.exp(x) * x)
    x = RNG.uniform(0.1, 1, 5)
    v = RNG.standard_normal(5)
    for sign in (1, -1, 1, -1):
        got = jvp(grad(f), (sign * x,), (v,))
        want = _eager(monkeypatch, grad(f), (sign * x,), (v,))
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-13)
    assert len(replay._cache) == 2


def test_values_read_with_float_and_item(monkeypatch):
    def f(x):
        s = float(pnp.max(x))           # a number: no derivative through it
        k = int(pnp.argmax(x).item())
        return pnp.sum(x ** 3) * s + x[k] ** 2
    for x in (np.array([0.5, 2.0, -1.0]), np.array([3.0, 1.0, 0.25])):
        v = np.array([1.0, -2.0, 0.5])
        got = jvp(grad(f), (x,), (v,))
        want = _eager(monkeypatch, grad(f), (x,), (v,))
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-13)


def test_side_effects_once_per_call():
    calls = []

    def f(x):
        calls.append(1)
        return pnp.sum(pnp.sin(x) ** 2)
    x, v = RNG.standard_normal(4), RNG.standard_normal(4)
    for i in range(4):
        jvp(grad(f), (x,), (v,))
        assert len(calls) == i + 1


def test_constants_and_literals_are_read_on_every_call(monkeypatch):
    """A closed-over array changed in place, and a Python float that changes
    every call (a time step), are inputs of the cached transform, not part of it."""
    a = RNG.standard_normal((4, 4))
    x, v = RNG.standard_normal(4), RNG.standard_normal(4)
    for t in (0.5, 1.25, -3.0):
        a *= 1.5
        f = lambda x: pnp.sum(pnp.tanh(a @ x) ** 2) * t + t * pnp.sum(x ** 2)
        got = jvp(grad(f), (x,), (v,))
        want = _eager(monkeypatch, grad(f), (x,), (v,))
        for p, q in zip(got, want):
            np.testing.assert_allclose(p, q, rtol=1e-13)
    # the transform for t = 0.5 built in, and the one taking t as an input
    assert len(replay._cache) == 2


def test_signed_zero_literals_are_passed_as_values(monkeypatch):
    """Floating literals are inputs of the cached transform, passed with their
    sign: arctan2(x * z, -1) is pi at z = +0.0 and -pi at z = -0.0."""
    x, v = np.array([1.0, 2.0]), np.array([1.0, -3.0])
    tree = tree_flatten((x,))[1]
    keys = []
    for z in (0.0, -0.0, 0.0, -0.0):
        f = lambda x: pnp.sum(x ** 2 * pnp.arctan2(x * z, -1.0))
        got = jvp(grad(f), (x,), (v,))
        want = _eager(monkeypatch, grad(f), (x,), (v,))
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        sign = -1.0 if np.signbit(z) else 1.0
        np.testing.assert_allclose(got[1], sign * 2 * np.pi * v, rtol=1e-15)
        key, lits = structure_key(record(f, [x], tree, 'grad')[0])
        keys.append(key)
    # +0.0 built into one transform; -0.0 passed to the one taking literals as inputs
    assert keys[0] == keys[1] and len(replay._cache) == 2


def test_zero_tangent_stays_symbolic():
    """A zero tangent gives exact zeros even where the second derivative is not
    finite (eager jvp keeps it symbolic; so does the staged transform)."""
    f = lambda x: pnp.sum(pnp.sqrt(x) * x)
    x = np.array([0.0, 1.0, 4.0])
    for _ in range(2):
        g, h = jvp(grad(f), (x,), (np.zeros(3),))
        np.testing.assert_array_equal(h, np.zeros(3))
        assert h.flags.writeable
        h[:] = 5.0          # the next call's zeros are not this array


def test_value_and_grad_argnums_and_pytrees(monkeypatch):
    def f(p, x):
        return pnp.sum(pnp.tanh(p['w'] @ x + p['b']) ** 2)
    p = {'w': RNG.standard_normal((3, 4)), 'b': RNG.standard_normal(3)}
    x = RNG.standard_normal(4)
    tp = {'w': RNG.standard_normal((3, 4)), 'b': RNG.standard_normal(3)}
    tx = RNG.standard_normal(4)
    for fun in (value_and_grad(f), grad(f, argnums=(0, 1)), grad(f, argnums=1)):
        for _ in range(2):
            got = jvp(fun, (p, x), (tp, tx))
            want = _eager(monkeypatch, fun, (p, x), (tp, tx))
            gl, gt = tree_flatten(got)
            wl, wt = tree_flatten(want)
            assert gt == wt
            for a, b in zip(gl, wl):
                np.testing.assert_allclose(a, b, rtol=1e-13)


def test_hvp_against_hessian():
    f = FUNCS['ratio'](5)
    x, v = RNG.uniform(-1, 1, 5), RNG.standard_normal(5)
    np.testing.assert_allclose(jvp(grad(f), (x,), (v,))[1], hessian(f)(x) @ v, rtol=1e-12)


def test_errors_as_in_eager_mode(monkeypatch):
    x, v = np.ones(3), np.ones(3)
    for f, err in ((lambda x: pnp.sin(x), TypeError),
                   (lambda x: pnp.sum(pnp.ones(4) @ x), ValueError)):
        with pytest.raises(err) as eager:
            _eager(monkeypatch, grad(f), (x,), (v,))
        with pytest.raises(err) as replayed:
            jvp(grad(f), (x,), (v,))
        # (the same message; each names its own call site)
        assert str(replayed.value).split('test_replay.py')[0] == \
            str(eager.value).split('test_replay.py')[0]
        assert ('scalar' if err is TypeError else 'matmul') in str(replayed.value)


def test_leaked_tracer_names_the_transform():
    kept = []

    def f(x):
        kept.append(x)
        return pnp.sum(x ** 2)
    jvp(grad(f), (np.ones(2),), (np.ones(2),))
    with pytest.raises(UnexpectedTracerError, match="grad"):
        pnp.sin(kept[0])


def test_integer_inputs_and_nested_calls_run_eagerly():
    """Only floating arrays at the top level are replayed: an integer argument, or
    jvp of grad inside another transform, takes the eager (or staged) path."""
    f = lambda x, k: pnp.sum(pnp.sin(x) ** k)
    x, v = RNG.standard_normal(3), RNG.standard_normal(3)
    g, h = jvp(grad(f), (x, 3), (v, np.zeros((), dtype=[('float0', 'V', 0)])))
    np.testing.assert_allclose(h, _numerical_hvp(lambda x: f(x, 3), x, v), rtol=1e-6)
    assert len(replay._cache) == 0
    hv = lambda x, v: jvp(grad(lambda x: f(x, 3)), (x,), (v,))[1]
    jaxpr = make_jaxpr(hv)(x, v)
    assert len(replay._cache) == 0 and len(jaxpr.eqns) > 0


def test_changing_structure_falls_back_to_eager(monkeypatch):
    """A function whose shapes change on every call stops being staged after
    MAX_MISSES structures; its results stay right."""
    f = lambda x: pnp.sum(pnp.sin(x) ** 2)
    for n in range(1, replay.MAX_MISSES + 4):
        x, v = RNG.standard_normal(n), RNG.standard_normal(n)
        got = jvp(grad(f), (x,), (v,))[1]
        np.testing.assert_allclose(got, 2 * np.cos(2 * x) * v, rtol=1e-12, atol=1e-14)
    assert len(replay._cache) == replay.MAX_MISSES + 1


def test_generated_function_frees_values():
    import dis
    from primitives._jaxpr_util import python_fn
    f = lambda x: pnp.sum(pnp.exp(pnp.sin(x) * 2.0) + 1.0)
    closed = make_jaxpr(f)(np.ones(3))
    x = RNG.standard_normal(3)
    freeing, keeping = python_fn(closed, free=True), python_fn(closed)
    assert freeing(x)[0] == keeping(x)[0]
    ops = lambda fn: [i.opname for i in dis.get_instructions(fn)]
    # the argument, then sin's, mul's and exp's results (add's is read by the last)
    assert ops(freeing).count('DELETE_FAST') == 4
    assert 'DELETE_FAST' not in ops(keeping)


def test_lift_literals_keeps_the_program():
    f = lambda x: pnp.sum(x * 2.5 + 0.5) * 3
    x = RNG.standard_normal(4)
    jaxpr, consts, _ = record(f, [x], tree_flatten((x,))[1], 'grad')
    key, lits = structure_key(jaxpr)
    lifted = lift_literals(jaxpr)
    assert len(lifted.constvars) == len(consts) + len(lits)
    from tracer import eval_jaxpr
    np.testing.assert_allclose(eval_jaxpr(lifted, list(consts) + lits, x)[0], f(x))
    key2, lits2 = structure_key(record(lambda x: pnp.sum(x * 7.0 + 1.5) * 3, [x],
                                       tree_flatten((x,))[1], 'grad')[0])
    assert key2 == key and lits2 == [7.0, 1.5, 3.0]   # (the int 3 is promoted)


def test_each_literal_value_gives_the_same_numbers_every_call():
    """The first value of a literal has its own transform, later values share the
    one taking it as an input: either way, a value's results do not depend on the
    calls before."""
    x, v = RNG.standard_normal(6), RNG.standard_normal(6)
    seen = {}
    for t in (0.3, 0.7, 0.3, 1.9, 0.7, 0.3, 1.9):
        f = lambda x: pnp.sum(pnp.sin(x * t) ** 2) * t
        g, h = jvp(grad(f), (x,), (v,))
        if t in seen:
            np.testing.assert_array_equal(g, seen[t][0])
            np.testing.assert_array_equal(h, seen[t][1])
        seen[t] = (g, h)
        np.testing.assert_allclose(h, 2 * t ** 3 * np.cos(2 * t * x) * v, rtol=1e-12)
    assert len(replay._cache) == 2


def test_outputs_never_alias_inputs_or_constants(monkeypatch):
    """grad of sum(x * a) is a itself in the staged program, and the HVP of
    sum(x ** 2) / 2 is v: the results are copies, as eager mode's are."""
    a = np.arange(3.0)
    x, v = np.ones(3), np.full(3, 2.0)
    for _ in range(2):
        g, h = jvp(grad(lambda x: pnp.sum(x * a)), (x,), (v,))
        assert not np.shares_memory(g, a)
        g2, h2 = jvp(grad(lambda x: 0.5 * pnp.sum(x ** 2)), (x,), (v,))
        assert not np.shares_memory(h2, v) and not np.shares_memory(g2, x)
        np.testing.assert_array_equal(h2, v)
        g[:] = -1.0
        h2[:] = -1.0
    np.testing.assert_array_equal(a, np.arange(3.0))
    np.testing.assert_array_equal(v, np.full(3, 2.0))


def test_bad_argnums_raise_before_the_function_runs():
    calls = []

    def f(x):
        calls.append(1)
        return pnp.sum(x ** 2)
    with pytest.raises(ValueError, match="argnums"):
        jvp(grad(f, argnums=2), (np.ones(2),), (np.ones(2),))
    assert calls == []


def _two_reads(x):
    y = pnp.sin(x) * 2.0
    if pnp.max(y) > 0.5:            # the second read needs equations after the first
        y = y * x
    if float(pnp.sum(y)) > 0:
        return pnp.sum(y ** 2)
    return pnp.sum(pnp.exp(y))


_A = np.random.default_rng(2).standard_normal((4, 4))


def _reads_a_constant(x):
    y = _A @ x                      # the value read below needs the constant _A
    if pnp.sum(y) > 0:
        return pnp.sum(pnp.tanh(y) ** 2)
    return pnp.sum(pnp.sin(y) * x)


SEMANTICS = {
    'two_reads': _two_reads,
    'constant': _reads_a_constant,
    # values asked for while recording: a boolean mask, a loop count, nonzero()
    'mask': lambda x: pnp.sum(pnp.sin(x[x > 0]) ** 3),
    'loop_count': lambda x: pnp.sum(lax.fori_loop(0, int(pnp.sum(x > 0)),
                                                  lambda i, y: pnp.sin(y) * y, x)),
    'nonzero': lambda x: pnp.sum(pnp.exp(x[(x > 0.5).nonzero()]) * x[0]),
    'where': lambda x: pnp.sum(pnp.where(x > 0, x ** 3, pnp.sin(x))),
    # higher-order primitives in the recorded program
    'cond': lambda x: pnp.sum(lax.cond(pnp.sum(x) > 0, lambda y: pnp.sin(y) ** 2,
                                       lambda y: pnp.cos(y) * y, x)),
    'scan': lambda x: pnp.sum(lax.scan(lambda c, y: (c * pnp.sin(y), c), 1.0, x)[0]),
}


@pytest.mark.parametrize('name', sorted(SEMANTICS))
def test_programs_that_read_values_or_nest_jaxprs(monkeypatch, name):
    f = SEMANTICS[name]
    for x in (np.array([0.3, -1.2, 2.0, 0.7]), np.array([-0.3, -1.2, 0.6, -0.7])):
        v = np.array([1.0, 0.5, -2.0, 0.25])
        want = _eager(monkeypatch, grad(f), (x,), (v,))
        for _ in range(2):
            got = jvp(grad(f), (x,), (v,))
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_traced_values_print_as_in_eager_mode(monkeypatch, capsys):
    f = lambda x: (print(x), pnp.sum(x ** 4))[1]
    x = np.ones(2)
    _eager(monkeypatch, grad(f), (x,), (x,))
    eager = capsys.readouterr().out
    jvp(grad(f), (x,), (x,))
    assert capsys.readouterr().out == eager == "Traced<f64[2]>with<grad>\n"


def test_interpreted_and_generated_functions_make_the_same_calls():
    """The first use of a staged transform interprets `plan`'s calls; later uses
    run their generated code: bit-identical, folded sums of outer products and
    multiple-result equations included."""
    from primitives._jaxpr_util import python_fn, interpreted_fn, plan
    xs = [RNG.standard_normal(5) for _ in range(4)]

    def unrolled(w):                 # w's cotangent: a sum of four outer products
        h = pnp.zeros(5)
        for x in xs:
            h = pnp.tanh(w @ x + h)
        return pnp.sum(h ** 2)
    w = RNG.standard_normal((5, 5)) / 3
    for fun, args in ((grad(unrolled), (w,)),
                      (lambda x: pnp.split(pnp.sin(x), 2)[1] * 2.0, (np.arange(4.0),))):
        closed = make_jaxpr(fun)(*args)
        steps, _ = plan(closed.jaxpr)
        a = interpreted_fn(closed)(*args)
        b = python_fn(closed, free=True)(*args)
        c = python_fn(closed)(*args)
        for x, y, z in zip(a, b, c):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)
    assert any(fn is None for fn, *_ in steps) is False   # (the split: no folding)
    steps, dead = plan(make_jaxpr(grad(unrolled))(w).jaxpr, free=True)
    assert any(fn is None for fn, *_ in steps) and dead is None


def test_callable_objects_are_not_kept_alive():
    import gc

    class Model:
        def __init__(self):
            self.w = RNG.standard_normal((3, 3))

        def __call__(self, x):
            return pnp.sum(pnp.tanh(self.w @ x) ** 2)
    m = Model()
    x = np.ones(3)
    np.testing.assert_allclose(jvp(grad(m), (x,), (x,))[1],
                               _numerical_hvp(m, x, x), rtol=1e-6)
    ref = weakref.ref(m)
    del m
    gc.collect()
    assert ref() is None


# primitives.numpy's differentiable functions: (function, low, high) of the sampled x
UNARY_SWEEP = {
    'exp': (pnp.exp, -2, 2), 'log': (pnp.log, 0.5, 3), 'log1p': (pnp.log1p, -0.5, 2),
    'expm1': (pnp.expm1, -2, 2), 'sin': (pnp.sin, -2, 2), 'cos': (pnp.cos, -2, 2),
    'tan': (pnp.tan, -1.2, 1.2), 'tanh': (pnp.tanh, -2, 2), 'sqrt': (pnp.sqrt, 0.5, 3),
    'abs': (pnp.abs, 0.3, 2), 'arctan': (pnp.arctan, -2, 2), 'sinh': (pnp.sinh, -2, 2),
    'cosh': (pnp.cosh, -2, 2), 'arcsinh': (pnp.arcsinh, -2, 2), 'square': (pnp.square, -2, 2),
    'reciprocal': (pnp.reciprocal, 0.5, 2), 'cbrt': (pnp.cbrt, 0.5, 2),
}
BINARY_SWEEP = {
    'multiply': pnp.multiply, 'divide': lambda a, b: pnp.divide(a, b + 3.0),
    'power': lambda a, b: pnp.power(pnp.abs(a) + 0.5, b), 'maximum': pnp.maximum,
    'minimum': pnp.minimum, 'arctan2': pnp.arctan2, 'hypot': pnp.hypot,
    'logaddexp': pnp.logaddexp, 'subtract': pnp.subtract,
}


def _sweep_check(monkeypatch, f, x, v):
    want = _eager(monkeypatch, grad(f), (x,), (v,))
    tol = dict(rtol=1e-12, atol=1e-12) if x.dtype == np.float64 else \
        dict(rtol=3e-5, atol=3e-5)
    first = None
    for _ in range(3):      # interpreted, then compiled, then compiled again
        got = jvp(grad(f), (x,), (v,))
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_allclose(a, b, **tol)
        if first is None:
            first = got
        for a, b in zip(got, first):
            np.testing.assert_array_equal(a, b)
    if x.dtype == np.float64:
        np.testing.assert_allclose(got[1], _numerical_hvp(f, x, v), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', sorted(UNARY_SWEEP))
@pytest.mark.parametrize('shape', [(), (3,), (2, 3)])
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_sweep_unary(monkeypatch, name, shape, dtype):
    fn, lo, hi = UNARY_SWEEP[name]
    w = RNG.standard_normal(shape)
    f = lambda x: pnp.sum(fn(x) * w * fn(x))
    x = RNG.uniform(lo, hi, shape).astype(dtype)
    _sweep_check(monkeypatch, f, x, RNG.standard_normal(shape).astype(dtype))


@pytest.mark.parametrize('name', sorted(BINARY_SWEEP))
@pytest.mark.parametrize('shape', [(), (3,), (2, 3)])
def test_sweep_binary(monkeypatch, name, shape):
    fn = BINARY_SWEEP[name]
    f = lambda x: pnp.sum(fn(x, pnp.cos(x) * 1.5) ** 2)
    x = RNG.uniform(-1.5, 1.5, shape)
    _sweep_check(monkeypatch, f, x, RNG.standard_normal(shape))


def test_programs_not_replayed_run_on_the_recording(monkeypatch):
    """A program over MAX_EQNS is transformed eagerly on its recording (that call)
    and not recorded again; zero tangents stay symbolic on that path too."""
    monkeypatch.setattr(replay, 'MAX_EQNS', 3)
    f = lambda x, y: pnp.sum(pnp.sin(x) * y + pnp.exp(y) * x)
    x, y = RNG.standard_normal(3), RNG.standard_normal(3)
    tx, ty = np.zeros(3), RNG.standard_normal(3)
    want = _eager(monkeypatch, grad(f, argnums=(0, 1)), (x, y), (tx, ty))
    for _ in range(2):
        got = jvp(grad(f, argnums=(0, 1)), (x, y), (tx, ty))
        for a, b in zip(tree_flatten(got)[0], tree_flatten(want)[0]):
            np.testing.assert_array_equal(a, b)
    assert len(replay._cache) == 0 and replay._misses[f.__code__] is replay._NEVER
