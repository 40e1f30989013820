"""Files -> weights: one reader with one safety policy, one adapter per format, one writer per format.

Reading (:mod:`.read`): safetensors; PyTorch files with ``weights_only=True``; other pickles only
through the restricted unpickler. :func:`inspect` says what a file holds; :func:`load_glean`,
:func:`load_glean_state`, :func:`load_bank` and :func:`init_glean_from_bank` turn it into
networks; :mod:`.save` writes every format gleansr exports; :mod:`.backbones` reads the weights
of the auxiliary networks (VGG16, AlexNet, LPIPS lin layers, FID Inception). Layering: this
package imports :mod:`gleansr.models`, never the other way round.
"""
from .bank import (FORMATS, BankWeights, detect_format, discriminator_path, init_glean_from_bank, load_bank,
                   load_bank_generator, read_source)
from .configs import channel_config, infer_discriminator_config, infer_generator_config, infer_glean_config
from .glean import build_glean, load_glean, load_glean_state
from .identify import Loaded, inspect
from .read import read_checkpoint, read_file
from .save import export_bank, export_bank_run, export_release, save_safetensors
from .strict import check_state_dict, load_checkpoint, load_state_dict_strict, select_prefix
from .training import (CHECKPOINT_FORMAT, LAST, PREVIOUS, latest_training_checkpoint, read_training_checkpoint)

__all__ = [
    "CHECKPOINT_FORMAT", "FORMATS", "LAST", "PREVIOUS", "BankWeights", "Loaded", "build_glean", "channel_config",
    "check_state_dict", "detect_format", "discriminator_path", "export_bank", "export_bank_run", "export_release",
    "infer_discriminator_config", "infer_generator_config", "infer_glean_config", "init_glean_from_bank", "inspect",
    "latest_training_checkpoint", "load_bank", "load_bank_generator", "load_checkpoint", "load_glean",
    "load_glean_state", "load_state_dict_strict", "read_checkpoint", "read_file", "read_source",
    "read_training_checkpoint", "save_safetensors", "select_prefix",
]
