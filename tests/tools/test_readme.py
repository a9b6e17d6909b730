"""The README stays true and short: its commands and public names exist, and the optimizer table
(docs/optimizers.md) is the catalog."""
import os
import re

from subprocess_utils import REPO
from visdet_mmext.catalog import CATALOG

README = open(os.path.join(REPO, "README.md")).read()
OPTIMIZERS_DOC = open(os.path.join(REPO, "docs", "optimizers.md")).read()


def test_optimizer_table_lists_every_catalog_row():
    rows = dict(re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", OPTIMIZERS_DOC, flags=re.M))
    for spec in CATALOG.values():
        assert rows.get(spec.name) == spec.target.replace(":", "."), spec.name


def test_commands_and_public_names_are_documented():
    makefile = open(os.path.join(REPO, "Makefile")).read()
    assert len(README.splitlines()) <= 200, "the README is a five-minute page"
    for target in ("demo", "test", "test-quick"):
        assert f"make {target}" in README and f"\n{target}: " in makefile
    for name in ("VisdetOptimWrapperConstructor", "CheckedOptimWrapperConstructor",
                 "ClosureOptimWrapper", "DAdaptOptimWrapper", "DeepSpeedStrategy",
                 "OptimizerConfigError", "VISDET_MMEXT_STRICT", "visdet_mmext.optimizers",
                 "visdet-mmext train", "visdet-mmext compare", "visdet-mmext groups",
                 "visdet-mmext configs", "--auto-scale-lr", "--no-validate", "--no-pin-memory",
                 "--no-persistent-workers", "LearningRateDecayOptimWrapperConstructor",
                 "MuonOptimWrapper", "AdafactorOptimWrapper", "download.pytorch.org/whl/cpu",
                 "FullyShardStrategy", "visdet_mmext.build_optimizer", "--take-over-work-dir",
                 "--trace", "CheckpointSaveError", "WorkDirInUseError", "gpu-rehearsal",
                 "visdet-mmext check", "--build"):
        assert name in README, name
