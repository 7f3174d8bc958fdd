"""Array helpers that generated code calls instead of NumPy functions.

numba implements `np.empty`, `np.dot`, `reshape`... as overloads that it compiles
afresh in every process, the first time each is used (0.1-0.8 s apiece): that
would dominate the first call of every jitted program. These wrappers are
`@njit(cache=True)`: compiled once per signature and machine, then loaded from
numba's disk cache (primitives/__pycache__), so a new process pays a load, not a
compilation.
"""
import numpy as np
from numba.core import types as _nbtypes
from numba.core.registry import CPUDispatcher as _CPUDispatcher


class HelperDispatcher(_CPUDispatcher):
    """The dispatcher of a helper that generated code calls: it compiles for the
    non-literal types of its arguments. (numba's own dispatcher, called from
    compiled code, compiles a specialisation per literal: `empty((128, 512), dt)`
    would be compiled, not loaded from the disk cache, for every new shape.)"""

    def get_call_template(self, args, kws):
        return super().get_call_template(
            tuple(_nbtypes.unliteral(a) for a in args),
            {k: _nbtypes.unliteral(v) for k, v in kws.items()})


def njit(cache=False, **options):
    """`numba.njit(...)` for helpers, with a HelperDispatcher."""
    options['nopython'] = True
    options.setdefault('boundscheck', None)

    def wrap(fn):
        disp = HelperDispatcher(py_func=fn, locals={}, targetoptions=dict(options))
        if cache:
            disp.enable_caching()
        return disp
    return wrap


_opts = dict(cache=True, error_model='numpy')


@njit(**_opts)
def empty(shape, dt):
    return np.empty(shape, dt)


@njit(**_opts)
def full(shape, value, dt):
    return np.full(shape, value, dt)


@njit(**_opts)
def contig(a):
    return np.ascontiguousarray(a)


@njit(**_opts)
def reshape(a, shape):
    """Reshape (a view when `a` is contiguous, else of a contiguous copy)."""
    return np.ascontiguousarray(a).reshape(shape)


@njit(**_opts)
def transpose(a, perm):
    return a.transpose(perm)


@njit(**_opts)
def copy(a):
    return np.copy(a)


@njit(**_opts)
def astype(a, dt):
    return a.astype(dt)


@njit(**_opts)
def dot(a, b):
    """np.dot (BLAS) of float arrays: contiguous or transposed views pass as they are."""
    return np.dot(a, b)


@njit(**_opts)
def dot_t(a, b):
    """a.T @ b."""
    return np.dot(np.ascontiguousarray(a).T, np.ascontiguousarray(b))


@njit(**_opts)
def dot_nt(a, b):
    """a @ b.T."""
    return np.dot(np.ascontiguousarray(a), np.ascontiguousarray(b).T)


@njit(**_opts)
def dot_tt(a, b):
    """a.T @ b.T."""
    return np.dot(np.ascontiguousarray(a).T, np.ascontiguousarray(b).T)


@njit(**_opts)
def dot_nn(a, b):
    return np.dot(np.ascontiguousarray(a), np.ascontiguousarray(b))


# --- matrix products through NumPy's own BLAS ------------------------------------------------
# numba's np.dot calls SciPy's BLAS, which may be another (older) build than NumPy's: here
# NumPy's sgemm was ~10% faster on the W2 shapes. When NumPy's bundled OpenBLAS exports
# CBLAS gemm (64-bit integers), its address is registered with LLVM under a fixed symbol
# name at import, and the gemm_* helpers call it. Machine code refers to the symbol by
# name, so numba's disk cache stays valid across processes. Without such a library the
# gemm_* helpers are the np.dot versions above.
import ctypes as _ctypes  # noqa: E402
import glob as _glob  # noqa: E402
import os as _os  # noqa: E402

from llvmlite import ir as _ir  # noqa: E402
from llvmlite import binding as _llvm  # noqa: E402
from numba.core import cgutils as _cgutils, types as _types  # noqa: E402
from numba.extending import intrinsic as _intrinsic  # noqa: E402


def _find_numpy_cblas():
    d = _os.path.join(_os.path.dirname(_os.path.dirname(np.__file__)), 'numpy.libs')
    for path in sorted(_glob.glob(_os.path.join(d, 'libscipy_openblas64_*.so*'))):
        try:
            lib = _ctypes.CDLL(path)
            s, dd = lib.scipy_cblas_sgemm64_, lib.scipy_cblas_dgemm64_
        except (OSError, AttributeError):
            continue
        return (_ctypes.cast(s, _ctypes.c_void_p).value, _ctypes.cast(dd, _ctypes.c_void_p).value,
                lib)
    return None


_CBLAS = _find_numpy_cblas()
HAVE_NUMPY_BLAS = _CBLAS is not None
if HAVE_NUMPY_BLAS:
    _llvm.add_symbol('cotangent_cblas_sgemm64', _CBLAS[0])
    _llvm.add_symbol('cotangent_cblas_dgemm64', _CBLAS[1])


@_intrinsic
def _gemm(typingctx, ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
    """C = op(A) @ op(B) (row major; ta/tb: 111 no transpose, 112 transpose)."""
    if not (isinstance(a, _types.Array) and a.dtype in (_types.float32, _types.float64)
            and b == a.copy(layout=b.layout) and c.dtype == a.dtype):
        return None
    fty = a.dtype
    sym = 'cotangent_cblas_sgemm64' if fty == _types.float32 else 'cotangent_cblas_dgemm64'

    def codegen(context, builder, sig, args):
        ta, tb, m, n, k, a_, lda, b_, ldb, c_, ldc = args
        i32, i64 = _ir.IntType(32), _ir.IntType(64)
        fl = context.get_value_type(fty)
        ptr = fl.as_pointer()
        fnty = _ir.FunctionType(_ir.VoidType(), [i32, i32, i32, i64, i64, i64, fl, ptr, i64,
                                                 ptr, i64, fl, ptr, i64])
        fn = _cgutils.get_or_insert_function(builder.module, fnty, sym)
        A = context.make_array(sig.args[5])(context, builder, a_).data
        B = context.make_array(sig.args[7])(context, builder, b_).data
        C = context.make_array(sig.args[9])(context, builder, c_).data
        builder.call(fn, [i32(101), builder.trunc(ta, i32), builder.trunc(tb, i32), m, n, k,
                          _ir.Constant(fl, 1.0), A, lda, B, ldb, _ir.Constant(fl, 0.0), C, ldc])
        return context.get_dummy_value()
    i64 = _types.int64
    return _types.none(i64, i64, i64, i64, i64, a, i64, b, i64, c, i64), codegen


@njit(**_opts)
def _gemm2(a, b, ta, tb, m, n, k):
    c = np.empty((m, n), a.dtype)
    if m == 0 or n == 0:
        return c
    if k == 0:
        c[:] = 0
        return c
    _gemm(ta, tb, m, n, k, a, a.shape[1], b, b.shape[1], c, n)
    return c


@njit(**_opts)
def _gemm_nn(a, b):
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    return _gemm2(a, b, 111, 111, a.shape[0], b.shape[1], a.shape[1])


@njit(**_opts)
def _gemm_t(a, b):
    """a.T @ b."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    return _gemm2(a, b, 112, 111, a.shape[1], b.shape[1], a.shape[0])


@njit(**_opts)
def _gemm_nt(a, b):
    """a @ b.T."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    return _gemm2(a, b, 111, 112, a.shape[0], b.shape[0], a.shape[1])


@njit(**_opts)
def _gemm_tt(a, b):
    """a.T @ b.T."""
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    return _gemm2(a, b, 112, 112, a.shape[1], b.shape[0], a.shape[0])


if HAVE_NUMPY_BLAS:
    gemm_nn, gemm_t, gemm_nt, gemm_tt = _gemm_nn, _gemm_t, _gemm_nt, _gemm_tt
else:
    gemm_nn, gemm_t, gemm_nt, gemm_tt = dot_nn, dot_t, dot_nt, dot_tt

# numba's own np.dot needs SciPy's BLAS (not a dependency of cotangent): without
# NumPy's CBLAS and without SciPy, float contractions cannot be compiled.
import importlib.util as _ilu  # noqa: E402
HAVE_SCIPY_BLAS = _ilu.find_spec('scipy') is not None
HAVE_BLAS = HAVE_NUMPY_BLAS or HAVE_SCIPY_BLAS


# --- element loads and stores -------------------------------------------------------------------
# `ld2(a, i, j)` is `a[i, j]` and `st2(a, i, j, v)` is `a[i, j] = v` for non-negative
# in-range integer indices (what generated loop nests index with). numba's
# subscripts type through every getitem/setitem overload it knows and lower to
# a spill of the array structure per access, with negative-index wraparound: per
# access ~8x the compile work of these, which emit the address computation and
# the load/store only (the same address numba computes, for any layout).

def _item_ptr(context, builder, aty, ary, inds, ind_types):
    dm = context.data_model_manager[aty]
    data = builder.extract_value(ary, dm.get_field_position('data'))
    shape = builder.extract_value(ary, dm.get_field_position('shape'))
    strides = builder.extract_value(ary, dm.get_field_position('strides'))
    nd = aty.ndim
    inds = [context.cast(builder, v, t, _types.intp) for v, t in zip(inds, ind_types)]
    return _cgutils.get_item_pointer2(
        context, builder, data, [builder.extract_value(shape, k) for k in range(nd)],
        [builder.extract_value(strides, k) for k in range(nd)], aty.layout, inds)


def _ld_typer(a, idx):
    if not (isinstance(a, _types.Array) and a.ndim == len(idx)
            and all(isinstance(i, _types.Integer) for i in idx)):
        return None

    def codegen(context, builder, sig, args):
        aty = sig.args[0]
        ptr = _item_ptr(context, builder, aty, args[0], args[1:], sig.args[1:])
        return context.unpack_value(builder, aty.dtype, ptr)
    return a.dtype(a, *idx), codegen


def _st_typer(a, idx, v):
    if not (isinstance(a, _types.Array) and a.mutable and a.ndim == len(idx)
            and all(isinstance(i, _types.Integer) for i in idx)
            and isinstance(v, (_types.Number, _types.Boolean))):
        return None

    def codegen(context, builder, sig, args):
        aty = sig.args[0]
        ptr = _item_ptr(context, builder, aty, args[0], args[1:-1], sig.args[1:-1])
        val = context.cast(builder, args[-1], sig.args[-1], aty.dtype)
        context.pack_value(builder, aty.dtype, val, ptr)
        return context.get_dummy_value()
    return _types.none(a, *idx, v), codegen


@_intrinsic
def ld1(typingctx, a, i):
    return _ld_typer(a, (i,))


@_intrinsic
def ld2(typingctx, a, i, j):
    return _ld_typer(a, (i, j))


@_intrinsic
def ld3(typingctx, a, i, j, k):
    return _ld_typer(a, (i, j, k))


@_intrinsic
def ld4(typingctx, a, i, j, k, m):
    return _ld_typer(a, (i, j, k, m))


@_intrinsic
def st1(typingctx, a, i, v):
    return _st_typer(a, (i,), v)


@_intrinsic
def st2(typingctx, a, i, j, v):
    return _st_typer(a, (i, j), v)


@_intrinsic
def st3(typingctx, a, i, j, k, v):
    return _st_typer(a, (i, j, k), v)


@_intrinsic
def st4(typingctx, a, i, j, k, m, v):
    return _st_typer(a, (i, j, k, m), v)


LDST_MAX_NDIM = 4


# --- a lean compilation pipeline for generated programs ----------------------------------------
# Generated code is straight-line loops over arrays and scalars: no closures, `with`
# blocks, literal_unroll, array expressions or dead constant branches. numba's default
# nopython pipeline runs passes for all of those (rewrites, closure inlining, literal
# propagation...) at ~0.1 ms per IR statement; this one keeps only what such code needs.
from numba.core.compiler import CompilerBase as _CompilerBase, PassManager as _PassManager  # noqa: E402
from numba.core import untyped_passes as _up, typed_passes as _tp  # noqa: E402
from numba.core.codegen import JITCodeLibrary as _JITCodeLibrary  # noqa: E402
from numba.core.compiler_machinery import (LoweringPass as _LoweringPass,  # noqa: E402
                                           register_pass as _register_pass)


class _GeneratedCodeLibrary(_JITCodeLibrary):
    """The code library of a generated function: numba's, with two changes to what
    LLVM runs, for compile time (a program's first call is mostly numba compiling it).

    - No per-function optimisation of the freshly lowered module before it is
      linked (numba does it to bound memory on big modules): the module
      pipeline after linking runs the same function passes over everything.
      ~10% of the first call of the W2 MLP.
    - No loop unrolling in that pipeline: vectorised loop bodies are not
      replicated (the W2/W4 loops ran no slower without it)."""

    def _optimize_functions(self, ll_module):
        ll_module.data_layout = self._codegen._data_layout

    def _optimize_final_module(self):
        from numba.core import config as _config, codegen as _cg
        import llvmlite.binding as _ll
        cg = self._codegen
        # numba's cheap pass (inlining for the reference-count pruner), unchanged
        mpm, mpb = cg._module_pass_manager(loop_vectorize=cg._loopvect, slp_vectorize=False,
                                           opt=cg._opt_level, cost="cheap")
        with self._recorded_timings.record("Module passes (cheap optimization for refprune)",
                                           mpb):
            mpm.run(self._final_module, mpb)
        if not _config.LLVM_REFPRUNE_PASS:
            self._final_module = _cg.remove_redundant_nrt_refct(self._final_module)
        # numba's full pipeline, without loop unrolling
        pto = _ll.create_pipeline_tuning_options()
        pto.speed_level = _config.OPT
        pto.loop_vectorization = bool(_config.LOOP_VECTORIZE)
        pto.slp_vectorization = bool(_config.SLP_VECTORIZE)
        pto.loop_unrolling = False
        pb = _ll.create_pass_builder(cg._tm, pto)
        pm = pb.getModulePassManager()
        if _config.LLVM_REFPRUNE_PASS:
            pm.add_refprune_pass(_cg._parse_refprune_flags())
        with self._recorded_timings.record("Module passes (full optimization)", pb):
            pm.run(self._final_module, pb)


@_register_pass(mutates_CFG=False, analysis_only=False)
class _UseGeneratedCodeLibrary(_LoweringPass):
    _name = "cotangent_code_library"

    def __init__(self):
        _LoweringPass.__init__(self)

    def run_pass(self, state):
        if state.library is None:
            codegen = state.targetctx.codegen()
            state.library = _GeneratedCodeLibrary(codegen, state.func_id.func_qualname)
            state.library.enable_object_caching()
        return False


class LeanPipeline(_CompilerBase):
    """`njit(pipeline_class=LeanPipeline)`: numba's nopython pipeline without the
    passes generated code never needs."""

    def define_pipelines(self):
        pm = _PassManager('cotangent_lean')
        if self.state.func_ir is None:
            pm.add_pass(_up.TranslateByteCode, "analyzing bytecode")
            pm.add_pass(_up.FixupArgs, "fix up args")
        pm.add_pass(_up.IRProcessing, "processing IR")
        pm.add_pass(_up.RewriteDynamicRaises, "rewrite dynamic raises")
        pm.add_pass(_up.ReconstructSSA, "ssa")
        pm.add_pass(_tp.NopythonTypeInference, "nopython frontend")
        pm.add_pass(_tp.PreLowerStripPhis, "remove phis nodes")
        pm.add_pass(_tp.NoPythonSupportedFeatureValidation, "validate")
        pm.add_pass(_tp.IRLegalization, "ensure IR is legal prior to lowering")
        pm.add_pass(_tp.AnnotateTypes, "annotate types")
        pm.add_pass(_UseGeneratedCodeLibrary, "cotangent code library")
        pm.add_pass(_tp.NativeLowering, "native lowering")
        pm.add_pass(_tp.NoPythonBackend, "nopython mode backend")
        pm.finalize()
        return [pm]
