"""``charrnn import`` (issue 20): an export, trained further in PyTorch, back into a charrnn
checkpoint.

- the round trip: export, a few Adam steps in torch (the documented program, continued), save with
  the export's metadata, import; charrnn's eval of the imported model equals torch's
  cross-entropy to 1e-5, and it samples, vizzes, exports again and resumes training (with a
  fresh optimiser state, said so);
- without torch: an export imported as it is gives the same model, non-zero ``bias_hh`` is
  folded, and every bad file (not charrnn's, foreign names, missing metadata, a vocabulary that
  does not match the output layer, truncated, a header length past the end, half precision,
  NaN) and every bad output is one line that writes nothing.
"""
from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import cli
from charrnn.evaluate import score_text
from charrnn.export import read_export

from test_export import CONFIGS, PYTORCH_DOC, TEXT, error_line, make_checkpoint, readme_snippet, \
    snapshot

pytestmark = pytest.mark.usefixtures("in_tmp_path")


def run(*args, expect=0):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr,
                                        result.exception)
    assert "Traceback" not in result.stderr and result.stdout == ""
    return result


def write_safetensors(path, metadata, tensors: dict) -> None:
    """A safetensors file written by hand, with any metadata (None: no __metadata__)."""
    names = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}
    header, offset = {}, 0
    for name, value in tensors.items():
        header[name] = {"dtype": names[value.dtype], "shape": list(value.shape),
                        "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-(8 + len(text)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for value in tensors.values():
            f.write(np.ascontiguousarray(value, value.dtype.newbyteorder("<")).tobytes())


def export_parts(cell="gru", layers=2, dtype="float32"):
    """m.npz and its export m.safetensors: (checkpoint, metadata, tensors)."""
    checkpoint = make_checkpoint("m.npz", cell, layers, dtype)
    run("export", "m.npz", "-q")
    with open("m.safetensors", "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        metadata = json.loads(f.read(length))["__metadata__"]
    _, _, tensors = read_export("m.safetensors")
    return checkpoint, metadata, tensors


@pytest.mark.parametrize("cell,layers", CONFIGS)
def test_an_export_comes_back_as_the_same_model(cell, layers):
    checkpoint, metadata, tensors = export_parts(cell, layers)
    run("import", "m.safetensors", "-o", "back.npz", "-q")
    back = load_checkpoint("back.npz")
    assert back.vocab == checkpoint.vocab
    assert back.network().spec == checkpoint.network().spec
    assert back.params.flat.tobytes() == checkpoint.params.flat.tobytes()
    assert back.config.optimizer == {"rnn": "adagrad"}.get(cell, "adam")
    assert back.state["iteration"] == 0 and len(back.history) == 0
    assert all(not values.flat.any() for values in back.optimizer_state.values())


def test_bias_hh_is_folded_into_charrnns_bias():
    checkpoint, metadata, tensors = export_parts("lstm", 1)
    tensors["bias_hh_l0"] = tensors["bias_hh_l0"] + np.float32(0.5)
    write_safetensors("trained.safetensors", metadata, tensors)
    run("import", "trained.safetensors", "-o", "t.npz", "-q")
    back = load_checkpoint("t.npz")
    indices = checkpoint.vocab.encode(TEXT)
    moved = score_text(back.network(), back.params, indices).nats_per_char
    before = score_text(checkpoint.network(), checkpoint.params, indices).nats_per_char
    assert moved != before
    # every gate's pre-activation moved by 0.5: the same as adding it to bias_ih
    tensors["bias_ih_l0"] = tensors["bias_ih_l0"] + np.float32(0.5)
    tensors["bias_hh_l0"] = tensors["bias_hh_l0"] - np.float32(0.5)
    write_safetensors("same.safetensors", metadata, tensors)
    run("import", "same.safetensors", "-o", "s.npz", "-q")
    np.testing.assert_allclose(load_checkpoint("s.npz").params.flat, back.params.flat,
                               rtol=0, atol=1e-6)


def bad_files(metadata, tensors):
    """(name, how the file is made, the error's pattern)."""
    def with_metadata(**changes):
        return lambda path: write_safetensors(path, {**metadata, **changes}, tensors)

    def with_tensors(changes, drop=()):
        changed = {k: v for k, v in {**tensors, **changes}.items() if k not in drop}
        return lambda path: write_safetensors(path, metadata, changed)

    good = Path("m.safetensors").read_bytes()
    vocab = json.loads(metadata["vocab"])
    H = tensors["weight_hh_l0"].shape[1]
    return [
        ("no metadata", lambda p: write_safetensors(p, None, tensors), "no charrnn metadata"),
        ("not ours", with_metadata(format="something-else"), "no charrnn metadata"),
        ("no vocab", lambda p: write_safetensors(
            p, {k: v for k, v in metadata.items() if k != "vocab"}, tensors), "no charrnn metadata"),
        ("foreign name", with_tensors({"rnn.weight_ih_l0": tensors["weight_ih_l0"]},
                                      drop=["weight_ih_l0"]), "rnn.weight_ih_l0 is not an entry"),
        ("bidirectional", with_tensors({"weight_ih_l0_reverse": tensors["weight_ih_l0"]}),
         "bidirectional"),
        ("projection", with_tensors({"weight_hr_l0": np.zeros((H, H), np.float32)}),
         "projection"),
        ("missing bias", with_tensors({}, drop=["bias_hh_l1"]), "bias_hh_l1 is missing"),
        ("vocab short", with_metadata(vocab=json.dumps(vocab[:-1])),
         r"vocabulary has \d+ characters, but its model says"),
        ("out layer", with_tensors({"out.weight": tensors["out.weight"][:-1],
                                    "out.bias": tensors["out.bias"][:-1]}),
         r"output layer \(out.weight\) has \d+ rows"),
        ("unsorted vocab", with_metadata(vocab=json.dumps(vocab[::-1])), "code-point order"),
        ("bad model", with_metadata(model='{"cell": "transformer"}'), "not a charrnn model"),
        ("half", with_tensors({"out.bias": tensors["out.bias"].astype(np.float16)}), "F16"),
        ("nan", with_tensors({"out.bias": np.full_like(tensors["out.bias"], np.nan)}),
         "NaN or inf"),
        ("truncated", lambda p: Path(p).write_bytes(good[:-5]), "is truncated: .* ends at byte"),
        ("header past the end", lambda p: Path(p).write_bytes(good[:200]),
         "header length .* points past the end"),
        ("empty", lambda p: Path(p).write_bytes(b""), "shorter than the header's length"),
        ("not json", lambda p: Path(p).write_bytes(struct.pack("<Q", 4) + b"abcd"),
         "not JSON"),
    ]


def test_bad_files_are_one_line_and_write_nothing():
    _, metadata, tensors = export_parts("gru", 2)
    for name, make, pattern in bad_files(metadata, tensors):
        make("bad.safetensors")
        before = snapshot(".")
        result = run("import", "bad.safetensors", "-o", "out.npz", expect=1)
        assert re.search(pattern, error_line(result)), (name, result.stderr)
        assert snapshot(".") == before, name


@pytest.mark.parametrize("output,pattern", [
    ("m.npz", "already exists: pass --force"),
    ("m.best.npz", "kept for best twins"),
    ("notes.txt", "must end in .npz"),
    ("user.npz", "not a charrnn checkpoint"),
    ("folder.npz", "directory"),
    ("nowhere/deeper/x.npz", None),
])
def test_bad_outputs_are_one_line_and_touch_nothing(output, pattern):
    export_parts("rnn", 1)
    Path("notes.txt").write_text("mine")
    Path("user.npz").write_bytes(b"PK\x03\x04 not a checkpoint")
    os.mkdir("folder.npz")
    before = snapshot(".")
    if pattern is None:   # a folder that does not exist is made, as train makes it
        run("import", "m.safetensors", "-o", output, "-q")
        assert load_checkpoint(output).vocab.chars
        return
    result = run("import", "m.safetensors", "-o", output, expect=1)
    assert re.search(pattern, error_line(result)), result.stderr
    assert snapshot(".") == before


def test_force_replaces_a_checkpoint_and_its_twins(tmp_path):
    checkpoint, _, _ = export_parts("gru", 1)
    make_checkpoint("other.npz", "lstm", 2)
    Path("other.csv").write_text("iteration,chars_seen,train_loss,val_loss,elapsed_seconds\n")
    result = run("import", "m.safetensors", "-o", "other.npz", "--force")
    assert "removed other.csv" in result.stderr and "fresh one" in result.stderr
    assert load_checkpoint("other.npz").network().spec == checkpoint.network().spec
    assert not os.path.exists("other.csv")


# --------------------------------------------------------------------------- with torch



def import_snippet() -> str:
    with open(PYTORCH_DOC, encoding="utf-8") as f:
        found = re.search(r"<!-- import-snippet -->\s*```python\n(.*?)```\s*<!-- /import-snippet -->",
                          f.read(), re.DOTALL)
    assert found, "docs/pytorch.md has no import snippet between its markers"
    return found.group(1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_readme_round_trip_through_torch(torch, capsys, cell):
    checkpoint = make_checkpoint("m.npz", cell, 2, hidden=16, scale=0.3)
    run("export", "m.npz", "-o", "model.safetensors", "-q")
    more = TEXT * 4
    Path("more.txt").write_text(more)
    ns = {"__name__": "__main__"}
    exec(compile(readme_snippet(), "docs/pytorch.md (export snippet)", "exec"), ns)
    exec(compile(import_snippet(), "docs/pytorch.md (import snippet)", "exec"), ns)
    capsys.readouterr()
    rnn, out, one_hot = ns["rnn"], ns["out"], ns["one_hot"]
    assert any(ns["weights"]["bias_hh_l0"] != 0)   # trained: torch's second bias moved
    with torch.no_grad():                          # torch's cross-entropy of the whole text
        hs, _ = rnn(one_hot(more))
        target = torch.tensor([ns["vocab"].index(c) for c in more[1:]])
        torch_loss = torch.nn.functional.cross_entropy(out(hs[:-1, 0]).double(), target).item()
    result = run("import", "trained.safetensors", "-o", "trained.npz")
    assert "--resume" in result.stderr and "fresh" in result.stderr
    trained = load_checkpoint("trained.npz")
    indices = trained.vocab.encode(more)
    ours = score_text(trained.network(), trained.params, indices).nats_per_char
    assert ours == pytest.approx(torch_loss, rel=1e-5)
    before = score_text(checkpoint.network(), checkpoint.params, indices).nats_per_char
    assert ours < before - 0.1                     # the 100 steps taught it something
    shown = CliRunner().invoke(cli, ["eval", "more.txt", "trained.npz", "-q"])
    assert f"  {torch_loss:.4f} nats/char  " in shown.stdout
    # it samples, vizzes, exports and trains on like any checkpoint
    sampled = CliRunner().invoke(cli, ["sample", "trained.npz", "-n", "50", "--random-seed", "1"])
    assert sampled.exit_code == 0 and len(sampled.stdout) == 51
    assert CliRunner().invoke(cli, ["viz", "more.txt", "trained.npz", "-q"]).exit_code == 0
    run("export", "trained.npz", "-o", "again.safetensors", "-q")
    assert read_export("again.safetensors")[2]["out.weight"].tobytes() == \
        np.asarray(ns["weights"]["out.weight"]).tobytes()
    Path("long.txt").write_text(TEXT * 20)
    resumed = CliRunner().invoke(cli, ["train", "long.txt", "trained.npz", "--resume",
                                       "--max-iters", "3", "-q"])
    assert resumed.exit_code == 0, resumed.stderr
    assert load_checkpoint("trained.npz").state["iteration"] == 3
