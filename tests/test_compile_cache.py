"""common.runtime.compile_cache: where the persistent compilation cache goes, and that it can be turned off."""
import os
import tempfile

import jax
import pytest

from common.runtime import compile_cache


@pytest.mark.parametrize("environ, expected", [
    ({}, os.path.join(os.path.expanduser("~"), ".cache", "elec576-jax", "xla")),
    ({"XDG_CACHE_HOME": "/c"}, "/c/elec576-jax/xla"),
    ({"ELEC576_JAX_CACHE": "/mine", "XDG_CACHE_HOME": "/c"}, "/mine"),
    ({"ELEC576_JAX_CACHE": "off"}, None),
    ({"ELEC576_JAX_CACHE": "0"}, None),
    ({"JAX_COMPILATION_CACHE_DIR": "/jax"}, None),  # JAX reads its own variable
])
def test_cache_dir(environ, expected):
    assert compile_cache.cache_dir(environ) == expected


def test_enable_points_jax_at_the_folder_and_off_changes_nothing(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    assert compile_cache.enable({"ELEC576_JAX_CACHE": "off"}) is None
    assert jax.config.jax_compilation_cache_dir == before
    folder = tmp_path / "xla"
    try:
        assert compile_cache.enable({"ELEC576_JAX_CACHE": str(folder)}) == str(folder)
        assert jax.config.jax_compilation_cache_dir == str(folder) and folder.is_dir()
        assert jax.config.jax_persistent_cache_min_compile_time_secs == compile_cache.MIN_COMPILE_SECS
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_unmakeable_folder_means_no_cache(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert compile_cache.enable({"ELEC576_JAX_CACHE": str(blocker / "xla")}) is None


def test_the_suite_never_writes_into_the_users_cache():
    from tests import conftest

    assert os.environ["ELEC576_JAX_CACHE"] == conftest.TEST_XLA_CACHE
    assert os.path.dirname(conftest.TEST_XLA_CACHE) == tempfile.gettempdir()
