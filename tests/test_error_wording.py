"""One library error, three front ends: Python names the keyword argument, the CLI the flag, HTTP the
query parameter; no front end shows another's terms (issue 16: CLI flags leaked into HTTP answers)."""

from __future__ import annotations

import pytest

import vitrina
from tests.helpers import demo_catalog, demo_rows, run_cli
from tests.serving_util import ready_client

NEEDS_LEXICAL = "needs a lexical index, and this one has none; re-index the catalog"


@pytest.fixture(scope="module")
def dense_only(tmp_path_factory, tiny_bert_dir, tiny_resnet_weights):
    """An index without BM25 (`--no-lexical`): hybrid and lexical search cannot run on it."""
    folder = tmp_path_factory.mktemp("wording")
    catalog = demo_catalog(folder, demo_rows()[:30])
    code, _, err = run_cli("index", catalog, "--out", folder / "idx", "--no-lexical", "-q",
                           "--text-model", tiny_bert_dir, "--image-model", f"resnet18={tiny_resnet_weights}")
    assert code == 0, err
    return folder / "idx"


def test_python_names_the_keyword_argument(dense_only):
    index = vitrina.Index.open(dense_only, vitrina.VitrinaConfig(progress=False))
    with pytest.raises(vitrina.QueryError) as info:
        index.search("black shoes", mode="hybrid")
    assert str(info.value) == f"mode='hybrid' {NEEDS_LEXICAL}"
    assert isinstance(info.value, vitrina.VitrinaError)


def test_the_cli_names_the_flag(dense_only):
    code, _, err = run_cli("search", dense_only, "black shoes", "--mode", "hybrid")
    assert code == 1
    assert err.strip() == f"vitrina: error: --mode hybrid {NEEDS_LEXICAL}"


def test_http_names_the_query_parameter(dense_only):
    client = ready_client(dense_only)
    try:
        answer = client.get("/search", params={"q": "black shoes", "mode": "hybrid"})
        assert answer.status_code == 422
        assert answer.json()["detail"] == f"mode=hybrid {NEEDS_LEXICAL}"
        pictures = client.get("/search", params={"q": "black shoes", "mode": "lexical", "space": "image"})
        assert pictures.status_code == 422 and "--" not in pictures.json()["detail"]
    finally:
        client.__exit__(None, None, None)


def test_the_index_path_is_out_in_the_cli_and_path_in_python(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = run_cli("reindex", demo_catalog(tmp_path, demo_rows()[:3]), "--out", tmp_path / "a-file", "-q")
    assert code == 1 and err.strip() == f"vitrina: error: --out {tmp_path / 'a-file'} is a file, not a directory"
    with pytest.raises(vitrina.IndexStoreError) as info:
        vitrina.Index.build(demo_catalog(tmp_path, demo_rows()[:3]), tmp_path / "a-file")
    assert str(info.value) == f"path={str(tmp_path / 'a-file')!r} is a file, not a directory"
