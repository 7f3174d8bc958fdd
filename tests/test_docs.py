"""Executes the code in docs/*.md, so the documentation cannot drift from the code.

Conventions for the Markdown files (fences start at column 0):

* Every ```python block runs. The blocks of one document run in order in one
  namespace, so later blocks may use names defined by earlier ones. Asserts in
  the blocks check the numbers the prose states.
* A ```text block that directly follows a ```python block (nothing but blank
  lines between the two) is that block's expected standard output: what the
  python block prints must equal the text block, compared line by line after
  stripping trailing whitespace (and trailing blank lines). This is how printed
  jaxprs are kept honest.
* A ```text block after prose is an illustration and is not checked.
* ```python no-run marks a block that must not run (none is used today).

When the printed IR changes on purpose (a new simplification, a renamed
primitive), regenerate the expected outputs with

    python tests/test_docs.py --update

and review the diff of docs/ before committing.
"""
import contextlib
import difflib
import io
import os
import re
import sys
import traceback

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# every Markdown file in docs/, and the README
DOCS = tuple(sorted(f for f in os.listdir(os.path.join(ROOT, 'docs')) if f.endswith('.md'))) \
    + ('../README.md',)
_OPEN = re.compile(r'^(`{3,})\s*([\w+-]*)\s*(.*?)\s*$')


class Block:
    """A fenced code block: its language, options, code and position."""
    __slots__ = ('lang', 'options', 'code', 'start', 'end', 'follows')

    def __init__(self, lang, options, code, start, end, follows):
        self.lang = lang          # 'python', 'text', ...
        self.options = options    # words after the language, e.g. {'no-run'}
        self.code = code
        self.start = start        # 0-based index of the opening fence line
        self.end = end            # 0-based index of the closing fence line
        self.follows = follows    # the block just before, if only blank lines separate them

    @property
    def runs(self):
        return self.lang == 'python' and 'no-run' not in self.options

    def __repr__(self):
        return f"Block({self.lang}, line {self.start + 1})"


def parse_blocks(text):
    """The fenced blocks of a Markdown text, in order."""
    lines = text.split('\n')
    blocks = []
    i = 0
    prev = None
    gap_blank = True      # only blank lines since the previous block closed
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            if lines[i].strip():
                gap_blank = False
            i += 1
            continue
        fence, lang, opts = m.group(1), m.group(2).lower(), m.group(3)
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != fence:
            j += 1
        if j == len(lines):
            raise ValueError(f"unclosed ``` block opened at line {i + 1}")
        block = Block(lang, set(opts.split()), '\n'.join(lines[i + 1:j]), i, j,
                      prev if (prev is not None and gap_blank) else None)
        blocks.append(block)
        prev = block
        gap_blank = True
        i = j + 1
    return blocks


def expected_output(block, blocks):
    """The ```text block holding `block`'s expected output, or None."""
    k = blocks.index(block)
    if k + 1 < len(blocks):
        nxt = blocks[k + 1]
        if nxt.lang == 'text' and nxt.follows is block:
            return nxt
    return None


def normalize(s):
    lines = [ln.rstrip() for ln in s.split('\n')]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return '\n'.join(lines)


class DocFailure(AssertionError):
    pass


def run_doc(path, update=False):
    """Run every python block of the document at `path`; check each expected
    output. With update=True, rewrite the expected outputs instead of checking.
    Returns the number of (blocks run, outputs checked)."""
    with open(path, encoding='utf-8') as fh:
        text = fh.read()
    blocks = parse_blocks(text)
    name = os.path.basename(path)
    ns = {'__name__': '__docs__', '__file__': path}
    replacements = []
    ran = checked = 0
    for block in blocks:
        if not block.runs:
            continue
        # Pad so tracebacks and error messages give the Markdown file's line numbers.
        code = compile('\n' * (block.start + 1) + block.code, path, 'exec')
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(code, ns)
        except Exception:
            raise DocFailure(
                f"{name}: the python block at line {block.start + 1} failed:\n"
                f"{traceback.format_exc()}\n--- output before the failure ---\n"
                f"{out.getvalue()}") from None
        ran += 1
        want = expected_output(block, blocks)
        if want is None:
            continue
        got = normalize(out.getvalue())
        if update:
            replacements.append((want, got))
            continue
        checked += 1
        if got != normalize(want.code):
            diff = '\n'.join(difflib.unified_diff(
                normalize(want.code).split('\n'), got.split('\n'),
                f"{name}:{want.start + 2} (documented)", "printed now", lineterm=''))
            raise DocFailure(
                f"{name}: the output of the python block at line {block.start + 1} differs "
                f"from the ```text block at line {want.start + 1}:\n{diff}\n"
                f"(If the change is intended, run `python tests/test_docs.py --update`.)")
    if update and replacements:
        lines = text.split('\n')
        for want, got in sorted(replacements, key=lambda r: -r[0].start):
            lines[want.start + 1:want.end] = got.split('\n') if got else []
        new = '\n'.join(lines)
        if new != text:
            with open(path, 'w', encoding='utf-8') as fh:
                fh.write(new)
    return ran, checked


def _doc_path(name):
    return os.path.join(ROOT, 'docs', name)


# --- the tests ------------------------------------------------------------------------

@pytest.mark.parametrize('name', DOCS)
def test_doc_runs_and_prints_what_it_shows(name):
    ran, checked = run_doc(_doc_path(name))
    readme = name.endswith('README.md')   # the README has one example, no shown output
    assert ran >= (1 if readme else 10), f"{name}: only {ran} python blocks ran"
    assert checked >= (0 if readme else 3), f"{name}: only {checked} printed outputs were checked"


def test_architecture_shows_each_stage_of_the_ir():
    with open(_doc_path('architecture.md'), encoding='utf-8') as fh:
        blocks = parse_blocks(fh.read())
    shown = [expected_output(b, blocks) for b in blocks if b.runs]
    jaxprs = [t for t in shown if t is not None and '{ lambda' in t.code]
    # make_jaxpr(f), the linear jaxpr, make_jaxpr(grad(f)), make_jaxpr(hvp) at least
    assert len(jaxprs) >= 4


def test_every_doc_block_is_recognised():
    for name in DOCS:
        with open(_doc_path(name), encoding='utf-8') as fh:
            blocks = parse_blocks(fh.read())
        for b in blocks:
            assert b.lang in ('python', 'text'), f"{name}:{b.start + 1}: ```{b.lang}"
            assert not (b.lang == 'python' and not b.runs), \
                f"{name}:{b.start + 1}: a python block that does not run"


_SAMPLE = """Intro.

```python
x = 2 + 3
print(x)
```

```text
5
```

Prose between.

```text
not checked: it follows prose
```

```python
print('a  ')
print()
```
```text
a
```

```python no-run
raise RuntimeError('never runs')
```
"""


def test_convention_on_a_sample(tmp_path):
    blocks = parse_blocks(_SAMPLE)
    assert [b.lang for b in blocks] == ['python', 'text', 'text', 'python', 'text', 'python']
    assert expected_output(blocks[0], blocks) is blocks[1]
    assert blocks[2].follows is None                        # after prose
    assert expected_output(blocks[3], blocks) is blocks[4]  # no blank line between
    assert not blocks[5].runs
    p = tmp_path / 'sample.md'
    p.write_text(_SAMPLE)
    assert run_doc(str(p)) == (2, 2)
    # a drifted output is reported with a diff
    p.write_text(_SAMPLE.replace('```text\n5\n```', '```text\n6\n```'))
    with pytest.raises(DocFailure, match=r'differs[\s\S]*-6[\s\S]*\+5'):
        run_doc(str(p))
    # --update rewrites it back
    run_doc(str(p), update=True)
    assert p.read_text() == _SAMPLE
    # an exception names the Markdown line it came from
    p.write_text("```python\nx = 1\n\nundefined_name\n```\n")
    with pytest.raises(DocFailure, match=r'line 1 failed[\s\S]*line 4'):
        run_doc(str(p))


if __name__ == '__main__':
    if '--update' in sys.argv[1:]:
        for doc in DOCS:
            print(doc, 'blocks run: %d' % run_doc(_doc_path(doc), update=True)[0])
    else:
        print(__doc__)
