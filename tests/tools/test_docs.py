"""The README and docs speak from inside the repository: no link or path into ../shared."""
import glob
import os
import re

from subprocess_utils import REPO


def test_no_document_points_outside_the_repository():
    documents = [os.path.join(REPO, "README.md")] + glob.glob(os.path.join(REPO, "docs", "**", "*.md"),
                                                              recursive=True)
    for path in documents:
        text = open(path).read()
        assert not re.search(r"\.\./shared|\(/work/|\bshared/\w+\.md", text), path
