"""A damaged or stale build folder gives one AlgebraNotBuiltError that names the file and the command that
rebuilds it (with --spec-dir/--out for a folder of your own)."""
from __future__ import annotations

import json
import shlex

import pytest

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
