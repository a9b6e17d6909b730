"""Train the same model with several optimizers and compare them in one picture.

    visdet-mmext compare                       # AdamW SGD Lion Muon LAMB AdamW8bit
    visdet-mmext compare AdamW Lion optimizers/sgd my_config.py --iters 300
    visdet-mmext compare --list                # names and configs it knows
    visdet-mmext compare --replot work_dirs/compare_optimizers/results.json \
        AdamW Muon --out-dir docs/images       # redraw a subset, no training

Each item is a config file, a packaged config (``optimizers/sgd``) or an optimizer name. A name
uses the packaged config under ``configs/optimizers/`` that sets that optimizer, else the demo
with the catalog's example settings and a warm-up + cosine schedule. Every run gets the same seed (same initial weights,
same batches), ``--iters`` iterations (schedules are rescaled to fit) and a validation every
``--val-interval`` iterations. Writes, under ``--out-dir``:

- ``compare.png``: training loss and validation accuracy per optimizer, mean optimizer-step
  time and optimizer-state memory (bytes per parameter) as bars;
- ``compare.md``: the same numbers as a markdown table;
- ``results.json``: every recorded value.

Timings come from one run on the current machine; they are for comparing optimizers side by
side, not absolute numbers.
"""
from __future__ import annotations

import argparse
import copy
import glob
import json
import math
import os
import os.path as osp
import statistics
import sys
import time
import traceback
import uuid

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))  # the package: configs/ ships inside it
DEFAULT_ITEMS = ("AdamW", "SGD", "Lion", "Muon", "LAMB", "AdamW8bit")
BASE_CONFIG = osp.join(ROOT, "configs", "_base_", "demo.py")
SCHEDULE = osp.join(ROOT, "configs", "_base_", "schedules", "warmup_cosine.py")
CONFIG_DIR = osp.join(ROOT, "configs", "optimizers")


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("items", nargs="*", help="config files or optimizer names "
                        f"(default: {' '.join(DEFAULT_ITEMS)}, those available)")
    parser.add_argument("--iters", type=int, default=600, help="training iterations per optimizer")
    parser.add_argument("--val-interval", type=int, default=None,
                        help="validate every N iterations (default: iters/6)")
    parser.add_argument("--out-dir", default="work_dirs/compare_optimizers",
                        help="where compare.png, compare.md and results.json go")
    parser.add_argument("--model", choices=("config", "convnet", "transformer"), default="config",
                        help="train the configs' model, or force DemoConvNet / DemoTransformer")
    parser.add_argument("--batch-size", type=int, default=None, help="override the batch size")
    parser.add_argument("--num-train", type=int, default=None,
                        help="override the number of training images of the demo dataset")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for every run (default: the cores other processes "
                             "leave free, decided once at the start)")
    parser.add_argument("--title", default=None, help="title of the figure")
    parser.add_argument("--list", action="store_true",
                        help="list known names and configs, then exit")
    parser.add_argument("--replot", metavar="RESULTS_JSON", default=None,
                        help="no training: redraw the picture and table from an earlier "
                             "results.json (items then select labels, in that order)")
    parser.add_argument("--name", default="compare",
                        help="file name stem of the picture and table (default: compare)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- items -> configs

def optimizer_type(cfg) -> str:
    optimizer = cfg.get("optim_wrapper", {}).get("optimizer", {})
    kind = optimizer.get("type", "?")
    return kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))


def known_configs() -> dict[str, str]:
    """optimizer name -> config file under configs/optimizers (first file per name)."""
    from mmengine.config import Config
    found: dict[str, str] = {}
    for path in sorted(glob.glob(osp.join(CONFIG_DIR, "*.py"))):
        found.setdefault(optimizer_type(Config.fromfile(path)), path)
    return found


def resolve_item(item: str, configs: dict[str, str]):
    """(label, Config) for a config path or an optimizer name."""
    from mmengine.config import Config
    from visdet_mmext.catalog import CATALOG
    from visdet_mmext.configs import find_config
    if item.endswith(".py") or osp.isfile(item) or "/" in item:
        cfg = Config.fromfile(find_config(item))
        return optimizer_type(cfg), cfg
    if item in configs:
        return item, Config.fromfile(configs[item])
    spec = CATALOG.get(item)
    settings = dict(spec.example) if spec is not None else {"lr": 1e-3}
    cfg = Config.fromfile(BASE_CONFIG)
    cfg.merge_from_dict(Config.fromfile(SCHEDULE).to_dict())
    cfg.optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type=item, **settings))
    return item, cfg


def fit_to(cfg, args, work_dir: str):
    """Shorten the run to --iters (rescaling the schedule), quiet logging, no checkpoints."""
    iters = args.iters
    original = cfg.train_cfg.get("max_iters", iters)
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = args.val_interval or max(1, iters // 6)
    schedulers = cfg.get("param_scheduler") or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for scheduler in schedulers:
        for key in ("begin", "end", "T_max"):
            if isinstance(scheduler.get(key), int):
                scheduler[key] = max(1, round(scheduler[key] * iters / original)) \
                    if scheduler[key] else 0
    cfg.param_scheduler = schedulers
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=max(1, iters // 6))
    cfg.log_level = "WARNING"
    cfg.work_dir = work_dir
    cfg.experiment_name = f"compare_{uuid.uuid4().hex[:8]}"
    cfg.load_from, cfg.resume = None, False
    cfg.launcher = "none"
    if args.model == "convnet":
        cfg.model = dict(type="DemoConvNet", num_classes=cfg.model.get("num_classes", 4))
    elif args.model == "transformer":
        cfg.model = dict(type="DemoTransformer", num_classes=cfg.model.get("num_classes", 4))
    if args.batch_size:
        cfg.train_dataloader.batch_size = args.batch_size
    if args.num_train:
        for loader in ("train_dataloader", "val_dataloader"):
            cfg[loader].dataset.num_train = args.num_train
    return cfg


# ---------------------------------------------------------------------------- recording

def state_bytes(optimizer) -> int:
    """Bytes of every tensor in the optimizer state (shared tensors counted once)."""
    import torch
    seen, total = set(), 0

    def visit(value):
        nonlocal total
        if isinstance(value, torch.Tensor):
            key = (value.device, value.untyped_storage().data_ptr(), value.numel(), value.dtype)
            if key not in seen:
                seen.add(key)
                total += value.numel() * value.element_size()
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif hasattr(value, "__dict__") and not isinstance(value, type):  # e.g. bnb QuantState
            for item in vars(value).values():
                visit(item)

    for state in optimizer.state.values():
        visit(state)
    return total


class CompileWatch:
    """Counts torch.compile (dynamo) compilations while active, so steps that compiled can be
    told apart from steady-state steps. Uses dynamo's compile callbacks (torch._dynamo.callback,
    torch >= 2.5)."""

    def __init__(self):
        self.started = 0

    def _on_start(self, *args):
        self.started += 1

    def __enter__(self):
        from torch._dynamo.callback import callback_handler
        callback_handler.register_start_callback(self._on_start)
        return self

    def __exit__(self, *exc):
        from torch._dynamo.callback import callback_handler
        callback_handler.remove_start_callback(self._on_start)


def make_recorder(progress, compiles: CompileWatch):
    from mmengine.hooks import Hook

    class Recorder(Hook):
        priority = "VERY_LOW"

        def __init__(self):
            self.loss, self.val, self.iter_ms, self.step_ms = [], [], [], []
            self.compiled = []  # per step: did a compilation run inside it
            self._handles = []

        def before_train(self, runner):
            optimizer = runner.optim_wrapper.optimizer
            self.optimizer = optimizer
            started = {}

            def pre(opt, args, kwargs):
                started["compiles"] = compiles.started
                started["t"] = time.perf_counter()

            def post(opt, args, kwargs):
                self.step_ms.append((time.perf_counter() - started.pop("t")) * 1000)
                self.compiled.append(compiles.started != started.pop("compiles"))

            self._handles = [optimizer.register_step_pre_hook(pre),
                             optimizer.register_step_post_hook(post)]
            self.params = sum(p.numel() for group in optimizer.param_groups
                              for p in group["params"] if p.requires_grad)

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self._t = time.perf_counter()

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.iter_ms.append((time.perf_counter() - self._t) * 1000)
            loss = (outputs or {}).get("loss")
            self.loss.append(float(loss.detach()) if loss is not None else math.nan)
            if progress is not None:
                progress.update(1)
                progress.set_postfix_str(f"loss {self.loss[-1]:.3f}", refresh=False)

        def after_val_epoch(self, runner, metrics=None):
            if metrics and "accuracy" in metrics:
                self.val.append((runner.iter, float(metrics["accuracy"])))

        def after_train(self, runner):
            self.state = state_bytes(self.optimizer)
            for handle in self._handles:
                handle.remove()

    return Recorder()


def steady_step_times(step_ms: list[float], compiled: list[bool]) -> tuple[list[float], float]:
    """Step times without the first step (state allocation) and without steps in which a
    compilation ran; and the seconds those excluded steps took."""
    steady = [ms for i, (ms, c) in enumerate(zip(step_ms, compiled)) if i > 0 and not c]
    excluded = sum(ms for i, (ms, c) in enumerate(zip(step_ms, compiled)) if i == 0 or c)
    return steady, excluded / 1000


def run_one(label: str, cfg, progress, threads: int) -> dict:
    import torch
    from mmengine.runner import Runner

    # every optimizer trains with the same thread count, whatever the machine's load does
    for hook in cfg.get("custom_hooks", []):
        if hook.get("type") == "CpuThreadsHook":
            hook["threads"] = threads
    torch.set_num_threads(threads)
    with CompileWatch() as compiles:
        recorder = make_recorder(progress, compiles)
        runner = Runner.from_cfg(cfg)
        runner.register_hook(recorder)
        started = time.perf_counter()
        runner.train()
    skip = min(5, len(recorder.iter_ms) // 4)  # first iterations include one-off set-up
    mean = (lambda xs: sum(xs) / len(xs) if xs else math.nan)
    median = (lambda xs: statistics.median(xs) if xs else math.nan)
    steady, first_steps_s = steady_step_times(recorder.step_ms, recorder.compiled)
    tail = recorder.loss[-max(1, len(recorder.loss) // 10):]
    return dict(
        label=label, optimizer=optimizer_type(cfg), ok=True,
        settings={k: v for k, v in cfg.optim_wrapper.optimizer.items() if k != "type"},
        loss=recorder.loss, val=recorder.val,
        final_accuracy=recorder.val[-1][1] if recorder.val else math.nan,
        best_accuracy=max((a for _, a in recorder.val), default=math.nan),
        final_loss=mean(tail),
        iter_ms=median(recorder.iter_ms[skip:]), step_ms=median(steady),
        first_steps_s=first_steps_s, compiled_steps=sum(recorder.compiled),
        state_bytes=recorder.state, params=recorder.params,
        bytes_per_param=recorder.state / max(recorder.params, 1),
        seconds=time.perf_counter() - started, threads=threads)


class _PlainProgress:
    """A minimal stand-in for tqdm (one line per 5 %), used when tqdm is not installed."""

    def __init__(self, total: int):
        self.total, self.done, self.label, self.postfix, self._shown = total, 0, "", "", -1

    def set_description(self, label):
        self.label = label

    def set_postfix_str(self, text, refresh=False):
        self.postfix = text

    def update(self, n=1):
        self.done += n
        step = 100 * self.done // max(self.total, 1) // 5
        if step != self._shown:
            self._shown = step
            print(f"[{self.done}/{self.total}] {self.label} {self.postfix}", file=sys.stderr,
                  flush=True)

    def close(self):
        pass


def make_progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainProgress(total)
    return tqdm(total=total, unit="it", dynamic_ncols=True, file=sys.stderr)


# ---------------------------------------------------------------------------- outputs

def smooth(values, weight: float = 0.9):
    out, last = [], None
    for value in values:
        last = value if last is None or math.isnan(last) else weight * last + (1 - weight) * value
        out.append(last)
    return out


def loss_ticks(ax, losses) -> None:
    """Log-axis ticks that each read as their own value. A short run's loss can span less than a
    decade; there the 1-2-5 ticks would be one or none, so they are evenly spaced instead."""
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter

    losses = [x for x in losses if x > 0 and math.isfinite(x)]
    wide = bool(losses) and max(losses) >= 10 * min(losses)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)) if wide
                               else MaxNLocator(nbins=5))
    ax.yaxis.set_major_formatter(exact_tick_formatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def exact_tick_formatter():
    """Tick labels with the fewest significant digits that still read as the tick's value."""
    from matplotlib.ticker import Formatter

    class ExactFormatter(Formatter):
        digits = 2

        def set_locs(self, locs):
            super().set_locs(locs)
            self.digits = next((d for d in range(2, 7) if all(
                math.isclose(float(f"{x:.{d}g}"), x, rel_tol=1e-9) for x in locs)), 7)

        def __call__(self, x, pos=None):
            return f"{x:.{self.digits}g}"

    return ExactFormatter()


def plot(results: list[dict], path: str, title: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("the comparison picture needs matplotlib: "
                         "pip install 'visdet-mmext[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if r["ok"]]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {r["label"]: colours[i % len(colours)] for i, r in enumerate(ok)}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    (ax_loss, ax_acc), (ax_time, ax_mem) = axes
    for r in ok:
        ax_loss.plot(range(1, len(r["loss"]) + 1), smooth(r["loss"]), label=r["label"],
                     color=colour[r["label"]], linewidth=1.5)
        if r["val"]:
            its, accs = zip(*r["val"])
            ax_acc.plot(its, accs, marker="o", label=r["label"], color=colour[r["label"]])
    ax_loss.set(title="training loss (EMA 0.9)", xlabel="iteration", ylabel="cross-entropy",
                yscale="log")
    loss_ticks(ax_loss, [x for r in ok for x in smooth(r["loss"])])
    ax_acc.set(title="validation accuracy", xlabel="iteration", ylabel="accuracy (%)")
    ax_acc.set_ylim(top=100)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)

    labels = [r["label"] for r in ok]
    bars = ax_time.bar(labels, [r["step_ms"] for r in ok], color=[colour[x] for x in labels])
    ax_time.bar_label(bars, fmt="%.1f", fontsize=8)
    ax_time.set(title="optimizer step (median ms, compilation excluded)", ylabel="ms")
    bars = ax_mem.bar(labels, [r["bytes_per_param"] for r in ok], color=[colour[x] for x in labels])
    ax_mem.bar_label(bars, fontsize=8, labels=[
        f"{r['bytes_per_param']:.1f} B\n{r['state_bytes'] / 1024:.0f} KiB" for r in ok])
    ax_mem.set(title="optimizer state (bytes per parameter)", ylabel="bytes / parameter")
    ax_mem.margins(y=0.25)
    for ax in (ax_time, ax_mem):
        ax.tick_params(axis="x", rotation=30)
        ax.grid(axis="y", alpha=0.3)
    failed = [r["label"] for r in results if not r["ok"]]
    fig.suptitle(title + (f"\nnot run: {', '.join(failed)}" if failed else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: list[dict], args) -> str:
    iters = next((len(r["loss"]) for r in results if r["ok"]), args.iters)
    lines = [
        f"Demo comparison: {iters} iterations each, validation every "
        f"{args.val_interval or max(1, iters // 6)}; same seed, data order and initial weights.",
        "",
        "| optimizer | settings | final val acc (%) | best val acc (%) | final train loss | "
        "ms / iter | ms / optimizer step | first step + compilation (s) | state (KiB) | "
        "state bytes / param |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if not r["ok"]:
            lines.append(f"| {r['label']} | not run: {r['error']} | | | | | | | | |")
            continue
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        lines.append(
            f"| {r['label']} | {settings} | {r['final_accuracy']:.1f} | {r['best_accuracy']:.1f} | "
            f"{r['final_loss']:.3f} | {r['iter_ms']:.1f} | {r['step_ms']:.2f} | "
            f"{r.get('first_steps_s', math.nan):.2f} | {r['state_bytes'] / 1024:.0f} | "
            f"{r['bytes_per_param']:.2f} |")
    threads = {r.get("threads") for r in results if r["ok"]}
    lines += ["", f"Timings: one process, torch threads {', '.join(map(str, sorted(threads)))}; "
                  "medians; the first optimizer step and any step that compiled are excluded "
                  "from ms / optimizer step and reported as first step + compilation; relative, "
                  "not absolute."]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- main

def write_outputs(results: list[dict], args) -> int:
    os.makedirs(args.out_dir, exist_ok=True)
    png = osp.join(args.out_dir, f"{args.name}.png")
    md = osp.join(args.out_dir, f"{args.name}.md")
    iters = next((len(r["loss"]) for r in results if r["ok"]), args.iters)
    title = args.title or f"visdet-mmext demo (shapes, {iters} iterations per optimizer, CPU)"
    plot(results, png, title)
    with open(md, "w") as f:
        f.write(table(results, args))
    print(table(results, args))
    print(f"picture: {osp.abspath(png)}\ntable:   {osp.abspath(md)}")
    return 0 if all(r["ok"] for r in results) else 1


def replot(args) -> int:
    with open(args.replot) as f:
        results = json.load(f)
    if args.items:
        by_label = {r["label"]: r for r in results}
        missing = [item for item in args.items if item not in by_label]
        if missing:
            raise SystemExit(f"not in {args.replot}: {', '.join(missing)}; "
                             f"it has {', '.join(by_label)}")
        results = [by_label[item] for item in args.items]
    return write_outputs(results, args)


def main(argv=None, prog=None) -> int:
    args = parse_args(argv, prog)
    if args.replot:
        return replot(args)
    import torch

    import visdet_mmext
    import visdet_mmext.demo  # noqa: F401
    from visdet_mmext.tools.run_checks import check_types, check_values
    from visdet_mmext.optim import check_optim_wrapper_cfg

    configs = known_configs()
    if args.list:
        for name, path in sorted(configs.items()):
            usable = visdet_mmext.REPORT.availability(name)
            print(f"{name:18s} {osp.relpath(path, ROOT)}"
                  f"{'' if usable is None or usable.usable else '  (not available here)'}")
        return 0

    items = list(args.items)
    if not items:
        items = [name for name in DEFAULT_ITEMS
                 if (info := visdet_mmext.REPORT.availability(name)) is not None and info.usable]
    os.makedirs(args.out_dir, exist_ok=True)
    plans, results = [], []
    for item in items:
        try:
            label, cfg = resolve_item(item, configs)
            check_optim_wrapper_cfg(cfg.optim_wrapper)
            check_types(cfg)
            check_values(cfg)
        except Exception as error:  # unknown or unavailable optimizer: report, keep going
            results.append(dict(label=item, ok=False, error=str(error).splitlines()[0][:200]))
            continue
        labels = [p[0] for p in plans]
        if label in labels:
            label = f"{label} ({osp.splitext(osp.basename(item))[0]})"
        plans.append((label, fit_to(copy.deepcopy(cfg), args,
                                    osp.join(args.out_dir, "runs", label.replace(" ", "_")))))

    threads = args.threads
    if threads is None:
        from visdet_mmext.runtime import auto_threads
        threads, why = auto_threads()
        print(f"torch threads: {threads} for every run ({why}; --threads N sets it)",
              file=sys.stderr)
    progress = None if args.no_progress else make_progress(args.iters * len(plans))
    for label, cfg in plans:
        if progress is not None:
            progress.set_description(label)
        try:
            results.append(run_one(label, cfg, progress, threads))
        except Exception as error:
            traceback.print_exc()
            first_line = str(error).splitlines()[0][:200] if str(error) else ""
            results.append(dict(label=label, ok=False,
                                error=f"{type(error).__name__}: {first_line}"))
    if progress is not None:
        progress.close()

    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    return write_outputs(results, args)


if __name__ == "__main__":
    sys.exit(main())
