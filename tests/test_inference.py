"""The fast inference snapshot against the reference path (tiny GLEAN and the upstream fixture)."""
import platform
import threading

import pytest
import torch

import gleansr.inference as inference
import gleansr.models.fused as fused
from conftest import with_nonzero_biases
from gleansr import GLEANStyleGANv2, load_checkpoint
from gleansr.inference import FastGLEAN, build_inference_model

LAYOUTS = [dict(channels_last=False, winograd=False), dict(channels_last=True, winograd=False),
           dict(channels_last=True, winograd=True), dict(channels_last=False, winograd=True)]


@pytest.fixture
def tiny(tiny_glean):
    """The tiny GLEAN with non-zero biases and noise weights, so every term of the bank counts."""
    return with_nonzero_biases(tiny_glean)


@pytest.fixture
def all_winograd(monkeypatch):
    """Route every 3x3 stride-1 convolution of the tiny model through Winograd."""
    monkeypatch.setattr(fused, "WINOGRAD_MIN_CHANNELS", 0)


def _input(batch=2, size=8, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda d: "-".join(k for k, v in d.items() if v) or "nchw")
def test_tiny_float64_matches_reference(tiny, all_winograd, layout):
    ref_model = tiny.double().set_impl("ref")
    x = _input()
    with torch.no_grad():
        want = ref_model(x.double())
    got = FastGLEAN(tiny, torch.float64, **layout)(x)
    assert got.dtype == torch.float64 and got.shape == (2, 3, 32, 32)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda d: "-".join(k for k, v in d.items() if v) or "nchw")
def test_tiny_float32_matches_reference(tiny, all_winograd, layout):
    x = _input(seed=1)
    with torch.no_grad():
        want = tiny.double().set_impl("ref")(x.double())
    got = FastGLEAN(tiny.float(), torch.float32, **layout)(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, atol=2e-5, rtol=0)


def test_low_precision_stays_close(tiny):
    x = _input(seed=2)
    want = FastGLEAN(tiny, torch.float32)(x)
    for precision, tol in (("bf16", 0.1), ("fp16", 0.02)):
        got = build_inference_model(tiny, "cpu", precision)(x)
        assert got.dtype == torch.float32
        err = (got - want).abs().max().item()
        assert err < tol * want.abs().max().item(), precision


def test_snapshot_ignores_later_weight_changes_and_leaves_the_model_alone(tiny):
    x = _input(seed=3)
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    fast = build_inference_model(tiny)
    before = fast(x)
    assert all(torch.equal(v, state[k]) for k, v in tiny.state_dict().items())
    assert tiny.impl == "auto" and next(tiny.parameters()).dtype == torch.float32
    with torch.no_grad():
        tiny.decoder[-1][2].bias.add_(1.0)
    torch.testing.assert_close(fast(x), before, atol=0, rtol=0)
    torch.testing.assert_close(build_inference_model(tiny)(x), before + 1.0, atol=1e-5, rtol=0)


def test_batch_elements_are_independent(tiny):
    fast = FastGLEAN(tiny, torch.float64, channels_last=True)
    x = _input(batch=3, seed=4)
    whole = fast(x)
    for i in range(3):
        torch.testing.assert_close(fast(x[i:i + 1]), whole[i:i + 1], atol=1e-12, rtol=0)


def test_user_errors(tiny):
    fast = build_inference_model(tiny)
    with pytest.raises(ValueError, match=r"expects input of shape \(N, 3, 8, 8\), got \(1, 3, 9, 8\)"):
        fast(torch.zeros(1, 3, 9, 8))
    with pytest.raises(ValueError, match="precision must be one of"):
        build_inference_model(tiny, precision="int8")
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device"):
        FastGLEAN(tiny, cuda_graphs=True)


def test_default_settings_per_device():
    assert inference.default_settings("cuda") == {"channels_last": True, "cuda_graphs": True, "winograd": False}
    assert inference.default_settings("cpu")["winograd"] is True
    assert inference.default_settings("cpu", torch.bfloat16)["winograd"] is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting exists in glibc only")
def test_malloc_setting_is_accepted_by_glibc():
    from gleansr.tuning import keep_freed_memory_for_reuse

    assert keep_freed_memory_for_reuse() is True


@pytest.fixture(scope="module")
def fixture_models(fixture_ckpt, fixture_ckpt_perturbed, fixture_ref):
    models = {}
    for variant, path in (("canonical", fixture_ckpt), ("perturbed_kernels", fixture_ckpt_perturbed)):
        g = GLEANStyleGANv2(**fixture_ref["generator_kwargs"])
        load_checkpoint(g, path)
        models[variant] = g.eval()
    return models


@pytest.mark.parametrize("variant", ["canonical", "perturbed_kernels"])
def test_fixture_float64_matches_upstream(variant, fixture_models, fixture_ref):
    """Default CPU settings (channels_last + Winograd, which this 512-channel model uses)."""
    key = "output_float64" if variant == "canonical" else "output_float64_perturbed_kernels"
    fast = FastGLEAN(fixture_models[variant], torch.float64, **inference.default_settings("cpu"))
    assert any(m.winograd is not None for m in fast.modules() if hasattr(m, "winograd"))
    torch.testing.assert_close(fast(fixture_ref["input"]), fixture_ref[key], atol=1e-9, rtol=0)


@pytest.mark.parametrize("winograd", [False, True])
def test_fixture_float32_matches_upstream(winograd, fixture_models, fixture_ref):
    fast = FastGLEAN(fixture_models["canonical"], torch.float32, channels_last=True, winograd=winograd)
    y = fast(fixture_ref["input"])
    torch.testing.assert_close(y, fixture_ref["output_float32"], atol=2e-4, rtol=0)
    torch.testing.assert_close(y.double(), fixture_ref["output_float64"], atol=2e-4, rtol=0)


def test_encoder_decoder_ablation_matches_its_module(tiny):
    ablation = GLEANStyleGANv2(**{**tiny.config.to_dict(), "latent_bank": False})
    ablation.load_state_dict(tiny.state_dict())
    x = _input(seed=3)
    with torch.no_grad():
        want = ablation.double()(x.double())
    for layout in LAYOUTS:
        got = FastGLEAN(ablation, torch.float64, **layout)(x)
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def _in_two_threads(fast, inputs: list[torch.Tensor], rounds: int, after=lambda: None) -> list[list[torch.Tensor]]:
    """Thread i calls ``fast(inputs[i])`` ``rounds`` times, both threads starting together, then
    ``after()``; the outputs of each thread, in order."""
    start, got = threading.Barrier(2), [[], []]

    def worker(i):
        start.wait()
        for _ in range(rounds):
            got[i].append(fast(inputs[i]))
        after()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def test_one_snapshot_serves_two_threads(tiny):
    """The snapshot holds no per-call state: concurrent calls give each caller its own answer."""
    fast = build_inference_model(tiny, winograd=True)
    inputs = [_input(batch=2, seed=10 + i) for i in range(2)]
    want = [fast(x) for x in inputs]
    got = _in_two_threads(fast, inputs, rounds=5)
    for i in range(2):
        assert len(got[i]) == 5
        for y in got[i]:
            torch.testing.assert_close(y, want[i], atol=0, rtol=0)


def test_cudnn_benchmark_is_restored_after_overlapping_calls():
    """Two overlapping CUDA calls (as from two threads: A in, B in, A out, B out) leave the flag
    as they found it; it is on while either runs."""
    cuda = torch.device("cuda")
    before = torch.backends.cudnn.benchmark
    try:
        for start in (False, True):
            torch.backends.cudnn.benchmark = start
            a, b = inference._cudnn_benchmark(cuda), inference._cudnn_benchmark(cuda)
            a.__enter__()
            b.__enter__()
            assert torch.backends.cudnn.benchmark is True
            a.__exit__(None, None, None)
            assert torch.backends.cudnn.benchmark is True
            b.__exit__(None, None, None)
            assert torch.backends.cudnn.benchmark is start
    finally:
        torch.backends.cudnn.benchmark = before


def test_building_and_running_a_snapshot_changes_no_process_setting(tiny, monkeypatch):
    """No malloc tuning (that is the CLI's choice) and cudnn.benchmark as it was."""
    import ctypes

    calls = []

    class Libc:
        def __init__(self, *args, **kwargs):
            self.mallopt = lambda *a: calls.append(a) or 1

    monkeypatch.setattr(ctypes, "CDLL", Libc)
    before = torch.backends.cudnn.benchmark
    build_inference_model(tiny)(_input())
    assert calls == [] and torch.backends.cudnn.benchmark == before
    from gleansr.tuning import keep_freed_memory_for_reuse

    assert keep_freed_memory_for_reuse() and len(calls) == 2  # the spy sees a real call


def test_plain_snapshot_is_traceable(tiny):
    plain = build_inference_model(tiny.double(), precision="fp32", winograd=False, cuda_graphs=False)
    x = _input(seed=5)
    want = plain(x)
    traced = torch.jit.trace(plain.net, x, check_trace=False)
    exported = torch.export.export(plain, (x,)).module()  # what the dynamo-based ONNX exporter runs
    for fn in (traced, exported):
        torch.testing.assert_close(fn(x), want, atol=1e-6, rtol=0)
        torch.testing.assert_close(fn(_input(seed=6)), plain(_input(seed=6)), atol=1e-6, rtol=0)
    assert build_inference_model(tiny, winograd=True).net.target.winograd
    assert not plain.net.target.winograd


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_cuda_graph_snapshot_serves_two_threads(tiny):
    fast = build_inference_model(tiny, "cuda")
    ref = build_inference_model(tiny, "cuda", cuda_graphs=False)
    inputs = [_input(batch=2, seed=20 + i).cuda() for i in range(2)]
    results = _in_two_threads(fast, inputs, rounds=10, after=torch.cuda.synchronize)
    for i in range(2):
        for y in results[i]:
            torch.testing.assert_close(y, ref(inputs[i]), atol=1e-5, rtol=0)
