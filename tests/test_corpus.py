"""mechviz.learned.corpus on a fake Debian mirror: .deb files made here, fetched from file://."""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from conftest import CharTokenizer

from mechviz.errors import MechvizError
from mechviz.learned import corpus
from mechviz.learned.corpus import Corpus, Pin, bytes_of, load_corpus, windows

RST = "usr/share/doc/fake-doc/html/_sources/"
FORTUNES = "usr/share/games/fortunes/"
BSD = (
    "This program falls under the BSD copyright:\n\nRedistribution and use in source and "
    "binary forms ... 4. Neither the name of the University ...\n"
)
DEP5 = (
    "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
    "Upstream-Name: fake\n\nFiles: *\nCopyright: 2024 Someone\nLicense: CC0-1.0\n\n"
    "Files: debian/*\nLicense: GPL-2+\n"
)


class ByteTokenizer:
    """A "fast" tokenizer (batches) with one token per UTF-8 byte: text round-trips exactly."""

    is_fast = True
    name_or_path = "bytes"

    def __len__(self) -> int:
        return 256

    def __call__(self, texts, add_special_tokens=True, **kwargs):
        assert isinstance(texts, list) and not add_special_tokens
        return {"input_ids": [list(t.encode("utf-8")) for t in texts]}

    def batch_decode(self, rows, **kwargs):
        return [bytes(r).decode("utf-8", "replace") for r in rows]

    def convert_ids_to_tokens(self, ids):
        return [f"<{i}>" for i in ids]


def rst_doc(i: int) -> str:
    return f"Page {i}\n=======\n\n" + f"Some text about topic {i}, with words.\n" * (5 + i % 7)


def fortune_file(n: int, tag: str) -> str:
    quotes = [f"Quote {tag} {k}: a saying\nthat runs on.\n\t\t-- Author {k}" for k in range(n)]
    return "\n%\n".join(quotes) + "\n%\n"


def tar_xz(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo("./" + path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for path, target in (links or {}).items():
            info = tarfile.TarInfo("./" + path)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buf.getvalue()


def make_deb(path: Path, name: str, version: str, files: dict[str, bytes], **kw) -> Path:
    control = f"Package: {name}\nVersion: {version}\nArchitecture: all\n".encode()
    members = [
        ("debian-binary", b"2.0\n"),
        ("control.tar.xz", tar_xz({"control": control})),
        ("data.tar.xz", tar_xz(files, **kw)),
    ]
    out = b"!<arch>\n"
    for member, data in members:
        out += f"{member:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(out)
    return path


@pytest.fixture()
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Pin]:
    """Two fake packages on a file:// mirror, pinned; the cache in tmp_path."""
    monkeypatch.setenv("MECHVIZ_CACHE", str(tmp_path / "cache"))
    pool = tmp_path / "pool"
    pool.mkdir()
    doc_files = {RST + f"dir/page{i}.rst.txt": rst_doc(i).encode() for i in range(40)}
    doc_files[RST + "one-line.rst.txt"] = b"just one line\n"
    doc_files["usr/share/doc/fake-doc/copyright"] = DEP5.encode()
    fortune_files = {
        FORTUNES + "wisdom": fortune_file(120, "w").encode(),
        FORTUNES + "wisdom.dat": b"\x00\x01binary",
        FORTUNES + "ascii-art": b"  /\\_/\\\n ( o.o )\n%\n",
        FORTUNES + "bold": b"B\x08Bo\x08ol\x08ld and _\x08u_\x08n_\x08d_\x08e_\x08r\nline two\n",
        "usr/share/doc/fake-fortunes/copyright": BSD.encode(),
    }
    debs = [
        make_deb(pool / "fake-doc_1.0-1_all.deb", "fake-doc", "1.0-1", doc_files),
        make_deb(
            pool / "fake-fortunes_2:3.4_all.deb",
            "fake-fortunes",
            "2:3.4",
            fortune_files,
            links={FORTUNES + "wisdom.u8": "wisdom"},
        ),
    ]
    pins = [
        Pin(
            name,
            "pinned",
            deb.as_uri(),
            hashlib.sha256(deb.read_bytes()).hexdigest(),
            folder,
            kind,
        )
        for deb, name, folder, kind in zip(
            debs, ["fake-doc", "fake-fortunes"], [RST, FORTUNES], ["rst", "fortune"]
        )
    ]
    monkeypatch.setattr(corpus, "PINS", tuple(pins))
    monkeypatch.setattr(corpus, "FORTUNE_BLOCK", 500)  # about ten fake quotes a document
    return pins


def decoded(c: Corpus) -> list[str]:
    ends = list(c.starts[1:]) + [len(c.ids)]
    return [bytes(c.ids[s:e].tolist()).decode() for s, e in zip(c.starts, ends)]


def test_extraction_sources_and_text(mirror):
    train = load_corpus(ByteTokenizer(), "train", progress=False)
    held = load_corpus(ByteTokenizer(), "eval", progress=False)
    doc, fortunes = train.sources
    assert (doc.name, doc.version, doc.licence) == ("fake-doc", "1.0-1", "CC0-1.0")
    assert (fortunes.name, fortunes.version, fortunes.licence) == (
        "fake-fortunes",
        "2:3.4",
        "BSD-3-Clause",
    )
    assert doc.url == mirror[0].url and doc.sha256 == mirror[0].sha256
    assert doc.documents == 40  # the one-line page is dropped
    assert train.sources == held.sources
    texts = decoded(train) + decoded(held)
    assert len(texts) == doc.documents + fortunes.documents
    assert (
        train.n_bytes + held.n_bytes == doc.bytes + fortunes.bytes == len(train.ids) + len(held.ids)
    )
    assert not any("%" in t or "/\\_/\\" in t or "binary" in t for t in texts)
    assert "Bold and under\nline two\n" in texts  # overstrike removed
    blocks = [t for t in texts if t.startswith("Quote")]
    assert len(blocks) > 5 and all(t.count("\n") > 1 for t in blocks)
    assert rst_doc(3) in texts
    assert train.ids.dtype == np.int32 and train.starts.dtype == np.int64
    assert not train.ids.flags.writeable
    assert train.tokenizer.startswith("bytes-v256-")


def test_slow_tokenizer_adds_nothing(mirror, char_tokenizer):
    c = load_corpus(char_tokenizer, "eval", progress=False)
    assert len(c.starts) > 1 and char_tokenizer.bos_token_id not in c.ids
    first = char_tokenizer.decode(c.ids[: c.starts[1]].tolist())
    assert first.startswith(("Page", "Quote", "Bold"))


def test_split_is_deterministic_and_disjoint(mirror):
    train = load_corpus(ByteTokenizer(), "train", progress=False)
    held = load_corpus(ByteTokenizer(), "eval", progress=False)
    a, b = set(decoded(train)), set(decoded(held))
    assert a and b and not a & b
    assert 0.05 <= held.n_bytes / (train.n_bytes + held.n_bytes) < 0.2
    assert train.digest != held.digest
    docs = [(f"doc{i}", "x" * (100 + i)) for i in range(200)]
    first = corpus._splits("src", docs)
    assert first == corpus._splits("src", docs)
    assert first != corpus._splits("other", docs)  # the source name is part of the hash
    held_bytes = sum(len(t) for (_, t), s in zip(docs, first) if s == "eval")
    assert 0.05 * sum(len(t) for _, t in docs) <= held_bytes < 0.07 * sum(len(t) for _, t in docs)


def test_cache_reused_and_keyed_by_tokenizer(mirror, char_tokenizer, monkeypatch, tmp_path):
    first = load_corpus(char_tokenizer, "train", progress=False)

    def boom(*args, **kwargs):
        raise AssertionError("must come from the cache")

    monkeypatch.setattr(corpus, "_fetch", boom)
    monkeypatch.setattr(corpus, "_encode", boom)
    again = load_corpus(CharTokenizer(), "train", progress=False)
    assert again.digest == first.digest and np.array_equal(again.ids, first.ids)
    with pytest.raises(AssertionError):  # another vocabulary: tokenized anew
        load_corpus(CharTokenizer(vocab_size=301), "train", progress=False)
    assert len(list((tmp_path / "cache" / "corpus" / "tokens").glob("*/meta.json"))) == 1


def test_progress_lines_on_stderr(mirror, char_tokenizer, capsys):
    load_corpus(char_tokenizer, "eval", progress=True)
    err = capsys.readouterr().err
    assert "Fetching the training text fake-doc" in err and "Tokenizing the eval text" in err


def test_unreachable_mirror_is_one_sentence(mirror, char_tokenizer, monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError(OSError(111, "Connection refused"))

    monkeypatch.setattr(corpus.urllib.request, "urlopen", refuse)
    away = Pin(**{**vars(mirror[0]), "url": corpus._POOL + "f/fake/fake-doc_1.0-1_all.deb"})
    monkeypatch.setattr(corpus, "PINS", (away,))
    with pytest.raises(MechvizError) as info:
        load_corpus(char_tokenizer, progress=False)
    message = str(info.value)
    assert message.startswith("Cannot fetch the training text fake-doc from deb.debian.org: ")
    assert "Connection refused" in message and message.endswith("run the command again.")
    assert "Traceback" not in message and "\n" not in message


def test_sha256_mismatch_refused(mirror, char_tokenizer, monkeypatch, tmp_path):
    wrong = Pin(**{**vars(mirror[0]), "sha256": "0" * 64})
    monkeypatch.setattr(corpus, "PINS", (wrong,))
    with pytest.raises(MechvizError, match="SHA-256 .* not the expected 0000"):
        load_corpus(char_tokenizer, progress=False)
    debs = tmp_path / "cache" / "corpus" / "debs"
    assert list(debs.iterdir()) == []  # nothing kept
    assert not (tmp_path / "cache" / "corpus" / "manifest.json").exists()


def test_gone_pin_falls_back_to_apt(mirror, char_tokenizer, monkeypatch):
    gone = Pin(**{**vars(mirror[0]), "url": mirror[0].url + ".old"})
    monkeypatch.setattr(corpus, "PINS", (gone, mirror[1]))
    real_fetch = corpus._fetch

    def fetch(url, dest, name, progress):
        if url.endswith(".old"):
            raise corpus._Gone()
        real_fetch(url, dest, name, progress)

    monkeypatch.setattr(corpus, "_fetch", fetch)
    monkeypatch.setattr(corpus, "_apt_uri", lambda pin: (mirror[0].url, mirror[0].sha256))
    c = load_corpus(char_tokenizer, progress=False)
    assert c.sources[0].url == mirror[0].url and c.sources[0].version == "1.0-1"


def test_gone_pin_without_apt_says_so(mirror, monkeypatch):
    monkeypatch.setattr(corpus.shutil, "which", lambda name: None)
    with pytest.raises(MechvizError, match="is gone .* no apt-get here"):
        corpus._apt_uri(mirror[0])


def fake_corpus(lengths: list[int]) -> Corpus:
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    ids = np.arange(sum(lengths), dtype=np.int32)
    return Corpus("train", ids, starts, int(sum(lengths)), (), "fake", "0" * 64)


def test_windows_inside_documents_in_seeded_order():
    c = fake_corpus([100, 35, 7, 64, 5, 3])
    got = [w.tolist() for w in windows(c, 16, seed=0)]
    assert all(len(w) == 16 for w in got)
    flat = [t for w in got for t in w]
    assert len(flat) == len(set(flat))  # non-overlapping
    doc_of = np.searchsorted(c.starts, np.arange(len(c.ids)), side="right") - 1
    inside = [w for w in got if doc_of[w[0]] == doc_of[w[-1]]]
    assert len(inside) == 100 // 16 + 35 // 16 + 64 // 16  # every window of a long document
    assert len(got) == len(inside) + (7 + 5 + 3) // 16  # the short ones packed: 15 < 16
    packed = [w for w in windows(fake_corpus([10, 10, 10]), 16)]
    assert len(packed) == 1 and packed[0].tolist() == list(range(16))
    assert got == [w.tolist() for w in windows(c, 16, seed=0)]
    assert got != [w.tolist() for w in windows(c, 16, seed=1)]
    assert sorted(map(tuple, got)) == sorted(tuple(w.tolist()) for w in windows(c, 16, seed=1))
    with pytest.raises(MechvizError, match="at least one token"):
        next(windows(c, 0))


def test_bytes_of(char_tokenizer):
    ids = np.array(char_tokenizer.encode("Hello, world")[1:])
    assert bytes_of(char_tokenizer, ids) == 12
    assert bytes_of(char_tokenizer, np.stack([ids, ids])) == 24
    assert bytes_of(char_tokenizer, np.zeros(0, dtype=np.int32)) == 0


def test_licence_names():
    assert corpus._licence(DEP5) == "CC0-1.0"
    assert corpus._licence(BSD) == "BSD-3-Clause"
    assert corpus._licence("Python License\n====\nPSF LICENSE AGREEMENT") == "PSF-2.0"
    assert corpus._licence("under the GNU General Public License, version 2") == "GPL"
    assert corpus._licence("nothing here") == "unknown"


def test_unknown_split(mirror, char_tokenizer):
    with pytest.raises(MechvizError, match='use "train" or "eval"'):
        load_corpus(char_tokenizer, "test", progress=False)
