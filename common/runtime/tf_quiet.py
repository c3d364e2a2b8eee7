"""Import TensorFlow (for TFDS) without its log noise and without letting it take GPU memory from JAX.

Only `common.data` calls these, and only to read a TFDS dataset that is not in the data cache (docs/data.md);
where TensorFlow is not installed the ImportError reaches `common.data._read_tfds`, which says in one line what
to do instead. No module of the project imports TensorFlow at import time.
"""
import contextlib
import functools
import logging
import os


@contextlib.contextmanager
def _stderr_silenced():
    # TensorFlow's C++ runtime writes a few lines straight to file descriptor 2 while it loads; Python-level
    # redirection cannot catch them, so point the descriptor at /dev/null for the duration of the import.
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@functools.cache
def tensorflow():
    """Returns the `tensorflow` module, imported quietly and with its GPUs hidden."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    with _stderr_silenced():
        import tensorflow as tf
    # TFDS only feeds arrays to JAX: keep TensorFlow off the accelerators so it does not reserve their memory.
    tf.config.set_visible_devices([], "GPU")
    tf.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    return tf


@functools.cache
def tfds():
    """Returns `tensorflow_datasets`, imported after `tensorflow()`."""
    tensorflow()
    with _stderr_silenced():
        import tensorflow_datasets
    return tensorflow_datasets
