"""The contract's errors: typed, clear, naming the primitive, shapes/dtypes, the
transform and the user's source line; and no transform mutates its inputs."""
import inspect
import os

import numpy as np
import pytest

import tracer
import primitives.numpy as pnp
from primitives import arith, unary, reductions
from tracer import make_jaxpr
from transforms import (jvp, vjp, grad, value_and_grad, linearize, linear_transpose,
                        jacfwd, jacrev, hessian)

THIS_FILE = os.path.basename(__file__)


def _here(offset=1):
    """'test_errors.py:<line>' of the line `offset` lines below the caller's."""
    return f"{THIS_FILE}:{inspect.currentframe().f_back.f_lineno + offset}"


def _sum(x):
    return reductions.reduce_sum(x, tuple(range(len(x.shape))))


def test_error_classes():
    assert issubclass(tracer.ConcretizationTypeError, TypeError)
    assert issubclass(tracer.UnexpectedTracerError, Exception)
    assert not issubclass(tracer.UnexpectedTracerError, TypeError)


# --- grad's input and output checks ------------------------------------------------------

def test_grad_of_non_scalar_output():
    where = _here(2)
    with pytest.raises(TypeError, match=r"scalar.*\(3,\)|\(3,\).*scalar") as e:
        grad(lambda x: arith.mul(x, 2.0))(np.ones(3))
    assert 'f64[3]' in str(e.value)
    assert where in str(e.value)
    with pytest.raises(TypeError, match="scalar"):
        grad(lambda x: (x, x))(1.0)
    with pytest.raises(TypeError, match="scalar"):
        value_and_grad(lambda x: arith.mul(x, np.ones(2)))(1.0)


def test_grad_of_integer_output():
    with pytest.raises(TypeError):
        grad(lambda x: arith.mul(x, 2.0) > 0)(1.0)


@pytest.mark.parametrize('arg', [1, np.int32(3), np.arange(3), np.array([True, False])])
def test_grad_with_integer_input(arg):
    with pytest.raises(TypeError, match=r"int|bool") as e:
        grad(lambda x: _sum(x) if np.ndim(arg) else x)(arg)
    assert 'float' in str(e.value)   # says what is needed


def test_grad_with_integer_input_among_argnums():
    f = lambda a, n: arith.mul(a, 2.0)
    assert grad(f)(1.0, 3) == 2.0                 # integer arg not differentiated: fine
    with pytest.raises(TypeError):
        grad(f, argnums=(0, 1))(1.0, 3)
    with pytest.raises(TypeError):
        grad(lambda d: d['x'] * 1.0)({'x': 2})


def test_grad_argnums_out_of_range():
    with pytest.raises(ValueError, match="argnums"):
        grad(lambda a, b: a, argnums=2)(1.0, 2.0)


def test_has_aux_requires_a_pair():
    with pytest.raises(TypeError, match="has_aux"):
        grad(lambda x: arith.mul(x, x), has_aux=True)(1.0)


# --- shape and dtype errors ----------------------------------------------------------------

def test_shape_mismatch_in_add_under_make_jaxpr():
    for add in (arith.add, pnp.add, lambda a, b: a + b):
        with pytest.raises(ValueError) as e:
            make_jaxpr(add)(np.ones(3), np.ones(4))
        msg = str(e.value)
        assert 'add' in msg and '(3,)' in msg and '(4,)' in msg
        assert 'f64[3]' in msg and 'f64[4]' in msg


def test_shape_mismatch_eager_is_a_value_error_naming_the_shapes():
    with pytest.raises(ValueError) as e:
        arith.add(np.ones(3), np.ones(4))
    assert '(3,)' in str(e.value) and '(4,)' in str(e.value)


@pytest.mark.parametrize('transform', ['grad', 'jvp', 'vjp'])
def test_shape_mismatch_in_add_under_autodiff(transform):
    f = lambda x: _sum(arith.add(x, np.ones(4)))
    with pytest.raises(ValueError) as e:
        if transform == 'grad':
            grad(f)(np.ones(3))
        elif transform == 'jvp':
            jvp(f, (np.ones(3),), (np.ones(3),))
        else:
            vjp(f, np.ones(3))
    msg = str(e.value)
    assert 'add' in msg and '(3,)' in msg and '(4,)' in msg, msg
    assert THIS_FILE in msg, msg


def test_dtype_mismatch_at_lax_level():
    with pytest.raises(TypeError) as e:
        make_jaxpr(arith.add)(np.ones(3), np.ones(3, np.float32))
    msg = str(e.value)
    assert 'add' in msg and 'f64[3]' in msg and 'f32[3]' in msg
    with pytest.raises(TypeError, match='mul'):
        make_jaxpr(arith.mul)(np.ones(3), np.ones(3, np.int64))
    # primitives.numpy promotes instead
    cj = make_jaxpr(pnp.add)(np.ones(3), np.ones(3, np.float32))
    assert cj.jaxpr.outvars[0].aval.dtype == np.float64


def test_dtype_mismatch_at_lax_level_under_jvp():
    # lax-level operations take one dtype, eagerly and under every transform (NumPy
    # would promote silently when the operation runs rather than being staged)
    f32 = np.ones(3, np.float32)
    for run in (lambda: arith.add(np.ones(3), f32),
                lambda: jvp(lambda x: arith.add(x, f32), (np.ones(3),), (np.ones(3),)),
                lambda: grad(lambda x: pnp.sum(arith.mul(x, f32)))(np.ones(3)),
                lambda: vjp(lambda x: arith.sub(f32, x), np.ones(3))):
        with pytest.raises(TypeError) as e:
            run()
        msg = str(e.value)
        assert 'f64[3]' in msg and 'f32[3]' in msg and 'convert_element_type' in msg, msg
    # Python scalars adapt (weak typing), and primitives.numpy promotes
    assert arith.add(f32, 2.0).dtype == np.float32
    assert arith.mul(3, np.ones(2, np.int32)).dtype == np.int32
    assert pnp.add(np.ones(3), f32).dtype == np.float64
    g = grad(lambda x: pnp.sum(arith.mul(x, 2.0) * f32))(np.ones(3, np.float32))
    np.testing.assert_allclose(g, 2 * f32)


def test_shape_error_message_has_user_line():
    where = _here()
    f = lambda a, b: arith.mul(a, b)
    with pytest.raises(ValueError) as e:
        make_jaxpr(f)(np.ones(2), np.ones(5))
    # the user's line is the lambda's (one line up from the `with`)
    line = int(where.split(':')[1])
    assert f"{THIS_FILE}:{line}" in str(e.value), str(e.value)


def test_jvp_argument_errors():
    with pytest.raises(ValueError, match="shape"):
        jvp(unary.sin, (np.ones(3),), (np.ones(2),))
    with pytest.raises(TypeError, match="dtype"):
        jvp(unary.sin, (np.ones(3),), (np.ones(3, np.float32),))
    with pytest.raises(TypeError, match="tuple"):
        jvp(unary.sin, np.ones(3), np.ones(3))
    with pytest.raises(TypeError):
        jvp(lambda a, b: a, (1.0, 2.0), (1.0,))


def test_vjp_cotangent_errors():
    _, f_vjp = vjp(unary.sin, np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        f_vjp(np.ones(2))
    with pytest.raises(TypeError):
        f_vjp((np.ones(3), np.ones(3)))


def test_linear_transpose_of_nonlinear_function():
    with pytest.raises(TypeError, match="transpose|linear"):
        linear_transpose(lambda x: arith.mul(x, x), np.ones(3))(np.ones(3))
    with pytest.raises(TypeError, match="transpose|linear"):
        linear_transpose(unary.sin, np.ones(3))(np.ones(3))


def test_differentiating_a_primitive_without_jvp_rule():
    p = tracer.Primitive('no_jvp_rule')
    p.impl = lambda x: x
    p.abstract_eval = lambda a: a
    with pytest.raises(TypeError, match="no_jvp_rule"):
        grad(lambda x: p.bind(x))(1.0)
    # fine when no derivative flows through it
    assert grad(lambda x: arith.add(x, p.bind(2.0)))(1.0) == 1.0


def test_setitem_on_tracer():
    def f(x):
        x[0] = 1.0
        return x
    with pytest.raises(TypeError, match="immutable"):
        make_jaxpr(f)(np.ones(3))
    with pytest.raises(TypeError, match="immutable"):
        jvp(f, (np.ones(3),), (np.ones(3),))


# --- leaked tracers ---------------------------------------------------------------------

def _leak(transform):
    store = []

    def f(x):
        store.append(x)
        return arith.mul(x, 2.0)

    if transform == 'grad':
        grad(f)(1.0)
    elif transform == 'jvp':
        jvp(f, (1.0,), (1.0,))
    elif transform == 'vjp':
        vjp(f, 1.0)
    elif transform == 'linearize':
        linearize(f, 1.0)
    elif transform == 'make_jaxpr':
        make_jaxpr(f)(1.0)
    return store[0]


@pytest.mark.parametrize('transform', ['grad', 'jvp', 'vjp', 'linearize', 'make_jaxpr'])
def test_leaked_tracer(transform):
    leaked = _leak(transform)
    assert isinstance(leaked, tracer.Tracer)
    where = _here(2)
    with pytest.raises(tracer.UnexpectedTracerError) as e:
        arith.add(leaked, 1.0)
    msg = str(e.value)
    assert transform in msg, msg
    assert 'f64[]' in msg and 'leak' in msg
    assert where in msg, msg
    # through operators and inside a later transform too
    with pytest.raises(tracer.UnexpectedTracerError):
        leaked * 3.0
    with pytest.raises(tracer.UnexpectedTracerError):
        unary.sin(leaked)
    with pytest.raises(tracer.UnexpectedTracerError, match=transform):
        grad(lambda y: arith.mul(y, leaked))(2.0)
    with pytest.raises(tracer.UnexpectedTracerError, match=transform):
        make_jaxpr(lambda y: arith.mul(y, leaked))(2.0)


def test_inner_tracer_leaked_to_outer_transform():
    def outer(x):
        store = []

        def inner(y):
            store.append(y)
            return arith.mul(y, x)
        grad(inner)(x)
        return arith.mul(store[0], x)

    with pytest.raises(tracer.UnexpectedTracerError, match="grad"):
        grad(outer)(1.0)
    with pytest.raises(tracer.UnexpectedTracerError):
        make_jaxpr(outer)(1.0)


# --- control flow on traced values -------------------------------------------------------

def _branchy(x):
    if x > 0:
        return arith.mul(x, x)
    return arith.neg(x)


def test_python_if_under_make_jaxpr():
    with pytest.raises(tracer.ConcretizationTypeError) as e:
        make_jaxpr(_branchy)(1.0)
    msg = str(e.value)
    assert 'lax.cond' in msg and 'make_jaxpr' in msg
    assert 'bool[]' in msg        # shape and dtype of the offending value
    line = inspect.getsourcelines(_branchy)[1] + 1
    assert f"{THIS_FILE}:{line}" in msg, msg
    with pytest.raises(tracer.ConcretizationTypeError) as e:
        make_jaxpr(lambda v: _branchy(_sum(v)))(np.ones((2, 3)))


def test_while_on_traced_value():
    def f(x):
        while x < 10.0:
            x = arith.mul(x, 2.0)
        return x
    with pytest.raises(tracer.ConcretizationTypeError, match='lax'):
        make_jaxpr(f)(1.0)
    assert f(1.0) == 16.0
    assert grad(f)(1.0) == 16.0


@pytest.mark.parametrize('convert', [float, int, bool, complex, np.asarray, np.array],
                         ids=['float', 'int', 'bool', 'complex', 'asarray', 'array'])
def test_concrete_conversion_under_make_jaxpr(convert):
    scalar = convert in (float, int, bool, complex)
    arg = np.float64(1.0) if scalar else np.ones((2, 3))
    with pytest.raises(tracer.ConcretizationTypeError) as e:
        make_jaxpr(lambda x: convert(arith.mul(x, 2.0)))(arg)
    msg = str(e.value)
    assert 'make_jaxpr' in msg                       # the transform
    assert ('f64[]' if scalar else 'f64[2,3]') in msg   # shape and dtype
    if scalar:
        assert 'static_argnums' in msg and 'lax.cond' in msg   # the fix


def test_index_with_traced_value_under_make_jaxpr():
    lst = [1.0, 2.0]
    with pytest.raises(tracer.ConcretizationTypeError):
        make_jaxpr(lambda i: lst[i])(np.int64(1))


def test_python_if_works_under_grad_jvp_vjp_linearize():
    assert grad(_branchy)(3.0) == 6.0
    assert grad(_branchy)(-3.0) == -1.0
    assert jvp(_branchy, (3.0,), (1.0,)) == (9.0, 6.0)
    assert jvp(_branchy, (-3.0,), (1.0,)) == (3.0, -1.0)
    out, f_vjp = vjp(_branchy, 2.0)
    assert out == 4.0 and f_vjp(1.0) == (4.0,)
    out, f_jvp = linearize(_branchy, -2.0)
    assert out == 2.0 and f_jvp(1.0) == -1.0
    # nested: grad of grad, jvp of grad
    assert grad(grad(_branchy))(3.0) == 2.0
    assert jvp(grad(_branchy), (3.0,), (1.0,)) == (6.0, 2.0)
    # float() of a traced value with a concrete primal
    assert grad(lambda x: arith.mul(x, float(x)))(3.0) == 3.0


def test_python_if_on_array_element_under_grad():
    def f(x):
        total = 0.0
        for i in range(3):
            if x[i] > 0:
                total = total + x[i] * x[i]
        return total
    x = np.array([1.0, -2.0, 3.0])
    np.testing.assert_array_equal(grad(f)(x), [2.0, 0.0, 6.0])
    assert jvp(f, (x,), (np.ones(3),))[1] == 8.0


# --- no mutation --------------------------------------------------------------------------

def _readonly(*arrays):
    out = []
    for a in arrays:
        a = np.array(a)
        a.flags.writeable = False
        out.append(a)
    return out


def _f(x, y):
    # x used several times: cotangents are accumulated (add_any)
    z = arith.add(arith.mul(x, y), unary.sin(x))
    z = arith.add(z, arith.mul(x, 2.0))
    return _sum(arith.mul(z, z))


def test_no_transform_mutates_its_inputs():
    x0 = np.array([0.5, -1.0, 2.0])
    y0 = np.array([1.5, 0.3, -0.7])
    x, y = _readonly(x0, y0)
    t, u = _readonly(np.ones(3), np.full(3, 0.5))
    ct, = _readonly(np.array(1.0))
    grad(_f, argnums=(0, 1))(x, y)
    value_and_grad(_f)(x, y)
    jvp(_f, (x, y), (t, u))
    out, f_vjp = vjp(_f, x, y)
    f_vjp(ct)
    _, f_jvp = linearize(_f, x, y)
    f_jvp(t, u)
    grad(grad(lambda a: _f(a, y[0])))(np.float64(0.3))
    jvp(grad(_f), (x, y), (t, u))
    jacfwd(_f)(x, y)
    jacrev(_f)(x, y)
    make_jaxpr(grad(_f))(x, y)
    for a, b in ((x, x0), (y, y0), (t, np.ones(3)), (u, np.full(3, 0.5)), (ct, 1.0)):
        np.testing.assert_array_equal(a, b)


def test_vjp_does_not_mutate_the_cotangent():
    def f(x):
        a = arith.mul(x, 3.0)
        return (a, a, arith.add(a, x))      # one cotangent reaches x through many paths
    x = np.array([1.0, 2.0])
    cts = tuple(_readonly(np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([5.0, 6.0])))
    _, f_vjp = vjp(f, x)
    g, = f_vjp(cts)
    np.testing.assert_array_equal(g, 3 * (cts[0] + cts[1] + cts[2]) + cts[2])
    np.testing.assert_array_equal(cts[0], [1.0, 2.0])
    lin_t = linear_transpose(lambda v: (v, arith.mul(v, 2.0)), x)
    (g,) = lin_t(cts[:2])
    np.testing.assert_array_equal(g, cts[0] + 2 * cts[1])
    # outputs are writeable and independent of the inputs
    g[0] = 100.0
    np.testing.assert_array_equal(cts[0], [1.0, 2.0])


def test_outputs_are_writeable_arrays():
    x = np.array([1.0, 2.0])
    g = grad(lambda v: _sum(v))(x)
    assert g.flags.writeable
    g[0] = 5.0
    _, t = jvp(lambda v: arith.mul(v, 1.0), (x,), (np.ones(2),))
    t[0] = 5.0
    np.testing.assert_array_equal(x, [1.0, 2.0])
