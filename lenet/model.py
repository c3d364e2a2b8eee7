"""LeNet5 as in the report: two 5x5 conv layers with batch norm before 2x2 max-pooling, fc 1024, dropout."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.core.config import BN_EPSILON, BN_MOMENTUM

if TYPE_CHECKING:
    from lenet.config import LeNetConfig


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """Non-overlapping 2x2 max-pool, [b, h, w, c] -> [b, h/2, w/2, c] (h, w even).

    Written as reshape + max rather than `nn.max_pool`: the values are identical, and XLA's CPU backend
    differentiates a reduction much faster than `reduce_window`. Ties share the gradient equally; after a
    ReLU such ties are zeros whose gradient the ReLU discards anyway.
    """
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class LeNet5(nn.Module):
    """conv5x5(32)+ReLU -> BN -> pool -> conv5x5(64)+ReLU -> BN -> pool -> fc1024+ReLU -> dropout -> fc10.

    Sows each conv layer's activations into the 'intermediates' collection as `conv{i}_pre_bn` (after ReLU, before
    batch norm: the report's Figure 3), `conv{i}_bn` (after batch norm) and `conv{i}_pool`; and the conv output
    before ReLU (+ bias) as `conv{i}_pre_relu` into the separate 'pre_relu' collection, which the deconvnet's ReLU rules
    need: apart, so that readers of every 'intermediates' entry (lenet.visualize's statistics) see the same set.
    A collection is only stored into when `apply` is given it as mutable, so training pays for none of this.

    The class constants below are the layer geometry and batch-norm settings __call__ uses, for code that must
    follow this network layer by layer (deconv.network) without copying them.
    """

    KERNEL = (5, 5)  # conv window
    STRIDE = 1
    PADDING = "SAME"
    POOL = 2  # non-overlapping POOL x POOL max-pool after every conv layer (`max_pool_2x2`)
    BN_MOMENTUM = BN_MOMENTUM  # Keras's defaults, as the report's model used (common.core.config)
    BN_EPSILON = BN_EPSILON
    PRE_RELU = "pre_relu"  # the collection of the conv outputs before ReLU

    num_classes: int = 10
    features: Sequence[int] = (32, 64)
    hidden: int = 1024
    dropout_rate: float = 0.8
    bias_init: float = 0.1
    use_batchnorm: bool = True
    kernel_init: str = "glorot_normal"  # a name in nn.initializers ('glorot_uniform')
    bn_position: str = "before_pool"  # or 'after_pool': batch norm on the pooled maps

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """x: [batch, height, width, channels] in [0, 1] -> logits [batch, num_classes]."""
        kernel_init = getattr(nn.initializers, self.kernel_init)()
        bias_init = nn.initializers.constant(self.bias_init)
        for i, features in enumerate(self.features, start=1):
            x = nn.Conv(features, self.KERNEL, strides=self.STRIDE, padding=self.PADDING, kernel_init=kernel_init,
                        bias_init=bias_init, name=f"conv{i}")(x)
            if not self.is_initializing():  # init stores every collection but 'intermediates': not into variables
                self.sow(self.PRE_RELU, f"conv{i}_pre_relu", x)
            x = nn.relu(x)
            self.sow("intermediates", f"conv{i}_pre_bn", x)
            after = self.bn_position == "after_pool"
            if after:
                x = max_pool_2x2(x)
            if self.use_batchnorm:
                x = nn.BatchNorm(use_running_average=not train, momentum=self.BN_MOMENTUM, epsilon=self.BN_EPSILON,
                                 name=f"bn{i}")(x)
                self.sow("intermediates", f"conv{i}_bn", x)
            if not after:
                x = max_pool_2x2(x)
            self.sow("intermediates", f"conv{i}_pool", x)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden, kernel_init=kernel_init, bias_init=bias_init, name="fc1")(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, kernel_init=kernel_init, bias_init=bias_init, name="fc2")(x)


def l2_penalty(params, conv_l2: float, fc_l2: float) -> jax.Array:
    """Keras `l2()` semantics: weight * sum of squares, on each conv kernel and the fc1 kernel only."""
    conv = sum(jnp.sum(jnp.square(p["kernel"])) for name, p in params.items() if name.startswith("conv"))
    return conv_l2 * conv + fc_l2 * jnp.sum(jnp.square(params["fc1"]["kernel"]))


def create_model(config: LeNetConfig, num_classes: int = 10) -> LeNet5:
    """The one LeNet5 builder: the model a `LeNetConfig` describes (training, checkpoints, Part 1c, the
    deconvnet, which reads its config off the weights: `deconv.network.lenet_for`)."""
    return LeNet5(num_classes=num_classes, features=tuple(config.features), hidden=config.hidden,
                  dropout_rate=config.dropout_rate, bias_init=config.bias_init,
                  use_batchnorm=config.use_batchnorm, kernel_init=config.kernel_init,
                  bn_position=config.bn_position)
