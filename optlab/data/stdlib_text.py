"""English text that ships with Python: the documentation topics in `pydoc_data.topics`.

Tokenised to lower-case words and punctuation (top `vocab_size - 1` words plus `<unk>`) or to bytes.
Token ids are assigned by frequency rank over the whole corpus (id 0 = most frequent), so the
embedding probes can bucket rows by rank. The last `val_fraction` of the stream is held out.
"""

from __future__ import annotations

import functools
import re
from collections import Counter

import torch

from optlab.data.dataset import TokenDataset

UNKNOWN = "<unk>"
WORD = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")


def corpus_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def word_tokens(text: str, vocab_size: int) -> tuple[list[int], list[str]]:
    """Ids by frequency rank; words outside the top `vocab_size - 1` become <unk>."""
    words = WORD.findall(text.lower())
    kept = {word for word, _ in Counter(words).most_common(vocab_size - 1)}
    words = [word if word in kept else UNKNOWN for word in words]
    vocabulary = [word for word, _ in Counter(words).most_common()]
    index = {word: i for i, word in enumerate(vocabulary)}
    return [index[word] for word in words], vocabulary


def byte_tokens(text: str) -> tuple[list[int], list[str]]:
    """Byte ids re-numbered by frequency rank (bytes that never occur rank last)."""
    data = text.encode("utf-8")
    counts = Counter(data)
    order = sorted(range(256), key=lambda byte: (-counts.get(byte, 0), byte))
    index = {byte: rank for rank, byte in enumerate(order)}
    return [index[byte] for byte in data], [byte_string(byte) for byte in order]


def byte_string(byte: int) -> str:
    """How a byte token is shown: itself when printable or a newline, else \\xNN."""
    return chr(byte) if 32 <= byte < 127 or byte == 10 else f"\\x{byte:02x}"


def byte_strings(text: str) -> list[str]:
    return [byte_string(byte) for byte in text.encode("utf-8")]


@functools.lru_cache(maxsize=4)
def tokenized(tokenizer: str, vocab_size: int) -> tuple[torch.Tensor, tuple[str, ...]]:
    """The whole corpus as token ids, and the vocabulary; computed once per process (a sweep worker runs
    many trials on the same text)."""
    text = corpus_text()
    ids, vocabulary = byte_tokens(text) if tokenizer == "bytes" else word_tokens(text, vocab_size)
    return torch.tensor(ids, dtype=torch.long), tuple(vocabulary)


class StdlibText(TokenDataset):
    def __init__(self, seed: int, tokenizer: str = "words", vocab_size: int = 4096, val_fraction: float = 0.1):
        super().__init__(seed)
        self.tokenizer = tokenizer
        stream, vocabulary = tokenized(tokenizer, vocab_size)
        self.vocabulary = list(vocabulary)
        self.vocab_size = len(self.vocabulary)
        split_at = int(len(stream) * (1 - val_fraction))
        self.streams = {"train": stream[:split_at], "val": stream[split_at:]}

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` under this vocabulary (unknown words and bytes: <unk>, or dropped for bytes)."""
        index = {token: i for i, token in enumerate(self.vocabulary)}
        if self.tokenizer == "bytes":
            return [index[token] for token in byte_strings(text) if token in index]
        return [index.get(word, index.get(UNKNOWN, 0)) for word in WORD.findall(text.lower())]

    def decode(self, ids: list[int]) -> str:
        tokens = [self.vocabulary[i] for i in ids]
        if self.tokenizer == "bytes":
            return "".join(tokens)
        text = " ".join(tokens)
        return re.sub(r" ([^\sa-z\d<])", r"\1", text)  # no space before punctuation

    def sample(self, batch_size: int, length: int, split: str = "train") -> torch.Tensor:
        stream = self.streams["train" if split == "probe" else split]  # probes read the training text
        starts = torch.randint(len(stream) - length, (batch_size,), generator=self.generators[split])
        return stream[starts.unsqueeze(1) + torch.arange(length)]
