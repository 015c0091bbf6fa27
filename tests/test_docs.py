"""The science the verdicts quote lives in the repository: every citation `docs/science/<file>.md §N` in
the code, configs and docs names a file that exists and a section that file has, and every relative link
in the Markdown resolves."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCIENCE = REPO / "docs" / "science"
CITATION = re.compile(r"(?:docs/science/)?([a-z-]+)\.md[ ,]*§\s?(\d+(?:\.\d+)?)")
SOURCES = [*REPO.glob("optlab/**/*.py"), *REPO.glob("configs/**/*.yaml"), *REPO.glob("docs/**/*.md"),
           REPO / "README.md", *REPO.glob("scripts/*.py"), *REPO.glob("tests/**/*.py")]


def sections(name: str) -> set[str]:
    """The numbers of a science file's sections and subsections: `## 6. ...` → '6', `### 1.4 ...` → '1.4'."""
    text = (SCIENCE / f"{name}.md").read_text()
    return set(re.findall(r"^## (\d+)\.", text, flags=re.MULTILINE) + re.findall(r"^### (\d+\.\d+) ", text, flags=re.MULTILINE))


def test_every_science_citation_names_a_file_and_a_section_it_has():
    files = {path.stem for path in SCIENCE.glob("*.md")}
    broken = []
    for source in SOURCES:
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), start=1):
            for name, section in CITATION.findall(line):
                if name not in files and f"docs/science/{name}.md" in line:
                    broken.append(f"{source.relative_to(REPO)}:{number}: no docs/science/{name}.md")
                elif name in files and section not in sections(name):
                    broken.append(f"{source.relative_to(REPO)}:{number}: {name}.md has no §{section}")
    assert not broken, "\n".join(broken)


def test_relative_links_in_the_markdown_resolve():
    broken = []
    for source in [REPO / "README.md", *REPO.glob("docs/**/*.md")]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", source.read_text(encoding="utf-8")):
            if "://" not in target and not (source.parent / target).exists():
                broken.append(f"{source.relative_to(REPO)}: {target}")
    assert not broken, "\n".join(broken)
