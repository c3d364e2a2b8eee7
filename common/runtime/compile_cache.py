"""A persistent XLA compilation cache, so a rerun or a sweep member skips the compiles an earlier run made.

JAX keys each entry by the computation, the jax/jaxlib version, the backend and the flags, so a stale entry is
never used: a changed model or a new jax compiles afresh. Where: `$ELEC576_JAX_CACHE` if set (a folder, or one of
`0 off false no` to turn the cache off), else JAX's own `JAX_COMPILATION_CACHE_DIR` if set (left as it is), else
`$XDG_CACHE_HOME/elec576-jax/xla` (default `~/.cache/elec576-jax/xla`).
"""
import os

ENV = "ELEC576_JAX_CACHE"
OFF = ("0", "off", "false", "no", "")
# JAX caches only compiles that took at least this long (its default, 1 s, skips LeNet5's ~0.5 s step on a CPU).
MIN_COMPILE_SECS = 0.2
MAX_BYTES = 1 << 30  # least recently used entries go beyond 1 GiB


def cache_dir(environ=None) -> str | None:
    """The folder the cache should use, or None when it is off or JAX's own variable already chose one."""
    environ = os.environ if environ is None else environ
    if ENV in environ:
        value = environ[ENV].strip()
        return None if value.lower() in OFF else os.path.abspath(os.path.expanduser(value))
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None  # JAX reads its own variable; the user's choice stands
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "elec576-jax", "xla")


def enable(environ=None) -> str | None:
    """Points JAX's persistent compilation cache at `cache_dir()`; returns the folder, or None when not enabled
    (turned off, or a folder that cannot be made: then every compile just runs, as without a cache)."""
    path = cache_dir(environ)
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    import jax  # here, so that importing this module (from the CLI, before parsing) loads no backend

    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return path
