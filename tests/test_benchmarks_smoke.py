"""Smoke test of the benchmark workloads at reduced size: the cotangent versions
(public API) and the hand-written NumPy versions compute the same numbers, and the
hand-written ones match finite differences. No timing is asserted."""
import numpy as np
import pytest

import primitives.numpy as pnp
from transforms import grad, jvp, value_and_grad
from tracer import make_jaxpr

from benchmarks import workloads as W
from benchmarks import report
from benchmarks.__main__ import _jobs


def _num_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


# --- the hand-written versions are right ---------------------------------------------------

def test_w1_numpy_grad_matches_finite_differences():
    x, _ = W.w1_data(size=5)
    f = W.make_chain(np, 30)
    np.testing.assert_allclose(W.w1_numpy_grad(x, 30), _num_grad(f, x), rtol=1e-6, atol=1e-8)


def test_w3_numpy_hvp_matches_finite_differences():
    a, x, v = W.w3_data(n=12)

    def g(x):  # the analytic gradient A^T (2 t (1 - t^2)) + x
        t = np.tanh(a @ x)
        return a.T @ (2 * t * (1 - t * t)) + x
    eps = 1e-6
    fd = (g(x + eps * v) - g(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(W.w3_numpy_hvp(a, x, v), fd, rtol=1e-6, atol=1e-8)
    gn = _num_grad(W.make_w3_f(np, a), x)
    np.testing.assert_allclose(g(x), gn, rtol=1e-6, atol=1e-8)


def test_w4_numpy_value_and_grad_matches_finite_differences():
    x = W.w4_data(n=7)
    f = W.make_w4_f(np)
    val, g = W.w4_numpy_value_and_grad(x)
    assert val == pytest.approx(f(x), rel=1e-12)
    np.testing.assert_allclose(g, _num_grad(f, x), rtol=1e-6, atol=1e-8)


def test_w2_numpy_grad_matches_finite_differences():
    params, x, onehot = W.w2_data(sizes=(6, 5, 4, 3), batch=4)
    p64 = tuple(p.astype(np.float64) for p in params)
    x64, o64 = x.astype(np.float64), onehot.astype(np.float64)
    got = W.w2_numpy_grad(p64, x64, o64)
    for i, p in enumerate(p64):
        def fi(pi, i=i):
            ps = list(p64)
            ps[i] = pi.reshape(p.shape)
            return W.w2_numpy_loss(tuple(ps), x64, o64)
        fd = _num_grad(fi, p.ravel()).reshape(p.shape)
        np.testing.assert_allclose(got[i], fd, rtol=1e-5, atol=1e-8)
        assert got[i].shape == p.shape


# --- cotangent agrees with them --------------------------------------------------------------

def test_w1_cotangent_grad_and_forward():
    x, _ = W.w1_data()
    f = W.make_chain(pnp, 30)
    np.testing.assert_allclose(grad(f)(x), W.w1_numpy_grad(x, 30), rtol=1e-10, atol=1e-12)
    assert float(f(x)) == pytest.approx(float(W.make_chain(np, 30)(x)), rel=1e-12)


def test_w2_cotangent_grad_float32():
    params, x, onehot = W.w2_data(sizes=(20, 16, 12, 5), batch=8)
    got = grad(W.make_mlp_loss(pnp))(params, x, onehot)
    want = W.w2_numpy_grad(params, x, onehot)
    assert isinstance(got, tuple) and len(got) == 6
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def test_w3_cotangent_hvp():
    a, x, v = W.w3_data(n=16)
    hvp = jvp(grad(W.make_w3_f(pnp, a)), (x,), (v,))[1]
    np.testing.assert_allclose(hvp, W.w3_numpy_hvp(a, x, v), rtol=1e-10, atol=1e-12)


def test_w4_cotangent_value_and_grad():
    x = W.w4_data(n=1000)
    val, g = value_and_grad(W.make_w4_f(pnp))(x)
    want_val, want_g = W.w4_numpy_value_and_grad(x)
    assert float(val) == pytest.approx(float(want_val), rel=1e-12)
    np.testing.assert_allclose(g, want_g, rtol=1e-10, atol=1e-12)


def test_w5_equation_counts():
    x, v = W.w1_data(size=4)
    f = W.make_chain(pnp, 20)
    top, total = W.count_eqns(make_jaxpr(f)(x))
    assert top == total == 21             # 20 ops and the sum
    gtop, gtotal = W.count_eqns(make_jaxpr(grad(f))(x))
    assert gtop == gtotal and gtop > 21
    htop, _ = W.count_eqns(make_jaxpr(lambda x, v: jvp(grad(f), (x,), (v,))[1])(x, v))
    assert htop > gtop


# --- the report ------------------------------------------------------------------------------

def test_only_option_and_report_rows():
    assert _jobs('w1,W3') == ['W1', 'W3']
    assert _jobs('W5') == ['W5', 'W5-scale']
    with pytest.raises(SystemExit):
        _jobs('W99')
    cot = {'side': 'cotangent', 'records': [{
        'workload': 'W3', 'metric': 'hvp', 'kind': 'ratio', 'numpy_seconds': 2e-5,
        'seconds': {'cotangent': 1e-4}, 'ratios': {'cotangent': 5.0}, 'errors': {}}]}
    jax = {'side': 'jax', 'records': [{
        'workload': 'W3', 'metric': 'hvp', 'kind': 'ratio', 'numpy_seconds': 2e-5,
        'seconds': {'jax_jit': 2.5e-5}, 'ratios': {'jax_jit': 1.25},
        'errors': {'jax': 'ValueError: boom'}}]}
    torch = report.placeholder('W3', 'torch', 'not installed (torch)')
    rows = report.build_rows([cot, jax, torch])
    assert len(rows) == 1 and rows[0]['status'] == 'PASS' and rows[0]['measured'] == 5.0
    lines = report.format_table(rows).splitlines()
    assert lines[0].split()[:3] == ['workload', 'metric', 'cotangent']
    cells = lines[2].split()
    assert cells[-9:] == ['5.00', '1.00', 'ERR', '1.25', '—', '—', '<=', '6x', 'PASS']
    notes = report.format_notes(rows)
    assert 'ValueError: boom' in notes and 'not installed (shown as —): torch' in notes


def test_w5_rows_compare_with_jax():
    cot = {'side': 'cotangent', 'records': [{
        'workload': 'W5', 'metric': 'make_jaxpr', 'kind': 'w5', 'n_ops': 2000,
        'seconds': {'f': 0.01, 'grad': 0.1, 'hvp': 0.5},
        'counts': {'f': (2001, 2001), 'grad': (4000, 4000), 'hvp': (13000, 13000)},
        'errors': {}}]}
    jax = {'side': 'jax', 'records': [{
        'workload': 'W5', 'metric': 'make_jaxpr', 'kind': 'w5', 'n_ops': 2000,
        'seconds': {'f': 0.05, 'grad': 0.4, 'hvp': 0.8},
        'counts': {'f': (2001, 2001), 'grad': (6202, 6202), 'hvp': (19602, 19602)},
        'errors': {}}]}
    rows = {r['key']: r for r in report.build_rows([cot, jax])}
    assert rows['time_f']['measured'] == pytest.approx(5.0) and rows['time_f']['status'] == 'PASS'
    assert rows['time_grad']['measured'] == pytest.approx(0.25)
    assert rows['time_hvp']['status'] == 'MISS'            # 0.625x JAX > 0.3x
    assert rows['eqns_grad']['status'] == 'PASS'           # 4000 / 6202 = 0.645
    assert rows['eqns_hvp']['status'] == 'MISS'            # 13000 / 19602 = 0.663
    assert rows['eqns_f']['status'] == ''


def test_paired_ratio_and_interleaved_sampling():
    from benchmarks.harness import Settings, time_interleaved, paired_ratio
    assert paired_ratio({'a': [2.0, 9.0, 2.5], 'n': [1.0, 3.0, 1.0]}, 'a', 'n') == 2.5
    assert paired_ratio({'n': [1.0]}, 'a', 'n') is None
    calls = []
    settings = Settings(quick=True)
    settings.samples, settings.max_calls = 3, 2

    def boom():
        raise ValueError('boom')
    times, errors, other, rounds = time_interleaved(
        {'ok': lambda: calls.append(1), 'bad': boom}, settings)
    assert errors == {'bad': 'ValueError: boom'} and times['bad'] is None
    assert len(rounds['ok']) == 3 and times['ok'] >= 0 and other['ok'] >= 0
    # warm-up, calibration, then 3 samples of at most max_calls calls each
    assert settings.warmup + 1 + 3 <= len(calls) <= settings.warmup + 1 + 3 * 2


# --- W6 and PEG (jacobians and per-example gradients, on vmap) ------------------------------

def test_w6_cotangent_jacobians_match_hand_version():
    from transforms import jacfwd, jacrev
    w, x = W.w6_data(n=12)
    g = W.make_w6_g(pnp, w)
    want = W.w6_numpy_jacobian(w, x)
    num = np.stack([_num_grad(lambda v: W.make_w6_g(np, w)(v)[i], x) for i in range(12)])
    np.testing.assert_allclose(want, num, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(jacrev(g)(x), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(jacfwd(g)(x), want, rtol=1e-12, atol=1e-14)


def test_peg_per_example_gradients_match_hand_version_and_loop():
    from transforms import vmap
    params, x, onehot = W.w2_data(sizes=(20, 16, 12, 5), batch=6)
    loss_one = W.make_mlp_loss_one(pnp)
    got = vmap(grad(loss_one), in_axes=(None, 0, 0))(params, x, onehot)
    want = W.peg_numpy_grads(params, x, onehot)
    loop = [grad(loss_one)(params, x[i], onehot[i]) for i in range(6)]
    for k, (g, w) in enumerate(zip(got, want)):
        assert g.shape == (6,) + params[k].shape and g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(g, np.stack([l[k] for l in loop]), rtol=1e-5, atol=1e-7)
    # the batch mean of per-example gradients is the W2 gradient
    batch = W.w2_numpy_grad(params, x, onehot)
    for g, b in zip(got, batch):
        np.testing.assert_allclose(g.mean(0), b, rtol=1e-4, atol=1e-6)


def test_peg_and_w6_report_rows():
    def rec(wid, metric, ratios):
        return {'workload': wid, 'metric': metric, 'kind': 'ratio', 'numpy_seconds': 1e-3,
                'seconds': {k: v * 1e-3 for k, v in ratios.items()}, 'ratios': ratios,
                'errors': {}}
    cot = {'side': 'cotangent', 'records': [
        rec('W6', 'jacrev', {'cotangent': 19.0}), rec('W6', 'jacfwd', {'cotangent': 21.0}),
        rec('PEG', 'vmap_grad', {'cotangent': 1.1}), rec('PEG', 'loop_grad', {'cotangent': 3.3})]}
    torch = {'side': 'torch', 'records': [rec('PEG', 'vmap_grad', {'torch': 2.0})]}
    rows = {(r['workload'], r['key']): r for r in report.build_rows([cot, torch])}
    assert rows[('W6', 'jacrev')]['status'] == 'PASS'
    assert rows[('W6', 'jacfwd')]['status'] == 'MISS'
    assert rows[('PEG', 'vmap_grad')]['status'] == 'PASS'
    assert rows[('PEG', 'vmap_grad')]['target'] == '<= torch'
    speed = rows[('PEG', 'speedup')]
    assert speed['measured'] == pytest.approx(3.0) and speed['status'] == 'MISS'
    assert _jobs('w6,peg') == ['W6', 'PEG']
    assert 'PEG' in report.format_table(list(rows.values()))


def test_workload_data_start_on_cache_lines_with_the_generators_values():
    """Every data array is 64-byte aligned (BLAS speed depends on it, see
    workloads.ALIGN) and holds what the seeded generator drew."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((W.W3_SIZE, W.W3_SIZE)) / 16.0
    x = rng.standard_normal(W.W3_SIZE)
    got = W.w3_data()
    np.testing.assert_array_equal(got[0], a)
    np.testing.assert_array_equal(got[1], x)
    params, xs, onehot = W.w2_data(sizes=(6, 5, 3), batch=4)
    for arr in (*W.w1_data(), *got, *params, xs, onehot, W.w4_data(n=100),
                *W.rnn_data(T=3)[0]):
        assert arr.ctypes.data % W.ALIGN == 0
        assert arr.flags.c_contiguous and arr.flags.writeable
    for shape, dtype in [((7,), np.float32), ((3, 5), np.float64), ((), np.float64),
                         ((0, 4), np.float32)]:
        src = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
        out = W.aligned(src)
        assert out.shape == shape and out.dtype == dtype
        assert out.size == 0 or out.ctypes.data % W.ALIGN == 0
        np.testing.assert_array_equal(out, src)
