"""NVlabs/stylegan2-ada-pytorch network pickles (``.pkl`` with ``G_ema``, ``G``, ``D``).

The pickle is read by :mod:`.unpickler` (no code from the file runs); the networks come back as
:class:`~.unpickler.PersistentObject` trees whose parameters and buffers are named like
``mapping.fc0.weight``, ``synthesis.b4.const``, ``synthesis.b8.conv0.affine.weight``,
``synthesis.b8.torgb.weight``, ``synthesis.b8.resample_filter``, ``...noise_const``.
Conventions that differ from ours, all handled by the key tables below:

- equalized lr: NVIDIA stores unscaled weights and applies ``weight_gain`` at run time:
  ``lr_multiplier / sqrt(in)`` in the mapping network, ``1 / sqrt(fan_in)`` in affine, toRGB
  (on the styles) and discriminator layers, and *no gain at all* in the demodulated synthesis
  convs. Weights are rescaled so that our run-time weight equals NVIDIA's (which makes the
  demodulated convs agree exactly, the ``1e-8`` demodulation epsilon included);
- biases: the mapping's ``bias_gain`` is its lr multiplier, as our ``bias * lr_mlp``; the affine
  bias is initialised to 1 in both; toRGB bias (3,) becomes (1, 3, 1, 1);
- noise: ``noise_const * noise_strength`` is our ``injected_noise_i * noise_injector.weight``;
- FIR filters: NVIDIA stores ``resample_filter`` normalised to sum 1 and applies the gain of 4
  after up-sampling at run time; ours store it in the kernel (x4). Filters of layers that do not
  resample are unused and dropped;
- activations: bias + LeakyReLU(0.2) times sqrt(2) in both (``act_gain``); the ``sqrt(0.5)``
  gains of the residual discriminator equal our division by sqrt(2);
- ``conv_clamp`` (±256 clamping of activations, an fp16 overflow guard in ADA training) has
  no counterpart here and is dropped: outputs agree wherever no activation reaches it;
- ``mapping.w_avg`` (the tracked mean w) is dropped: truncation uses
  :func:`gleansr.train.bank_samples.truncation_centre`;
- z is normalised as ``z * rsqrt(mean(z^2) + 1e-8)`` there and ``z / (rms(z) + 1e-6)`` here,
  which moves w by about 1e-6 relative; the synthesis from a given w is the same function.

Only unconditional networks (``c_dim == 0``) with the StyleGAN2 architectures (generator
``skip``, discriminator ``resnet``) are representable; anything else is a CheckpointError.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from ..errors import CheckpointError
from .configs import infer_discriminator_config, infer_generator_config
from .rules import Rule, apply_rules, table_rules, equalized, rescale_gain
from .unpickler import PersistentObject


def _unscaled(weight: torch.Tensor) -> torch.Tensor:
    """Demodulated conv (out, in, k, k), no run-time gain -> our (1, out, in, k, k)."""
    return rescale_gain(weight, 1.0).unsqueeze(0)


def _equalized_modconv(weight: torch.Tensor) -> torch.Tensor:
    """toRGB (3, in, 1, 1), gain 1/sqrt(in) on the styles -> our (1, 3, in, 1, 1)."""
    return equalized(weight).unsqueeze(0)


def _upsample_filter(f: torch.Tensor) -> torch.Tensor:
    """Normalised filter (taps,) or (taps, taps) -> our 2-D kernel with the up-sampling gain 4."""
    return _filter_2d(f) * 4


def _filter_2d(f: torch.Tensor) -> torch.Tensor:
    return torch.outer(f, f) if f.ndim == 1 else f


_LAYER = (  # SynthesisLayer -> our ModulatedStyleConv (noise_const is mapped separately)
    ("conv.weight_orig", "weight", _unscaled),
    ("conv.style_modulation.linear.weight_orig", "affine.weight", equalized),
    ("conv.style_modulation.bias", "affine.bias", None),
    ("noise_injector.weight", "noise_strength", lambda t: t.reshape(1)),
    ("activate.bias", "bias", None),
)
_TO_RGB = (
    ("conv.weight_orig", "weight", _equalized_modconv),
    ("conv.style_modulation.linear.weight_orig", "affine.weight", equalized),
    ("conv.style_modulation.bias", "affine.bias", None),
    ("bias", "bias", lambda t: t.reshape(1, -1, 1, 1)),
)
_D_BLOCK = (
    ("conv1.0.conv.weight_orig", "conv0.weight", equalized),
    ("conv1.1.bias", "conv0.bias", None),
    ("conv2.0.kernel", "conv1.resample_filter", _filter_2d),
    ("conv2.1.conv.weight_orig", "conv1.weight", equalized),
    ("conv2.2.bias", "conv1.bias", None),
    ("skip.0.kernel", "skip.resample_filter", _filter_2d),
    ("skip.1.conv.weight_orig", "skip.weight", equalized),
)
_D_EPILOGUE = (
    ("final_conv.0.conv.weight_orig", "b4.conv.weight", equalized),
    ("final_conv.1.bias", "b4.conv.bias", None),
    ("final_linear.0.linear.weight_orig", "b4.fc.weight", equalized),
    ("final_linear.0.bias", "b4.fc.bias", None),
    ("final_linear.1.linear.weight_orig", "b4.out.weight", equalized),
    ("final_linear.1.bias", "b4.out.bias", None),
)
# Unused by the networks we build (see the module docstring for why each is safe to drop).
_G_IGNORED = (r"mapping\.w_avg", r"synthesis\.b4\.resample_filter", r"synthesis\.b\d+\.conv1\.resample_filter")
_D_IGNORED = (r"b\d+\.resample_filter", r"b\d+\.(fromrgb|conv0)\.resample_filter", r"b4\.conv\.resample_filter")


def _network(obj: Any, names: tuple[str, ...], class_name: str) -> PersistentObject | None:
    if isinstance(obj, Mapping):
        for name in names:
            net = obj.get(name)
            if isinstance(net, PersistentObject) and net.class_name == class_name:
                return net
    return None


def detect(obj: Any) -> bool:
    return _network(obj, ("G_ema", "G"), "Generator") is not None


def _attr(net: PersistentObject, name: str, default: Any = None) -> Any:
    return net.state.get(name, net.init_kwargs.get(name, default))


def generator_rules(resolution: int, num_mlps: int) -> list[Rule]:
    rules = [Rule("constant_input.input", "synthesis.b4.const", lambda t: t.unsqueeze(0))]
    for i in range(num_mlps):
        rules += [Rule(f"style_mapping.{i + 1}.linear.weight_orig", f"mapping.fc{i}.weight", equalized),
                  Rule(f"style_mapping.{i + 1}.bias", f"mapping.fc{i}.bias")]
    layers = [("conv1.", "synthesis.b4.conv1.")]
    rules += table_rules(_TO_RGB, "to_rgb1.", "synthesis.b4.torgb.")
    for j, i in enumerate(range(3, int(math.log2(resolution)) + 1)):
        block = f"synthesis.b{2**i}."
        layers += [(f"convs.{2 * j}.", block + "conv0."), (f"convs.{2 * j + 1}.", block + "conv1.")]
        rules += table_rules(_TO_RGB, f"to_rgbs.{j}.", block + "torgb.")
        rules += [Rule(f"convs.{2 * j}.conv.blur.kernel", block + "conv0.resample_filter", _upsample_filter),
                  Rule(f"to_rgbs.{j}.upsample.kernel", block + "resample_filter", _upsample_filter)]
    for n, (ours, theirs) in enumerate(layers):
        rules += table_rules(_LAYER, ours, theirs)
        rules.append(Rule(f"injected_noise_{n}", theirs + "noise_const", lambda t: t.reshape(1, 1, *t.shape)))
    return rules


def discriminator_rules(resolution: int) -> list[Rule]:
    rules = [Rule("convs.0.0.conv.weight_orig", f"b{resolution}.fromrgb.weight", equalized),
             Rule("convs.0.1.bias", f"b{resolution}.fromrgb.bias")] + table_rules(_D_EPILOGUE, "", "")
    for k, i in enumerate(range(int(math.log2(resolution)), 2, -1), start=1):
        rules += table_rules(_D_BLOCK, f"convs.{k}.", f"b{2**i}.")
    return rules


def _check_generator(g: PersistentObject) -> tuple[int, int, float, list[str]]:
    """(resolution, mapping depth, lr multiplier, notes), or an error for what we cannot represent."""
    if _attr(g, "c_dim", 0):
        raise CheckpointError(f"conditional generator (c_dim={_attr(g, 'c_dim')}) is not supported")
    mapping, synthesis = g.child("mapping"), g.child("synthesis")
    if mapping is None or synthesis is None:
        raise CheckpointError("G_ema has no mapping/synthesis networks (not a StyleGAN2-ADA generator)")
    classes = set(g.class_names().values())
    if not classes <= {"Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer",
                       "ToRGBLayer", "FullyConnectedLayer"}:
        raise CheckpointError(f"not a StyleGAN2 generator (classes {', '.join(sorted(classes))})")
    resolution = int(_attr(g, "img_resolution"))
    for name, block in synthesis.state.get("_modules", {}).items():
        if _attr(block, "architecture", "skip") != "skip":
            raise CheckpointError(f"synthesis.{name} has architecture {_attr(block, 'architecture')!r}; "
                                  "only 'skip' (StyleGAN2) is supported")
    fc0 = mapping.child("fc0")
    lr = float(_attr(fc0, "bias_gain", 0.01)) if fc0 is not None else 0.01
    notes = ["mapping.w_avg dropped (truncation uses a sampled mean latent)"]
    first_layer = synthesis.child("b4").child("conv1") if synthesis.child("b4") else None
    clamp = _attr(first_layer, "conv_clamp") if first_layer else None
    if clamp is not None:
        notes.append(f"generator conv_clamp={clamp} dropped (no activation clamping here)")
    return resolution, int(_attr(mapping, "num_layers", 8)), lr, notes


def _check_discriminator(d: PersistentObject) -> int:
    """Minibatch-stddev group size, or an error for what we cannot represent."""
    if _attr(d, "c_dim", 0):
        raise CheckpointError(f"conditional discriminator (c_dim={_attr(d, 'c_dim')}) is not supported")
    epilogue = d.child("b4")
    if epilogue is None:
        raise CheckpointError("D has no b4 epilogue (not a StyleGAN2-ADA discriminator)")
    for name, block in d.state.get("_modules", {}).items():
        if _attr(block, "architecture", "resnet") != "resnet":
            raise CheckpointError(f"D.{name} has architecture {_attr(block, 'architecture')!r}; "
                                  "only 'resnet' (StyleGAN2) is supported")
    mbstd = epilogue.child("mbstd")
    if mbstd is None or _attr(mbstd, "group_size") is None:
        raise CheckpointError("D without a fixed-size minibatch-stddev layer is not supported")
    return int(_attr(mbstd, "group_size"))


def convert(obj: Mapping) -> tuple[dict, dict | None, dict]:
    g = _network(obj, ("G_ema", "G"), "Generator")
    resolution, num_mlps, lr_mlp, notes = _check_generator(g)
    generator = apply_rules(generator_rules(resolution, num_mlps), g.named_tensors(), _G_IGNORED,
                            what="NVIDIA generator")
    config: dict = {"generator": infer_generator_config(generator, lr_mlp=lr_mlp), "discriminator": None,
                    "notes": notes}
    d = _network(obj, ("D",), "Discriminator")
    discriminator = None
    if d is not None:
        group_size = _check_discriminator(d)
        discriminator = apply_rules(discriminator_rules(int(_attr(d, "img_resolution"))), d.named_tensors(),
                                    _D_IGNORED, what="NVIDIA discriminator")
        config["discriminator"] = infer_discriminator_config(discriminator, group_size=group_size)
    return generator, discriminator, config
