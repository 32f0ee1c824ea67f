"""A corpus of many files: folders (nested, hidden folders skipped, binary files skipped with a
note), glob patterns, --include, standard input; how files are joined (DOCUMENT_BOUNDARY) and
held out (the end of every file); the file list a checkpoint records and --resume's check;
eval and viz reading the same paths; and every bad corpus as a one-line error that writes
nothing."""
from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn.checkpoint import load_checkpoint
from charrnn.cli import cli
from charrnn.data import (DOCUMENT_BOUNDARY, CorpusError, corpus_name, find_sources,
                          read_sources, split_corpus)

pytestmark = pytest.mark.usefixtures("in_tmp_path")

SMALL = ["--hidden-size", "12", "--seq-length", "8", "--batch-size", "2", "--max-iters", "6",
         "--eval-every", "3", "--checkpoint-every", "3", "--sample-every", "0", "--threads", "1"]
# Latin, accented, Greek, CJK and emoji: characters of two encodings' worth (latin-1's and
# beyond it), all in UTF-8 files.
POEM = "Sing, O goddess, the anger of Achilles.\nCafé, naïve, Ελλάδα; 日本語 🙂\n" * 8
CODE = "def f(x):\n    return x * 2\n\n\nprint(f(21))\n" * 8


def run(*args, expect=0, input=None):
    """Invoke charrnn; check the exit code, and that an error is one line, no traceback."""
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input)
    assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    if expect == 1:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return result


def read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def make_folder(root="corpus"):
    """corpus/ with a nested folder, a .git folder, a hidden file, a binary file and a
    charrnn history (neither of the last two is text to learn)."""
    os.makedirs(f"{root}/poems/old")
    os.makedirs(f"{root}/.git/objects")
    files = {f"{root}/poems/b.txt": POEM, f"{root}/poems/old/a.txt": POEM[::-1],
             f"{root}/code.py": CODE, f"{root}/.git/HEAD": "ref: refs/heads/main\n",
             f"{root}/.hidden.txt": "secret\n"}
    for name, text in files.items():
        with open(name, "w", encoding="utf-8") as f:
            f.write(text)
    with open(f"{root}/image.png.bin", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with open(f"{root}/old-run.csv", "w") as f:
        f.write("iteration,chars_seen,train_loss,val_loss,elapsed_seconds\n1,2,3,4,5\n")
    return root


def test_a_folder_is_every_text_file_below_it_in_sorted_order():
    make_folder()
    names = [source.name for source in find_sources(["corpus"])]
    # files of a folder before its subfolders', each sorted; .git, hidden and own files out
    assert names == ["corpus/code.py", "corpus/image.png.bin", "corpus/poems/b.txt",
                     "corpus/poems/old/a.txt"]
    corpus = read_sources(find_sources(["corpus"]))
    assert corpus.binary_skipped == 1
    assert [doc.name for doc in corpus.documents] == [
        "corpus/code.py", "corpus/poems/b.txt", "corpus/poems/old/a.txt"]
    # joined in that order, a boundary between files (and none after the last)
    text = corpus.vocab.decode(corpus.indices)
    assert text == DOCUMENT_BOUNDARY.join([CODE, POEM, POEM[::-1]])
    for doc, expected in zip(corpus.documents, [CODE, POEM, POEM[::-1]]):
        assert corpus.vocab.decode(corpus.indices[doc.start:doc.end]) == expected
    assert corpus.indices.dtype == np.uint8   # one byte per character, V <= 256


def test_include_chooses_files_in_folders_and_globs_expand_sorted():
    make_folder()
    assert [s.name for s in find_sources(["corpus"], include=["*.txt"])] == [
        "corpus/poems/b.txt", "corpus/poems/old/a.txt"]
    with pytest.raises(CorpusError, match="holds no file matching --include"):
        find_sources(["corpus"], include=["old/*"])   # old/ is poems/old/ below corpus/
    assert [s.name for s in find_sources(["corpus"], include=["*.py", "poems/old/*"])] == [
        "corpus/code.py", "corpus/poems/old/a.txt"]
    assert [s.name for s in find_sources(["corpus/poems/**/*.txt"])] == [
        "corpus/poems/b.txt", "corpus/poems/old/a.txt"]
    assert corpus_name("corpus/poems/*.txt") == "poems" and corpus_name("corpus") == "corpus"
    assert corpus_name("-") == "stdin"


def test_validation_is_the_end_of_every_file():
    make_folder()
    corpus = read_sources(find_sources(["corpus"], include=["*.py", "*.txt"]))
    train, val = split_corpus(corpus, 0.25)
    texts = [CODE, POEM, POEM[::-1]]
    cuts = [len(t) - int(len(t) * 0.25) for t in texts]
    decode = corpus.vocab.decode
    assert decode(train) == DOCUMENT_BOUNDARY.join(t[:c] for t, c in zip(texts, cuts))
    assert decode(val) == DOCUMENT_BOUNDARY.join(t[c:] for t, c in zip(texts, cuts))
    assert len(split_corpus(corpus, 0.0)[1]) == 0


def test_train_on_a_folder_records_its_files_and_resume_refuses_a_changed_corpus():
    make_folder()
    result = run("train", "corpus", "--checkpoint", "m.npz", *SMALL)
    assert "skipped 1 file(s)" in result.stderr and "in 3 files" in result.stderr
    state = load_checkpoint("m.npz").state
    assert [name for name, _ in state.corpus_files] == [
        "corpus/code.py", "corpus/poems/b.txt", "corpus/poems/old/a.txt"]
    assert DOCUMENT_BOUNDARY in load_checkpoint("m.npz").vocab.chars
    before = read_bytes("m.npz")

    with open("corpus/poems/b.txt", "a", encoding="utf-8") as f:
        f.write("one more line\n")
    with open("corpus/new.txt", "w", encoding="utf-8") as f:
        f.write(POEM)
    message = run("train", "corpus", "--checkpoint", "m.npz", "--resume", "--max-iters", "9",
                  expect=1).stderr
    assert "corpus/new.txt is new" in message and "corpus/poems/b.txt was edited" in message
    assert read_bytes("m.npz") == before

    os.remove("corpus/new.txt")
    with open("corpus/poems/b.txt", "w", encoding="utf-8") as f:
        f.write(POEM)
    # the same files, read from elsewhere (a moved folder keeps its name): resumes
    os.rename("corpus", "moved")
    os.makedirs("elsewhere")
    os.rename("moved", "elsewhere/corpus")
    run("train", "elsewhere/corpus", "--checkpoint", "m.npz", "--resume", "--max-iters", "9", "-q")
    assert load_checkpoint("m.npz").state.iteration == 9


def test_standard_input_is_a_corpus_for_train_and_eval():
    run("train", "-", "--checkpoint", "m.npz", *SMALL, "-q", input=POEM)
    checkpoint = load_checkpoint("m.npz")
    assert checkpoint.state.corpus_files[0][0] == "<stdin>"
    assert "".join(checkpoint.vocab.chars) == "".join(sorted(set(POEM)))
    with open("poem.txt", "w", encoding="utf-8") as f:
        f.write(POEM)
    from_stdin = run("eval", "-", "m.npz", "-q", input=POEM).stdout
    from_file = run("eval", "poem.txt", "m.npz", "-q").stdout
    assert from_stdin == from_file and "bits/char" in from_stdin
    assert "standard input is empty" in run("train", "-", "--checkpoint", "e.npz", *SMALL,
                                            expect=1, input="").stderr
    assert not os.path.exists("e.npz")


def test_eval_and_viz_take_folders_as_train_does():
    make_folder()
    run("train", "corpus", "--checkpoint", "m.npz", *SMALL, "-q")
    folder = run("eval", "corpus", "m.npz", "--include", "*.txt", "-q").stdout
    run("eval", "corpus/poems/b.txt", "corpus/poems/old/a.txt", "m.npz", "-q")
    files = run("eval", "corpus/poems/b.txt", "corpus/poems/old/a.txt", "m.npz", "-q").stdout
    assert folder == files
    page = run("viz", "corpus", "m.npz", "--include", "*.py", "-o", "page.html", "-q").stdout
    assert page.strip() == "page.html" and os.path.getsize("page.html") > 0


@pytest.mark.parametrize("paths, message", [
    (["empty"], "holds no file"),
    (["only-binary"], "no text file found (1 binary file(s) skipped)"),
    (["nothing/*.txt"], "matches no file"),
    (["missing.txt"], "no such file or folder: missing.txt"),
    (["a.txt", "a.txt"], "a.txt is given twice"),
    (["a.txt", "./a.txt"], "given twice"),
])
def test_bad_corpora_are_one_line_and_write_nothing(paths, message):
    os.makedirs("empty")
    os.makedirs("only-binary")
    with open("only-binary/x.dat", "wb") as f:
        f.write(b"\x00\x01\x02")
    with open("a.txt", "w") as f:
        f.write(POEM)
    before = sorted(os.listdir("."))
    result = run("train", *paths, "--checkpoint", "out/m.npz", *SMALL, expect=1)
    assert message in result.stderr
    assert sorted(os.listdir(".")) == before


def test_a_checkpoint_inside_the_corpus_folder_is_refused():
    make_folder()
    message = run("train", "corpus", "--checkpoint", "corpus/runs/m.npz", *SMALL,
                  expect=1).stderr
    assert "inside the corpus folder corpus" in message
    assert not os.path.exists("corpus/runs")


def test_train_on_a_folder_never_reads_its_own_files(tmp_path):
    """Checkpoints, histories, plots and exports charrnn wrote into the folder are not text."""
    make_folder()
    run("train", "corpus", "--checkpoint", "m.npz", *SMALL, "-q")
    for name in ("m.npz", "m.best.npz", "m.csv"):
        os.replace(name, f"corpus/{name}")
    run("export", "corpus/m.npz", "-o", "corpus/m.json")
    run("export", "corpus/m.npz", "-o", "corpus/m.safetensors")
    with pytest.raises(CorpusError, match="holds no file matching --include"):
        find_sources(["corpus"], include=["m.*"])
    with open("corpus/m.notes", "w") as f:   # the same name, but text of the user's
        f.write("notes\n")
    assert [s.name for s in find_sources(["corpus"], include=["m.*"])] == ["corpus/m.notes"]


def test_a_file_that_changes_between_the_two_passes_is_an_error(monkeypatch):
    make_folder()
    sources = find_sources(["corpus"], include=["*.txt"])
    import charrnn.data as data
    original = data._decoded_blocks
    calls = []

    def growing(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 3:   # the second pass over the first file
            with open(path, "a", encoding="utf-8") as f:
                f.write("more")
        return original(path, *args, **kwargs)

    monkeypatch.setattr(data, "_decoded_blocks", growing)
    with pytest.raises(CorpusError, match="changed while it was being read"):
        read_sources(sources)


def test_many_small_files_are_read_one_at_a_time(monkeypatch):
    """2,000 files: never more than one open at once, and one index array for all."""
    os.makedirs("many")
    for i in range(2000):
        with open(f"many/{i:05d}.txt", "w") as f:
            f.write(f"line {i}\n")
    import builtins
    real_open, open_now, most = builtins.open, [0], [0]

    class Counted:
        def __init__(self, f):
            self.f = f
            open_now[0] += 1
            most[0] = max(most[0], open_now[0])

        def __enter__(self):
            return self.f.__enter__()

        def __exit__(self, *exc):
            open_now[0] -= 1
            return self.f.__exit__(*exc)

    monkeypatch.setattr(builtins, "open", lambda *a, **k: Counted(real_open(*a, **k)))
    corpus = read_sources(find_sources(["many"]))
    monkeypatch.setattr(builtins, "open", real_open)
    assert most[0] == 1
    assert len(corpus.documents) == 2000
    assert len(corpus.indices) == sum(len(f"line {i}\n") for i in range(2000)) + 1999


def test_standard_input_that_is_a_terminal_is_refused_without_waiting():
    from charrnn.data import read_stdin_bytes

    class Terminal:
        def isatty(self):
            return True

        def read(self):   # pragma: no cover - reading would wait for a person to type
            raise AssertionError("a terminal must not be read")

    with pytest.raises(CorpusError, match="standard input is a terminal"):
        read_stdin_bytes(Terminal())


def test_latin_1_files_in_a_folder_with_encoding():
    os.makedirs("latin")
    with open("latin/a.txt", "wb") as f:
        f.write("Ça va, señor Müller? Déjà vu.\n".encode("latin-1") * 20)
    with open("latin/b.txt", "wb") as f:
        f.write("Naïve façade, über alles.\n".encode("latin-1") * 20)
    # as UTF-8 neither decodes: both are skipped, and nothing is left
    message = run("train", "latin", "--checkpoint", "m.npz", *SMALL, expect=1).stderr
    assert "no text file found (2 binary file(s) skipped)" in message
    run("train", "latin", "--checkpoint", "m.npz", "--encoding", "latin-1", *SMALL, "-q")
    vocab = load_checkpoint("m.npz").vocab.chars
    assert {"Ç", "ñ", "ü", "ï", "ç"} <= set(vocab)


def test_two_folders_of_one_name_are_both_read_in_order():
    """Their files have the same names in the checkpoint's list; each is read for itself."""
    for parent, text in (("a", POEM), ("b", CODE)):
        os.makedirs(f"{parent}/corpus")
        with open(f"{parent}/corpus/x.txt", "w", encoding="utf-8") as f:
            f.write(text)
    corpus = read_sources(find_sources(["a/corpus", "b/corpus"]))
    assert [doc.name for doc in corpus.documents] == ["corpus/x.txt", "corpus/x.txt"]
    assert corpus.vocab.decode(corpus.indices) == POEM + DOCUMENT_BOUNDARY + CODE
