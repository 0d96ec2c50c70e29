"""Index settings files (engine.build.settings): stored at build time, changed by publishing a new version of a
root (a plain directory converted first), carried over by upsert, delete and reindex, never touching the live
version, and atomic."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import vitrina
from vitrina.engine.build.indexing import build_index
from vitrina.engine.build.pipeline import root_lock
from vitrina.engine.build.reindex import reindex
from vitrina.engine.build.settings import publish_setting, publish_settings
from vitrina.index import IndexDirectory
from vitrina.index.errors import IndexStoreError
from vitrina.index.settings import MAX_SETTING_BYTES, SETTINGS_DIR, read_setting, read_settings
from vitrina.index.versions import CURRENT, VERSIONS_DIR, is_versioned_root, resolve_index_path, versions
from tests.helpers import demo_rows, write_csv


@pytest.fixture(scope="module")
def config(tiny_bert_dir) -> vitrina.VitrinaConfig:
    return dataclasses.replace(vitrina.VitrinaConfig(progress=False), text_model=str(tiny_bert_dir), image_model=None)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    rows = [{"id": r["id"], "title": r["title"]} for r in demo_rows()[:40]]
    return write_csv(tmp_path_factory.mktemp("settings-catalog") / "products.csv", rows)


def test_a_plain_index_stores_settings_and_a_publish_makes_it_a_root(config, catalog, tmp_path):
    plain = tmp_path / "plain"
    build_index(catalog, plain, config, settings_files={"synonyms.txt": b"tv, television\n"})
    assert (plain / SETTINGS_DIR / "synonyms.txt").read_bytes() == b"tv, television\n"
    assert read_setting(plain, "synonyms.txt") == b"tv, television\n" and read_setting(plain, "rules.json") is None
    assert IndexDirectory.load(plain).settings == {"synonyms.txt": b"tv, television\n"}
    first_version = IndexDirectory.load(plain).manifest.version

    new_dir = publish_setting(plain, "rules.json", b'{"rules": []}', config)
    assert is_versioned_root(plain) and resolve_index_path(plain) == new_dir
    assert read_settings(plain) == {"synonyms.txt": b"tv, television\n", "rules.json": b'{"rules": []}'}
    old = plain / VERSIONS_DIR / first_version
    assert read_settings(old) == {"synonyms.txt": b"tv, television\n"}  # the live version was never touched
    loaded = IndexDirectory.load(plain)
    assert loaded.manifest.version == new_dir.name != first_version and len(loaded.products) == 40

    removed = publish_setting(plain, "synonyms.txt", None, config)
    assert read_settings(plain) == {"rules.json": b'{"rules": []}'} and resolve_index_path(plain) == removed
    publish_setting(plain, "rules.json", None, config)
    assert read_settings(plain) == {} and not (resolve_index_path(plain) / SETTINGS_DIR).exists()


def test_settings_survive_upsert_delete_and_reindex(config, catalog, tmp_path):
    root = tmp_path / "root"
    reindex(catalog, root, config, settings_files={"synonyms.txt": b"a, b\n", "rules.json": b"{}"})
    assert read_settings(root) == {"synonyms.txt": b"a, b\n", "rules.json": b"{}"}
    index = vitrina.Index.open(root, config)
    index.upsert([{"id": "new-1", "title": "Brand new waterproof jacket"}])
    assert "new-1" in index and read_settings(root) == {"synonyms.txt": b"a, b\n", "rules.json": b"{}"}
    index.delete(["new-1"])
    assert "new-1" not in index and read_settings(root) == {"synonyms.txt": b"a, b\n", "rules.json": b"{}"}
    reindex(catalog, root, config)  # no settings of its own: the live ones carry over
    assert read_settings(root) == {"synonyms.txt": b"a, b\n", "rules.json": b"{}"}
    reindex(catalog, root, config, settings_files={"synonyms.txt": b"c, d\n"})  # its own replace only that file
    assert read_settings(root) == {"synonyms.txt": b"c, d\n", "rules.json": b"{}"}
    assert len(versions(root)) == 3  # keep=3 pruned the older ones


def test_a_failed_publish_leaves_the_root_as_it_was(config, catalog, tmp_path, monkeypatch):
    root = tmp_path / "root"
    reindex(catalog, root, config, settings_files={"synonyms.txt": b"a, b\n"})
    live = resolve_index_path(root)

    def broken_publish(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("vitrina.engine.build.settings.publish", broken_publish)
    with pytest.raises(OSError):
        publish_setting(root, "synonyms.txt", b"x, y\n", config)
    monkeypatch.undo()
    assert resolve_index_path(root) == live and read_settings(root) == {"synonyms.txt": b"a, b\n"}
    assert [p.name for p in (root / VERSIONS_DIR).iterdir()] == [live.name]  # no half-built version left behind

    with root_lock(root):  # another writer holds the root: refused, not interleaved
        with pytest.raises(IndexStoreError, match="being changed by another vitrina process"):
            publish_setting(root, "synonyms.txt", b"x, y\n", config)
    assert resolve_index_path(root) == live


@pytest.mark.parametrize("name, data, message", [
    ("../escape", b"x", "not a settings file name"),
    (".hidden", b"x", "not a settings file name"),
    ("a/b", b"x", "not a settings file name"),
    ("synonyms.txt", "text, not bytes", "expected bytes"),
    ("synonyms.txt", b"x" * (MAX_SETTING_BYTES + 1), "at most"),
])
def test_bad_names_and_contents_are_refused_before_anything_is_written(config, catalog, tmp_path, name, data, message):
    plain = tmp_path / "plain"
    build_index(catalog, plain, config)
    with pytest.raises(IndexStoreError, match=message):
        publish_settings(plain, {name: data}, config)
    assert not is_versioned_root(plain) and not (plain / CURRENT).exists()
    with pytest.raises(IndexStoreError, match=message):
        build_index(catalog, tmp_path / "other", config, settings_files={name: data})
    assert not (tmp_path / "other").exists()


def test_publishing_to_something_that_is_not_an_index_is_refused(config, tmp_path):
    with pytest.raises(IndexStoreError, match="is not a Vitrina index"):
        publish_setting(tmp_path / "nowhere", "synonyms.txt", b"a, b", config)
