"""The peers' versions of each workload: JAX (eager and jit), autograd and PyTorch
(eager). Each is optional: `load()` imports what is installed and reports the rest
as absent. Every builder returns {column: zero-argument function} where the
function computes the metric and returns its result as NumPy arrays (results are
checked against the hand-written NumPy version before timing; the conversion is
outside the timed region, see `Peer.timed`).
"""
import numpy as np

from . import workloads as W

PEER_COLUMNS = ('jax', 'jax_jit', 'autograd', 'torch')


class Peer:
    """A timed function and the conversion of its result to NumPy for checking."""
    __slots__ = ('timed', 'to_numpy')

    def __init__(self, timed, to_numpy):
        self.timed = timed
        self.to_numpy = to_numpy

    def result(self):
        return self.to_numpy(self.timed())


class Peers:
    def __init__(self):
        self.jax = self.jnp = self.autograd = self.agnp = self.torch = None
        self.absent = {}

    def load(self, which=('jax', 'autograd', 'torch')):
        """Import the peers named in `which`; the others stay absent."""
        if 'jax' in which:
            try:
                import jax
                jax.config.update('jax_enable_x64', True)   # W1, W3, W4 are float64
                jax.config.update('jax_platforms', 'cpu')
                import jax.numpy as jnp
                self.jax, self.jnp = jax, jnp
            except Exception as e:
                self.absent['jax'] = self.absent['jax_jit'] = f"{type(e).__name__}: {e}"
        if 'autograd' in which:
            try:
                import autograd
                import autograd.numpy as agnp
                self.autograd, self.agnp = autograd, agnp
            except Exception as e:
                self.absent['autograd'] = f"{type(e).__name__}: {e}"
        if 'torch' in which:
            try:
                import torch
                torch.set_num_threads(1)
                try:
                    torch.set_num_interop_threads(1)
                except RuntimeError:
                    pass
                self.torch = torch
            except Exception as e:
                self.absent['torch'] = f"{type(e).__name__}: {e}"
        return self

    def versions(self):
        out = {}
        for name in ('jax', 'autograd', 'torch'):
            mod = getattr(self, name)
            if mod is not None:
                try:
                    from importlib.metadata import version
                    out[name] = version(name)
                except Exception:
                    out[name] = getattr(mod, '__version__', '?')
        return out


def _jax_np(tree):
    import jax
    return jax.tree_util.tree_map(np.asarray, jax.block_until_ready(tree))


def _torch_np(tree):
    if isinstance(tree, (tuple, list)):
        return type(tree)(_torch_np(t) for t in tree)
    return tree.detach().numpy() if hasattr(tree, 'detach') else tree


def _same(tree):
    return tree


def _jax_pair(peers, fn, *args):
    """Eager and jitted versions of `fn(*args)` in JAX, both blocking on the result."""
    jax = peers.jax
    block = jax.block_until_ready
    jitted = jax.jit(fn)
    return {
        'jax': Peer(lambda: block(fn(*args)), _jax_np),
        'jax_jit': Peer(lambda: block(jitted(*args)), _jax_np),
    }


# --- W1 ---------------------------------------------------------------------------------

def _torch_chain(torch, n_ops):
    class NS:
        sin, cos, tanh, exp, sum = torch.sin, torch.cos, torch.tanh, torch.exp, torch.sum
    return W.make_chain(NS, n_ops)


def w1(peers, x, metric):
    out = {}
    if peers.jax is not None:
        jax, jnp = peers.jax, peers.jnp
        fj = W.make_chain(jnp, W.W1_OPS)
        out.update(_jax_pair(peers, jax.grad(fj) if metric == 'grad' else fj, jnp.asarray(x)))
    if peers.autograd is not None:
        fa = W.make_chain(peers.agnp, W.W1_OPS)
        ga = peers.autograd.grad(fa) if metric == 'grad' else fa
        out['autograd'] = Peer(lambda: ga(x), _same)
    if peers.torch is not None:
        torch = peers.torch
        ft = _torch_chain(torch, W.W1_OPS)
        if metric == 'grad':
            xt = torch.tensor(x, requires_grad=True)
            out['torch'] = Peer(lambda: torch.autograd.grad(ft(xt), xt)[0], _torch_np)
        else:
            xt = torch.tensor(x)
            out['torch'] = Peer(lambda: ft(xt), _torch_np)
    return out


# --- W2 ---------------------------------------------------------------------------------

def w2(peers, params, x, onehot):
    out = {}
    if peers.jax is not None:
        jax, jnp = peers.jax, peers.jnp
        loss = W.make_mlp_loss(jnp)
        pj = tuple(jnp.asarray(p) for p in params)
        out.update(_jax_pair(peers, jax.grad(loss), pj, jnp.asarray(x), jnp.asarray(onehot)))
    if peers.autograd is not None:
        ga = peers.autograd.grad(W.make_mlp_loss(peers.agnp))
        out['autograd'] = Peer(lambda: ga(params, x, onehot), _same)
    if peers.torch is not None:
        torch = peers.torch
        pt = tuple(torch.tensor(p, requires_grad=True) for p in params)
        xt, ot = torch.tensor(x), torch.tensor(onehot)

        def loss_t(p):
            w1, b1, w2, b2, w3, b3 = p
            h = torch.tanh(xt @ w1 + b1)
            h = torch.tanh(h @ w2 + b2)
            logits = h @ w3 + b3
            m = torch.amax(logits, dim=1, keepdim=True)
            lse = m + torch.log(torch.sum(torch.exp(logits - m), dim=1, keepdim=True))
            return torch.mean(lse - torch.sum(logits * ot, dim=1, keepdim=True))
        out['torch'] = Peer(lambda: torch.autograd.grad(loss_t(pt), pt), _torch_np)
    return out


# --- W3 ---------------------------------------------------------------------------------

def w3(peers, a, x, v):
    out = {}
    if peers.jax is not None:
        jax, jnp = peers.jax, peers.jnp
        fj = W.make_w3_f(jnp, jnp.asarray(a))

        def hvp_j(x, v):
            return jax.jvp(jax.grad(fj), (x,), (v,))[1]
        out.update(_jax_pair(peers, hvp_j, jnp.asarray(x), jnp.asarray(v)))
    if peers.autograd is not None:
        # autograd has no forward-over-reverse; its own HVP is reverse-over-reverse
        hvp = peers.autograd.hessian_vector_product(W.make_w3_f(peers.agnp, a))
        out['autograd'] = Peer(lambda: hvp(x, v), _same)
    if peers.torch is not None:
        torch = peers.torch
        at, xt, vt = torch.tensor(a), torch.tensor(x), torch.tensor(v)

        def f_t(x):
            return torch.sum(torch.tanh(at @ x) ** 2) + 0.5 * torch.sum(x ** 2)
        gf = torch.func.grad(f_t)
        out['torch'] = Peer(lambda: torch.func.jvp(gf, (xt,), (vt,))[1], _torch_np)
    return out


# --- W4 ---------------------------------------------------------------------------------

def w4(peers, x):
    out = {}
    if peers.jax is not None:
        jax, jnp = peers.jax, peers.jnp
        out.update(_jax_pair(peers, jax.value_and_grad(W.make_w4_f(jnp)), jnp.asarray(x)))
    if peers.autograd is not None:
        vg = peers.autograd.value_and_grad(W.make_w4_f(peers.agnp))
        out['autograd'] = Peer(lambda: vg(x), _same)
    if peers.torch is not None:
        torch = peers.torch
        xt = torch.tensor(x, requires_grad=True)

        def vg_t():
            y = torch.sum(0.5 * xt * (1 + torch.tanh(0.79788456 * (xt + 0.044715 * xt ** 3))))
            g, = torch.autograd.grad(y, xt)
            return y.detach(), g
        out['torch'] = Peer(vg_t, _torch_np)
    return out


# --- W5 ---------------------------------------------------------------------------------

def w5_tracers(peers, x, v, n_ops):
    """JAX's make_jaxpr of f, grad(f) and the HVP, each on a freshly built chain."""
    if peers.jax is None:
        return None
    jax, jnp = peers.jax, peers.jnp
    xj, vj = jnp.asarray(x), jnp.asarray(v)

    def tr_f():
        return jax.make_jaxpr(W.make_chain(jnp, n_ops))(xj)

    def tr_grad():
        return jax.make_jaxpr(jax.grad(W.make_chain(jnp, n_ops)))(xj)

    def tr_hvp():
        f = W.make_chain(jnp, n_ops)
        return jax.make_jaxpr(lambda x, v: jax.jvp(jax.grad(f), (x,), (v,))[1])(xj, vj)
    return {'f': tr_f, 'grad': tr_grad, 'hvp': tr_hvp}


# --- W6 ---------------------------------------------------------------------------------

def w6(peers, w, x, metric):
    out = {}
    if peers.jax is not None:
        jax, jnp = peers.jax, peers.jnp
        gj = W.make_w6_g(jnp, jnp.asarray(w))
        jac = jax.jacrev(gj) if metric == 'jacrev' else jax.jacfwd(gj)
        out.update(_jax_pair(peers, jac, jnp.asarray(x)))
    if peers.autograd is not None:
        ag = peers.autograd
        ga = W.make_w6_g(peers.agnp, w)
        if metric == 'jacrev':
            ja = ag.jacobian(ga)       # one VJP per output row
            out['autograd'] = Peer(lambda: ja(x), _same)
        else:
            jvp = ag.make_jvp(ga)      # one JVP per input column (autograd has no jacfwd)
            eye = np.eye(x.size)

            def jf():
                lin = jvp(x)
                return np.stack([lin(e)[1] for e in eye], axis=-1)
            out['autograd'] = Peer(jf, _same)
    if peers.torch is not None:
        torch = peers.torch
        wt, xt = torch.tensor(w), torch.tensor(x)

        def g_t(v):
            return torch.tanh(wt @ v)
        jt = torch.func.jacrev(g_t) if metric == 'jacrev' else torch.func.jacfwd(g_t)
        out['torch'] = Peer(lambda: jt(xt), _torch_np)
    return out


# --- PEG: per-example gradients -----------------------------------------------------------

def peg(peers, params, x, onehot):
    """vmap(grad(loss_one), in_axes=(None, 0, 0)) in JAX (eager and jit) and
    torch.func.vmap(torch.func.grad(...)); autograd has no vmap."""
    out = {}
    if peers.jax is not None:
        jax, jnp = peers.jax, peers.jnp
        pe = jax.vmap(jax.grad(W.make_mlp_loss_one(jnp)), in_axes=(None, 0, 0))
        pj = tuple(jnp.asarray(p) for p in params)
        out.update(_jax_pair(peers, pe, pj, jnp.asarray(x), jnp.asarray(onehot)))
    if peers.torch is not None:
        torch = peers.torch
        pt = tuple(torch.tensor(p) for p in params)
        xt, ot = torch.tensor(x), torch.tensor(onehot)

        def loss_t(p, x, y):
            w1, b1, w2, b2, w3, b3 = p
            h = torch.tanh(x @ w1 + b1)
            h = torch.tanh(h @ w2 + b2)
            logits = h @ w3 + b3
            m = torch.amax(logits)
            return m + torch.log(torch.sum(torch.exp(logits - m))) - torch.sum(logits * y)
        pe_t = torch.func.vmap(torch.func.grad(loss_t), in_dims=(None, 0, 0))
        out['torch'] = Peer(lambda: pe_t(pt, xt, ot), _torch_np)
    return out
