"""The README and docs speak from inside the repository and name only what exists in it."""
import glob
import os
import re

import pytest

from subprocess_utils import REPO

DOCUMENTS = sorted([os.path.join(REPO, "README.md")]
                   + glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))
PACKAGE = os.path.join(REPO, "visdet_mmext")
#: Folders a path in the docs may be written relative to: the checkout, the package, the
#: packaged configs (``optimizers/adamw`` names ``visdet_mmext/configs/optimizers/adamw.py``).
BASES = (REPO, PACKAGE, os.path.join(PACKAGE, "configs"))
#: Script names the docs use that are not this repository's files.
NOT_OURS = {
    "my_model.py": "the user's own model file in a config example",
    "setup.py": "DeepSpeed's build script",
    "my_config.py": "the user's own config in a command example",
    "train_sophiag.py": "the Sophia authors' training script",
    **dict.fromkeys(("getopt.py", "matplotlib.py", "yaml.py"),
                    "a user's file named like an installed module (the shadowing example)"),
}


def _tracked_entries(base: str) -> set[str]:
    return {name for name in os.listdir(base)
            if not name.startswith(".") and name not in ("__pycache__", "build", "work_dirs")}


def _named_paths(text: str) -> set[str]:
    """Words in backticks and relative link targets that name a place in the repository: a
    path whose first folder exists here (``tools/x.py``, ``optim/routing.py``,
    ``optimizers/adamw``), or a Python script's file name."""
    first_folders = set().union(*(_tracked_entries(base) for base in BASES))
    words = [w for code in re.findall(r"`([^`\n]+)`", text) for w in code.split()]
    words += [t for t in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in t]
    named = set()
    for word in words:
        word = word.lstrip("'\"(").rstrip(".,;:'\")")
        if re.search(r"[*<>{}=$~\[\]]|://", word) or word.startswith(("-", "/")):
            continue
        first = word.lstrip("./").split("/")[0]
        if "/" in word.rstrip("/") and first in first_folders or re.fullmatch(r"[\w.]+\.py", word):
            named.add(word)
    return named


def _exists(word: str, document: str) -> bool:
    """The file (or folder) exists; a pytest node id ``path::test`` also names a test in it."""
    word, _, test = word.partition("::")
    if word in NOT_OURS:
        return True
    if "/" not in word:  # a script named by its file name
        return bool(glob.glob(os.path.join(REPO, "**", word), recursive=True))
    candidates = [os.path.join(os.path.dirname(document), word)]
    candidates += [os.path.join(base, word.lstrip("./")) for base in BASES]
    found = [c for c in candidates + [c + ".py" for c in candidates] if os.path.exists(c)]
    return bool(found) and (not test or any(f"def {test}(" in open(f).read() for f in found
                                            if os.path.isfile(f)))


def test_no_document_points_outside_the_repository():
    for path in DOCUMENTS:
        text = open(path).read()
        assert not re.search(r"\.\./shared|\(/work/|\bshared/\w+\.md", text), path


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_path_a_document_names_exists(document):
    missing = sorted(w for w in _named_paths(open(document).read()) if not _exists(w, document))
    assert not missing, f"{os.path.relpath(document, REPO)} names what does not exist: {missing}"


def test_the_path_check_sees_paths_in_commands_links_and_config_names():
    here = "tests/tools/test_docs.py::test_no_document_points_outside_the_repository"
    gone = "tests/tools/test_docs.py::test_gone"
    text = ("Run `python tools/nope.py --x 1`, see [the plan](../tools/gone.py), read "
            "`optim/routing.py`, train `optimizers/adamw`, log key `train/lr`, `tests/old/`, "
            f"`{here}`, `{gone}`.")
    assert _named_paths(text) == {"tools/nope.py", "../tools/gone.py", "optim/routing.py",
                                  "optimizers/adamw", "tests/old/", here, gone}
    document = os.path.join(REPO, "docs", "x.md")
    assert [w for w in sorted(_named_paths(text)) if not _exists(w, document)] == \
        ["../tools/gone.py", "tests/old/", gone, "tools/nope.py"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_relative_link_resolves_from_its_document(document):
    """A reader clicks a link where the document is: `[x](docs/y.md)` inside docs/ is broken,
    although docs/y.md exists in the checkout."""
    links = [t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", open(document).read())
             if "://" not in t and not t.startswith("#")]
    broken = [t for t in links if not os.path.exists(os.path.join(os.path.dirname(document), t))]
    assert not broken, f"{os.path.relpath(document, REPO)}: broken links {broken}"
