"""Pytrees: nested tuples, lists, dicts, None, namedtuples and registered classes.

Flattening is iterative (an explicit stack), so deep trees never reach Python's
recursion limit.
"""
from collections import namedtuple


class PyTreeDef:
    """The structure of a pytree: a node type, its auxiliary data and children.
    Equality, hashing and printing work on a flat pre-order encoding, so they are
    iterative (any depth) and cached."""
    __slots__ = ('kind', 'aux', 'children', 'num_leaves', '_code', '_hash')

    def __init__(self, kind, aux, children):
        self.kind = kind          # None for a leaf, else the node's type
        self.aux = aux
        self.children = children
        self.num_leaves = 1 if kind is None else sum(c.num_leaves for c in children)
        self._code = None
        self._hash = None

    def _encode(self):
        """Pre-order tuple of (kind, aux, number of children)."""
        if self._code is None:
            out = []
            stack = [self]
            while stack:
                node = stack.pop()
                out.append((node.kind, node.aux, len(node.children)))
                stack.extend(reversed(node.children))
            self._code = tuple(out)
        return self._code

    def __eq__(self, other):
        if self is other:
            return True
        if not isinstance(other, PyTreeDef) or self.num_leaves != other.num_leaves:
            return False
        a, b = self._encode(), other._encode()
        return len(a) == len(b) and all(
            x[0] is y[0] and x[2] == y[2] and x[1] == y[1] for x, y in zip(a, b))

    def __hash__(self):
        if self._hash is None:
            self._hash = hash(tuple((k, _hashable(a), n) for k, a, n in self._encode()))
        return self._hash

    def __repr__(self):
        parts = []
        # stack of (node, state): state 0 = open, 1 = close
        stack = [(self, 0, None)]
        while stack:
            node, state, sep = stack.pop()
            if state == 1:
                parts.append(sep)
                continue
            if sep:
                parts.append(sep)
            kind = node.kind
            if kind is None:
                parts.append('*')
                continue
            if kind is _NoneType:
                parts.append('None')
                continue
            if kind is tuple:
                opn, close = '(', (',)' if len(node.children) == 1 else ')')
            elif kind is list:
                opn, close = '[', ']'
            elif kind is dict:
                opn, close = '{', '}'
            else:
                opn, close = kind.__name__ + '(', ')'
            parts.append(opn)
            stack.append((None, 1, close))
            for i in reversed(range(len(node.children))):
                prefix = ', ' if i else ''
                if kind is dict:
                    prefix += f"{node.aux[i]!r}: "
                stack.append((node.children[i], 0, prefix))
        return ''.join(parts)

    def unflatten(self, leaves):
        return tree_unflatten(self, leaves)


def _hashable(aux):
    try:
        hash(aux)
        return aux
    except TypeError:
        return repr(aux)


_NoneType = type(None)
_registry = {}


def register_pytree_node(cls, flatten, unflatten):
    """flatten(obj) -> (children, aux_data); unflatten(aux_data, children) -> obj."""
    _registry[cls] = (flatten, unflatten)


register_pytree_node(tuple, lambda t: (t, None), lambda _, c: tuple(c))
register_pytree_node(list, lambda l: (l, None), lambda _, c: list(c))
register_pytree_node(_NoneType, lambda n: ((), None), lambda _, c: None)


def _dict_flatten(d):
    keys = sorted(d)
    return [d[k] for k in keys], tuple(keys)


register_pytree_node(dict, _dict_flatten, lambda keys, c: dict(zip(keys, c)))


def _node_rules(x):
    t = type(x)
    rules = _registry.get(t)
    if rules is None and isinstance(x, tuple) and hasattr(t, '_fields'):
        return t, (lambda nt: (tuple(nt), None), lambda _, c, t=t: t(*c))
    return t, rules


_LEAF = PyTreeDef(None, None, ())


def tree_flatten(tree, is_leaf=None):
    """-> (leaves, treedef)"""
    t = type(tree)
    if t not in _registry and not (isinstance(tree, tuple) and hasattr(t, '_fields')):
        return [tree], _LEAF   # a leaf: the common case, kept fast
    if (t is tuple or t is list) and is_leaf is None:
        # function arguments: leaves, or flat tuples/lists of them (a model's
        # parameters), without the work stack
        for x in tree:
            if _is_node(x):
                flat = _flatten_shallow(t, tree)
                if flat is not None:
                    return flat
                break
        else:
            return list(tree), _flat_def(t, len(tree))
    leaves = []
    work = []   # iterative post-order build; frames: [kind, aux, child_iter, child_defs]
    out = None

    def open_node(x):
        if is_leaf is not None and is_leaf(x):
            leaves.append(x)
            return _LEAF
        kind, rules = _node_rules(x)
        if rules is None:
            leaves.append(x)
            return _LEAF
        children, aux = rules[0](x)
        work.append([kind, aux, iter(list(children)), []])
        return None

    d = open_node(tree)
    if d is not None:
        return leaves, d
    while work:
        frame = work[-1]
        child = next(frame[2], _SENTINEL)
        if child is _SENTINEL:
            work.pop()
            d = PyTreeDef(frame[0], frame[1], tuple(frame[3]))
            if work:
                work[-1][3].append(d)
            else:
                out = d
            continue
        d = open_node(child)
        if d is not None:
            frame[3].append(d)
    return leaves, out


_SENTINEL = object()
_flat_defs = {}   # (tuple or list, n) -> the PyTreeDef of n leaves in one node


def _flat_def(kind, n):
    d = _flat_defs.get((kind, n))
    if d is None:
        d = _flat_defs[(kind, n)] = PyTreeDef(kind, None, (_LEAF,) * n)
    return d


def _is_node(x):
    tx = type(x)
    return tx in _registry or (isinstance(x, tuple) and hasattr(tx, '_fields'))


def _flatten_shallow(kind, tree):
    """tree_flatten of a tuple/list (`kind`) whose children are leaves or
    tuples/lists of leaves, at least one of them a tuple/list; None for deeper
    trees."""
    leaves = None
    defs = None
    for i, x in enumerate(tree):
        tx = type(x)
        if tx is tuple or tx is list:
            for y in x:
                if _is_node(y):
                    return None
            if leaves is None:
                leaves = list(tree[:i])
                defs = [_LEAF] * i
            leaves.extend(x)
            defs.append(_flat_def(tx, len(x)))
        elif _is_node(x):
            return None
        elif leaves is not None:
            leaves.append(x)
            defs.append(_LEAF)
    return leaves, PyTreeDef(kind, None, tuple(defs))


def _unflatten_shallow(treedef, leaves):
    """tree_unflatten of the trees _flatten_shallow makes; None for others."""
    out = []
    i = 0
    for c in treedef.children:
        k = c.kind
        if k is None:
            out.append(leaves[i])
            i += 1
        elif (k is tuple or k is list) and _flat_defs.get((k, len(c.children))) is c:
            j = i + len(c.children)
            out.append(tuple(leaves[i:j]) if k is tuple else leaves[i:j])
            i = j
        else:
            return None
    return tuple(out) if treedef.kind is tuple else out


def tree_unflatten(treedef, leaves):
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"tree_unflatten: the tree structure {treedef} has "
                         f"{treedef.num_leaves} leaves but {len(leaves)} were given")
    kind = treedef.kind
    if kind is None:
        return leaves[0]
    if kind is tuple or kind is list:
        if _flat_defs.get((kind, len(leaves))) is treedef:
            return tuple(leaves) if kind is tuple else leaves
        out = _unflatten_shallow(treedef, leaves)
        if out is not None:
            return out
    pos = [0]
    # Iterative: frames of (treedef, built children)
    work = [(treedef, [])]
    it = [iter(treedef.children)]
    result = None
    while work:
        node, built = work[-1]
        child = next(it[-1], _SENTINEL)
        if child is _SENTINEL:
            work.pop()
            it.pop()
            obj = _build(node, built)
            if work:
                work[-1][1].append(obj)
            else:
                result = obj
            continue
        if child.kind is None:
            built.append(leaves[pos[0]])
            pos[0] += 1
        else:
            work.append((child, []))
            it.append(iter(child.children))
    return result


def _build(node, children):
    kind = node.kind
    rules = _registry.get(kind)
    if rules is None:  # namedtuple
        return kind(*children)
    return rules[1](node.aux, children)


def tree_leaves(tree, is_leaf=None):
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree, is_leaf=None):
    return tree_flatten(tree, is_leaf)[1]


def tree_map(f, tree, *rest, is_leaf=None):
    leaves, treedef = tree_flatten(tree, is_leaf)
    others = []
    for r in rest:
        rl, rdef = tree_flatten(r, is_leaf)
        if rdef != treedef:
            raise ValueError(f"tree_map: pytree structures differ: {treedef} vs {rdef}")
        others.append(rl)
    return tree_unflatten(treedef, [f(*xs) for xs in zip(leaves, *others)])


__all__ = ['tree_flatten', 'tree_unflatten', 'tree_map', 'tree_leaves', 'tree_structure',
           'register_pytree_node', 'PyTreeDef']
