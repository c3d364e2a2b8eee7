"""`python -m benchmarks.reference_keras [--models lstm-128,gru-128]`: the same LeNet5 and recurrent nets in
Keras/TensorFlow, timed the way
`python -m benchmarks` times ours (a hand-written `tf.function` train step, median of timed windows), so that
the two can be compared in one session on one machine. Prints one JSON line per model.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from common.runtime import tf_quiet


def lenet_keras(tf):
    keras = tf.keras
    l2, init = keras.regularizers.l2, keras.initializers.GlorotNormal()
    bias = keras.initializers.Constant(0.1)
    layers = [keras.Input((28, 28, 1))]
    for f in (32, 64):
        layers += [keras.layers.Conv2D(f, 5, padding="same", activation="relu", kernel_initializer=init,
                                       bias_initializer=bias, kernel_regularizer=l2(0.01)),
                   keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(2)]
    layers += [keras.layers.Flatten(),
               keras.layers.Dense(1024, activation="relu", kernel_initializer=init, bias_initializer=bias,
                                  kernel_regularizer=l2(0.005)),
               keras.layers.Dropout(0.8), keras.layers.Dense(10, kernel_initializer=init, bias_initializer=bias)]
    return keras.Sequential(layers), 1.7e-4, 50


def recurrent_keras(tf, cell: str, hidden: int):
    keras = tf.keras
    layer = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[cell]
    model = keras.Sequential([keras.Input((28, 28)), layer(hidden), keras.layers.BatchNormalization(),
                              keras.layers.Dense(10)])
    return model, 1e-3, 32


def bench(tf, name, model, lr, batch_size, shape, windows=5, steps=20):
    opt = tf.keras.optimizers.Nadam(lr)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(jit_compile=False)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True)) + tf.add_n(model.losses or [tf.zeros(())])
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    rng = np.random.default_rng(0)
    batches = [(rng.random((batch_size,) + shape, dtype=np.float32), rng.integers(0, 10, batch_size))
               for _ in range(8)]
    t0 = time.perf_counter()
    step(*batches[0]).numpy()
    first = time.perf_counter() - t0
    for b in batches[:3]:
        step(*b)
    rates = []
    for w in range(windows):
        t0 = time.perf_counter()
        for i in range(steps):
            loss = step(*batches[(w * steps + i) % 8])
        loss.numpy()
        rates.append(steps * batch_size / (time.perf_counter() - t0))
    print(json.dumps({"model": name, "framework": f"keras {tf.keras.__version__} / tensorflow {tf.__version__}",
                      "batch_size": batch_size, "train_images_per_sec": round(statistics.median(rates), 1),
                      "first_step_seconds": round(first, 3)}), flush=True)


MODELS = ("lenet5", "rnn-64", "lstm-128", "gru-128")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default=",".join(MODELS), help=f"a comma list of {', '.join(MODELS)}")
    models = parser.parse_args(argv).models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    # The project's data loading turns TensorFlow's oneDNN rewrites off (bit-stable resizing); a fair speed
    # reference wants them on, as TensorFlow ships.
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    tf = tf_quiet.tensorflow()
    for name in models:
        if name == "lenet5":
            bench(tf, name, *lenet_keras(tf), (28, 28, 1))
        else:
            cell, hidden = name.split("-")
            bench(tf, name, *recurrent_keras(tf, cell, int(hidden)), (28, 28), steps=50)


if __name__ == "__main__":
    main()
