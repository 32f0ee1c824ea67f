"""``charrnn export`` (issue 12, part 1): a model's weights under PyTorch's names, in
safetensors (written by charrnn itself) or JSON, with the vocabulary and description.

- the safetensors file is one that the ``safetensors`` package and torch read back bit for
  bit (names, dtypes, shapes, metadata), and so is JSON after parsing;
- the documented PyTorch program, taken from docs/pytorch.md as it is, runs against an
  export of every cell with 1 and 2 layers, and its modules give charrnn's logits over a text to float32
  precision; a model loaded in torch trains on there as a torch model should, and what torch
  trained comes back to charrnn as the same model;
- bad outputs (the checkpoint, its twins, a user's file, a folder, an unknown format, a
  missing or unwritable folder) are one-line errors that leave every file as it was.

The torch parts skip without torch (and safetensors); the rest needs NumPy only.
"""
from __future__ import annotations

import errno
import json
import os
import re
import struct

import numpy as np
import pytest
from click.testing import CliRunner

import charrnn.runfiles
from charrnn.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from charrnn.cli import cli
from charrnn.config import TrainConfig
from charrnn.data import Vocabulary
from charrnn.export import JSON_PREFIX, is_charrnn_export, model_from_export, read_export
from charrnn.model import Network
from charrnn.model.torch_names import (describe, from_torch_state_dict, to_torch_state_dict,
                                       torch_shapes)

# The PyTorch program users copy: docs/pytorch.md (README.md links to it).
PYTORCH_DOC = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "pytorch.md")
TEXT = ("ROMEO: the quick brown fox jumps over the lazy dog.\n"
        "JULIET: \"café\" \\ 日本語 🙂 and 'quotes'\n") * 3
CELLS = ("rnn", "lstm", "gru")
CONFIGS = [(cell, layers) for cell in CELLS for layers in (1, 2)]


# --------------------------------------------------------------------------- helpers

def run(*args, expect=0):
    """charrnn in-process; check the exit code, that no traceback escaped and stdout is clean
    (every message of export goes to stderr)."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr,
                                        result.exception)
    assert "Traceback" not in result.stderr
    if expect not in (0, 2):
        assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    return result


def error_line(result) -> str:
    """The error of a failed command: exactly one line on stderr."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


def make_checkpoint(path, cell="lstm", layers=2, dtype="float64", hidden=6, seed=0,
                    scale=0.4) -> Checkpoint:
    """A checkpoint with random weights (biases too, so that their mapping is tested)."""
    config = TrainConfig(cell=cell, num_layers=layers, hidden_size=hidden, batch_size=2,
                         seq_length=4, dtype=dtype)
    vocab = Vocabulary.from_text(TEXT)
    network = Network(config.model_spec(len(vocab)), dtype)
    rng = np.random.default_rng([seed, CELLS.index(cell), layers])
    params = network.zeros()
    for name, shape in network.param_shapes.items():
        params[name] = rng.standard_normal(shape) * scale
    checkpoint = Checkpoint(config=config, vocab=vocab, params=params,
                            optimizer_state={"adagrad": params.zeros_like()},
                            carry=network.zero_state(2),
                            state={"iteration": 0, "position": 0, "chars_seen": 0,
                                   "smooth_loss": 1.0, "elapsed_seconds": 0.0})
    save_checkpoint(os.fspath(path), checkpoint)
    return load_checkpoint(os.fspath(path))


def snapshot(folder) -> dict:
    """Every file under ``folder`` (bytes, and its mode), by relative path."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            content = None
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    content = f.read()
            found[os.path.relpath(path, folder)] = (content, os.lstat(path).st_mode)
    return found


def readme_snippet() -> str:
    """The documented PyTorch program, between its marker comments, without the code fence."""
    with open(PYTORCH_DOC, encoding="utf-8") as f:
        readme = f.read()
    found = re.search(r"<!-- export-snippet -->\s*```python\n(.*?)```\s*<!-- /export-snippet -->",
                      readme, re.DOTALL)
    assert found, "docs/pytorch.md has no export snippet between its markers"
    return found.group(1)


@pytest.fixture
def model(tmp_path, monkeypatch):
    """A small float32 LSTM checkpoint m.npz in an empty working folder."""
    monkeypatch.chdir(tmp_path)
    make_checkpoint(tmp_path / "m.npz", dtype="float32")
    return tmp_path


# --------------------------------------------------------------------------- the mapping

@pytest.mark.parametrize("cell,layers", CONFIGS)
def test_torch_names_round_trip_and_layout(cell, layers):
    network = Network(TrainConfig(cell=cell, num_layers=layers, hidden_size=5).model_spec(7),
                      np.float64)
    rng = np.random.default_rng(3)
    params = network.zeros()
    params.flat[...] = rng.standard_normal(params.flat.size)
    state_dict = to_torch_state_dict(network, params)
    assert {name: value.shape for name, value in state_dict.items()} == torch_shapes(network)
    assert all(value.dtype == np.float64 and value.flags.c_contiguous
               for value in state_dict.values())
    back = from_torch_state_dict(network, state_dict)
    np.testing.assert_array_equal(back.flat, params.flat)
    H = 5
    for k in range(layers):
        hh = state_dict[f"bias_hh_l{k}"]
        assert not hh[:2 * H if cell == "gru" else None].any()      # zero where summed
        if cell == "gru":
            np.testing.assert_array_equal(hh[2 * H:], params[f"l{k + 1}.bhn"])
        if cell == "lstm":   # our (i, f, o, g) rows are torch's (i, f, g, o)
            ours, theirs = params[f"l{k + 1}.Wxh"], state_dict[f"weight_ih_l{k}"]
            np.testing.assert_array_equal(theirs[2 * H:3 * H], ours[3 * H:])
            np.testing.assert_array_equal(theirs[3 * H:], ours[2 * H:3 * H])
    # torch's two biases are summed where charrnn holds one
    shifted = dict(state_dict)
    shifted["bias_hh_l0"] = state_dict["bias_hh_l0"] + 0.25
    moved = from_torch_state_dict(network, shifted)
    rows = slice(0, 2 * H) if cell == "gru" else slice(None)
    np.testing.assert_allclose(moved["l1.bh"][rows], params["l1.bh"][rows] + 0.25)
    with pytest.raises(ValueError, match="weight_hh_l0 is missing"):
        from_torch_state_dict(network, {k: v for k, v in state_dict.items()
                                        if k != "weight_hh_l0"})
    with pytest.raises(ValueError, match="not an entry"):
        from_torch_state_dict(network, {**state_dict, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match="out.bias has shape"):
        from_torch_state_dict(network, {**state_dict, "out.bias": np.zeros(3)})


def test_description_is_plain_json():
    network = Network(TrainConfig(cell="gru", num_layers=2, hidden_size=4,
                                  dropout=0.25).model_spec(9), np.float32)
    description = json.loads(json.dumps(describe(network)))
    assert description["cell"] == "gru" and description["torch_module"] == "GRU"
    assert (description["num_layers"], description["vocab_size"], description["hidden_size"],
            description["dropout"], description["dtype"]) == (2, 9, 4, 0.25, "float32")
    assert description["output_prefix"] == "out."


# --------------------------------------------------------------------------- the files

def test_safetensors_layout_by_hand(model):
    run("export", "m.npz")
    checkpoint = load_checkpoint("m.npz")
    with open("m.safetensors", "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    assert (8 + length) % 8 == 0
    header = json.loads(data[8:8 + length])
    metadata = header.pop("__metadata__")
    assert all(isinstance(value, str) for value in metadata.values())
    assert metadata["format"] == "charrnn-export"
    assert json.loads(metadata["vocab"]) == list(checkpoint.vocab.chars)
    assert json.loads(metadata["model"]) == describe(checkpoint.network())
    expected = to_torch_state_dict(checkpoint.network(), checkpoint.params)
    assert set(header) == set(expected)
    spans = sorted(entry["data_offsets"] for entry in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == len(data) - 8 - length
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))        # no gaps, no overlaps
    for name, entry in header.items():
        assert entry["dtype"] == "F32" and entry["shape"] == list(expected[name].shape)
        begin, end = entry["data_offsets"]
        raw = data[8 + length + begin:8 + length + end]
        assert raw == expected[name].astype("<f4").tobytes(), name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_safetensors_package_and_torch_read_it_back_identically(tmp_path, dtype):
    safetensors = pytest.importorskip("safetensors")
    import safetensors.numpy
    checkpoint = make_checkpoint(tmp_path / "m.npz", "gru", 2, dtype)
    run("export", tmp_path / "m.npz")
    path = os.fspath(tmp_path / "m.safetensors")
    expected = to_torch_state_dict(checkpoint.network(), checkpoint.params)
    arrays = safetensors.numpy.load_file(path)
    assert set(arrays) == set(expected)
    for name, value in expected.items():
        assert arrays[name].dtype == np.dtype(dtype) and arrays[name].shape == value.shape
        assert arrays[name].tobytes() == value.tobytes(), name
    with safetensors.safe_open(path, framework="np") as f:
        metadata = f.metadata()
    assert json.loads(metadata["vocab"]) == list(checkpoint.vocab.chars)   # emoji, quotes, \\
    assert json.loads(metadata["model"])["dtype"] == dtype
    assert metadata["charrnn_version"] == charrnn_version()
    torch = pytest.importorskip("torch")
    import safetensors.torch
    tensors = safetensors.torch.load_file(path)
    for name, value in expected.items():
        assert tensors[name].dtype == getattr(torch, dtype)
        np.testing.assert_array_equal(tensors[name].numpy(), value)


def charrnn_version() -> str:
    from charrnn import __version__
    return __version__


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_json_export_round_trips(tmp_path, dtype):
    checkpoint = make_checkpoint(tmp_path / "m.npz", "lstm", 2, dtype, scale=1e-3)
    # the shortest forms of tiny, huge and negative-zero numbers must come back exactly too
    params = checkpoint.params
    params["by"][:4] = [1e-40 if dtype == "float32" else 1e-310, -0.0, 3e38, -1.5e-7]
    save_checkpoint(os.fspath(tmp_path / "m.npz"), checkpoint)
    run("export", tmp_path / "m.npz", "--format", "json")
    path = tmp_path / "m.json"
    with open(path, "rb") as f:
        assert f.read(len(JSON_PREFIX)) == JSON_PREFIX.encode()
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["vocab"] == list(checkpoint.vocab.chars)
    assert document["model"] == describe(checkpoint.network())
    expected = to_torch_state_dict(checkpoint.network(), params)
    assert list(document["weights"]) == list(expected)
    for name, value in expected.items():
        back = np.asarray(document["weights"][name], dtype=dtype)
        assert back.shape == value.shape and back.tobytes() == value.tobytes(), name
    vocab, network, read_params = model_from_export(os.fspath(path))
    assert vocab == list(checkpoint.vocab.chars) and network.spec == checkpoint.network().spec
    assert read_params.flat.tobytes() == params.flat.tobytes()
    # and the same model from the safetensors file
    run("export", tmp_path / "m.npz")
    _, _, from_binary = model_from_export(os.fspath(tmp_path / "m.safetensors"))
    assert from_binary.flat.tobytes() == params.flat.tobytes()
    assert os.path.getsize(path) > 2 * os.path.getsize(tmp_path / "m.safetensors")


def test_big_json_warns_on_stderr(model, monkeypatch):
    monkeypatch.setattr("charrnn.cli.JSON_WARNING_BYTES", 1000)
    result = run("export", "m.npz", "-o", "m.json")
    assert re.search(r"warning: m\.json is \d+ MB of JSON", result.stderr)
    monkeypatch.setattr("charrnn.cli.JSON_WARNING_BYTES", 10 ** 9)
    quiet = run("export", "m.npz", "-o", "small.json")
    assert "warning" not in quiet.stderr and "wrote small.json" in quiet.stderr


# --------------------------------------------------------------------------- the command

def test_default_names_beside_the_checkpoint(model):
    make_checkpoint(model / "m.best.npz", dtype="float32", seed=1)
    before = snapshot(model)
    result = run("export", "m.npz")
    assert "wrote m.safetensors" in result.stderr and "parameters" in result.stderr
    run("export", "--checkpoint", "m.npz", "--format", "json")
    run("export", "m.npz", "--best")
    after = snapshot(model)
    assert set(after) - set(before) == {"m.safetensors", "m.json", "m.best.safetensors"}
    assert all(after[name] == before[name] for name in before)   # nothing else touched
    _, _, best = model_from_export("m.best.safetensors")
    assert best.flat.tobytes() == load_checkpoint("m.best.npz").params.flat.tobytes()
    assert is_charrnn_export("m.safetensors") and is_charrnn_export("m.json")
    # an export replaces an export (the same name, written again)
    run("export", "m.npz", "-o", "m.json")
    run("export", "m.npz", "-o", "m.safetensors")


def test_latest_checkpoint_by_default(model):
    os.mkdir("checkpoints")
    make_checkpoint(model / "checkpoints" / "run.npz", dtype="float32")
    result = run("export")
    assert "using checkpoints/run.npz" in result.stderr
    assert os.path.isfile("checkpoints/run.safetensors")


def test_a_checkpoint_not_named_npz_is_never_its_own_export(model):
    os.rename("m.npz", "weights.json")
    run("export", "weights.json", "--format", "json")
    assert os.path.isfile("weights.json.json")
    load_checkpoint("weights.json")    # still the checkpoint


@pytest.mark.parametrize("args,pattern", [
    (["-o", "m.npz"], r"is the checkpoint"),
    (["-o", "m.best.npz"], r"best twin"),
    (["-o", "m.csv"], r"history"),
    (["-o", "other.npz"], r"would overwrite a checkpoint"),
    (["-o", "link.safetensors"], r"is the checkpoint"),
    (["-o", "notes.txt"], r"exists and is not a charrnn export"),
    (["-o", "notes.json"], r"exists and is not a charrnn export"),
    (["-o", "empty.safetensors"], r"exists and is not a charrnn export"),
    (["-o", "folder"], r"is a directory"),
    (["--format", "xml"], r"--format xml: unknown format; choose safetensors or json"),
    (["--format", "json", "-o", "x.safetensors"], r"names a safetensors file"),
    (["-o", "x.json", "--format", "safetensors"], r"names a json file"),
    (["-o", "missing/x.safetensors"], r"folder .*missing does not exist"),
    (["-o", "notes.txt/x.safetensors"], r"cannot write notes.txt/x.safetensors"),
    (["--best"], r"no checkpoint at m\.best\.npz"),
])
def test_bad_outputs_are_one_line_errors_that_touch_nothing(model, args, pattern):
    (model / "notes.txt").write_text("my notes\n", encoding="utf-8")
    (model / "notes.json").write_text('{"format": "mine"}', encoding="utf-8")
    (model / "empty.safetensors").write_bytes(b"")
    (model / "m.csv").write_text("iteration,chars_seen,train_loss,val_loss,elapsed_seconds\n")
    (model / "folder").mkdir()
    os.symlink("m.npz", model / "link.safetensors")
    before = snapshot(model)
    message = error_line(run("export", "m.npz", *args, expect=1))
    assert re.search(pattern, message), message
    assert snapshot(model) == before


def test_bad_checkpoints(model):
    message = error_line(run("export", "nothing.npz", expect=1))
    assert "no checkpoint at nothing.npz" in message
    result = run("export", "m.npz", "--checkpoint", "other.npz", expect=2)
    assert "two checkpoints given" in result.stderr


def test_an_unwritable_folder_is_one_line_and_leaves_nothing(model, monkeypatch):
    """What a non-root user sees in a read-only folder (tests may run as root): creating the
    temporary raises EACCES."""
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    monkeypatch.setattr(charrnn.runfiles, "_create_new", refuse)
    before = snapshot(model)
    message = error_line(run("export", "m.npz", expect=1))
    assert message == "Error: cannot write m.safetensors: Permission denied"
    assert snapshot(model) == before


def test_a_failed_write_keeps_the_previous_export(model, monkeypatch):
    run("export", "m.npz")
    with open("m.safetensors", "rb") as f:
        previous = f.read()

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr("charrnn.export.write_safetensors", full_disk)
    message = error_line(run("export", "m.npz", expect=1))
    assert "No space left on device" in message
    with open("m.safetensors", "rb") as f:
        assert f.read() == previous
    assert sorted(os.listdir(".")) == ["m.npz", "m.safetensors"]   # no temporary left


def test_read_export_refuses_other_files(tmp_path):
    from charrnn.export import ExportError
    path = tmp_path / "x.safetensors"
    for content in (b"", b"\x10\x00\x00\x00\x00\x00\x00\x00{}", b"PK\x03\x04junk",
                    struct.pack("<Q", 8) + b'{"a":1} '):
        path.write_bytes(content)
        assert not is_charrnn_export(os.fspath(path))
        with pytest.raises(ExportError, match="not a charrnn export"):
            read_export(os.fspath(path))


# --------------------------------------------------------------------------- PyTorch

def exported(tmp_path, cell, layers, dtype="float32", **options):
    """Export a fresh random checkpoint as tmp_path/model.safetensors; the checkpoint."""
    checkpoint = make_checkpoint(tmp_path / "m.npz", cell, layers, dtype, **options)
    run("export", tmp_path / "m.npz", "-o", tmp_path / "model.safetensors")
    return checkpoint


def run_readme_snippet(folder, monkeypatch, capsys) -> dict:
    """Run the documented program in ``folder``; its variables, and what it printed."""
    monkeypatch.chdir(folder)
    namespace = {"__name__": "__main__"}
    exec(compile(readme_snippet(), "docs/pytorch.md (export snippet)", "exec"), namespace)
    namespace["printed"] = capsys.readouterr().out
    return namespace


def charrnn_logits(checkpoint, text):
    """charrnn's logits (float64 of the model's numbers) after each character but the last."""
    network, params = checkpoint.network(), checkpoint.params
    indices = np.array([checkpoint.vocab.chars.index(c) for c in text])
    probs, values = network.trace(params, indices)
    top = values[f"l{network.spec.num_layers}.h"].astype(np.float64)
    return top @ params["Why"].T.astype(np.float64) + params["by"], probs


@pytest.mark.parametrize("cell,layers", CONFIGS)
def test_readme_program_gives_charrnns_logits(tmp_path, monkeypatch, capsys, torch, cell,
                                              layers):
    checkpoint = exported(tmp_path, cell, layers, hidden=16, scale=0.3)
    ns = run_readme_snippet(tmp_path, monkeypatch, capsys)
    printed = ns["printed"]
    assert printed.startswith("ROMEO:") and printed.endswith("\n")
    generated = printed[len("ROMEO:"):-1]
    assert len(generated) == 200 and set(generated) <= set(checkpoint.vocab.chars)
    rnn, out = ns["rnn"], ns["out"]
    assert isinstance(rnn, getattr(torch.nn, {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[cell]))
    assert rnn.num_layers == layers and rnn.hidden_size == 16
    with torch.no_grad():
        hs, _ = rnn(ns["one_hot"](TEXT))
        torch_logits = out(hs[:, 0]).double().numpy()[:-1]
    ours, probs = charrnn_logits(checkpoint, TEXT)
    assert ours.shape == torch_logits.shape == (len(TEXT) - 1, len(checkpoint.vocab))
    scale = np.abs(ours).max()
    np.testing.assert_allclose(torch_logits, ours, rtol=1e-5, atol=1e-5 * scale)
    torch_probs = torch.softmax(torch.tensor(torch_logits), -1).numpy()
    np.testing.assert_allclose(torch_probs, probs, rtol=1e-4, atol=1e-6)


def test_readme_program_on_a_float64_model_is_exact_to_float64(tmp_path, monkeypatch, capsys,
                                                               torch):
    checkpoint = exported(tmp_path, "lstm", 2, dtype="float64", hidden=8)
    ns = run_readme_snippet(tmp_path, monkeypatch, capsys)
    with torch.no_grad():
        hs, _ = ns["rnn"](ns["one_hot"](TEXT))
        torch_logits = ns["out"](hs[:, 0]).numpy()[:-1]
    assert torch_logits.dtype == np.float64
    np.testing.assert_allclose(torch_logits, charrnn_logits(checkpoint, TEXT)[0],
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_an_exported_model_trains_on_in_torch(tmp_path, monkeypatch, capsys, torch, cell):
    """One Adam step in torch: charrnn's loss on the batch first, finite gradients of the
    modules' own shapes, a lower loss after it; and what torch trained, read back into
    charrnn (its bias_hh no longer zero), is the model torch has."""
    checkpoint = exported(tmp_path, cell, 2, hidden=12, scale=0.3)
    ns = run_readme_snippet(tmp_path, monkeypatch, capsys)
    rnn, out, one_hot = ns["rnn"], ns["out"], ns["one_hot"]
    vocab, network = checkpoint.vocab.chars, checkpoint.network()
    T, B = 20, 3
    indices = np.array([vocab.index(c) for c in TEXT])
    rows = np.stack([indices[b * 40:b * 40 + T + 1] for b in range(B)], axis=1)   # (T+1, B)
    inputs, targets = rows[:-1], rows[1:]
    x = torch.nn.functional.one_hot(torch.tensor(inputs), len(vocab)).float()   # (T, B, V)
    assert one_hot("ab").shape == (2, 1, len(vocab))

    def torch_loss():
        hs, _ = rnn(x)
        logits = out(hs)
        assert logits.shape == (T, B, len(vocab))
        return torch.nn.functional.cross_entropy(
            logits.reshape(T * B, -1), torch.tensor(targets.reshape(-1)), reduction="sum") / B

    def charrnn_loss(params):
        loss, _ = network.forward(params, inputs, targets, network.zero_state(B))
        return loss

    rnn.train(), out.train()
    parameters = list(rnn.parameters()) + list(out.parameters())
    optimiser = torch.optim.Adam(parameters, lr=0.01)
    optimiser.zero_grad()
    loss = torch_loss()
    assert loss.item() == pytest.approx(charrnn_loss(checkpoint.params), rel=1e-5)
    loss.backward()
    for parameter in parameters:
        assert parameter.grad is not None and parameter.grad.shape == parameter.shape
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().max() > 0
    optimiser.step()
    with torch.no_grad():
        after = torch_loss().item()
    assert after < loss.item()
    state_dict = {name: value.detach().numpy() for name, value in rnn.state_dict().items()}
    state_dict.update({"out." + name: value.detach().numpy()
                       for name, value in out.state_dict().items()})
    assert any(state_dict["bias_hh_l0"] != 0)
    trained = from_torch_state_dict(network, state_dict)
    assert charrnn_loss(trained) == pytest.approx(after, rel=1e-5)
