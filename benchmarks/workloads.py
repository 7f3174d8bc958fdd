"""The workloads of /work/shared/BENCHMARKS.md: their data, the cotangent versions
(public API only) and the hand-written NumPy versions they are measured against.

Model functions that read the same in every array library (the W1 chain, the W3 and
W4 objectives, the W2 loss) are written once against a namespace `ns` (cotangent's
`primitives.numpy`, `numpy`, `jax.numpy`, `autograd.numpy`); PyTorch's spellings
differ and live in peers.py.

The hand-written NumPy versions are what a competent person writes by hand: a
forward pass that keeps the intermediates the derivative needs, then a manual
backward pass (W1, W2); the hand-derived Hessian-vector product (W3); the analytic
derivative computed in place, reusing tanh (W4).
"""
import numpy as np

# The data are placed on 64-byte (cache-line) boundaries. NumPy only guarantees 16,
# and the BLAS kernels are sensitive to it: a 256x256 matrix-vector product takes
# 4.7 us when the matrix starts on a cache line and 6.6-7.0 us when it does not, so
# W3's hand-written HVP measured 18 us in one process and 26 us in the next, by
# where the allocator happened to put A. The allocators of JAX and PyTorch align
# this way too; fixing it makes every run measure the same thing.
ALIGN = 64


def aligned(a):
    """A copy of array `a` whose data start on an ALIGN-byte boundary."""
    a = np.asarray(a)
    buf = np.empty(a.nbytes + ALIGN, np.uint8)
    start = -buf.ctypes.data % ALIGN
    out = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


# --- W1 / W5: the op chain -------------------------------------------------------------

W1_SIZE = 16
W1_OPS = 100
W5_OPS = 2000
PATTERN = ('sin', 'y*x', 'cos', 'y+x', 'tanh', 'y*0.5', 'exp', 'y*x', 'sin', 'y+x')


def w1_data(size=W1_SIZE, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size)
    v = rng.uniform(-1.0, 1.0, size)
    return aligned(x), aligned(v)


def _reps(n_ops):
    if n_ops <= 0 or n_ops % len(PATTERN):
        raise ValueError(f"the chain has a multiple of {len(PATTERN)} ops, got {n_ops}")
    return n_ops // len(PATTERN)


def make_chain(ns, n_ops=W1_OPS):
    """A freshly built f(x) = sum(chain(x)), `chain` applying `n_ops` ops that cycle
    through sin, y*x, cos, y+x, tanh, y*0.5, exp, y*x, sin, y+x."""
    reps = _reps(n_ops)
    sin, cos, tanh, exp, sum_ = ns.sin, ns.cos, ns.tanh, ns.exp, ns.sum

    def f(x):
        y = x
        for _ in range(reps):
            y = sin(y)
            y = y * x
            y = cos(y)
            y = y + x
            y = tanh(y)
            y = y * 0.5
            y = exp(y)
            y = y * x
            y = sin(y)
            y = y + x
        return sum_(y)
    return f


def w1_numpy_grad(x, n_ops=W1_OPS):
    """Hand-written reverse mode of the chain: forward keeping what the backward
    pass reads, then the backward pass with in-place accumulation."""
    reps = _reps(n_ops)
    sin, cos, tanh, exp = np.sin, np.cos, np.tanh, np.exp
    tape = []
    y = x
    for _ in range(reps):
        a = y
        b = sin(a)
        c = b * x
        y = cos(c)
        y = y + x
        t = tanh(y)
        y = t * 0.5
        e = exp(y)
        h = e * x
        y = sin(h)
        y = y + x
        tape.append((a, b, c, t, e, h))
    g = np.ones_like(x)
    gx = np.zeros_like(x)
    for a, b, c, t, e, h in reversed(tape):
        gx += g                 # y + x
        g *= cos(h)             # sin
        gx += g * e             # y * x, w.r.t. x
        g *= x                  #        w.r.t. y
        g *= e                  # exp
        g *= 0.5                # y * 0.5
        g *= 1.0 - t * t        # tanh
        gx += g                 # y + x
        g *= -sin(c)            # cos
        gx += g * b             # y * x, w.r.t. x
        g *= x                  #        w.r.t. y
        g *= cos(a)             # sin
    gx += g                     # the chain starts at y = x
    return gx


# --- W2: MLP -----------------------------------------------------------------------------

W2_SIZES = (784, 512, 512, 10)
W2_BATCH = 128


def w2_data(sizes=W2_SIZES, batch=W2_BATCH, seed=0):
    """params = (W1, b1, W2, b2, W3, b3) float32, weights N(0,1)/sqrt(fan_in),
    biases 0.01 N(0,1); inputs N(0,1); one-hot labels."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        params.append((rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32))
        params.append((0.01 * rng.standard_normal(fan_out)).astype(np.float32))
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    labels = rng.integers(0, sizes[-1], batch)
    onehot = np.zeros((batch, sizes[-1]), np.float32)
    onehot[np.arange(batch), labels] = 1.0
    return tuple(aligned(p) for p in params), aligned(x), aligned(onehot)


def make_mlp_loss(ns):
    """loss(params, x, onehot) = mean over the batch of logsumexp(logits) - sum(logits * onehot)."""
    tanh, exp, log, max_, sum_, mean = ns.tanh, ns.exp, ns.log, ns.max, ns.sum, ns.mean

    def loss(params, x, onehot):
        w1, b1, w2, b2, w3, b3 = params
        h = tanh(x @ w1 + b1)
        h = tanh(h @ w2 + b2)
        logits = h @ w3 + b3
        m = max_(logits, axis=1, keepdims=True)
        lse = m + log(sum_(exp(logits - m), axis=1, keepdims=True))
        return mean(lse - sum_(logits * onehot, axis=1, keepdims=True))
    return loss


def w2_numpy_loss(params, x, onehot):
    return make_mlp_loss(np)(params, x, onehot)


def w2_numpy_grad(params, x, onehot):
    """Hand-written backprop through the MLP (float32 throughout)."""
    w1, b1, w2, b2, w3, b3 = params
    h1 = np.tanh(x @ w1 + b1)
    h2 = np.tanh(h1 @ w2 + b2)
    logits = h2 @ w3 + b3
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    e /= e.sum(axis=1, keepdims=True)           # softmax
    e -= onehot
    e *= np.float32(1.0 / x.shape[0])           # d loss / d logits
    g_w3 = h2.T @ e
    g_b3 = e.sum(axis=0)
    d = e @ w3.T
    d *= 1.0 - h2 * h2                          # through tanh
    g_w2 = h1.T @ d
    g_b2 = d.sum(axis=0)
    d = d @ w2.T
    d *= 1.0 - h1 * h1
    g_w1 = x.T @ d
    g_b1 = d.sum(axis=0)
    return g_w1, g_b1, g_w2, g_b2, g_w3, g_b3


# --- W3: Hessian-vector product --------------------------------------------------------

W3_SIZE = 256


def w3_data(n=W3_SIZE, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n)) / 16.0
    x = rng.standard_normal(n)
    v = rng.standard_normal(n)
    return aligned(a), aligned(x), aligned(v)


def make_w3_f(ns, a):
    """f(x) = sum(tanh(A@x)**2) + 0.5*sum(x**2)."""
    tanh, sum_ = ns.tanh, ns.sum

    def f(x):
        return sum_(tanh(a @ x) ** 2) + 0.5 * sum_(x ** 2)
    return f


def w3_numpy_hvp(a, x, v):
    """H v with H = A^T diag(2 (1 - 3 t^2)(1 - t^2)) A + I, t = tanh(A x)."""
    t = np.tanh(a @ x)
    t2 = t * t
    w = a @ v
    w *= 1.0 - t2
    t2 *= -3.0
    t2 += 1.0
    w *= t2
    w *= 2.0
    out = w @ a                                  # A^T w
    out += v
    return out


# --- W4: GELU-style value_and_grad ------------------------------------------------------

W4_SIZE = 10 ** 6
W4_C = 0.79788456
W4_A = 0.044715


def w4_data(n=W4_SIZE, seed=0):
    return aligned(np.random.default_rng(seed).standard_normal(n))


def make_w4_f(ns):
    """f(x) = sum(0.5*x*(1+tanh(0.79788456*(x+0.044715*x**3))))."""
    tanh, sum_ = ns.tanh, ns.sum

    def f(x):
        return sum_(0.5 * x * (1 + tanh(0.79788456 * (x + 0.044715 * x ** 3))))
    return f


def w4_numpy_value_and_grad(x):
    """value and analytic gradient: tanh computed once, constants folded, in place."""
    x2 = x * x
    u = x2 * (W4_C * W4_A)
    u += W4_C
    u *= x                         # u = c (x + a x^3)
    t = np.tanh(u, out=u)
    half = t * 0.5
    half += 0.5                    # 0.5 (1 + t)
    value = x @ half               # sum(0.5 x (1 + t))
    t *= t
    np.subtract(1.0, t, out=t)
    t *= x                         # x (1 - t^2)
    x2 *= 1.5 * W4_C * W4_A
    x2 += 0.5 * W4_C               # 0.5 c (1 + 3 a x^2)
    t *= x2
    t += half
    return value, t


# --- W5: equation counting ----------------------------------------------------------------

def _sub_jaxprs(param):
    """Jaxprs nested in an equation parameter (cotangent's or JAX's)."""
    if isinstance(param, (tuple, list)):
        for p in param:
            yield from _sub_jaxprs(p)
        return
    inner = getattr(param, 'jaxpr', None)
    if inner is not None and hasattr(inner, 'eqns'):
        yield inner
    elif hasattr(param, 'eqns') and hasattr(param, 'invars'):
        yield param


def count_eqns(closed):
    """(top-level equations, equations including those of nested jaxprs); works on
    cotangent's and JAX's ClosedJaxpr alike."""
    top = len(closed.jaxpr.eqns)
    total = 0
    stack = [closed.jaxpr]
    while stack:
        jaxpr = stack.pop()
        for eqn in jaxpr.eqns:
            total += 1
            for p in eqn.params.values():
                stack.extend(_sub_jaxprs(p))
    return top, total


# --- W8 / W9: an RNN through lax.scan ------------------------------------------------------
# h_t = tanh(W h_{t-1} + U x_t + b), h_0 = 0, hidden 64, input 64, T = 1,000 steps,
# float64; W, U ~ N(0,1)/8 (= 1/sqrt(64)), b ~ 0.01 N(0,1), x_t ~ N(0,1).
# loss = sum(h_T). Metric (W8): the gradient with respect to (W, U, b), no jit.
# W9: the same RNN as a scan over 100 blocks of 10 steps (xs shaped (100, 10, 64)),
# each block plain or checkpoint(block) (policy nothing_saveable).

RNN_H = 64
RNN_D = 64
RNN_T = 1000
RNN_BLOCK = 10


def rnn_data(T=RNN_T, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(RNN_H, RNN_H)) / np.sqrt(RNN_H)
    U = rng.normal(size=(RNN_H, RNN_D)) / np.sqrt(RNN_D)
    b = 0.01 * rng.normal(size=RNN_H)
    X = rng.normal(size=(T, RNN_D))
    return (aligned(W), aligned(U), aligned(b)), aligned(X)


def make_rnn_loss(pnp, lax):
    """loss(params, X) = sum(h_T), the recurrence a lax.scan over the rows of X."""
    def loss(params, X):
        W, U, b = params

        def cell(h, x):
            return pnp.tanh(W @ h + U @ x + b), None
        h, _ = lax.scan(cell, np.zeros(RNN_H), X)
        return pnp.sum(h)
    return loss


def make_rnn_block_loss(pnp, lax, checkpoint=None):
    """W9: loss(params, Xb) with Xb of shape (T/K, K, D), a scan over blocks of K cell
    steps; `checkpoint` (cotangent's) wraps the block when given."""
    def loss(params, Xb):
        W, U, b = params

        def block(h, xb):
            for k in range(RNN_BLOCK):
                h = pnp.tanh(W @ h + U @ xb[k] + b)
            return h
        blk = checkpoint(block) if checkpoint is not None else block
        h, _ = lax.scan(lambda h, xb: (blk(h, xb), None), np.zeros(RNN_H), Xb)
        return pnp.sum(h)
    return loss


def rnn_numpy_grad(params, X):
    """Hand-written BPTT: the input projections of all steps as one matmul, a forward
    loop keeping the states, a backward loop of one matrix-vector product per step,
    and the weight gradients as matrix products over all steps at the end."""
    W, U, b = params
    T = X.shape[0]
    UX = X @ U.T + b
    hs = np.empty((T + 1, RNN_H))
    hs[0] = 0.0
    h = hs[0]
    for t in range(T):
        h = np.tanh(W @ h + UX[t])
        hs[t + 1] = h
    D = 1.0 - hs[1:] ** 2
    dZ = np.empty((T, RNN_H))
    WT = np.ascontiguousarray(W.T)
    dh = np.ones(RNN_H)
    for t in range(T - 1, -1, -1):
        dz = dh * D[t]
        dZ[t] = dz
        dh = WT @ dz
    return dZ.T @ hs[:-1], dZ.T @ X, dZ.sum(0)


# --- W6: dense Jacobians ------------------------------------------------------------------

W6_SIZE = 200


def w6_data(n=W6_SIZE, seed=0):
    """W n x n float64 N(0,1)/sqrt(n), x N(0,1)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, n)) / np.sqrt(n)
    x = rng.standard_normal(n)
    return w, x


def make_w6_g(ns, w):
    """g(x) = tanh(W @ x)."""
    tanh = ns.tanh

    def g(x):
        return tanh(w @ x)
    return g


def w6_numpy_jacobian(w, x):
    """d tanh(W x) / dx = diag(1 - t^2) W."""
    t = np.tanh(w @ x)
    return (1 - t ** 2)[:, None] * w


# --- PEG: per-example gradients of the W2 MLP -------------------------------------------

def make_mlp_loss_one(ns):
    """The W2 loss of one example (x: (784,), onehot: (10,)):
    logsumexp(logits) - sum(logits * onehot)."""
    tanh, exp, log, max_, sum_ = ns.tanh, ns.exp, ns.log, ns.max, ns.sum

    def loss_one(params, x, onehot):
        w1, b1, w2, b2, w3, b3 = params
        h = tanh(x @ w1 + b1)
        h = tanh(h @ w2 + b2)
        logits = h @ w3 + b3
        m = max_(logits)
        return m + log(sum_(exp(logits - m))) - sum_(logits * onehot)
    return loss_one


def peg_numpy_grads(params, x, onehot):
    """Per-example gradients of loss_one for every row of x, by hand (vectorised
    backprop; each weight's gradient is a batch of outer products), float32.
    Returns the 6 gradients, each with a leading batch axis."""
    w1, b1, w2, b2, w3, b3 = params
    h1 = np.tanh(x @ w1 + b1)
    h2 = np.tanh(h1 @ w2 + b2)
    logits = h2 @ w3 + b3
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    e /= e.sum(axis=1, keepdims=True)
    e -= onehot                                  # d loss_one / d logits, per row
    g_w3 = h2[:, :, None] * e[:, None, :]
    d = e @ w3.T
    d *= 1.0 - h2 * h2
    g_w2 = h1[:, :, None] * d[:, None, :]
    d1 = d @ w2.T
    d1 *= 1.0 - h1 * h1
    g_w1 = x[:, :, None] * d1[:, None, :]
    return g_w1, d1, g_w2, d, g_w3, e
