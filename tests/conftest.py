import pytest

from optlab.config import validate_config


@pytest.fixture
def make_config(tmp_path):
    """Build a validated config from nested dicts, writing runs under tmp_path."""

    def make(**sections):
        data = {"name": sections.pop("name", "test/run"), "output": {"runs_dir": str(tmp_path / "runs")}}
        data.update(sections)
        return validate_config(data, source="test")

    return make
