"""A damaged or stale build folder gives one AlgebraNotBuiltError that names the file and the command that
rebuilds it (with --spec-dir/--out for a folder of your own)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import runtime
from codegen.build import build
from runtime import AlgebraNotBuiltError, load_algebra

SPLIT = '''
from codegen.spec import algebra
SplitC = algebra("SplitC", basis=["1", "j"], products={"j*j": "1"}, unit="1", title="split-complex numbers")
'''


@pytest.fixture
def built(tmp_path):
    specs, out = tmp_path / "my specs", tmp_path / "my_generated"
    specs.mkdir()
    (specs / "split.py").write_text(SPLIT)
    build(specs, out)
    runtime.clear_cache()
    yield specs, out
    runtime.clear_cache()


def rebuild(specs, out) -> str:
    return f"python -m codegen build --spec-dir {shlex.quote(str(specs.resolve()))} --out {shlex.quote(str(out))}"


def test_truncated_manifest(built):
    specs, out = built
    path = out / "SplitC" / "manifest.json"
    path.write_text(path.read_text()[:100])
    with pytest.raises(AlgebraNotBuiltError) as info:
        load_algebra("SplitC", path=out)
    message = str(info.value)
    assert str(path) in message and "cannot be read" in message and "JSONDecodeError" in message
    assert "python -m codegen build" in message


@pytest.mark.parametrize("key", ["structure", "scheme", "fold", "dim", "files"])
def test_manifest_missing_a_key(built, key):
    specs, out = built
    path = out / "SplitC" / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest[key]
    path.write_text(json.dumps(manifest))
    for check_stale in (True, False):
        runtime.clear_cache()
        if key == "files" and not check_stale:
            continue                                    # 'files' only matters to the staleness check
        with pytest.raises(AlgebraNotBuiltError) as info:
            load_algebra("SplitC", path=out, check_stale=check_stale)
        message = str(info.value)
        if check_stale:         # the manifest's own digest no longer matches: an edit, with the rebuild command
            assert str(path) in message and "modified after the build" in message and rebuild(specs, out) in message
        else:
            assert str(path) in message and repr(key) in message, message
        assert "KeyError" not in message


def test_stale_user_folder_names_the_command_that_rebuilds_it(built):
    specs, out = built
    (specs / "split.py").write_text(SPLIT.replace("split-complex numbers", "renamed"))
    with pytest.raises(AlgebraNotBuiltError) as info:
        load_algebra("SplitC", path=out)
    assert "stale" in str(info.value) and rebuild(specs, out) in str(info.value)


def test_missing_algebra_in_user_folder(built):
    specs, out = built
    with pytest.raises(AlgebraNotBuiltError) as info:
        load_algebra("Nope", path=out)
    message = str(info.value)
    assert "not built" in message and "SplitC" in message and f"--out {shlex.quote(str(out))}" in message


def test_broken_ops_file(built):
    specs, out = built
    ops = out / "SplitC" / "ops.py"
    ops.write_text("def broken(:\n")
    with pytest.raises(AlgebraNotBuiltError) as info:
        load_algebra("SplitC", path=out, check_stale=False)
    assert str(ops) in str(info.value) and "SyntaxError" in str(info.value)


@pytest.mark.parametrize("edit", ["structure", "scheme", "fold", "properties", "title"])
def test_edited_manifest_data_is_stale(built, edit):
    """An edit of the manifest's own exact data (not only of the files it lists) is detected."""
    specs, out = built
    path = out / "SplitC" / "manifest.json"
    manifest = json.loads(path.read_text())
    if edit == "structure":
        manifest["structure"][-1][-1] = "9/8"
    elif edit == "scheme":
        manifest["scheme"]["W"][0][0] = "7"
    elif edit == "fold":
        manifest["fold"]["p"] = 1
    elif edit == "properties":
        manifest["properties"]["associative"] = not manifest["properties"]["associative"]
    else:
        manifest["title"] = "edited"
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    with pytest.raises(AlgebraNotBuiltError) as info:
        load_algebra("SplitC", path=out)
    message = str(info.value)
    assert "stale" in message and str(path) in message and "modified after the build" in message
    assert rebuild(specs, out) in message


def test_manifest_with_a_recomputed_digest_is_caught_by_the_index(built):
    """Re-signing an edited manifest does not help: the index records the manifest's digest too."""
    from codegen.contract.manifest import DIGEST_FIELD, content_digest

    specs, out = built
    path = out / "SplitC" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["structure"][-1][-1] = "9/8"
    manifest[DIGEST_FIELD] = content_digest(manifest)
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    with pytest.raises(AlgebraNotBuiltError) as info:
        load_algebra("SplitC", path=out)
    assert "does not match its entry in the index" in str(info.value) and rebuild(specs, out) in str(info.value)


@pytest.mark.parametrize("damage", ["missing", "truncated", "not an index", "entry removed"])
def test_missing_or_damaged_index(built, damage):
    specs, out = built
    index = out / "manifest.json"
    if damage == "missing":
        index.unlink()
    elif damage == "truncated":
        index.write_text(index.read_text()[:50])
    elif damage == "not an index":
        index.write_text("[]")
    else:
        data = json.loads(index.read_text())
        del data["algebras"]["SplitC"]
        index.write_text(json.dumps(data))
    with pytest.raises(AlgebraNotBuiltError) as info:
        load_algebra("SplitC", path=out)
    message = str(info.value)
    assert str(index) in message and "stale" in message and rebuild(specs, out) in message
    if damage in ("truncated", "not an index"):
        with pytest.raises(AlgebraNotBuiltError) as info:
            runtime.available_algebras(out)
        assert str(index) in str(info.value) and "python -m codegen build" in str(info.value)
    runtime.clear_cache()
    assert load_algebra("SplitC", path=out, check_stale=False).dim == 2    # asked not to check: loads


def test_generated_env_holds_your_algebras_and_builtins_still_load(built, monkeypatch):
    """$ALGEBRANETS_GENERATED names the folder of your own algebras; built-in names missing from it load from the
    built-ins' folder, and a name in neither names the env folder with the command that rebuilds it."""
    import os

    from codegen.contract import locations

    specs, out = built
    builtins = Path(os.environ["ALGEBRANETS_TEST_GENERATED"])          # the session's build of the built-ins
    monkeypatch.setattr(locations, "builtin_out_dir", lambda: builtins)
    monkeypatch.setenv("ALGEBRANETS_GENERATED", str(out))
    runtime.clear_cache()
    assert load_algebra("SplitC").path == out / "SplitC"
    assert load_algebra("H").path == builtins / "H"
    with pytest.raises(AlgebraNotBuiltError) as info:
        load_algebra("Nope")
    message = str(info.value)
    assert f"not built in {out}" in message and rebuild(specs, out) in message and "SplitC" in message
    with pytest.raises(AlgebraNotBuiltError, match="not built in"):
        load_algebra("H", path=out)                                   # path= reads only that folder


# ------------------------------------------------------------------------ fuzz: every file the loader trusts
def _leaves(data, path=()):
    """Paths to every leaf of a JSON value."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _leaves(v, path + (i,))
    else:
        yield path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_any_edit_of_a_trusted_file_is_refused_or_harmless(built, tmp_path_factory, data):
    """Truncating, flipping a byte, deleting, or changing one JSON value of any file the loader reads (the
    index, the manifest, ops.py, the kernel tables and sources) gives AlgebraNotBuiltError naming a file, or
    (an edit that changes nothing the loader relies on) the same algebra; never another exception."""
    import shutil

    _, out = built
    folder = tmp_path_factory.mktemp("copy") / "gen"
    shutil.copytree(out, folder)
    names = ["manifest.json", "SplitC/manifest.json", "SplitC/ops.py", "SplitC/kernels.json",
             "SplitC/cpu_kernels.json", "SplitC/SplitC.cu", "SplitC/SplitC_cpu.cpp"]
    path = folder / data.draw(st.sampled_from(names))
    raw = path.read_bytes()
    how = data.draw(st.sampled_from(["truncate", "flip", "delete", "json"] if path.suffix == ".json"
                                    else ["truncate", "flip", "delete"]))
    if how == "truncate":
        path.write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
    elif how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        path.write_bytes(raw[:i] + bytes([raw[i] ^ data.draw(st.integers(1, 255))]) + raw[i + 1:])
    elif how == "delete":
        path.unlink()
    else:
        doc = json.loads(raw)
        leaf = data.draw(st.sampled_from(list(_leaves(doc))))
        target = doc
        for key in leaf[:-1]:
            target = target[key]
        target[leaf[-1]] = data.draw(st.one_of(st.integers(-3, 3), st.text(max_size=3), st.none(),
                                               st.just("1/2"), st.booleans()))
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    runtime.clear_cache()
    reference = load_algebra("SplitC", path=out)
    try:
        A = load_algebra("SplitC", path=folder)
    except AlgebraNotBuiltError as e:
        event(f"refused ({how})")
        assert str(folder) in str(e) and "\n" not in str(e)
        return
    finally:
        runtime.clear_cache()
    event(f"loaded ({how})")
    assert np.array_equal(A.structure, reference.structure) and A.title == reference.title
    assert np.array_equal(A.scheme.W, reference.scheme.W) and A.fold.m == reference.fold.m
