"""The catalog table: one row per optimizer name, with everything known about it.

A name means one class whatever else is installed (fixed-name policy): torch's names, this
package's ``Lion``/``LAMB``/``Muon``/``SophiaG``/``ADOPT``/``Adan``/1-bit optimizers, Hugging Face ``Adafactor``,
the schedule-free, Prodigy and pytorch-optimizer classes under their authors' names; a
bitsandbytes class whose name torch or this package owns gets the ``bnb_`` prefix. mmengine
registers ``SophiaG`` itself when a module named ``Sophia`` is importable; this package's
SophiaG replaces it, and the availability report says so.
"""
from __future__ import annotations

from types import MappingProxyType

from . import adapters
from .spec import (ZERO_AS_ADAGRAD, ZERO_AS_ADAM, ZERO_AS_LION, ZERO_AS_MUON, ZERO_NATIVE, Catalog,
                   Impossible, OptimizerSpec)


def _settings(**values) -> MappingProxyType:
    return MappingProxyType(values)


def _torch(name, doc, attribute=None, **facts) -> OptimizerSpec:
    return OptimizerSpec(name, "torch", f"torch.optim:{attribute or name}", doc, **facts)


#: Names owned by torch or by this package.
FIXED_NAMES = frozenset({
    "SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "RMSprop", "RAdam", "NAdam", "ASGD",
    "Rprop", "LBFGS", "Adamax", "SparseAdam", "TorchAdafactor", "TorchMuon",
    "Lion", "LAMB", "Muon", "SophiaG", "ADOPT", "Adan", "Adafactor", "OnebitAdam", "OnebitLamb",
    "ZeroOneAdam",
})
BNB_PREFIXED = frozenset({"Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Lion", "LAMB"})

_LION = _settings(lr=1e-4, weight_decay=0.5)  # lr 3-10x smaller, decay 3-10x larger than AdamW's
_TRUST_RATIO = ("its trust ratio ||w||/||update|| is computed per flat ZeRO partition (one per "
                "param group and rank), not per parameter")
_FACTORED = ("its factored second moment needs 2-D tensors; on 1-D partitions it keeps full "
             "second moments and its RMS scaling spans the whole group")
_FLAT_MUON = Impossible("updates only 2-D matrices, and ZeRO hands the optimizer flat 1-D "
                        "partitions (it fails at the first step)",
                        "use type='Muon' (this package's hybrid Muon, which runs on DeepSpeed's "
                        "own Muon under ZeRO) or ZeRO stage 0")

#: What to use instead of an optimizer that cannot step FSDP2 shards (DTensor) exactly.
_EXACT_ON_SHARDS = "AdamW, Lion, LAMB or Muon (this package's, exact on FSDP2 shards)"


def _no_shards(reason: str, instead: str = _EXACT_ON_SHARDS) -> Impossible:
    return Impossible(reason, f"use {instead}, or train without sharding (DDP: the default "
                              "Runner with --launcher pytorch) or under DeepSpeedStrategy (ZeRO)")


_SOPHIA_SHARDS = _no_shards("refreshes its Hessian estimate by differentiating the loss again "
                            "with respect to the parameters, which under FSDP2 are gathered "
                            "copies the second backward never reduces to the shards",
                            "AdamW or Lion")
_REFRESH = Impossible("its Hessian estimate is refreshed from the model by SophiaOptimWrapper, "
                      "and DeepSpeed's engine replaces mmengine's optim wrapper",
                      "train without DeepSpeed, or use AdamW/Lion")

TORCH_ROWS = (
    _torch("SGD", "Stochastic gradient descent with optional (Nesterov) momentum",
           example=_settings(lr=0.01, momentum=0.9, weight_decay=1e-4), elementwise=True),
    _torch("Adam", "Adam (L2 weight decay)", zero_as=ZERO_AS_ADAM),
    _torch("AdamW", "Adam with decoupled weight decay; the usual default",
           example=_settings(lr=1e-3, weight_decay=0.05), zero_as=ZERO_AS_ADAM),
    _torch("Adagrad", "Adagrad: per-coordinate step from summed squared gradients",
           example=_settings(lr=0.01), zero_as=ZERO_AS_ADAGRAD),
    _torch("Adadelta", "Adadelta: Adagrad with a decaying window, unit-free steps",
           example=_settings(lr=1.0), elementwise=True),
    _torch("RMSprop", "RMSprop: step divided by a running RMS of gradients", elementwise=True),
    _torch("RAdam", "Rectified Adam: variance rectification replaces warm-up", elementwise=True),
    _torch("NAdam", "Adam with Nesterov momentum", example=_settings(lr=2e-3), elementwise=True),
    _torch("ASGD", "Averaged SGD", example=_settings(lr=0.01), elementwise=True),
    _torch("Rprop", "Resilient propagation (sign-based, full-batch)", example=_settings(lr=0.01),
           elementwise=True,
           fsdp_impossible=_no_shards("writes its step sizes through sign masks in place "
                                      "(index_put_), which DTensor cannot do on shards",
                                      "Lion (also sign-based)")),
    _torch("LBFGS", "Limited-memory BFGS (quasi-Newton)", wrapper="ClosureOptimWrapper",
           adapter=adapters.line_search_on_minibatches,
           example=_settings(lr=1.0, max_iter=1, history_size=10),
           zero_impossible=Impossible("needs a closure that re-evaluates the loss, which "
                                      "DeepSpeed's engine never passes",
                                      "use AdamW, or train without DeepSpeed"),
           fsdp_impossible=_no_shards("flattens every parameter into one vector, which "
                                      "unevenly sharded DTensors cannot be")),
    _torch("Adamax", "Adam with the infinity norm", example=_settings(lr=2e-3), elementwise=True),
    _torch("SparseAdam", "Adam for sparse gradients (nn.Embedding(sparse=True))",
           adapter=adapters.sparse_only,
           zero_impossible=Impossible("steps sparse gradients, and ZeRO reduces dense flat "
                                      "gradients", "use Adam/AdamW"),
           fsdp_impossible=_no_shards("steps sparse gradients, and FSDP2 reduce-scatters dense "
                                      "ones", "Adam or AdamW")),
    _torch("TorchAdafactor", "torch's Adafactor (factored second moment, relative step)",
           "Adafactor", example=_settings(lr=1e-2), zero_loses=_FACTORED,
           fsdp_impossible=_no_shards("reduces its factored second moment in place, which "
                                      "DTensor cannot redistribute over shards")),
    _torch("TorchMuon", "torch's Muon: 2-D parameters only", "Muon",
           example=_settings(lr=0.02, weight_decay=0.01), zero_impossible=_FLAT_MUON,
           fsdp_impossible=_no_shards("runs Newton-Schulz in bfloat16 through DTensor's sharded "
                                      "products, which round differently from the whole "
                                      "matrix's (about 1e-2 apart after 5 steps)",
                                      "type='Muon' (whole matrices, one rank each)")),
)

NATIVE_ROWS = (
    OptimizerSpec("Lion", "native", "visdet_mmext.algorithms.lion:Lion",
                  "Lion: sign of interpolated momentum, decoupled weight decay, 4 B/param state",
                  example=_LION, zero_as=ZERO_AS_LION, elementwise=True),
    OptimizerSpec("LAMB", "native", "visdet_mmext.algorithms.lamb:LAMB",
                  "LAMB: Adam update scaled per parameter by the trust ratio ||w||/||update||",
                  example=_settings(lr=2e-3, weight_decay=0.01), zero_loses=_TRUST_RATIO),
    OptimizerSpec("Muon", "native", "visdet_mmext.algorithms.muon:Muon",
                  "Muon (hybrid): orthogonalised momentum for matrices, AdamW for the rest",
                  example=_settings(lr=0.02, weight_decay=0.01), routes_muon=True,
                  wrapper="MuonOptimWrapper", zero_as=ZERO_AS_MUON),
    OptimizerSpec("SophiaG", "native", "visdet_mmext.algorithms.sophia:SophiaG",
                  "SophiaG: clipped step by momentum over a Gauss-Newton-Bartlett Hessian estimate",
                  example=_settings(lr=1e-3, rho=0.04, weight_decay=0.1),
                  adapter=adapters.gnb_refresh, wrapper="SophiaOptimWrapper",
                  zero_impossible=_REFRESH, fsdp_impossible=_SOPHIA_SHARDS),
    OptimizerSpec("ADOPT", "native", "visdet_mmext.algorithms.adopt:ADOPT",
                  "ADOPT: Adam normalising by the previous second moment (any beta2)",
                  example=_settings(lr=1e-3, weight_decay=0.05, decouple=True), elementwise=True),
    OptimizerSpec("Adan", "native", "visdet_mmext.algorithms.adan:Adan",
                  "Adan: Nesterov-style momentum of gradients and gradient differences",
                  example=_settings(lr=1e-3, weight_decay=0.02), elementwise=True,
                  zero_loses="max_grad_norm > 0 clips by the norm of each rank's flat partition"),
)

HF_ROWS = (
    OptimizerSpec("Adafactor", "transformers", "visdet_mmext.algorithms.hf_adafactor:Adafactor",
                  "Hugging Face Adafactor (relative step when lr=None)", extra="hf",
                  example=_settings(), adapter=adapters.relative_step,
                  wrapper="AdafactorOptimWrapper", zero_loses=_FACTORED,
                  fsdp_impossible=_no_shards("keeps its factored statistics as plain tensors "
                                             "and mixes them with DTensor shards")),
)

_D_ADAPT = ("its step size d is estimated from the parameters it sees, and each rank sees only "
            "its partition")


#: D-Adaptation's and Prodigy's estimate of d takes dot products of flattened parameters.
_FLATTENS = _no_shards("estimates its step size from flattened parameters, which unevenly "
                       "sharded DTensors cannot be", "DAdaptAdaGrad or DAdaptAdan (exact on "
                       "FSDP2 shards), " + _EXACT_ON_SHARDS)


def _dadapt(name: str, what: str, adapter, **facts) -> OptimizerSpec:
    return OptimizerSpec(name, "dadaptation", f"dadaptation:{name}",
                         f"D-Adaptation {what}: learning-rate-free (set lr=1.0)", extra="dadapt",
                         example=_settings(lr=1.0), adapter=adapter, wrapper="DAdaptOptimWrapper",
                         zero_loses=_D_ADAPT, **facts)


DADAPT_ROWS = (
    _dadapt("DAdaptAdam", "Adam", adapters.lr_mult_as_layer_scale, fsdp_impossible=_FLATTENS),
    _dadapt("DAdaptAdaGrad", "AdaGrad", adapters.single_lr),
    _dadapt("DAdaptSGD", "SGD", adapters.single_lr, fsdp_impossible=_FLATTENS),
    _dadapt("DAdaptAdan", "Adan", adapters.single_lr),
    _dadapt("DAdaptLion", "Lion", adapters.single_lr, fsdp_impossible=_FLATTENS),
)

_TRAIN_EVAL = Impossible("it keeps two weight sequences, switched by optimizer.train()/eval() "
                         "around training and evaluation, which DeepSpeed's engine never calls",
                         "train without DeepSpeed (ScheduleFreeHook switches them in the "
                         "Runner), or use AdamW")


def _schedule_free(name: str, doc: str, example) -> OptimizerSpec:
    return OptimizerSpec(name, "schedulefree", f"schedulefree:{name}", doc, extra="schedulefree",
                         example=example, wrapper="ScheduleFreeOptimWrapper",
                         hooks=("ScheduleFreeHook",), zero_impossible=_TRAIN_EVAL)


SCHEDULE_FREE_ROWS = (
    _schedule_free("AdamWScheduleFree", "Schedule-free AdamW: averaging replaces the lr schedule",
                   _settings(lr=2.5e-3, weight_decay=0.05)),
    _schedule_free("SGDScheduleFree", "Schedule-free SGD with momentum (lr 10-50x plain SGD's)",
                   _settings(lr=1.0, momentum=0.9)),
    _schedule_free("RAdamScheduleFree", "Schedule-free RAdam: no lr schedule and no warm-up",
                   _settings(lr=2.5e-3, weight_decay=0.05)),
)

PRODIGY_ROWS = (
    OptimizerSpec("Prodigy", "prodigyopt", "prodigyopt:Prodigy",
                  "Prodigy: learning-rate-free Adam, D-Adaptation's successor (set lr=1.0)",
                  extra="prodigy", example=_settings(lr=1.0, weight_decay=0.05),
                  adapter=adapters.lr_mult_as_layer_scale, wrapper="ProdigyOptimWrapper",
                  zero_loses=_D_ADAPT, fsdp_impossible=_FLATTENS),
)




def _collection(name: str, doc: str, example, **facts) -> OptimizerSpec:
    return OptimizerSpec(name, "pytorch_optimizer", f"pytorch_optimizer:{name}", doc,
                         extra="pytorch-optimizer", example=example, swallows_kwargs=True, **facts)


COLLECTION_ROWS = (
    _collection("SophiaH", "SophiaH: clipped step by momentum over a Hutchinson Hessian estimate",
                _settings(lr=6e-2, weight_decay=0.1), adapter=adapters.hutchinson_refresh,
                wrapper="SophiaOptimWrapper", zero_impossible=_REFRESH,
                fsdp_impossible=_SOPHIA_SHARDS),
    _collection("SOAP", "SOAP: Adam in the eigenbasis of Shampoo's preconditioner",
                _settings(lr=3e-3, weight_decay=0.01),
                zero_loses="its preconditioner needs the 2-D shapes; on flat 1-D partitions it "
                           "is Adam",
                fsdp_impossible=_no_shards("keeps its eigenbases as plain tensors and mixes them "
                                           "with DTensor shards")),
)

#: bitsandbytes family -> (what it is, example settings, paged variants exist)
_BNB_FAMILIES = {
    "Adam": ("Adam", _settings(lr=1e-3), True),
    "AdamW": ("AdamW (decoupled weight decay)", _settings(lr=1e-3, weight_decay=0.05), True),
    "SGD": ("SGD with momentum", _settings(lr=0.01, momentum=0.9, weight_decay=1e-4), False),
    "RMSprop": ("RMSprop", _settings(lr=1e-3), False),
    "Adagrad": ("Adagrad", _settings(lr=0.01), False),
    "Lion": ("Lion", _LION, True),
    "LAMB": ("LAMB (update-norm clipped)", _settings(lr=1e-3), False),
    "LARS": ("LARS", _settings(lr=0.1, momentum=0.9), False),
    "AdEMAMix": ("AdEMAMix (two momenta)", _settings(lr=1e-3), True),
}
#: bitsandbytes 0.50's CPU backend fails inside the AdEMAMix 32-bit kernel.
BNB_CUDA_ONLY = frozenset({"AdEMAMix32bit", "PagedAdEMAMix32bit"})
_BNB_8BIT = ("min_8bit_size and per-parameter 32-bit overrides (GlobalOptimManager, "
             "StableEmbedding) no longer apply: a whole partition is one tensor")


_BNB_SHARDS = _no_shards("steps through bitsandbytes' optimizer kernels, which have no DTensor "
                         "rule (and its 8-bit state is quantised in blocks of whole tensors)")


def _bnb(name: str, doc: str, example) -> OptimizerSpec:
    return OptimizerSpec(f"bnb_{name}" if name in BNB_PREFIXED else name, "bitsandbytes",
                         f"bitsandbytes.optim:{name}", doc, extra="bnb", example=example,
                         devices=("cuda",) if name in BNB_CUDA_ONLY else ("cpu", "cuda"),
                         zero_loses=_TRUST_RATIO if "LAMB" in name or "LARS" in name
                         else _BNB_8BIT if "8bit" in name else None,
                         # PytorchLARS is plain torch: exact on shards
                         fsdp_impossible=None if name == "PytorchLARS" else _BNB_SHARDS)


def _bnb_rows() -> list[OptimizerSpec]:
    rows = []
    for family, (what, example, paged) in _BNB_FAMILIES.items():
        variants = [(family, "32-bit state by default"), (f"{family}8bit", "8-bit block-wise state"),
                    (f"{family}32bit", "32-bit state")]
        if paged:
            variants += [(f"Paged{family}", "paged 32-bit state (CUDA paging)"),
                         (f"Paged{family}8bit", "paged 8-bit state"),
                         (f"Paged{family}32bit", "paged 32-bit state")]
        rows += [_bnb(name, f"bitsandbytes {what}, {state}", example) for name, state in variants]
    rows.append(_bnb("PytorchLARS", "bitsandbytes LARS written in plain PyTorch",
                     _settings(lr=0.1, momentum=0.9)))
    return rows


#: DeepSpeed's CPU classes step only parameters in host memory (they assert it): with a model on
#: a GPU they run under ZeRO-Offload, which keeps their partitions on the CPU.
_HOST = ("cpu",)


_DS_KERNELS = _no_shards("steps the raw memory of whole tensors in C++/CUDA kernels, and an "
                         "FSDP2 parameter is a DTensor holding one slice")


def _deepspeed(name, module, doc, builder, **facts) -> OptimizerSpec:
    return OptimizerSpec(name, "deepspeed", f"{module}:{name}", doc, extra="deepspeed",
                         op_builder=builder, fsdp_impossible=_DS_KERNELS, **facts)


DEEPSPEED_ROWS = (
    _deepspeed("FusedAdam", "deepspeed.ops.adam", "DeepSpeed fused multi-tensor Adam/AdamW",
               "FusedAdamBuilder", zero_as=ZERO_AS_ADAM),
    _deepspeed("DeepSpeedCPUAdam", "deepspeed.ops.adam",
               "DeepSpeed vectorised CPU Adam/AdamW (ZeRO-Offload)", "CPUAdamBuilder",
               devices=_HOST, zero_as=ZERO_NATIVE),
    _deepspeed("DeepSpeedCPUAdagrad", "deepspeed.ops.adagrad", "DeepSpeed vectorised CPU Adagrad",
               "CPUAdagradBuilder", devices=_HOST, example=_settings(lr=0.01),
               zero_as=ZERO_AS_ADAGRAD),
    _deepspeed("DeepSpeedCPULion", "deepspeed.ops.lion",
               "DeepSpeed vectorised CPU Lion (ZeRO-Offload)", "CPULionBuilder", devices=_HOST,
               example=_LION, zero_as=ZERO_NATIVE),
    _deepspeed("FusedLamb", "deepspeed.ops.lamb", "DeepSpeed fused LAMB", "FusedLambBuilder",
               devices=("cuda",), zero_loses=_TRUST_RATIO),
    _deepspeed("FusedLion", "deepspeed.ops.lion", "DeepSpeed fused Lion", "FusedLionBuilder",
               devices=("cuda",), example=_LION, elementwise=True),
)

_ONEBIT = Impossible("averages 1-bit compressed momenta itself and needs DDP's gradient all-reduce "
                     "switched off, while DeepSpeed's engine all-reduces (and under ZeRO partitions) "
                     "the gradients",
                     "train with the default Runner (visdet-mmext train --launcher pytorch, no "
                     "strategy), or use Adam/LAMB under DeepSpeed", from_stage=0)


_ONEBIT_SHARDS = _no_shards("averages 1-bit compressed momenta of whole parameters through "
                             "DDP's communication hook, and FSDP2 shards the parameters and "
                             "reduce-scatters the gradients itself", "Adam or LAMB")


def _onebit(name: str, module: str, doc: str, **facts) -> OptimizerSpec:
    return OptimizerSpec(name, "native", f"visdet_mmext.algorithms.onebit.{module}:{name}", doc,
                         zero_impossible=_ONEBIT, fsdp_impossible=_ONEBIT_SHARDS, **facts)


ONEBIT_ROWS = (
    _onebit("OnebitAdam", "adam",
            "1-bit Adam: Adam warm-up, then frozen variance and 1-bit compressed momentum",
            example=_settings(lr=1e-3, freeze_step=100)),
    _onebit("OnebitLamb", "lamb",
            "1-bit LAMB: LAMB warm-up, then frozen variance/trust ratio, 1-bit momentum",
            example=_settings(lr=2e-3, weight_decay=0.01, freeze_step=100)),
    _onebit("ZeroOneAdam", "zero_one_adam",
            "0/1 Adam: adaptive variance freezing, 1-bit momentum and local steps",
            example=_settings(lr=1e-3, var_freeze_step=100)),
)

CATALOG = Catalog((*TORCH_ROWS, *NATIVE_ROWS, *ONEBIT_ROWS, *HF_ROWS, *DADAPT_ROWS,
                   *SCHEDULE_FREE_ROWS, *PRODIGY_ROWS, *COLLECTION_ROWS, *_bnb_rows(),
                   *DEEPSPEED_ROWS))
