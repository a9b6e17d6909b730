"""The `visdet-mmext` command: its name in help, packaged configs by name, list's filter and
JSON, the compare picture's loss ticks."""
import json
import math
import os

import pytest

from demo_utils import CONFIGS
from visdet_mmext import cli
from visdet_mmext.configs import find_config, packaged_configs
from visdet_mmext.errors import ConfigNotFoundError
from visdet_mmext.tools import compare


def test_help_names_the_command(capsys):
    for argv, prog in ((["--help"], "visdet-mmext"), (["train", "--help"], "visdet-mmext train"),
                       (["compare", "--help"], "visdet-mmext compare"),
                       (["groups", "--help"], "visdet-mmext groups")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: {prog} "), argv
    with pytest.raises(SystemExit):
        cli.main(["--help"], prog="python -m visdet_mmext")
    assert capsys.readouterr().out.startswith("usage: python -m visdet_mmext ")


def test_packaged_configs_by_name(capsys):
    muon = os.path.join(CONFIGS, "demo", "demo_muon.py")
    for name in ("demo_muon", "demo/demo_muon", "demo/demo_muon.py", "configs/demo/demo_muon.py",
                 muon):
        assert os.path.samefile(find_config(name), muon), name
    assert "_base_/demo" not in packaged_configs() and "optimizers/adamw" in packaged_configs()
    with pytest.raises(ConfigNotFoundError, match="Did you mean demo_muon"):
        find_config("demo_muonn")
    assert cli.main(["configs"]) == 0
    assert "demo/demo_muon " in capsys.readouterr().out
    assert cli.main(["train", "demo_muonn"]) == 2
    assert "Did you mean demo_muon" in capsys.readouterr().err


def test_list_filters_names_and_json_lists_every_registered_name(capsys):
    assert cli.main(["list", "*8bit"]) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]  # the header
            if line and not line[0].isdigit() and not line.startswith("note")]
    assert rows and all(name.endswith("8bit") for name in rows)
    assert cli.main(["list", "nosuchoptimizer"]) == 1
    capsys.readouterr()
    assert cli.main(["list", "--json"]) == 0
    providers = json.loads(capsys.readouterr().out)["providers"]
    # mmengine registers torch's optimizers itself; the torch provider answers for them too
    assert {"SGD", "AdamW", "TorchAdafactor"} <= set(providers["torch"]["registered"])
    assert {"Lion", "LAMB", "Muon"} <= set(providers["native"]["registered"])


@pytest.mark.parametrize("low, high", [(1.36, 1.40), (1.2, 1.4), (0.9, 1.4), (0.3, 1.4),
                                       (0.05, 1.4), (1e-3, 2.0)])
def test_loss_ticks_never_repeat_a_label(low, high):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    losses = [high, (low + high) / 2, low]
    ax.plot(range(3), losses)
    ax.set_yscale("log")
    compare.loss_ticks(ax, losses)
    fig.canvas.draw()
    bottom, top = ax.get_ylim()
    shown = [(tick.get_text(), tick.get_position()[1]) for tick in ax.get_yticklabels()
             if bottom <= tick.get_position()[1] <= top]
    plt.close(fig)
    assert len(shown) >= 2
    labels = [text for text, _ in shown]
    assert len(set(labels)) == len(labels), labels
    for text, value in shown:  # each label reads as its tick's value
        assert math.isclose(float(text), value, rel_tol=1e-9), (text, value)


def test_a_custom_import_that_fails_names_the_fix(tmp_path, capsys):
    config = tmp_path / "user_config.py"
    config.write_text("custom_imports = dict(imports=['no_such_user_module'], "
                      "allow_failed_imports=False)\n")
    assert cli.main(["train", str(config), "--work-dir", str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err
    assert "ConfigImportError" in err and "no_such_user_module" in err
    assert "current directory" in err and not (tmp_path / "work").exists()
