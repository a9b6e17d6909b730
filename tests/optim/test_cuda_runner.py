"""mmengine's Runner on CUDA: one training per optimizer family, and AmpOptimWrapper (fp16 with
loss scaling, bf16) driving the native Lion, LAMB and Muon."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper

from cuda_utils import DEVICE, assert_8bit_state, assert_on_device, quantise_all
from runner_utils import logged, make_runner
from sweep_settings import STEPS, sweep_settings
from toy import ToyClassifier, ToyMLP, toy_data

pytestmark = pytest.mark.cuda

CTOR = "VisdetOptimWrapperConstructor"
#: one optimizer per family: torch, the native three, HF Adafactor, D-Adaptation,
#: bitsandbytes 8-bit (every tensor quantised), DeepSpeed's fused CUDA LAMB
FAMILIES = ["AdamW", "Lion", "LAMB", "Muon", "Adafactor", "DAdaptAdam", "AdamW8bit",
            pytest.param("FusedLamb", marks=[pytest.mark.deepspeed, pytest.mark.slow])]
NATIVE = ["Lion", "LAMB", "Muon"]
AMP = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def optim_wrapper(name, **wrapper):
    settings, _ = sweep_settings(name)
    settings = dict(settings, **quantise_all(name))
    if name == "Muon":  # the package constructor routes the hidden matrices to Muon
        wrapper["constructor"] = CTOR
    return dict(optimizer=dict(type=name, **settings), **wrapper)


def model_for(name):
    return ToyMLP() if name == "Muon" else ToyClassifier()


def train(tmp_path, name, **wrapper):
    """Full-batch training (the sweep's problem, through the Runner) and its logged losses."""
    model = model_for(name)
    activations = []
    model.head.register_forward_hook(lambda module, args, out: activations.append(out.dtype))
    runner = make_runner(tmp_path, optim_wrapper(name, **wrapper), model=model,
                         max_iters=STEPS, batch_size=256)
    runner.train()
    return runner, logged(runner, "train/loss"), activations


@pytest.mark.parametrize("name", FAMILIES)
def test_runner_trains_on_cuda(tmp_path, name):
    runner, losses, activations = train(tmp_path, name)
    _, max_ratio = sweep_settings(name)
    assert losses[-1] <= max_ratio * losses[0], losses
    assert set(activations) == {torch.float32}
    assert_on_device(runner.optim_wrapper.optimizer)
    if quantise_all(name):
        assert_8bit_state(runner.optim_wrapper.optimizer)


@pytest.mark.parametrize("dtype", AMP)
@pytest.mark.parametrize("name", NATIVE)
def test_amp_optim_wrapper_trains_native_optimizers(tmp_path, name, dtype):
    runner, losses, activations = train(tmp_path, name, type="AmpOptimWrapper", dtype=dtype)
    wrapper = runner.optim_wrapper
    assert type(wrapper).__name__ == "AmpOptimWrapper"
    assert set(activations) == {AMP[dtype]}  # autocast ran the forward in low precision
    _, max_ratio = sweep_settings(name)
    assert losses[-1] <= max_ratio * losses[0], losses
    params = [p for group in wrapper.optimizer.param_groups for p in group["params"]]
    assert all(p.dtype == torch.float32 for p in params)  # fp32 master weights and state
    assert_on_device(wrapper.optimizer)
    assert 0 < wrapper.loss_scaler.get_scale() < float("inf")


@pytest.mark.parametrize("name", NATIVE)
def test_fp16_loss_scaling_skips_the_step_on_overflow(name):
    model = model_for(name).to(DEVICE)
    wrapper = build_optim_wrapper(model, optim_wrapper(name, type="AmpOptimWrapper",
                                                       dtype="float16"))
    data = model.data_preprocessor(toy_data(n=64), training=True)
    before = [p.detach().clone() for p in model.parameters()]
    scale = wrapper.loss_scaler.get_scale()
    with wrapper.optim_context(model):
        loss = model(**data, mode="loss")["loss"] * float("inf")
    wrapper.update_params(loss)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert not wrapper.optimizer.state  # the optimizer never stepped
    assert wrapper.loss_scaler.get_scale() == scale / 2
    with wrapper.optim_context(model):
        loss = model(**data, mode="loss")["loss"]
    wrapper.update_params(loss)
    assert not all(torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert_on_device(wrapper.optimizer)
