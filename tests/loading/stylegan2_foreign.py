"""Small StyleGAN2 networks in foreign layouts, with direct forward passes in those layouts' conventions.

Nothing here uses gleansr: each forward follows its code base's own arithmetic (rosinality's
``model.py``; NVIDIA's ``training/networks.py``), written out plainly, so that a converted
model agreeing with it is evidence the key tables and gain conventions are right.
"""
from __future__ import annotations

import math
import pickle
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2)
TAPS = (1.0, 3.0, 3.0, 1.0)


def fir(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """upfirdn2d: zero-insertion up-sampling, padding (both axes), true convolution, decimation."""
    n, c, h, w = x.shape
    if up > 1:
        grown = x.new_zeros(n, c, h * up, w * up)
        grown[:, :, ::up, ::up] = x
        x = grown
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = kernel.flip([0, 1]).to(x).expand(c, 1, *kernel.shape)
    return F.conv2d(x, k, groups=c)[:, :, ::down, ::down]


def lrelu(x: torch.Tensor, gain: float = SQRT2) -> torch.Tensor:
    return F.leaky_relu(x, 0.2) * gain


def kernel_2d(gain: float = 1.0, dtype=torch.float64) -> torch.Tensor:
    k = torch.tensor(TAPS, dtype=dtype)
    k = torch.outer(k, k)
    return k / k.sum() * gain


def minibatch_stddev_nvidia(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    n, c, h, w = x.shape
    g = min(group_size, n)
    y = x.reshape(g, -1, 1, c, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4]).reshape(-1, 1, 1, 1)
    return torch.cat([x, y.repeat(g, 1, h, w)], dim=1)


# --- rosinality/stylegan2-pytorch --------------------------------------------------------------

def rosinality_generator_state(size: int, style: int, n_mlp: int, width: int, dtype=torch.float64) -> dict:
    """Random weights under rosinality's key names (uniform width: a tiny stand-in for 512)."""
    r = lambda *shape: torch.randn(*shape, dtype=dtype)  # noqa: E731
    s: dict[str, torch.Tensor] = {}
    for i in range(1, n_mlp + 1):
        s[f"style.{i}.weight"], s[f"style.{i}.bias"] = r(style, style) / 0.01, r(style) * 0.1
    s["input.input"] = r(1, width, 4, 4)

    def styled(p: str, up: bool) -> None:
        s[p + "conv.weight"] = r(1, width, width, 3, 3)
        s[p + "conv.modulation.weight"], s[p + "conv.modulation.bias"] = r(width, style), 1 + 0.1 * r(width)
        if up:
            s[p + "conv.blur.kernel"] = kernel_2d(4, dtype)
        s[p + "noise.weight"], s[p + "activate.bias"] = r(1) * 0.3, r(width) * 0.1

    def to_rgb(p: str, up: bool) -> None:
        if up:
            s[p + "upsample.kernel"] = kernel_2d(4, dtype)
        s[p + "conv.weight"] = r(1, 3, width, 1, 1)
        s[p + "conv.modulation.weight"], s[p + "conv.modulation.bias"] = r(width, style), 1 + 0.1 * r(width)
        s[p + "bias"] = r(1, 3, 1, 1) * 0.1

    styled("conv1.", False)
    to_rgb("to_rgb1.", False)
    log_size = int(math.log2(size))
    for j in range(log_size - 2):
        styled(f"convs.{2 * j}.", True)
        styled(f"convs.{2 * j + 1}.", False)
        to_rgb(f"to_rgbs.{j}.", True)
    for i in range(2 * log_size - 3):
        res = 2 ** ((i + 5) // 2)
        s[f"noises.noise_{i}"] = r(1, 1, res, res)
    return s


def rosinality_mapping(s: dict, z: torch.Tensor, lr_mul: float = 0.01) -> torch.Tensor:
    x = z * torch.rsqrt(torch.mean(z**2, dim=1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in s:
        w = s[f"style.{i}.weight"]
        x = lrelu(F.linear(x, w * ((1 / math.sqrt(w.shape[1])) * lr_mul)) + s[f"style.{i}.bias"] * lr_mul)
        i += 1
    return x


def _ros_modconv(x, weight, style, demodulate, up=False, blur=None):
    """rosinality ModulatedConv2d (fused path), one sample at a time."""
    scale = 1 / math.sqrt(weight.shape[2] * weight.shape[3] * weight.shape[4])
    out = []
    for b in range(x.shape[0]):
        w = scale * weight[0] * style[b].view(1, -1, 1, 1)
        if demodulate:
            w = w * torch.rsqrt(w.pow(2).sum([1, 2, 3]) + 1e-8).view(-1, 1, 1, 1)
        if up:
            y = fir(F.conv_transpose2d(x[b:b + 1], w.transpose(0, 1), stride=2), blur, pad=(1, 1))
        else:
            y = F.conv2d(x[b:b + 1], w, padding=w.shape[-1] // 2)
        out.append(y)
    return torch.cat(out)


def _ros_linear(x, w, b, lr_mul=1.0):
    return F.linear(x, w * ((1 / math.sqrt(w.shape[1])) * lr_mul)) + b * lr_mul


def rosinality_synthesis(s: dict, latent: torch.Tensor) -> torch.Tensor:
    """rosinality ``Generator.forward`` after the mapping, with its stored noises."""

    def styled(p, x, w, noise, up=False):
        style = _ros_linear(w, s[p + "conv.modulation.weight"], s[p + "conv.modulation.bias"])
        out = _ros_modconv(x, s[p + "conv.weight"], style, True, up, s.get(p + "conv.blur.kernel"))
        return lrelu(out + s[p + "noise.weight"] * noise + s[p + "activate.bias"].view(1, -1, 1, 1))

    def to_rgb(p, x, w, skip):
        style = _ros_linear(w, s[p + "conv.modulation.weight"], s[p + "conv.modulation.bias"])
        out = _ros_modconv(x, s[p + "conv.weight"], style, False) + s[p + "bias"]
        return out if skip is None else out + fir(skip, s[p + "upsample.kernel"], up=2, pad=(2, 1))

    x = s["input.input"].repeat(latent.shape[0], 1, 1, 1)
    x = styled("conv1.", x, latent[:, 0], s["noises.noise_0"])
    skip = to_rgb("to_rgb1.", x, latent[:, 1], None)
    j = 0
    while f"convs.{2 * j}.conv.weight" in s:
        i = 2 * j + 1
        x = styled(f"convs.{2 * j}.", x, latent[:, i], s[f"noises.noise_{i}"], up=True)
        x = styled(f"convs.{2 * j + 1}.", x, latent[:, i + 1], s[f"noises.noise_{i + 1}"])
        skip = to_rgb(f"to_rgbs.{j}.", x, latent[:, i + 2], skip)
        j += 1
    return skip


def rosinality_discriminator_state(size: int, width: int, dtype=torch.float64) -> dict:
    r = lambda *shape: torch.randn(*shape, dtype=dtype)  # noqa: E731
    s = {"convs.0.0.weight": r(width, 3, 1, 1), "convs.0.1.bias": r(width) * 0.1}
    for k in range(1, int(math.log2(size)) - 1):
        p = f"convs.{k}."
        s.update({p + "conv1.0.weight": r(width, width, 3, 3), p + "conv1.1.bias": r(width) * 0.1,
                  p + "conv2.0.kernel": kernel_2d(1, dtype), p + "conv2.1.weight": r(width, width, 3, 3),
                  p + "conv2.2.bias": r(width) * 0.1, p + "skip.0.kernel": kernel_2d(1, dtype),
                  p + "skip.1.weight": r(width, width, 1, 1)})
    s.update({"final_conv.0.weight": r(width, width + 1, 3, 3), "final_conv.1.bias": r(width) * 0.1,
              "final_linear.0.weight": r(width, width * 16), "final_linear.0.bias": r(width) * 0.1,
              "final_linear.1.weight": r(1, width), "final_linear.1.bias": r(1) * 0.1})
    return s


def rosinality_discriminator(s: dict, img: torch.Tensor) -> torch.Tensor:
    def conv(p, x, down=False, act=True):
        w = s[p + ("1.weight" if down else "0.weight")]
        w = w * (1 / math.sqrt(w.shape[1] * w.shape[2] * w.shape[3]))
        if down:
            k = w.shape[-1]
            q = 2 + (k - 1)
            x = F.conv2d(fir(x, s[p + "0.kernel"], pad=((q + 1) // 2, q // 2)), w, stride=2)
        else:
            x = F.conv2d(x, w, padding=w.shape[-1] // 2)
        return lrelu(x + s[p + ("2.bias" if down else "1.bias")].view(1, -1, 1, 1)) if act else x

    x = conv("convs.0.", img)
    k = 1
    while f"convs.{k}.conv1.0.weight" in s:
        p = f"convs.{k}."
        x = (conv(p + "conv2.", conv(p + "conv1.", x), down=True) + conv(p + "skip.", x, down=True, act=False)) / SQRT2
        k += 1
    n, c, h, w = x.shape
    g = min(n, 4)
    sd = torch.sqrt(x.view(g, -1, 1, c, h, w).var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
    x = conv("final_conv.", torch.cat([x, sd.repeat(g, 1, h, w)], 1)).view(n, -1)
    x = lrelu(_ros_linear(x, s["final_linear.0.weight"], s["final_linear.0.bias"]))
    return _ros_linear(x, s["final_linear.1.weight"], s["final_linear.1.bias"])


# --- NVlabs/stylegan2-ada-pytorch ----------------------------------------------------------------

PERSISTENCE_MODULE = "torch_utils.persistence"


class Net(torch.nn.Module):
    """Stands in for one of NVIDIA's ``persistent_class`` modules; pickles the way they do."""

    module_src = "raise SystemExit('module source from the pickle was executed')\n"

    def __init__(self, class_name: str, **attrs):
        super().__init__()
        self.__dict__["_class_name"] = class_name
        for k, v in attrs.items():
            setattr(self, k, v)

    def __reduce__(self):
        state = {k: v for k, v in self.__dict__.items() if k != "_class_name"}
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=self._class_name, state=state)
        return (sys.modules[PERSISTENCE_MODULE]._reconstruct_persistent_obj, (meta,))


class _EasyDict(dict):
    pass


def _param(t: torch.Tensor) -> torch.nn.Parameter:
    return torch.nn.Parameter(t, requires_grad=False)


def _fc(in_f: int, out_f: int, r, lr: float = 1.0, bias_init: float = 0.0, activation: str = "linear") -> Net:
    return Net("FullyConnectedLayer", weight=_param(r(out_f, in_f) / lr), bias=_param(bias_init + 0.1 * r(out_f)),
               weight_gain=np.float64(lr / np.sqrt(in_f)), bias_gain=lr, activation=activation,
               _init_kwargs=_EasyDict(in_features=in_f, out_features=out_f, lr_multiplier=lr))


def _filter(dtype) -> torch.Tensor:
    return kernel_2d(1, dtype)


def nvidia_generator(res: int, w_dim: int, n_mlp: int, channel_base: int, channel_max: int, conv_clamp=None,
                     dtype=torch.float64) -> Net:
    """A ``Generator`` tree as stylegan2-ada-pytorch builds it (random weights, non-zero noise)."""
    r = lambda *shape: torch.randn(*shape, dtype=dtype)  # noqa: E731
    ch = {2**i: min(channel_base // 2**i, channel_max) for i in range(2, int(math.log2(res)) + 1)}
    mapping = Net("MappingNetwork", num_layers=n_mlp, z_dim=w_dim, w_dim=w_dim, w_avg_beta=0.995)
    for i in range(n_mlp):
        setattr(mapping, f"fc{i}", _fc(w_dim, w_dim, r, lr=0.01, activation="lrelu"))
    mapping.register_buffer("w_avg", r(w_dim))

    def layer(cin, cout, resolution, up):
        net = Net("SynthesisLayer", resolution=resolution, up=up, activation="lrelu", conv_clamp=conv_clamp,
                  padding=1, act_gain=SQRT2, use_noise=True)
        net.register_buffer("resample_filter", _filter(dtype))
        net.affine = _fc(w_dim, cin, r, bias_init=1.0)
        net.weight = _param(r(cout, cin, 3, 3))
        net.register_buffer("noise_const", r(resolution, resolution))
        net.noise_strength = _param(0.3 * r(()))
        net.bias = _param(0.1 * r(cout))
        return net

    def torgb(cin):
        net = Net("ToRGBLayer", conv_clamp=conv_clamp, weight_gain=np.float64(1 / np.sqrt(cin)))
        net.affine = _fc(w_dim, cin, r, bias_init=1.0)
        net.weight, net.bias = _param(r(3, cin, 1, 1)), _param(0.1 * r(3))
        return net

    synthesis = Net("SynthesisNetwork", w_dim=w_dim, img_resolution=res, block_resolutions=list(ch))
    for res_i, cout in ch.items():
        block = Net("SynthesisBlock", in_channels=0 if res_i == 4 else ch[res_i // 2], resolution=res_i,
                    architecture="skip", is_last=res_i == res, num_conv=1 if res_i == 4 else 2, num_torgb=1)
        block.register_buffer("resample_filter", _filter(dtype))
        if res_i == 4:
            block.const = _param(r(cout, 4, 4))
        else:
            block.conv0 = layer(ch[res_i // 2], cout, res_i, 2)
        block.conv1 = layer(cout, cout, res_i, 1)
        block.torgb = torgb(cout)
        setattr(synthesis, f"b{res_i}", block)
    g = Net("Generator", z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=res, img_channels=3,
            _init_kwargs=_EasyDict(z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=res, img_channels=3,
                                   mapping_kwargs=_EasyDict(num_layers=n_mlp),
                                   synthesis_kwargs=_EasyDict(channel_base=channel_base, channel_max=channel_max,
                                                              conv_clamp=conv_clamp)))
    g.synthesis, g.mapping = synthesis, mapping
    return g


def _nv_fc(net: Net, x: torch.Tensor) -> torch.Tensor:
    w = net.weight * net.weight_gain
    b = net.bias * net.bias_gain
    if net.activation == "linear":
        return torch.addmm(b.unsqueeze(0), x, w.t())
    return lrelu(x.matmul(w.t()) + b)


def nvidia_mapping(g: Net, z: torch.Tensor) -> torch.Tensor:
    x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
    for i in range(g.mapping.num_layers):
        x = _nv_fc(getattr(g.mapping, f"fc{i}"), x)
    return x


def _nv_modconv(x, weight, styles, demodulate, up=1, f=None, noise=None):
    """NVIDIA ``modulated_conv2d`` with ``fused_modconv=False``: scale activations, conv, demodulate."""
    n = x.shape[0]
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
    dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    x = x * styles.reshape(n, -1, 1, 1)
    if up > 1:  # conv2d_resample: transposed conv (padding 0), then the filter with gain up**2
        x = fir(F.conv_transpose2d(x, weight.transpose(0, 1), stride=2), f * 4, pad=(1, 1))
    else:
        x = F.conv2d(x, weight, padding=weight.shape[-1] // 2)
    if demodulate:
        x = x * dcoefs.reshape(n, -1, 1, 1)
    return x + noise if noise is not None else x


def _clamp(x, clamp):
    return x.clamp(-clamp, clamp) if clamp is not None else x


def nvidia_synthesis(g: Net, ws: torch.Tensor) -> torch.Tensor:
    """``SynthesisNetwork.forward(ws, noise_mode='const')``; ws (N, num_ws, w_dim)."""

    def layer(net, x, w):
        noise = net.noise_const * net.noise_strength
        x = _nv_modconv(x, net.weight, _nv_fc(net.affine, w), True, net.up, net.resample_filter, noise)
        return _clamp(lrelu(x + net.bias.view(1, -1, 1, 1)), net.conv_clamp)

    def torgb(net, x, w):
        x = _nv_modconv(x, net.weight, _nv_fc(net.affine, w) * net.weight_gain, False)
        return _clamp(x + net.bias.view(1, -1, 1, 1), net.conv_clamp)

    s = g.synthesis
    x = img = None
    w_idx = 0
    for res in s.block_resolutions:
        block = getattr(s, f"b{res}")
        bw = ws[:, w_idx:w_idx + block.num_conv + block.num_torgb].unbind(1)
        if res == 4:
            x = layer(block.conv1, block.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1), bw[0])
        else:
            x = layer(block.conv1, layer(block.conv0, x, bw[0]), bw[1])
        if img is not None:  # upfirdn2d.upsample2d: padding (2, 1), gain 4
            img = fir(img, block.resample_filter * 4, up=2, pad=(2, 1))
        y = torgb(block.torgb, x, bw[-1])
        img = img + y if img is not None else y
        w_idx += block.num_conv
    return img


def _conv_layer(cin, cout, k, r, down=1, bias=True, activation="lrelu"):
    net = Net("Conv2dLayer", activation=activation, up=1, down=down, conv_clamp=None, padding=k // 2,
              weight_gain=np.float64(1 / np.sqrt(cin * k * k)), act_gain=SQRT2 if activation == "lrelu" else 1.0)
    net.register_buffer("resample_filter", _filter(r(1).dtype))
    net.weight = _param(r(cout, cin, k, k))
    net.bias = _param(0.1 * r(cout)) if bias else None
    return net


def nvidia_discriminator(res: int, channel_base: int, channel_max: int, dtype=torch.float64) -> Net:
    r = lambda *shape: torch.randn(*shape, dtype=dtype)  # noqa: E731
    ch = {2**i: min(channel_base // 2**i, channel_max) for i in range(2, int(math.log2(res)) + 1)}
    d = Net("Discriminator", c_dim=0, img_resolution=res, img_channels=3,
            block_resolutions=[2**i for i in range(int(math.log2(res)), 2, -1)])
    for res_i in d.block_resolutions:
        block = Net("DiscriminatorBlock", in_channels=0 if res_i == res else ch[res_i], resolution=res_i,
                    architecture="resnet")
        block.register_buffer("resample_filter", _filter(dtype))
        if res_i == res:
            block.fromrgb = _conv_layer(3, ch[res_i], 1, r)
        block.conv0 = _conv_layer(ch[res_i], ch[res_i], 3, r)
        block.conv1 = _conv_layer(ch[res_i], ch[res_i // 2], 3, r, down=2)
        block.skip = _conv_layer(ch[res_i], ch[res_i // 2], 1, r, down=2, bias=False, activation="linear")
        setattr(d, f"b{res_i}", block)
    b4 = Net("DiscriminatorEpilogue", architecture="resnet", cmap_dim=0, resolution=4)
    b4.mbstd = Net("MinibatchStdLayer", group_size=4, num_channels=1)
    b4.conv = _conv_layer(ch[4] + 1, ch[4], 3, r)
    b4.fc = _fc(ch[4] * 16, ch[4], r, activation="lrelu")
    b4.out = _fc(ch[4], 1, r)
    d.b4 = b4
    return d


def _nv_conv(net: Net, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """``Conv2dLayer.forward`` (conv2d_resample for down=2: filter then strided conv)."""
    w = net.weight * net.weight_gain
    k = w.shape[-1]
    if net.down == 2 and k == 1:
        x = F.conv2d(fir(x, net.resample_filter, down=2, pad=(1, 1)), w)
    elif net.down == 2:
        x = F.conv2d(fir(x, net.resample_filter, pad=(2, 2)), w, stride=2)
    else:
        x = F.conv2d(x, w, padding=net.padding)
    if net.bias is not None:
        x = x + net.bias.view(1, -1, 1, 1)
    return lrelu(x, net.act_gain * gain) if net.activation == "lrelu" else x * gain


def nvidia_discriminator_forward(d: Net, img: torch.Tensor) -> torch.Tensor:
    x = None
    for res in d.block_resolutions:
        block = getattr(d, f"b{res}")
        if x is None:
            x = _nv_conv(block.fromrgb, img)
        y = _nv_conv(block.skip, x, gain=np.sqrt(0.5))
        x = y + _nv_conv(block.conv1, _nv_conv(block.conv0, x), gain=np.sqrt(0.5))
    b4 = d.b4
    x = _nv_conv(b4.conv, minibatch_stddev_nvidia(x, b4.mbstd.group_size))
    return _nv_fc(b4.out, _nv_fc(b4.fc, x.flatten(1)))


def nvidia_pickle(networks: dict, marker_source: str | None = None) -> bytes:
    """Pickle ``networks`` as ``training_loop.py`` does (plain pickle of a dict of persistent objects).

    The upstream module names exist only while pickling: reading back cannot import them.
    """
    persistence = types.ModuleType(PERSISTENCE_MODULE)

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - never called by the reader under test
        raise AssertionError("the real reconstruction function must not be reached")

    _reconstruct_persistent_obj.__module__ = PERSISTENCE_MODULE
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    dnnlib_util = types.ModuleType("dnnlib.util")
    dnnlib_util.EasyDict = _EasyDict
    saved_name = (_EasyDict.__module__, _EasyDict.__qualname__)
    _EasyDict.__module__, _EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    added = {"torch_utils": types.ModuleType("torch_utils"), PERSISTENCE_MODULE: persistence,
             "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": dnnlib_util}
    previous_src = Net.module_src
    try:
        sys.modules.update(added)
        if marker_source is not None:
            Net.module_src = marker_source
        return pickle.dumps(dict(networks, training_set_kwargs=dict(resolution=0), augment_pipe=None), protocol=4)
    finally:
        Net.module_src = previous_src
        _EasyDict.__module__, _EasyDict.__qualname__ = saved_name
        for name in added:
            sys.modules.pop(name, None)
