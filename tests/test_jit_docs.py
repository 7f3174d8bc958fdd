"""docs/jit.md runs and prints what it shows (the conventions of tests/test_docs.py)."""
import os

from test_docs import run_doc, ROOT


def test_jit_doc_runs_and_prints_what_it_shows():
    ran, checked = run_doc(os.path.join(ROOT, 'docs', 'jit.md'))
    assert ran >= 6 and checked >= 6


if __name__ == '__main__':
    import sys
    if '--update' in sys.argv[1:]:
        print(run_doc(os.path.join(ROOT, 'docs', 'jit.md'), update=True))
