"""Hyperparameters that train the toy problem in 40 steps, and the loss ratio each must reach.

Like timm's and pytorch_optimizer's sweeps: one tuned row per family; the bitsandbytes 8-bit,
32-bit and paged variants share their family's row. ``max_ratio`` is final/initial loss.
"""
FAMILY_SETTINGS = {
    # family: (settings, max final/initial loss ratio after STEPS steps)
    "Adam": ({"lr": 1e-2}, 0.5),
    "AdEMAMix": ({"lr": 1e-2}, 0.6),
    "Lion": ({"lr": 1e-2, "weight_decay": 0.1}, 0.4),
    "LAMB": ({"lr": 0.2, "weight_decay": 0.01}, 0.5),  # bnb clips the update norm
    "SGD": ({"lr": 0.1, "momentum": 0.9}, 0.5),
    "LARS": ({"lr": 1.0, "momentum": 0.9}, 0.8),
    "RMSprop": ({"lr": 1e-2}, 0.6),
    "Adagrad": ({"lr": 0.1}, 0.5),
}
SETTINGS = {
    "NAdam": ({"lr": 1e-2}, 0.5),
    "RAdam": ({"lr": 3e-2}, 0.75),  # rectification: SGD-like first steps
    "Adamax": ({"lr": 2e-2}, 0.5),
    "ASGD": ({"lr": 0.3}, 0.5),
    "Adadelta": ({"lr": 1.0}, 0.6),
    "Rprop": ({"lr": 0.01}, 0.3),
    "LBFGS": ({"lr": 1.0, "max_iter": 1, "history_size": 10}, 0.3),
    "SparseAdam": ({"lr": 0.1}, 0.8),
    "TorchAdafactor": ({"lr": 5e-2}, 0.6),
    "TorchMuon": ({"lr": 0.02, "weight_decay": 0.01}, 0.6),
    # native algorithms
    "Lion": ({"lr": 1e-2, "weight_decay": 0.1}, 0.4),
    "LAMB": ({"lr": 5e-2, "weight_decay": 0.01}, 0.5),
    "Muon": ({"lr": 0.02, "weight_decay": 0.01, "adamw_lr": 1e-2}, 0.5),
    "Adafactor": ({}, 0.85),
    # d grows geometrically from d0; uncapped it overshoots on this toy (loss spikes to ~50x before
    # recovering, and where it ends after 40 steps depends on rounding). Capped: smooth, ratio ~0.002.
    "DAdaptAdam": ({"lr": 1.0, "d0": 3e-3, "growth_rate": 1.5}, 0.3),
    "DAdaptAdan": ({"lr": 1.0}, 0.3),
    "DAdaptLion": ({"lr": 1.0}, 0.5),
    "DAdaptSGD": ({"lr": 1.0, "d0": 1e-2, "growth_rate": 1.1}, 0.7),
    "DAdaptAdaGrad": ({"lr": 1.0, "d0": 1e-2}, 0.7),
    "DeepSpeedCPUAdagrad": ({"lr": 0.1}, 0.5),
    # schedule-free (stepped in train mode by ScheduleFreeOptimWrapper)
    "AdamWScheduleFree": ({"lr": 2e-2}, 0.3),
    "SGDScheduleFree": ({"lr": 1.0}, 0.4),
    "RAdamScheduleFree": ({"lr": 0.1}, 0.5),  # holds still until its rectification starts
    "Prodigy": ({"lr": 1.0}, 0.3),
    # Hessian refreshed every 3 steps, so the round trip resumes across refreshes
    "SophiaG": ({"lr": 2e-2, "update_period": 3}, 0.3),
    "SophiaH": ({"lr": 1.0, "update_period": 3}, 0.4),  # steps are clipped to lr * p (p=0.01)
    "ADOPT": ({"lr": 2e-2}, 0.3),
    "Adan": ({"lr": 2e-2}, 0.3),
    "SOAP": ({"lr": 3e-2}, 0.3),
    # 1-bit optimizers: the round trip after step 5 lands in the compression stage (0/1 Adam:
    # inside a local-step interval)
    "OnebitAdam": ({"lr": 1e-2, "freeze_step": 3}, 0.5),
    "OnebitLamb": ({"lr": 5e-2, "weight_decay": 0.01, "freeze_step": 3}, 0.5),
    "ZeroOneAdam": ({"lr": 1e-2, "var_freeze_step": 3, "local_step_scaler": 1,
                     "local_step_clipper": 4}, 0.5),
    # CUDA only: the paper's LAMB with its trust ratio clamped to [0.01, 10], as the native one
    "FusedLamb": ({"lr": 5e-2, "weight_decay": 0.01}, 0.5),
}
STEPS = 40
FAMILY_ORDER = ("AdEMAMix", "LAMB", "LARS", "Lion", "RMSprop", "Adagrad", "SGD", "Adam")


def sweep_settings(name: str):
    if name in SETTINGS:
        return SETTINGS[name]
    for family in FAMILY_ORDER:  # the most specific family name first (AdEMAMix before Adam)
        if family in name:
            settings, ratio = FAMILY_SETTINGS[family]
            return dict(settings), ratio
    raise KeyError(f"no sweep settings for {name!r}: add a row to tests/sweep_settings.py")
