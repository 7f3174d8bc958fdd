"""Shared fixtures."""
import os

import pytest


@pytest.fixture(scope='module')
def jit_cache_dir(tmp_path_factory):
    """A fresh on-disk jit cache for one test module (COTANGENT_CACHE_DIR), restored
    afterwards, so tests neither read nor fill the user's cache."""
    old = os.environ.get('COTANGENT_CACHE_DIR')
    path = tmp_path_factory.mktemp('cotangent-cache')
    os.environ['COTANGENT_CACHE_DIR'] = str(path)
    yield path
    if old is None:
        os.environ.pop('COTANGENT_CACHE_DIR', None)
    else:
        os.environ['COTANGENT_CACHE_DIR'] = old
