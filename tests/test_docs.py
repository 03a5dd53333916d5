from pathlib import Path

from coopscore.reference_docs import contracts_md, features_md

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_feature_docs_match_the_catalogue():
    assert (DOCS / "features.md").read_text(encoding="utf-8") == features_md(), \
        "docs/features.md is stale: run `coopscore docs`"


def test_contract_docs_match_the_contracts():
    assert (DOCS / "data_contracts.md").read_text(encoding="utf-8") == contracts_md(), \
        "docs/data_contracts.md is stale: run `coopscore docs`"
