"""checkpoint / remat: identical values and derivatives, fewer saved residuals,
policies, recomputation on the backward pass, composition with control flow, jit and
higher-order differentiation."""
import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import lax
from tracer import make_jaxpr, check_jaxpr
from transforms import (grad, jvp, vjp, jit, hessian, linearize, checkpoint, remat,
                        checkpoint_policies, print_saved_residuals, saved_residuals)
from tests.check_grads import check_grads

RNG = np.random.default_rng(0)
W = RNG.normal(size=(4, 4)) / 2
X = RNG.normal(size=4)


def g(w, x):
    y = pnp.sin(w @ x)
    return pnp.tanh(w @ y)


def f(w, x):
    return pnp.sum(g(w, x) ** 2)


def f_ck(policy=None):
    return lambda w, x: pnp.sum(checkpoint(g, policy=policy)(w, x) ** 2)


def nbytes(fun, *args, exclude_args=False):
    return sum(a.size * a.dtype.itemsize for a, d in saved_residuals(fun, *args)
               if not (exclude_args and d.startswith('from the argument')))


POLICIES = [None, checkpoint_policies.nothing_saveable, checkpoint_policies.dots_saveable,
            checkpoint_policies.dots_with_no_batch_dims_saveable,
            checkpoint_policies.everything_saveable]


@pytest.mark.parametrize('policy', POLICIES)
def test_values_and_gradients_are_identical(policy):
    fc = f_ck(policy)
    assert fc(W, X) == f(W, X)
    for a, b in zip(grad(fc, (0, 1))(W, X), grad(f, (0, 1))(W, X)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(jvp(fc, (W, X), (W, X))[1], jvp(f, (W, X), (W, X))[1],
                               rtol=1e-13)
    check_grads(fc, (W, X), order=2, modes=("fwd", "rev"))


def test_saved_residuals_per_policy():
    # plain: x, w, the two sincos outputs (cos for sin', sin for the next dot), 1 - tanh^2
    # and tanh (for the square)
    plain = saved_residuals(f, W, X)
    assert len(plain) == 6
    none = saved_residuals(f_ck(), W, X)
    assert [d for _, d in none][:2] == ['from the argument w', 'from the argument x']
    assert len(none) == 3 and none[2][1].startswith('output of tanh')   # the outer square
    dots = saved_residuals(f_ck(checkpoint_policies.dots_saveable), W, X)
    kinds = sorted(d.split(' from ')[0] if d.startswith('output') else d for _, d in dots)
    assert kinds == ['from the argument w', 'from the argument x', 'output of dot_general',
                     'output of dot_general', 'output of tanh']
    every = saved_residuals(f_ck(checkpoint_policies.everything_saveable), W, X)
    assert len(every) == len(plain)
    assert nbytes(f_ck(), W, X) < nbytes(f_ck(checkpoint_policies.dots_saveable), W, X) \
        < nbytes(f, W, X)


def test_print_saved_residuals(capsys):
    print_saved_residuals(f_ck(), W, X)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'f64[4,4] from the argument w'
    assert lines[1] == 'f64[4] from the argument x'
    assert lines[2].startswith('f64[4] output of tanh from test_checkpoint.py:')


def test_backward_pass_recomputes_inside_the_checkpoint():
    closed = make_jaxpr(grad(f_ck()))(W, X)
    check_jaxpr(closed)
    ck = [e for e in closed.jaxpr.eqns if e.primitive.name == 'checkpoint']
    assert len(ck) == 1 and ck[0].params['differentiated']
    inner = [e.primitive.name for e in ck[0].params['jaxpr'].jaxpr.eqns]
    assert inner.count('tanh') == 1 and inner.count('sincos') == 1   # recomputed
    # make_jaxpr of the checkpointed function shows it nested
    txt = str(make_jaxpr(checkpoint(g))(W, X))
    assert txt.splitlines()[1].strip().startswith(
        'c:f64[4] = checkpoint[differentiated=False jaxpr={ lambda ; d:f64[4,4] e:f64[4]. let')
    assert 'policy=None prevent_cse=True' in txt


def test_higher_order_and_jit():
    fc = f_ck()
    np.testing.assert_allclose(hessian(fc, 1)(W, X), hessian(f, 1)(W, X), rtol=1e-12)
    v = RNG.normal(size=4)
    np.testing.assert_allclose(jvp(grad(fc, 1), (W, X), (np.zeros_like(W), v))[1],
                               hessian(f, 1)(W, X) @ v, rtol=1e-12)
    np.testing.assert_allclose(grad(lambda x: grad(fc, 1)(W, x).sum())(X),
                               grad(lambda x: grad(f, 1)(W, x).sum())(X), rtol=1e-12)
    np.testing.assert_allclose(jit(grad(fc))(W, X), grad(f)(W, X), rtol=1e-14)
    np.testing.assert_allclose(grad(jit(fc))(W, X), grad(f)(W, X), rtol=1e-14)
    check_jaxpr(make_jaxpr(lambda x: jvp(grad(fc, 1), (W, x), (W, x))[1])(X))
    out, f_jvp = linearize(fc, W, X)
    np.testing.assert_allclose(f_jvp(W, X), jvp(f, (W, X), (W, X))[1], rtol=1e-13)


def test_decorator_forms_static_argnums_and_closures():
    @checkpoint
    def h(x):
        return pnp.sin(pnp.sin(x))

    @remat(policy=checkpoint_policies.dots_saveable, static_argnums=(1,))
    def k(x, n):
        for _ in range(n):
            x = pnp.cos(x)
        return x
    np.testing.assert_allclose(grad(lambda x: h(x).sum())(X), np.cos(np.sin(X)) * np.cos(X))
    np.testing.assert_allclose(grad(lambda x: k(x, 2).sum())(X), np.sin(np.cos(X)) * np.sin(X))
    # the checkpointed function closes over the differentiated variable
    def outer(w):
        return checkpoint(lambda x: pnp.sin(w * x))(X).sum()
    np.testing.assert_allclose(grad(outer)(0.7), (np.cos(0.7 * X) * X).sum(), rtol=1e-13)
    with pytest.raises(TypeError, match="policy must be callable"):
        checkpoint(g, policy='dots')


def test_stop_gradient_inside_checkpoint():
    fc = checkpoint(lambda x: x * lax.stop_gradient(x) + pnp.sin(x))
    np.testing.assert_allclose(grad(lambda x: fc(x).sum())(X), X + np.cos(X), rtol=1e-13)


# --- an RNN: checkpointed blocks of a scan -------------------------------------------------

H, T, K = 8, 40, 10


def rnn_loss(checkpointed, policy=None):
    def block(p, h, xb):
        w, u = p
        for k in range(K):
            h = pnp.tanh(w @ h + u @ xb[k])
        return h
    blk = checkpoint(block, policy=policy) if checkpointed else block

    def loss(p, xs):
        h, _ = lax.scan(lambda h, xb: (blk(p, h, xb), None), np.zeros(H), xs)
        return pnp.sum(h)
    return loss


def test_checkpointed_scan_blocks_save_less_with_identical_gradients():
    p = (RNG.normal(size=(H, H)) / 3, RNG.normal(size=(H, H)) / 3)
    xs = RNG.normal(size=(T // K, K, H))
    plain, ck = rnn_loss(False), rnn_loss(True)
    assert plain(p, xs) == ck(p, xs)
    for a, b in zip(grad(plain)(p, xs), grad(ck)(p, xs)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    # per block the plain scan stacks h_prev and 1 - h^2 for each of the K steps (the
    # slices xb[k] are not copied: xs is passed and sliced again); the checkpointed one
    # stacks the block's input carry only (and a broadcast seed of H values is common
    # to both)
    saved_plain = nbytes(plain, p, xs, exclude_args=True)
    saved_ck = nbytes(ck, p, xs, exclude_args=True)
    assert saved_plain == ((T // K) * K * 2 * H + H) * 8
    assert saved_ck == ((T // K) * H + H) * 8
    assert saved_plain / saved_ck > 1.5 * K
    check_jaxpr(make_jaxpr(grad(ck))(p, xs))
    np.testing.assert_allclose(jit(grad(ck))(p, xs)[0], grad(plain)(p, xs)[0], rtol=1e-13)
