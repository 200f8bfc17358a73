"""Real English text to train lenses and SAEs on: Debian packages, fetched once, tokenized once.

The text comes from pinned Debian packages (reStructuredText sources of the Python documentation
and the fortune cookie files), downloaded on first use from deb.debian.org, checked against their
SHA-256, unpacked in pure Python and cached under ``cache_dir()/"corpus"``. Documents are split
into "train" and "eval" by a hash of their names, so the held-out split never changes. Token ids
are cached per tokenizer, so a second ``load_corpus`` only reads two ``.npy`` files.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mechviz.errors import MechvizError
from mechviz.files import atomic_write, cache_dir

FORMAT = 1  # bump when the documents or their split change: the caches are rebuilt
EVAL_SHARE = 0.05  # of each source's bytes held out, whole documents, for evaluation
TIMEOUT = 20.0  # seconds for the connection and for each read: a dead mirror never hangs
FORTUNE_BLOCK = 4000  # bytes of fortunes per document: a few dozen quotes, a few hundred tokens
SKIP_FORTUNES = {"ascii-art"}  # pictures, not text


@dataclass(frozen=True)
class Pin:
    """One Debian package pinned by version and hash, and where its text lives inside it."""

    name: str
    version: str
    url: str
    sha256: str
    folder: str  # path inside the package of the text files
    kind: str  # "rst": one document per *.rst.txt file; "fortune": blocks of fortune cookies


_POOL = "https://deb.debian.org/debian/pool/main/"
PINS: tuple[Pin, ...] = (
    Pin(
        "python3.11-doc",
        "3.11.2-6+deb12u8",
        _POOL + "p/python3.11/python3.11-doc_3.11.2-6+deb12u8_all.deb",
        "50eb63e7f636c4281e9ce1b8f10386f1def42159eddce34fc1f41c46261df71b",
        "usr/share/doc/python3.11/html/_sources/",
        "rst",
    ),
    Pin(
        "fortunes-min",
        "1:1.99.1-7.3",
        _POOL + "f/fortune-mod/fortunes-min_1.99.1-7.3_all.deb",
        "9eed5b45064e41133dae0967cf3a17588ad77c014fcc7bf1527fa3ea48e44d07",
        "usr/share/games/fortunes/",
        "fortune",
    ),
    Pin(
        "fortunes",
        "1:1.99.1-7.3",
        _POOL + "f/fortune-mod/fortunes_1.99.1-7.3_all.deb",
        "41d0551dc0ff52f875a2ecef7c39da2f672ab468c37e170119f7e0245a9d63c5",
        "usr/share/games/fortunes/",
        "fortune",
    ),
)


@dataclass(frozen=True)
class Source:
    """One registry package the text came from."""

    name: str  # e.g. "python3.11-doc"
    version: str  # e.g. "3.11.2-6+deb12u8"
    licence: str  # short licence name read from its copyright file, e.g. "PSF-2.0"
    url: str  # where it was fetched
    sha256: str  # of the downloaded package file
    documents: int  # in both splits
    bytes: int  # UTF-8 bytes of text taken from it, both splits


@dataclass(frozen=True, eq=False)  # eq=False: numpy arrays have no truth value
class Corpus:
    """One split of the corpus as token ids, documents concatenated with nothing between them."""

    split: str  # "train" or "eval" (held out by document, deterministic)
    ids: np.ndarray  # int32 token ids, read-only
    starts: np.ndarray  # int64 index of each document's first token in ids
    n_bytes: int  # UTF-8 bytes of this split's text
    sources: tuple[Source, ...]
    tokenizer: str  # the tokenizer the ids are for: name, vocabulary size, hash
    digest: str  # sha256 over split, starts and ids: goes into artefact hashes


def load_corpus(tokenizer: Any, split: str = "train", *, progress: bool = True) -> Corpus:
    """The ``split`` of the corpus as ids of ``tokenizer``; fetched and tokenized on first use."""
    if split not in ("train", "eval"):
        raise MechvizError(f'Unknown corpus split "{split}"; use "train" or "eval".')
    root = cache_dir() / "corpus"
    manifest = _read_manifest(root)
    if manifest is None:
        with _lock(root, progress):
            manifest = _read_manifest(root) or _build_text(root, progress)
    label = tokenizer_label(tokenizer)
    folder = root / "tokens" / f"{label}-{manifest['text_sha256'][:12]}"
    corpus = _load_tokens(folder, split, manifest)
    if corpus is None:
        with _lock(root, progress):
            corpus = _load_tokens(folder, split, manifest)
            if corpus is None:
                _tokenize(root, folder, tokenizer, label, manifest, progress)
                corpus = _load_tokens(folder, split, manifest)
    assert corpus is not None
    return corpus


def windows(corpus: Corpus, length: int, *, seed: int = 0) -> Iterator[np.ndarray]:
    """Non-overlapping windows of ``length`` token ids, in an order drawn from ``seed``.

    A window lies inside one document whenever the document has ``length`` tokens or more
    (its last ``len % length`` tokens are left out); documents shorter than ``length`` are
    concatenated, in corpus order, and cut into windows of their own.
    """
    if length < 1:
        raise MechvizError(f"A corpus window must hold at least one token, not {length}.")
    ids = corpus.ids
    if len(corpus.starts) == 0:
        return
    ends = np.append(corpus.starts[1:], len(ids)).astype(np.int64)
    counts = (ends - corpus.starts) // length
    long_docs = counts > 0
    offsets = [
        np.arange(s, s + n * length, length, dtype=np.int64)
        for s, n in zip(corpus.starts[long_docs], counts[long_docs])
    ]
    inside = np.concatenate(offsets) if offsets else np.zeros(0, dtype=np.int64)
    short = [ids[s:e] for s, e in zip(corpus.starts[~long_docs], ends[~long_docs])]
    packed = np.concatenate(short) if short else np.zeros(0, dtype=np.int32)
    packed.flags.writeable = False
    order = np.random.default_rng(seed).permutation(len(inside) + len(packed) // length)
    for k in order:
        if k < len(inside):
            yield ids[inside[k] : inside[k] + length]
        else:
            j = (k - len(inside)) * length
            yield packed[j : j + length]


def bytes_of(tokenizer: Any, ids: np.ndarray | Sequence[int]) -> int:
    """UTF-8 bytes of the text ``ids`` decode to; a 2-D array is decoded row by row."""
    arr = np.asarray(ids)
    if arr.size == 0:
        return 0
    rows = [row.tolist() for row in arr.reshape(-1, arr.shape[-1])]
    kwargs = {"skip_special_tokens": False, "clean_up_tokenization_spaces": False}
    if hasattr(tokenizer, "batch_decode"):
        texts = tokenizer.batch_decode(rows, **kwargs)
    else:
        texts = [tokenizer.decode(row, **kwargs) for row in rows]
    return sum(len(text.encode("utf-8")) for text in texts)


def tokenizer_label(tokenizer: Any) -> str:
    """A file-name-safe name for a tokenizer: its name, vocabulary size and a hash of its rules.

    The hash covers the whole fast tokenizer (vocabulary, merges, normalizer), else the vocabulary.
    """
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    if Path(name).is_dir():  # a local folder: its path says nothing about the tokenizer
        name = Path(name).name
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        rules = backend.to_str()
    elif hasattr(tokenizer, "get_vocab"):
        rules = json.dumps(sorted(tokenizer.get_vocab().items()))
    else:
        rules = json.dumps(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
    digest = hashlib.sha256(rules.encode("utf-8")).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:60] or "tokenizer"
    return f"{slug}-v{len(tokenizer)}-{digest}"


# --- fetching ----------------------------------------------------------------------------


class _Gone(Exception):
    """The pinned file is no longer on the mirror (HTTP 404)."""


def _fetch(url: str, dest: Path, name: str, progress: bool) -> None:
    """Download ``url`` to ``dest`` with a timeout, reporting progress on stderr."""
    host = urllib.parse.urlsplit(url).netloc or url
    request = urllib.request.Request(url, headers={"User-Agent": "mechviz"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            if progress:
                _say(f"Fetching the training text {name} ({_mb(total)} MB) from {host}...")
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    _say(f"  {_mb(done)}/{_mb(total)} MB", end="\r")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise _Gone() from None
        raise _unreachable(name, host, f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _unreachable(name, host, str(reason)) from None
    if progress:
        _say(f"  {_mb(done)} MB in {time.monotonic() - started:.1f} s")


def _unreachable(name: str, host: str, reason: str) -> MechvizError:
    return MechvizError(
        f"Cannot fetch the training text {name} from {host}: {reason.rstrip('.')}; check the "
        "network connection (or the proxy in $https_proxy) and run the command again."
    )


def _download(pin: Pin, folder: Path, progress: bool) -> tuple[Path, str, str]:
    """The package file, its URL and its SHA-256: the pinned one, else apt's current one."""
    folder.mkdir(parents=True, exist_ok=True)
    url, expected = pin.url, pin.sha256
    try:
        dest = folder / Path(urllib.parse.urlsplit(url).path).name
        _fetch_checked(url, dest, expected, pin.name, progress)
    except _Gone:
        url, expected = _apt_uri(pin)
        dest = folder / urllib.parse.unquote(Path(urllib.parse.urlsplit(url).path).name)
        try:
            _fetch_checked(url, dest, expected, pin.name, progress)
        except _Gone:
            raise MechvizError(
                f"Cannot fetch the training text {pin.name}: {url} is gone from the mirror "
                "(HTTP 404); run `apt-get update` and run the command again."
            ) from None
    return dest, url, expected


def _fetch_checked(url: str, dest: Path, expected: str, name: str, progress: bool) -> None:
    """Download to ``dest`` unless it is there already; a file with another hash is refused."""
    if dest.is_file() and _sha256_file(dest) == expected:
        return
    tmp = dest.with_name(f".{dest.name}.part")
    try:
        _fetch(url, tmp, name, progress)
        actual = _sha256_file(tmp)
        if actual != expected:
            raise MechvizError(
                f"The downloaded package {name} has SHA-256 {actual[:16]}..., not the expected "
                f"{expected[:16]}..., so it was not used; run the command again, and if this "
                "persists the mirror serves a different file."
            )
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)


def _apt_uri(pin: Pin) -> tuple[str, str]:
    """The URL and SHA-256 of the package's current version, as apt knows them."""
    gone = f"Cannot fetch the training text {pin.name}: the pinned file {pin.url} is gone (404)"
    apt = shutil.which("apt-get")
    if apt is None:
        raise MechvizError(
            f"{gone} and there is no apt-get here to find its current version; "
            "a newer mechviz pins the current file."
        )
    try:
        result = subprocess.run(
            [apt, "download", "--print-uris", pin.name],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MechvizError(f"{gone} and apt-get failed ({exc}).") from None
    match = re.match(r"'(\S+)' \S+ \d+ SHA256:([0-9a-f]{64})", result.stdout.strip())
    if result.returncode != 0 or match is None:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise MechvizError(
            f"{gone} and `apt-get download {pin.name}` cannot find it ({last}); "
            "run `apt-get update` and run the command again."
        )
    return match.group(1), match.group(2)


# --- unpacking -------------------------------------------------------------------------


def _deb_files(deb: Path, wanted: Any) -> dict[str, bytes]:
    """The regular files of a .deb's data archive whose paths ``wanted(path)`` accepts."""
    members = _ar_members(deb)
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    control = next((n for n in members if n.startswith("control.tar")), None)
    if data_name is None or control is None:
        raise MechvizError(f"{deb} is not a Debian package (no data.tar member); delete it.")
    files = _tar_files(deb, data_name, members[data_name], wanted)
    fields = _tar_files(deb, control, members[control], lambda p: p == "control")
    files["DEBIAN/control"] = fields.get("control", b"")
    return files


def _ar_members(deb: Path) -> dict[str, bytes]:
    blob = deb.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise MechvizError(f"{deb} is not a Debian package (not an ar archive); delete it.")
    members, pos = {}, 8
    while pos + 60 <= len(blob):
        header = blob[pos : pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip() or 0)
        members[name] = blob[pos + 60 : pos + 60 + size]
        pos += 60 + size + size % 2  # members are padded to an even offset
    return members


def _tar_files(deb: Path, name: str, blob: bytes, wanted: Any) -> dict[str, bytes]:
    if name.endswith(".zst"):
        blob = _unzstd(deb, name, blob)
    files = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
        for member in tar:
            path = member.name.removeprefix("./")
            if member.isfile() and wanted(path):
                handle = tar.extractfile(member)
                assert handle is not None
                files[path] = handle.read()
    return files


def _unzstd(deb: Path, name: str, blob: bytes) -> bytes:
    """A zstd member: with the ``zstandard`` module if installed, else with ``dpkg-deb``."""
    try:
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(blob)
    except ImportError:
        pass
    dpkg = shutil.which("dpkg-deb")
    if dpkg is None:
        raise MechvizError(
            f"{deb.name} is compressed with zstd; install the `zstandard` package "
            "(pip install zstandard) to unpack it."
        )
    option = "--ctrl-tarfile" if name.startswith("control") else "--fsys-tarfile"
    return subprocess.run([dpkg, option, str(deb)], capture_output=True, check=True).stdout


def _licence(text: str) -> str:
    """A short licence name: the DEP-5 ``License:`` of ``Files: *``, else the first one named."""
    if text.startswith("Format:"):
        for para in re.split(r"\n\s*\n", text):
            field = re.search(r"^License:[ \t]*(\S[^\n]*)", para, re.M)
            if field and (re.search(r"^Files:\s*\*\s*$", para, re.M) or "Files:" not in text):
                return field.group(1).strip()
    names = [
        (r"PYTHON SOFTWARE FOUNDATION LICENSE|\bPython License\b|\bPSF License", "PSF-2.0"),
        (r"Apache License,? Version 2\.0", "Apache-2.0"),
        (r"GNU (LESSER|Lesser) (GENERAL|General) (PUBLIC|Public) (LICENSE|License)", "LGPL"),
        (r"GNU (GENERAL|General) (PUBLIC|Public) (LICENSE|License)", "GPL"),
        (r"GNU Free Documentation License", "GFDL"),
        (r"Creative Commons Attribution-ShareAlike", "CC-BY-SA"),
        (r"Permission is hereby granted, free of charge", "MIT"),
        (r"\bBSD (copyright|licen[cs]e)|Redistribution and use in source and binary", "BSD"),
        (r"[Pp]ublic [Dd]omain", "public-domain"),
    ]
    found = [(m.start(), licence) for rx, licence in names if (m := re.search(rx, text))]
    if not found:
        return "unknown"
    licence = min(found)[1]
    if licence == "BSD":
        licence = "BSD-3-Clause" if "Neither the name" in text else "BSD-2-Clause"
    return licence


# --- documents -------------------------------------------------------------------------


def _documents(pin: Pin, files: dict[str, bytes]) -> list[tuple[str, str]]:
    """(name, text) of each document in the package's text folder."""
    docs = []
    for path in sorted(files):
        if not path.startswith(pin.folder):
            continue
        rel = path[len(pin.folder) :]
        text = _clean(files[path].decode("utf-8", "replace"))
        if pin.kind == "rst" and rel.endswith(".rst.txt"):
            docs.append((rel.removesuffix(".txt"), text))
        elif pin.kind == "fortune" and "/" not in rel and "." not in rel:
            if rel not in SKIP_FORTUNES:
                docs.extend(_fortune_blocks(rel, text))
    return [(name, text) for name, text in docs if len(text.splitlines()) >= 2]


def _clean(text: str) -> str:
    text = text.replace("\r\n", "\n")
    text = re.sub(r".\x08", "", text)  # overstrike (underline, bold): keep the last character
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", text).strip() + "\n"


def _fortune_blocks(file: str, text: str) -> list[tuple[str, str]]:
    """A fortune file's quotes, in order, gathered into blocks of about FORTUNE_BLOCK bytes."""
    quotes = [q.strip("\n") for q in re.split(r"^%$", text, flags=re.M) if q.strip()]
    blocks: list[list[str]] = [[]]
    size = 0
    for quote in quotes:
        if size >= FORTUNE_BLOCK:
            blocks.append([])
            size = 0
        blocks[-1].append(quote)
        size += len(quote.encode("utf-8")) + 2
    if len(blocks) > 1 and size < FORTUNE_BLOCK // 4:  # a short tail joins the block before
        blocks[-2].extend(blocks.pop())
    return [(f"{file}#{i}", "\n\n".join(b) + "\n") for i, b in enumerate(blocks) if b]


def _splits(source: str, docs: list[tuple[str, str]]) -> list[str]:
    """Mark "eval" the documents first in sha256-of-name order, up to EVAL_SHARE of the bytes."""
    sizes = [len(text.encode("utf-8")) for _, text in docs]
    order = sorted(
        range(len(docs)), key=lambda i: hashlib.sha256(f"{source}/{docs[i][0]}".encode()).digest()
    )
    splits, held = ["train"] * len(docs), 0
    for i in order:
        if held >= EVAL_SHARE * sum(sizes):
            break
        splits[i] = "eval"
        held += sizes[i]
    return splits


def _build_text(root: Path, progress: bool) -> dict[str, Any]:
    """Fetch and unpack every pinned package; write documents.json, then manifest.json."""
    rows, sources = [], []
    for pin in PINS:
        deb, url, sha = _download(pin, root / "debs", progress)
        copyright_path = f"usr/share/doc/{pin.name}/copyright"
        wanted = (pin.folder, copyright_path)
        files = _deb_files(deb, lambda p, w=wanted: p.startswith(w[0]) or p == w[1])
        version = _control_field(files["DEBIAN/control"], "Version") or pin.version
        docs = _documents(pin, files)
        if not docs:
            raise MechvizError(f"The package {pin.name} ({deb}) holds no text under {pin.folder}.")
        licence = _licence(files.get(copyright_path, b"").decode("utf-8", "replace"))
        n_bytes = sum(len(text.encode("utf-8")) for _, text in docs)
        sources.append(Source(pin.name, version, licence, url, sha, len(docs), n_bytes))
        rows += [[pin.name, n, s, t] for (n, t), s in zip(docs, _splits(pin.name, docs))]
    text_sha = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()
    _write_json(root / "documents.json", {"format": FORMAT, "documents": rows})
    manifest = {"format": FORMAT, "text_sha256": text_sha, "sources": [asdict(s) for s in sources]}
    _write_json(root / "manifest.json", manifest)
    return manifest


def _read_manifest(root: Path) -> dict[str, Any] | None:
    manifest = _read_json(root / "manifest.json")
    if manifest is None or manifest.get("format") != FORMAT:
        return None
    return manifest if (root / "documents.json").is_file() else None


def _control_field(control: bytes, field: str) -> str | None:
    match = re.search(rf"^{field}:\s*(\S+)", control.decode("utf-8", "replace"), re.M)
    return match.group(1) if match else None


# --- tokens ----------------------------------------------------------------------------


def _tokenize(
    root: Path, folder: Path, tokenizer: Any, label: str, manifest: dict, progress: bool
) -> None:
    """Tokenize both splits; write their ids and starts, then meta.json."""
    data = _read_json(root / "documents.json")
    if data is None or data.get("format") != FORMAT:
        raise MechvizError(f"The corpus cache {root} is damaged; delete the folder and run again.")
    meta: dict[str, Any] = {"tokenizer": label, "text_sha256": manifest["text_sha256"]}
    for split in ("train", "eval"):
        texts = [text for _, _, s, text in data["documents"] if s == split]
        pieces = _encode(tokenizer, texts, f"Tokenizing the {split} text for {label}", progress)
        lengths = np.array([len(p) for p in pieces], dtype=np.int64)
        starts = np.cumsum(lengths) - lengths
        ids = np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32)
        folder.mkdir(parents=True, exist_ok=True)
        _write_npy(folder / f"{split}.ids.npy", ids)
        _write_npy(folder / f"{split}.starts.npy", starts)
        meta[split] = {
            "n_bytes": sum(len(t.encode("utf-8")) for t in texts),
            "documents": len(texts),
            "tokens": int(len(ids)),
            "digest": _digest(split, starts, ids),
        }
    _write_json(folder / "meta.json", meta)


def _encode(tokenizer: Any, texts: list[str], what: str, progress: bool) -> list[list[int]]:
    """Token ids of each text, no special tokens; fast tokenizers get batches."""
    out: list[list[int]] = []
    total = sum(len(t) for t in texts) or 1
    done, batch = 0, 32
    with _quiet_lengths():
        for i in range(0, len(texts), batch):
            chunk = texts[i : i + batch]
            if getattr(tokenizer, "is_fast", False):
                out += tokenizer(chunk, add_special_tokens=False)["input_ids"]
            else:
                out += [_encode_one(tokenizer, text) for text in chunk]
            done += sum(len(t) for t in chunk)
            if progress:
                _say(f"{what}: {100 * done // total}%", end="\r")
    if progress:
        _say(f"{what}: {sum(len(p) for p in out):,} tokens")
    return out


def _encode_one(tokenizer: Any, text: str) -> list[int]:
    """Slow tokenizers: drop whatever the tokenizer adds to the empty string (a BOS)."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    added = list(tokenizer("", add_special_tokens=False)["input_ids"])
    return ids[len(added) :] if added and ids[: len(added)] == added else ids


def _load_tokens(folder: Path, split: str, manifest: dict) -> Corpus | None:
    meta = _read_json(folder / "meta.json")
    if meta is None or meta.get("text_sha256") != manifest["text_sha256"] or split not in meta:
        return None
    try:
        ids = np.load(folder / f"{split}.ids.npy")
        starts = np.load(folder / f"{split}.starts.npy")
    except (OSError, ValueError):
        return None
    if len(ids) != meta[split]["tokens"] or len(starts) != meta[split]["documents"]:
        return None
    ids.flags.writeable = False
    starts.flags.writeable = False
    return Corpus(
        split=split,
        ids=ids,
        starts=starts,
        n_bytes=int(meta[split]["n_bytes"]),
        sources=tuple(Source(**s) for s in manifest["sources"]),
        tokenizer=meta["tokenizer"],
        digest=meta[split]["digest"],
    )


def _digest(split: str, starts: np.ndarray, ids: np.ndarray) -> str:
    h = hashlib.sha256(split.encode())
    h.update(np.ascontiguousarray(starts, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(ids, dtype="<i4").tobytes())
    return h.hexdigest()


# --- small helpers -----------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_lengths() -> Iterator[None]:
    """Silence transformers' "sequence longer than the model's maximum" warning: we only count."""
    logger = logging.getLogger("transformers.tokenization_utils_base")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _lock(root: Path, progress: bool) -> Iterator[None]:
    """One process at a time builds the corpus caches."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(root / ".lock"))
    try:
        root.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if progress:
                _say("Waiting for another mechviz process that is preparing the corpus...")
            lock.acquire()
    except OSError as exc:
        raise MechvizError(
            f"Cannot write the corpus cache {root}: {exc.strerror or exc}; "
            "set MECHVIZ_CACHE to a writable folder."
        ) from None
    try:
        yield
    finally:
        lock.release()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=False)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append ".npy" to the name
            np.save(f, array)

    atomic_write(path, write)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


def _say(message: str, end: str = "\n") -> None:
    if end == "\r" and not sys.stderr.isatty():
        return  # in-place updates only on a terminal; logs get the final line
    print(message.ljust(60), end=end, file=sys.stderr, flush=True)


def source_names(meta: dict[str, Any]) -> list[str]:
    """The corpus sources a learned readout's ``meta`` names, each ``"name version (licence)"``."""
    sources = (meta.get("corpus") or {}).get("sources") or []
    return [f"{s['name']} {s['version']} ({s['licence']})" for s in sources]
