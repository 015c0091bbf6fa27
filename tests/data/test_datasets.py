import torch

from optlab.data.schema import StdlibTextDataSpec, ZipfDataSpec
from optlab.data import build_dataset
from optlab.data.zipf import zipf_probabilities
from optlab.probes.embedding import bucket_masks


def test_zipf_unigram_frequencies_follow_the_law():
    data = build_dataset(ZipfDataSpec(vocab_size=50, exponent=1.2, bigram_prob=0.0), seed=0)
    counts = torch.bincount(data.sample(4000, 10).flatten(), minlength=50).float()
    expected = zipf_probabilities(50, 1.2) * counts.sum()
    assert ((counts[:10] - expected[:10]).abs() / expected[:10]).max() < 0.05


def test_zipf_bigram_structure_is_learnable_and_seeded():
    config = ZipfDataSpec(vocab_size=100, bigram_prob=1.0, bigram_branching=2)
    data = build_dataset(config, seed=3)
    windows = data.sample(64, 6)
    for previous, following in zip(windows[:, :-1].flatten(), windows[:, 1:].flatten()):
        assert following in data.successors[previous]
    assert torch.equal(build_dataset(config, seed=3).sample(64, 6), windows)
    assert not torch.equal(build_dataset(config, seed=4).sample(64, 6), windows)


def test_stdlib_text_ranks_and_shapes():
    data = build_dataset(StdlibTextDataSpec(vocab_size=1000), seed=0)
    counts = torch.bincount(torch.cat(list(data.streams.values())), minlength=1000)
    assert data.vocab_size == 1000 and (counts[:-1] >= counts[1:]).all(), "ids are frequency ranks"
    assert "the" in data.vocabulary[:10] and "<unk>" in data.vocabulary
    assert data.sample(5, 17).shape == (5, 17)
    assert int(data.sample(5, 17, split="val").max()) < 1000
    data_bytes = build_dataset(StdlibTextDataSpec(tokenizer="bytes"), seed=0)
    assert data_bytes.vocab_size == 256 and data_bytes.vocabulary[0] == " "


def test_frequency_buckets_split_5_45_50():
    masks = bucket_masks(torch.arange(1, 10_001))
    assert [int(m.sum()) for m in masks.values()] == [500, 4500, 5000]
    assert masks["frequent"][:500].all() and masks["rare"][5000:].all()
