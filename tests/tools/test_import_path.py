"""The training folder supplies the user's modules and never replaces installed ones.

A ``getopt.py`` (standard library), ``matplotlib.py`` or ``plistlib.py`` (imported by the run after
the config is read) in the folder a run starts from must not be imported; the user's own
``custom_imports`` module there must be. Real processes for both ways of starting a run (the
console script, whose path starts at its own folder, and ``python -m``, whose path starts at the
current directory); in-process for the path order and the shadowed-module warning.
"""
import os
import subprocess
import sys

import pytest

from demo_utils import CONFIGS, ROOT, cli_options, subprocess_env
from visdet_mmext.tools import train as train_tool

pytestmark = pytest.mark.usefixtures("one_thread")
ADAMW = os.path.join(CONFIGS, "optimizers", "adamw.py")
SHADOWS = ("getopt", "matplotlib", "plistlib")
USER_MODULE = """
import os
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
open(os.path.join({folder!r}, 'user_module_loaded'), 'w').close()


@HOOKS.register_module(force=True)
class UserHook(Hook):
    pass
"""


def _training_folder(tmp_path):
    for name in SHADOWS:
        (tmp_path / f"{name}.py").write_text(
            f"open({str(tmp_path / ('shadowed_' + name))!r}, 'w').close()\n"
            f"raise SystemExit('{name}.py of the training folder was imported')\n")
    (tmp_path / "user_hooks.py").write_text(USER_MODULE.format(folder=str(tmp_path)))
    config = tmp_path / "with_user_hooks.py"
    config.write_text(f"_base_ = [{ADAMW!r}]\n"
                      "custom_imports = dict(imports=['visdet_mmext', 'visdet_mmext.demo', "
                      "'user_hooks'], allow_failed_imports=False)\n"
                      "custom_hooks = [dict(type='UserHook')]\n")
    return config


@pytest.mark.slow
@pytest.mark.parametrize("start", ["console script", "python -m"])
def test_the_training_folder_shadows_nothing_and_serves_user_modules(tmp_path, start):
    config = _training_folder(tmp_path)
    command = ([os.path.join(os.path.dirname(sys.executable), "visdet-mmext")]
               if start == "console script" else [sys.executable, "-m", "visdet_mmext"])
    env = subprocess_env()
    env["PYTHONPATH"] = ROOT  # the package, not the tests' helpers
    result = subprocess.run([*command, "train", str(config), "--work-dir", str(tmp_path / "work"),
                             "--cfg-options", *cli_options(iters=2)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (tmp_path / "user_module_loaded").exists()
    assert not [name for name in SHADOWS if (tmp_path / f"shadowed_{name}").exists()]


def test_the_current_directory_comes_after_the_installed_modules(tmp_path, capsys, monkeypatch):
    config = _training_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", *sys.path])  # as python -m starts
    code = train_tool.main([str(config), "--work-dir", "work", "--cfg-options",
                            *cli_options(iters=2)])
    assert code == 0, capsys.readouterr().err[-3000:]
    assert (tmp_path / "user_module_loaded").exists()
    here = os.path.realpath(tmp_path)
    assert "" not in sys.path and sys.path.count(here) == 1
    installed = [i for i, entry in enumerate(sys.path) if entry.endswith("site-packages")]
    assert installed and sys.path.index(here) > max(installed)


def test_a_user_module_an_installed_one_outranks_is_named(tmp_path, capsys, monkeypatch):
    (tmp_path / "yaml.py").write_text("raise SystemExit('never imported')\n")
    config = tmp_path / "uses_yaml.py"
    config.write_text(f"_base_ = [{ADAMW!r}]\ncustom_imports = dict(imports=['visdet_mmext', "
                      "'visdet_mmext.demo', 'yaml'], allow_failed_imports=False)\n")
    monkeypatch.chdir(tmp_path)
    code = train_tool.main([str(config), "--work-dir", "work", "--cfg-options",
                            *cli_options(iters=2)])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    assert "custom_imports 'yaml': the module of that name in the current directory was not " \
           "imported, because an installed one comes first" in err
