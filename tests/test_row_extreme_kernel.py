"""The one-pass max/min over matrix rows with the mask of where each row attains it
(primitives/_kernels.row_extreme_mask), which eager linearization of reduce_max /
reduce_min over the last axis uses: NumPy's values bit for bit, and a decline
wherever NumPy's path must decide (ties, NaN, zeros, other layouts)."""
import numpy as np
import pytest

import primitives.numpy as pnp
import primitives.reductions as red
from primitives._kernels import row_extreme_mask
from transforms import grad, value_and_grad
from tests.check_grads import check_grads

RNG = np.random.default_rng(21)
UFUNC = {True: np.maximum, False: np.minimum}


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('shape', [(128, 10), (1, 7), (9, 1), (3, 200)])
@pytest.mark.parametrize('for_max', [True, False])
def test_values_and_mask_are_numpys(dtype, shape, for_max):
    x = RNG.standard_normal(shape).astype(dtype)
    x[0, -1] = np.inf if for_max else -np.inf      # infinities are values like others
    out, mask = row_extreme_mask(x, for_max)
    want = UFUNC[for_max].reduce(x, axis=1)
    assert out.dtype == dtype and mask.dtype == dtype and mask.shape == shape
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(mask, (x == want[:, None]).astype(dtype))


def _with(x, i, j, v):
    x = x.copy()
    x[i, j] = v
    return x


X = RNG.standard_normal((5, 6))


@pytest.mark.parametrize('x,which', [
    (_with(X, 2, 3, X[2].max()), (True,)),        # a tie for the max (the min is fine)
    (_with(X, 2, 3, X[2].min()), (False,)),
    (_with(X, 1, 0, np.nan), (True, False)), (_with(X, 1, 5, np.nan), (True, False)),
    (_with(X, 4, 2, np.nan), (True, False)),
    (np.zeros((3, 4)), (True, False)),              # zero extremes: NumPy settles the sign
    (X - X.max(axis=1, keepdims=True), (True,)),   # rows whose max is 0
    (np.asfortranarray(X), (True, False)), (X[:, ::2], (True, False)),   # layouts
    (X.reshape(5, 3, 2), (True, False)), (X.astype(np.float16), (True, False)),
    (X.astype(np.int64), (True, False)),
    (np.zeros((0, 3)), (True, False)), (np.zeros((3, 0)), (True, False)),
], ids=['tie max', 'tie min', 'nan first', 'nan last', 'nan middle', 'zeros',
        'zero max', 'fortran', 'strided', '3-d', 'float16', 'int', 'no rows', 'no cols'])
def test_declines(x, which):
    for for_max in which:
        assert row_extreme_mask(x, for_max) is None
    for for_max in {True, False} - set(which):
        out, mask = row_extreme_mask(x, for_max)
        np.testing.assert_array_equal(out, UFUNC[for_max].reduce(x, axis=1))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_linearization_is_the_numpy_paths(monkeypatch, dtype):
    """The grad of a softmax-style loss is the one of the mask computed in NumPy, bit
    for bit, and the numerical derivative."""
    x = RNG.standard_normal((32, 10)).astype(dtype)
    onehot = np.eye(10, dtype=dtype)[RNG.integers(0, 10, 32)]

    def loss(x):
        m = pnp.max(x, axis=1, keepdims=True)
        lse = m + pnp.log(pnp.sum(pnp.exp(x - m), axis=1, keepdims=True))
        return pnp.mean(lse - pnp.sum(x * onehot, axis=1, keepdims=True))
    calls = []
    real = red.row_extreme_mask
    monkeypatch.setattr(red, 'row_extreme_mask',
                        lambda x, f: calls.append(1) or real(x, f))
    v, g = value_and_grad(loss)(x)
    assert calls
    monkeypatch.setattr(red, 'row_extreme_mask', lambda x, f: None)
    v2, g2 = value_and_grad(loss)(x)
    assert v == v2
    np.testing.assert_array_equal(g, g2)
    if dtype == np.float64:
        check_grads(lambda x: pnp.max(x, axis=1) * 2.0, (x,), order=2, modes=('fwd', 'rev'))
        check_grads(lambda x: pnp.min(x, axis=-1, keepdims=True), (x,), order=2)


def test_ties_still_split_the_derivative():
    x = np.array([[1.0, 3.0, 3.0], [0.5, 1.0, 2.0]])
    np.testing.assert_array_equal(grad(lambda x: pnp.sum(pnp.max(x, axis=1)))(x),
                                  [[0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])
