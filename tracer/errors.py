"""The error classes of the contract, and where in the user's code an error arose."""
import os
import sys

_PACKAGE_DIRS = tuple(os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep + p + os.sep
                      for p in ('tracer', 'primitives', 'transforms'))


class ConcretizationTypeError(TypeError):
    """A traced value with no concrete value was used where Python needs one."""


class TracerArrayConversionError(ConcretizationTypeError):
    """numpy.asarray / __array__ on a traced value."""


class TracerBoolConversionError(ConcretizationTypeError):
    """Python control flow (`if`, `while`, `and`) on a traced value."""


class UnexpectedTracerError(Exception):
    """A tracer escaped the transform that created it and was used afterwards."""


def user_frame():
    """The innermost stack frame outside cotangent's own packages, or None."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_PACKAGE_DIRS) and 'contextlib' not in fn:
            return f
        f = f.f_back
    return None


def user_line():
    """'file.py:12 (fn)' for the user's line that is running, or ''."""
    f = user_frame()
    if f is None:
        return ''
    return f"{os.path.basename(f.f_code.co_filename)}:{f.f_lineno} ({f.f_code.co_name})"


def with_user_line(msg):
    line = user_line()
    return f"{msg}\n  at {line}" if line else msg
