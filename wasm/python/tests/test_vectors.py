"""Every case of every vector file ($WXPAY_VECTORS_DIR, default tests/vectors) through the
universal .wasm from Python, one pytest case each; plus the runner's own contract."""

import json
import shutil

import pytest

from runner import KNOWN_FILES, Ctx, fixtures_dir, run_case, run_dir, vector_files, vectors_dir

REPO_FIXTURES = fixtures_dir()


def _cases():
    out = []
    for stem, path in vector_files(vectors_dir()):
        if stem not in KNOWN_FILES:
            out.append(pytest.param(stem, path, None, id=f"{stem}:unknown-file"))
            continue
        for i, c in enumerate(json.loads(path.read_text())["cases"]):
            out.append(pytest.param(stem, path, i, id=f"{stem}:{c['name']}"))
    return out


@pytest.mark.parametrize(("stem", "path", "index"), _cases())
def test_vector(wx, stem, path, index):
    assert index is not None, f"unknown vector file {path}"
    file = json.loads(path.read_text())
    err = run_case(stem, Ctx(wx, path.parent, file), file["cases"][index])
    assert err is None, err


def test_runner_reports_a_flipped_vector_and_an_unknown_file(wx, tmp_path):
    shutil.copytree(REPO_FIXTURES / "keys", tmp_path / "keys")
    pay = json.loads((REPO_FIXTURES / "v3_pay_sign.json").read_text())
    sig = pay["cases"][0]["expected"]
    pay["cases"][0]["expected"] = ("B" if sig[0] == "A" else "A") + sig[1:]
    (tmp_path / "v3_pay_sign.json").write_text(json.dumps(pay))
    (tmp_path / "v9_unknown.json").write_text('{"cases":[]}')
    _, failures = run_dir(wx, tmp_path)
    assert len(failures) == 2, failures
    assert any("paySign 0" in f for f in failures), failures
    assert any("unknown vector file" in f for f in failures), failures


def test_runner_follows_the_req_info_contract(wx):
    total, failures = run_dir(wx, REPO_FIXTURES.parent / "fixtures" / "runner-contract")
    assert total == 3
    assert len(failures) == 1 and "/ wrong fields:" in failures[0], failures
