"""Pytrees: flatten / unflatten / map for every node kind, deep nesting, and
transforms with pytree arguments and outputs."""
import collections

import numpy as np
import pytest

import primitives.numpy as pnp
from primitives import arith, unary
from tracer import (tree_flatten, tree_unflatten, tree_map, tree_leaves, tree_structure,
                    register_pytree_node, PyTreeDef, make_jaxpr, check_jaxpr)
from transforms import jvp, vjp, grad, value_and_grad, linearize

from check_grads import check_grads, assert_allclose

Point = collections.namedtuple('Point', ['x', 'y'])
Other = collections.namedtuple('Other', ['x', 'y'])


class Box:
    """A user class registered as a pytree node, with static metadata."""

    def __init__(self, value, scale, name):
        self.value = value
        self.scale = scale
        self.name = name

    def __eq__(self, other):
        return (type(other) is Box and self.name == other.name
                and _tree_equal((self.value, self.scale), (other.value, other.scale)))


register_pytree_node(Box, lambda b: ((b.value, b.scale), b.name),
                     lambda name, children: Box(children[0], children[1], name))


def _tree_equal(a, b):
    la, ta = tree_flatten(a)
    lb, tb = tree_flatten(b)
    return ta == tb and all(np.array_equal(x, y) for x, y in zip(la, lb))


TREES = [
    1.0,
    np.arange(3.0),
    (1, 2, 3),
    [1, [2, 3], []],
    {'b': 1, 'a': 2, 'c': {'z': 3, 'y': 4}},
    None,
    (None, 1, [None, 2]),
    Point(1, (2, 3)),
    Box(np.ones(2), 3.0, 'box'),
    {'p': Point(x=[1, 2], y={'q': None, 'r': (3,)}), 'box': Box([4], 5, 'n')},
    (),
    [],
    {},
]


@pytest.mark.parametrize('tree', TREES, ids=[f"tree{i}" for i in range(len(TREES))])
def test_flatten_unflatten_roundtrip(tree):
    leaves, treedef = tree_flatten(tree)
    assert isinstance(treedef, PyTreeDef)
    assert treedef.num_leaves == len(leaves)
    rebuilt = tree_unflatten(treedef, leaves)
    assert type(rebuilt) is type(tree)
    assert _tree_equal(rebuilt, tree)
    assert tree_structure(rebuilt) == treedef
    assert hash(tree_structure(rebuilt)) == hash(treedef)
    assert tree_leaves(tree) == leaves
    # map: structure kept, every leaf visited once in flatten order
    seen = []
    mapped = tree_map(lambda v: seen.append(v) or f"leaf{len(seen)}", tree)
    assert len(seen) == len(leaves)
    assert all(a is b for a, b in zip(seen, leaves))
    assert tree_structure(mapped) == treedef
    assert tree_leaves(mapped) == [f"leaf{i + 1}" for i in range(len(leaves))]
    # unflatten with other leaves
    other = tree_unflatten(treedef, [f"x{i}" for i in range(len(leaves))])
    assert tree_leaves(other) == [f"x{i}" for i in range(len(leaves))]


def test_leaf_order_and_dict_keys_sorted():
    leaves, treedef = tree_flatten({'b': 1, 'a': 2, 'c': (3, {'z': 4, 'y': 5})})
    assert leaves == [2, 1, 3, 5, 4]
    # insertion order does not matter
    assert tree_structure({'a': 0, 'b': 0}) == tree_structure({'b': 0, 'a': 0})
    out = tree_unflatten(treedef, leaves)
    assert out == {'a': 2, 'b': 1, 'c': (3, {'y': 5, 'z': 4})}
    assert list(out) == ['a', 'b', 'c']


def test_none_is_an_empty_node():
    assert tree_leaves(None) == []
    assert tree_leaves([None, 1, None]) == [1]
    assert tree_structure(None) != tree_structure(1)
    assert tree_unflatten(tree_structure((None, 1)), [7]) == (None, 7)


def test_namedtuple_kept_and_distinct_from_tuple():
    p = Point(1, 2)
    out = tree_map(lambda v: v * 10, p)
    assert type(out) is Point and out == Point(10, 20)
    assert tree_structure(p) != tree_structure((1, 2))
    assert tree_structure(p) != tree_structure(Other(1, 2))
    assert tree_structure(p) == tree_structure(Point(3, 4))


def test_registered_class():
    b = Box(np.array([1.0, 2.0]), 3.0, 'bx')
    leaves, treedef = tree_flatten(b)
    assert len(leaves) == 2
    np.testing.assert_array_equal(leaves[0], [1.0, 2.0])
    assert leaves[1] == 3.0
    out = tree_map(lambda v: v * 2, b)
    assert type(out) is Box and out.name == 'bx' and out.scale == 6.0
    # the static metadata is part of the structure
    assert tree_structure(b) != tree_structure(Box(np.ones(2), 1.0, 'other'))
    assert tree_structure(b) == tree_structure(Box(np.ones(2), 1.0, 'bx'))
    # registered classes nest
    nested = Box([Box(1.0, 2.0, 'in'), {'k': 3.0}], None, 'out')
    assert tree_leaves(nested) == [1.0, 2.0, 3.0]
    rebuilt = tree_unflatten(tree_structure(nested), [4.0, 5.0, 6.0])
    assert rebuilt.value[0].value == 4.0 and rebuilt.value[1] == {'k': 6.0}
    assert rebuilt.scale is None


def test_tree_map_multiple_trees_and_mismatch():
    a = {'x': (1, 2), 'y': [3]}
    b = {'x': (10, 20), 'y': [30]}
    assert tree_map(lambda u, v: u + v, a, b) == {'x': (11, 22), 'y': [33]}
    with pytest.raises(ValueError):
        tree_map(lambda u, v: u + v, a, {'x': (1, 2), 'y': (3,)})
    with pytest.raises(ValueError):
        tree_map(lambda u, v: u + v, a, {'x': (1, 2), 'z': [3]})


def test_is_leaf():
    tree = {'a': (1, 2), 'b': [3, (4, 5)]}
    leaves = tree_leaves(tree, is_leaf=lambda t: isinstance(t, tuple))
    assert leaves == [(1, 2), 3, (4, 5)]
    out = tree_map(lambda t: len(t) if isinstance(t, tuple) else t, tree,
                   is_leaf=lambda t: isinstance(t, tuple))
    assert out == {'a': 2, 'b': [3, 2]}


def test_unflatten_wrong_number_of_leaves():
    treedef = tree_structure((1, [2, 3]))
    with pytest.raises(ValueError):
        tree_unflatten(treedef, [1, 2])
    with pytest.raises(ValueError):
        tree_unflatten(treedef, [1, 2, 3, 4])


def test_treedef_repr():
    assert repr(tree_structure((1, [2, None], {'a': 3}))) == "(*, [*, None], {'a': *})"
    assert repr(tree_structure((1,))) == "(*,)"
    assert repr(tree_structure(Point(1, 2))) == "Point(*, *)"


# --- deep nesting -------------------------------------------------------------------

DEPTH = 10000


def _deep_list(depth, leaf=1.0):
    x = leaf
    for _ in range(depth):
        x = [x]
    return x


def _deep_mixed(depth):
    x = 0.0
    for i in range(depth):
        k = i % 4
        if k == 0:
            x = [x, float(i)]
        elif k == 1:
            x = {'a': x, 'b': None}
        elif k == 2:
            x = (x,)
        else:
            x = Point(x, float(i))
    return x


def test_deep_flatten_unflatten_map():
    for tree in (_deep_list(DEPTH), _deep_mixed(DEPTH)):
        leaves, treedef = tree_flatten(tree)
        rebuilt = tree_unflatten(treedef, leaves)
        assert tree_leaves(rebuilt) == leaves
        mapped = tree_map(lambda v: v + 1.0, tree)
        assert tree_leaves(mapped) == [v + 1.0 for v in leaves]
    assert tree_leaves(_deep_list(DEPTH)) == [1.0]
    assert len(tree_leaves(_deep_mixed(DEPTH))) == 1 + DEPTH // 2


def test_deep_treedef_equality():
    assert tree_structure(_deep_list(DEPTH)) == tree_structure(_deep_list(DEPTH, 2.0))


def test_deep_treedef_inequality():
    assert tree_structure(_deep_list(DEPTH)) != tree_structure(_deep_list(DEPTH - 1))


def test_deep_treedef_hash():
    assert hash(tree_structure(_deep_mixed(DEPTH))) == hash(tree_structure(_deep_mixed(DEPTH)))


def test_deep_treedef_repr():
    assert repr(tree_structure(_deep_list(DEPTH))).count('[') == DEPTH


def test_deep_tree_map_two_trees():
    out = tree_map(lambda u, v: u + v, _deep_list(DEPTH, 1.0), _deep_list(DEPTH, 2.0))
    assert tree_leaves(out) == [3.0]


def test_deep_tree_through_grad():
    tree = _deep_list(DEPTH, 2.0)
    g = grad(lambda t: tree_leaves(t)[0] ** 3)(tree)
    assert tree_leaves(g) == [12.0]


def test_deep_tree_through_jvp():
    tree = _deep_list(DEPTH, 2.0)
    out, t = jvp(lambda t: tree_leaves(t)[0] ** 3, (tree,), (_deep_list(DEPTH, 1.0),))
    assert out == 8.0 and t == 12.0


# --- transforms with pytrees -------------------------------------------------------------

def _params():
    rng = np.random.default_rng(0)
    return {'w': rng.standard_normal((3,)), 'b': 0.5,
            'layers': [Point(rng.standard_normal(2), rng.standard_normal(2))],
            'box': Box(np.array([0.3, -0.2]), 1.5, 'b')}


def _loss(p):
    l0 = p['layers'][0]
    s = arith.add(_dot(p['w'], p['w']), p['b'])
    s = arith.add(s, _dot(unary.sin(l0.x), l0.y))
    s = arith.add(s, arith.mul(_dot(p['box'].value, p['box'].value), p['box'].scale))
    return s


def _dot(a, b):
    from primitives import reductions
    return reductions.reduce_sum(arith.mul(a, b), (0,))


def _loss_np(p):
    l0 = p['layers'][0]
    return (p['w'] @ p['w'] + p['b'] + np.sin(l0.x) @ l0.y
            + (p['box'].value @ p['box'].value) * p['box'].scale)


def test_grad_of_pytree_argument():
    p = _params()
    g = grad(_loss)(p)
    assert tree_structure(g) == tree_structure(p)
    assert type(g['layers'][0]) is Point and type(g['box']) is Box and g['box'].name == 'b'
    np.testing.assert_allclose(g['w'], 2 * p['w'])
    assert g['b'] == 1.0
    np.testing.assert_allclose(g['layers'][0].x, np.cos(p['layers'][0].x) * p['layers'][0].y)
    np.testing.assert_allclose(g['layers'][0].y, np.sin(p['layers'][0].x))
    np.testing.assert_allclose(g['box'].value, 2 * p['box'].value * 1.5)
    np.testing.assert_allclose(g['box'].scale, p['box'].value @ p['box'].value)
    v, g2 = value_and_grad(_loss)(p)
    np.testing.assert_allclose(v, _loss_np(p))
    assert_allclose(g2, g, rtol=0)


def test_jvp_with_pytree_arguments_and_outputs():
    p = _params()
    t = tree_map(lambda v: np.ones_like(v) * 0.1, p)

    def f(q):
        return {'loss': _loss(q), 'pair': (unary.exp(q['w']), [q['b']])}

    out, tout = jvp(f, (p,), (t,))
    assert tree_structure(out) == tree_structure(tout) == tree_structure(f(p))
    np.testing.assert_allclose(out['loss'], _loss_np(p))
    np.testing.assert_allclose(tout['pair'][0], np.exp(p['w']) * 0.1)
    np.testing.assert_allclose(tout['pair'][1][0], 0.1)
    g = grad(_loss)(p)
    expected = sum(np.sum(np.asarray(a) * np.asarray(b))
                   for a, b in zip(tree_leaves(g), tree_leaves(t)))
    np.testing.assert_allclose(tout['loss'], expected)


def test_vjp_with_pytree_arguments_and_outputs():
    x = {'a': np.array([1.0, 2.0]), 'b': (np.array(3.0), [np.array([0.5])])}

    def f(d):
        return [arith.mul(d['a'], d['b'][0]), {'s': unary.sin(d['b'][1][0])}]

    out, f_vjp = vjp(f, x)
    ct = [np.array([1.0, -1.0]), {'s': np.array([2.0])}]
    (gx,) = f_vjp(ct)
    assert tree_structure(gx) == tree_structure(x)
    np.testing.assert_allclose(gx['a'], [3.0, -3.0])
    np.testing.assert_allclose(gx['b'][0], 1.0 * 1 - 2.0)
    np.testing.assert_allclose(gx['b'][1][0], 2.0 * np.cos(0.5))
    with pytest.raises((TypeError, ValueError)):
        f_vjp([np.ones(2)])   # wrong structure


def test_linearize_with_pytrees():
    x = (np.array([1.0, 2.0]), {'k': np.array(0.5)})
    f = lambda a, d: {'o': arith.mul(a, d['k'])}
    out, f_jvp = linearize(f, *x)
    t = (np.array([1.0, 1.0]), {'k': np.array(2.0)})
    lin = f_jvp(*t)
    _, ref = jvp(f, x, t)
    assert_allclose(lin, ref)


def test_check_grads_with_pytree_outputs():
    f = lambda a, b: {'s': arith.mul(a, b), 't': (unary.tanh(a), [arith.sub(a, b)])}
    check_grads(f, (np.array([0.3, -0.4]), np.array([1.2, 0.7])), order=2)


def test_pytree_outputs_in_make_jaxpr():
    cj = make_jaxpr(lambda d: (d['x'], [arith.neg(d['y'])]))({'x': np.ones(2), 'y': 1.0})
    check_jaxpr(cj)
    assert len(cj.jaxpr.invars) == 2 and len(cj.jaxpr.outvars) == 2


P = collections.namedtuple('P', 'a b')


@pytest.mark.parametrize('tree', [
    (1.0, [2.0, 3.0], (), 4.0), ((1, 2, 3, 4, 5, 6),), [(1, 2), [3]], ([],), ((), ()),
    (1.0, (2.0, (3.0,))), (1.0, [2.0, None]), (1.0, [P(2, 3)]), (P(1, 2), [3]),
    (1.0, {'a': 2.0}), [[1.0], (2.0,), 3.0, []],
], ids=repr)
def test_shallow_trees_match_the_general_path(tree):
    """Argument tuples of leaves and flat tuples/lists (a model's parameters) take a
    shortcut; its leaves and structure are those of the general walk, and its
    structures unflatten as the general ones do."""
    leaves, d = tree_flatten(tree)
    general_leaves, general = tree_flatten(tree, is_leaf=lambda x: False)
    assert leaves == general_leaves and d == general and hash(d) == hash(general)
    assert repr(d) == repr(general)
    back = tree_unflatten(d, [str(x) for x in leaves])
    assert back == tree_unflatten(general, [str(x) for x in leaves])
    assert tree_structure(back) == d
