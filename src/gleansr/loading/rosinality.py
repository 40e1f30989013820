"""rosinality/stylegan2-pytorch checkpoints (``train.py`` and ``convert_weight.py`` outputs).

A ``.pt`` file holds ``g_ema`` (and often ``g``, ``d``, optimizer states, ``args``,
``latent_avg``); a bare generator state dict is accepted too. Only ``g_ema`` (else ``g``) and
``d`` are read. Differences from our layout, all handled by the key tables below:

- names: ``style.N`` -> ``style_mapping.N``, ``input.input`` -> ``constant_input.input``,
  ``modulation`` -> ``style_modulation``, ``noise`` -> ``noise_injector``,
  ``noises.noise_N`` -> ``injected_noise_N``, and weights gain a ``weight_orig`` name (with a
  ``linear.`` / ``conv.`` level in our ``EqualLinearAct`` / ``EqualConv2d``);
- equalized lr: rosinality's scale is ``1 / math.sqrt(fan_in)`` in float64 (times ``lr_mul``),
  ours is rounded through float32, so weights are rescaled by the ratio (see ``equalized``);
- the FIR kernels are stored with the same gains as ours (x4 after up-sampling) and are copied.

rosinality's generator uses ``lr_mlp=0.01`` (its ``train.py`` never changes it). Its z
normalisation differs slightly from ours (``x * rsqrt(mean(x^2) + 1e-8)`` against
``x / (rms(x) + 1e-6)``), which moves w by about 1e-6 relative: that is inherent to the two
code bases; the synthesis from a given w is the same function.
"""
from __future__ import annotations

from typing import Any, Mapping

from .configs import infer_discriminator_config, infer_generator_config
from .rules import Rule, apply_rules, table_rules, count, equalized

LR_MLP = 0.01

# (our suffix, rosinality suffix, transform)
_STYLED_CONV = (
    ("conv.weight_orig", "conv.weight", equalized),
    ("conv.style_modulation.linear.weight_orig", "conv.modulation.weight", equalized),
    ("conv.style_modulation.bias", "conv.modulation.bias", None),
    ("noise_injector.weight", "noise.weight", None),
    ("activate.bias", "activate.bias", None),
)
_TO_RGB = (
    ("conv.weight_orig", "conv.weight", equalized),
    ("conv.style_modulation.linear.weight_orig", "conv.modulation.weight", equalized),
    ("conv.style_modulation.bias", "conv.modulation.bias", None),
    ("bias", "bias", None),
)
_RES_BLOCK = (
    ("conv1.0.conv.weight_orig", "conv1.0.weight", equalized),
    ("conv1.1.bias", "conv1.1.bias", None),
    ("conv2.0.kernel", "conv2.0.kernel", None),
    ("conv2.1.conv.weight_orig", "conv2.1.weight", equalized),
    ("conv2.2.bias", "conv2.2.bias", None),
    ("skip.0.kernel", "skip.0.kernel", None),
    ("skip.1.conv.weight_orig", "skip.1.weight", equalized),
)
_D_ENDS = (
    ("convs.0.0.conv.weight_orig", "convs.0.0.weight", equalized),
    ("convs.0.1.bias", "convs.0.1.bias", None),
    ("final_conv.0.conv.weight_orig", "final_conv.0.weight", equalized),
    ("final_conv.1.bias", "final_conv.1.bias", None),
    ("final_linear.0.linear.weight_orig", "final_linear.0.weight", equalized),
    ("final_linear.0.bias", "final_linear.0.bias", None),
    ("final_linear.1.linear.weight_orig", "final_linear.1.weight", equalized),
    ("final_linear.1.bias", "final_linear.1.bias", None),
)


def _generator_state(obj: Any) -> Mapping | None:
    if not isinstance(obj, Mapping):
        return None
    for key in ("g_ema", "g"):
        if isinstance(obj.get(key), Mapping) and "input.input" in obj[key]:
            return obj[key]
    return obj if "input.input" in obj and "style.1.weight" in obj else None


def detect(obj: Any) -> bool:
    return _generator_state(obj) is not None


def generator_rules(source: Mapping) -> list[Rule]:
    num_mlps = count(source, r"style\.(\d+)\.weight")
    num_convs = count(source, r"convs\.(\d+)\.conv\.weight")
    rules = [Rule("constant_input.input", "input.input")]
    for i in range(1, num_mlps + 1):
        rules += [Rule(f"style_mapping.{i}.linear.weight_orig", f"style.{i}.weight", equalized),
                  Rule(f"style_mapping.{i}.bias", f"style.{i}.bias")]
    rules += table_rules(_STYLED_CONV, "conv1.", "conv1.") + table_rules(_TO_RGB, "to_rgb1.", "to_rgb1.")
    for n in range(num_convs):
        rules += table_rules(_STYLED_CONV, f"convs.{n}.", f"convs.{n}.")
        if n % 2 == 0:  # the up-sampling conv of each resolution, and that resolution's RGB layer
            rules.append(Rule(f"convs.{n}.conv.blur.kernel", f"convs.{n}.conv.blur.kernel"))
            rules += table_rules(_TO_RGB, f"to_rgbs.{n // 2}.", f"to_rgbs.{n // 2}.")
            rules.append(Rule(f"to_rgbs.{n // 2}.upsample.kernel", f"to_rgbs.{n // 2}.upsample.kernel"))
    rules += [Rule(f"injected_noise_{i}", f"noises.noise_{i}") for i in range(num_convs + 1)]
    return rules


def discriminator_rules(source: Mapping) -> list[Rule]:
    rules = table_rules(_D_ENDS, "", "")
    for k in range(1, count(source, r"convs\.(\d+)\.conv1\.0\.weight") + 1):
        rules += table_rules(_RES_BLOCK, f"convs.{k}.", f"convs.{k}.")
    return rules


def convert(obj: Mapping) -> tuple[dict, dict | None, dict]:
    g_source = _generator_state(obj)
    generator = apply_rules(generator_rules(g_source), g_source, what="rosinality generator")
    config: dict = {"generator": infer_generator_config(generator, lr_mlp=LR_MLP), "discriminator": None}
    discriminator = None
    if isinstance(obj.get("d"), Mapping):
        discriminator = apply_rules(discriminator_rules(obj["d"]), obj["d"], what="rosinality discriminator")
        config["discriminator"] = infer_discriminator_config(discriminator)
    return generator, discriminator, config
