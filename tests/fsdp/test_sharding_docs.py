"""docs/sharding.md's optimizer table is the catalog's (one home for the fact)."""
import os
import sys

from subprocess_utils import REPO

sys.path.insert(0, os.path.join(REPO, "tools"))
from catalog_table import fsdp_rows  # noqa: E402


def test_the_sharding_page_holds_the_catalogs_table():
    page = open(os.path.join(REPO, "docs", "sharding.md")).read()
    assert "\n".join(fsdp_rows()) in page, "regenerate: python tools/catalog_table.py --fsdp"
