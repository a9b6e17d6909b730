"""The catalog: one row per documented optimizer.

This table is the single source of truth for names. A name means one class whatever
else is installed: a provider registers exactly the rows below (and, for bitsandbytes,
any newer class under the same naming rule), and the availability report explains every
row that could not be registered.
"""
from __future__ import annotations

from dataclasses import dataclass

#: pip extra -> what to install. `None` means the package is a core dependency.
INSTALL_HINTS = {
    None: "pip install visdet-mmext",
    "bnb": "pip install 'visdet-mmext[bnb]'  (bitsandbytes >= 0.50 runs on CPU too)",
    "deepspeed": "pip install 'visdet-mmext[deepspeed]'",
    "dadapt": "pip install 'visdet-mmext[dadapt]'",
    "hf": "pip install 'visdet-mmext[hf]'",
}


@dataclass(frozen=True)
class OptimizerSpec:
    name: str  # the registry name users write in `optimizer=dict(type=...)`
    provider: str  # entry point that registers it
    target: str  # "module:attribute" of the class
    doc: str  # one line for the README and `python -m visdet_mmext list`
    extra: str | None = None  # pip extra that brings the package
    devices: str = "cpu, cuda"  # where it can step
    op_builder: str | None = None  # DeepSpeed op that must exist on the accelerator
    removed_in: str | None = None  # first version of the package without the class
    notes: str = ""  # what the package adds to make it work (shown in the README)

    @property
    def module(self) -> str:
        return self.target.partition(":")[0]

    @property
    def attribute(self) -> str:
        return self.target.partition(":")[2]

    @property
    def install_hint(self) -> str:
        return INSTALL_HINTS[self.extra]

    @property
    def example(self) -> dict:
        """Sensible settings for a first config (used by `check`, configs and the README)."""
        if self.name in EXAMPLE_SETTINGS:
            return dict(EXAMPLE_SETTINGS[self.name])
        family = next((f for f in _EXAMPLE_FAMILIES if f in self.attribute), None)
        return dict(EXAMPLE_SETTINGS.get(family, {"lr": 1e-3}))


def _torch(name: str, doc: str, attribute: str | None = None, notes: str = "") -> OptimizerSpec:
    return OptimizerSpec(name, "torch", f"torch.optim:{attribute or name}", doc, notes=notes)


def _bnb(name: str, doc: str) -> OptimizerSpec:
    registry_name = f"bnb_{name}" if name in BNB_PREFIXED else name
    devices = "cuda" if name in BNB_CUDA_ONLY else "cpu, cuda"
    return OptimizerSpec(registry_name, "bitsandbytes", f"bitsandbytes.optim:{name}", doc,
                         extra="bnb", devices=devices)


def _deepspeed(name: str, module: str, doc: str, *, builder: str | None = None,
               devices: str = "cpu, cuda", removed_in: str | None = None) -> OptimizerSpec:
    return OptimizerSpec(name, "deepspeed", f"{module}:{name}", doc, extra="deepspeed",
                         devices=devices, op_builder=builder, removed_in=removed_in)


#: Names owned by torch or by this package; a bitsandbytes class with one of these names
#: is registered as ``bnb_<name>`` so that, e.g., ``Lion`` never silently means bnb's Lion.
FIXED_NAMES = frozenset({
    "SGD", "Adam", "AdamW", "Adagrad", "Adadelta", "RMSprop", "RAdam", "NAdam", "ASGD",
    "Rprop", "LBFGS", "Adamax", "SparseAdam", "TorchAdafactor", "TorchMuon",
    "Lion", "LAMB", "Muon", "Adafactor",
})
BNB_PREFIXED = frozenset({"Adam", "AdamW", "SGD", "RMSprop", "Adagrad", "Lion", "LAMB"})
#: bitsandbytes 0.50.2's CPU backend fails inside the AdEMAMix 32-bit kernel.
BNB_CUDA_ONLY = frozenset({"AdEMAMix32bit", "PagedAdEMAMix32bit"})

_BNB_FAMILIES = {
    "Adam": "Adam", "AdamW": "AdamW (decoupled weight decay)", "SGD": "SGD with momentum",
    "RMSprop": "RMSprop", "Adagrad": "Adagrad", "Lion": "Lion", "LAMB": "LAMB (update-norm clipped)",
    "LARS": "LARS", "AdEMAMix": "AdEMAMix (two momenta)",
}


def _bnb_rows() -> list[OptimizerSpec]:
    rows = []
    for family, what in _BNB_FAMILIES.items():
        paged = family in {"Adam", "AdamW", "Lion", "AdEMAMix"}
        rows.append(_bnb(family, f"bitsandbytes {what}, 32-bit state by default"))
        rows.append(_bnb(f"{family}8bit", f"bitsandbytes {what}, 8-bit block-wise state"))
        rows.append(_bnb(f"{family}32bit", f"bitsandbytes {what}, 32-bit state"))
        if paged:
            rows.append(_bnb(f"Paged{family}", f"bitsandbytes {what}, paged 32-bit state (CUDA paging)"))
            rows.append(_bnb(f"Paged{family}8bit", f"bitsandbytes {what}, paged 8-bit state"))
            rows.append(_bnb(f"Paged{family}32bit", f"bitsandbytes {what}, paged 32-bit state"))
    rows.append(_bnb("PytorchLARS", "bitsandbytes LARS written in plain PyTorch"))
    return rows


CATALOG: tuple[OptimizerSpec, ...] = (
    # torch.optim, under their own names (torch's Adafactor and Muon renamed).
    _torch("SGD", "Stochastic gradient descent with optional (Nesterov) momentum"),
    _torch("Adam", "Adam (L2 weight decay)"),
    _torch("AdamW", "Adam with decoupled weight decay; the usual default"),
    _torch("Adagrad", "Adagrad: per-coordinate step from summed squared gradients"),
    _torch("Adadelta", "Adadelta: Adagrad with a decaying window, unit-free steps"),
    _torch("RMSprop", "RMSprop: step divided by a running RMS of gradients"),
    _torch("RAdam", "Rectified Adam: variance rectification replaces warm-up"),
    _torch("NAdam", "Adam with Nesterov momentum"),
    _torch("ASGD", "Averaged SGD"),
    _torch("Rprop", "Resilient propagation (sign-based, full-batch)"),
    _torch("LBFGS", "Limited-memory BFGS (quasi-Newton)",
           notes="trained through ClosureOptimWrapper, chosen automatically"),
    _torch("Adamax", "Adam with the infinity norm"),
    _torch("SparseAdam", "Adam for sparse gradients (nn.Embedding(sparse=True))",
           notes="refuses dense parameters before training"),
    _torch("TorchAdafactor", "torch's Adafactor (factored second moment, relative step)", "Adafactor"),
    _torch("TorchMuon", "torch's Muon: 2-D parameters only", "Muon"),
    # Native algorithms of this package.
    OptimizerSpec("Lion", "native", "visdet_mmext.optim.lion:Lion",
                  "Lion: sign of interpolated momentum, decoupled weight decay, 4 B/param state"),
    OptimizerSpec("LAMB", "native", "visdet_mmext.optim.lamb:LAMB",
                  "LAMB: Adam update scaled per parameter by the trust ratio ||w||/||update||"),
    OptimizerSpec("Muon", "native", "visdet_mmext.optim.muon:Muon",
                  "Muon (hybrid): orthogonalised momentum for matrices, AdamW for the rest"),
    # transformers
    OptimizerSpec("Adafactor", "transformers", "visdet_mmext.optim.hf_adafactor:Adafactor",
                  "Hugging Face Adafactor (relative step when lr=None)", extra="hf",
                  notes="lr=None logs the relative step instead of crashing the lr logger"),
    # D-Adaptation
    OptimizerSpec("DAdaptAdam", "dadaptation", "dadaptation:DAdaptAdam",
                  "D-Adaptation Adam: learning-rate-free (set lr=1.0)", extra="dadapt",
                  notes="lr_mult becomes layer_scale; d*lr logged as train/effective_lr"),
    OptimizerSpec("DAdaptAdaGrad", "dadaptation", "dadaptation:DAdaptAdaGrad",
                  "D-Adaptation AdaGrad: learning-rate-free (set lr=1.0)", extra="dadapt",
                  notes="refuses per-group lr; d*lr logged"),
    OptimizerSpec("DAdaptSGD", "dadaptation", "dadaptation:DAdaptSGD",
                  "D-Adaptation SGD: learning-rate-free (set lr=1.0)", extra="dadapt",
                  notes="refuses per-group lr; d*lr logged"),
    OptimizerSpec("DAdaptAdan", "dadaptation", "dadaptation:DAdaptAdan",
                  "D-Adaptation Adan: learning-rate-free (set lr=1.0)", extra="dadapt",
                  notes="refuses per-group lr; d*lr logged"),
    OptimizerSpec("DAdaptLion", "dadaptation", "dadaptation:DAdaptLion",
                  "D-Adaptation Lion: learning-rate-free (set lr=1.0)", extra="dadapt",
                  notes="refuses per-group lr; d*lr logged"),
    # bitsandbytes (8-bit, 32-bit and paged)
    *_bnb_rows(),
    # DeepSpeed (registered lazily: `import deepspeed` is slow and picks an accelerator)
    _deepspeed("FusedAdam", "deepspeed.ops.adam", "DeepSpeed fused multi-tensor Adam/AdamW",
               builder="FusedAdamBuilder"),
    _deepspeed("DeepSpeedCPUAdam", "deepspeed.ops.adam",
               "DeepSpeed vectorised CPU Adam/AdamW (ZeRO-Offload)", builder="CPUAdamBuilder"),
    _deepspeed("DeepSpeedCPUAdagrad", "deepspeed.ops.adagrad",
               "DeepSpeed vectorised CPU Adagrad", builder="CPUAdagradBuilder"),
    _deepspeed("DeepSpeedCPULion", "deepspeed.ops.lion", "DeepSpeed vectorised CPU Lion (ZeRO-Offload)",
               builder="CPULionBuilder"),
    _deepspeed("FusedLamb", "deepspeed.ops.lamb", "DeepSpeed fused LAMB", builder="FusedLambBuilder",
               devices="cuda"),
    _deepspeed("FusedLion", "deepspeed.ops.lion", "DeepSpeed fused Lion", builder="FusedLionBuilder",
               devices="cuda"),
    OptimizerSpec("OnebitAdam", "native", "visdet_mmext.algorithms.onebit.adam:OnebitAdam",
                  "1-bit Adam: Adam warm-up, then frozen variance and 1-bit compressed momentum"),
    OptimizerSpec("OnebitLamb", "native", "visdet_mmext.algorithms.onebit.lamb:OnebitLamb",
                  "1-bit LAMB: LAMB warm-up, then frozen variance/trust ratio, 1-bit momentum"),
    OptimizerSpec("ZeroOneAdam", "native", "visdet_mmext.algorithms.onebit.zero_one_adam:ZeroOneAdam",
                  "0/1 Adam: adaptive variance freezing, 1-bit momentum and local steps"),
)

#: Starting hyperparameters per name (or per family for the bitsandbytes variants).
EXAMPLE_SETTINGS: dict[str, dict] = {
    "SGD": {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4},
    "AdamW": {"lr": 1e-3, "weight_decay": 0.05},
    "Adagrad": {"lr": 0.01},
    "Adadelta": {"lr": 1.0},
    "NAdam": {"lr": 2e-3},
    "ASGD": {"lr": 0.01},
    "Rprop": {"lr": 0.01},
    "LBFGS": {"lr": 1.0, "max_iter": 1, "history_size": 10},
    "Adamax": {"lr": 2e-3},
    "TorchAdafactor": {"lr": 1e-2},
    "TorchMuon": {"lr": 0.02, "weight_decay": 0.01},
    # Lion: lr 3-10x smaller and weight decay 3-10x larger than AdamW's.
    "Lion": {"lr": 1e-4, "weight_decay": 0.5},
    "LAMB": {"lr": 2e-3, "weight_decay": 0.01},
    "Muon": {"lr": 0.02, "weight_decay": 0.01},
    "Adafactor": {},
    "LARS": {"lr": 0.1, "momentum": 0.9},
    "PytorchLARS": {"lr": 0.1, "momentum": 0.9},
    "DeepSpeedCPUAdagrad": {"lr": 0.01},
    "DeepSpeedCPULion": {"lr": 1e-4, "weight_decay": 0.5},
    "FusedLion": {"lr": 1e-4, "weight_decay": 0.5},
    **{name: {"lr": 1.0} for name in ("DAdaptAdam", "DAdaptAdaGrad", "DAdaptSGD", "DAdaptAdan",
                                      "DAdaptLion")},
}
_EXAMPLE_FAMILIES = ("SGD", "LARS", "Lion", "Adagrad")

CATALOG_BY_NAME: dict[str, OptimizerSpec] = {spec.name: spec for spec in CATALOG}


def rows_of(provider: str) -> list[OptimizerSpec]:
    return [spec for spec in CATALOG if spec.provider == provider]
