"""The routes.yaml shown to readers loads: the README's and docs/routes.md's examples, and
the alternatives commented in the example routes.yaml (AWS discovery, Secrets Manager).
docs/facts.md lists the whole fact vocabulary, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from strangler.facts import Fact
from strangler.routes import AMAZONMQ, parse_routes

ROOT = Path(__file__).parents[2]


def yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("doc", ["README.md", "docs/routes.md"])
def test_every_complete_routes_example_in_the_docs_loads(doc: str) -> None:
    complete = [b for b in yaml_blocks(ROOT / doc) if b.startswith("brokers:")]
    assert complete
    for block in complete:
        table = parse_routes(block, doc)
        assert not table.warnings, table.warnings


def test_the_readme_example_uses_aws_discovery_and_secrets_manager() -> None:
    (block,) = [b for b in yaml_blocks(ROOT / "README.md") if b.startswith("brokers:")]
    amazonmq = parse_routes(block, "README.md").brokers[AMAZONMQ]
    assert amazonmq.aws is not None and amazonmq.aws.broker_id and amazonmq.aws.region
    assert amazonmq.credentials is not None and amazonmq.credentials.secret_id


def test_the_aws_alternatives_commented_in_routes_yaml_load() -> None:
    text = (ROOT / "routes.yaml").read_text()
    aws = re.search(r"^    #   (broker_id: .*)\n    #   (region: .*)\n", text, re.M)
    secret = re.search(r"^    #   (credentials: \{secret_id: .*\})\n", text, re.M)
    assert aws is not None and secret is not None
    block = (
        "brokers:\n  legacy: {url: stomp://h:1}\n  amazonmq:\n"
        f"    {aws.group(1)}\n    {aws.group(2)}\n    {secret.group(1)}\n"
    )
    amazonmq = parse_routes(block, "routes.yaml").brokers[AMAZONMQ]
    assert amazonmq.aws is not None and amazonmq.aws.broker_id
    assert amazonmq.credentials is not None and amazonmq.credentials.secret_id


def test_every_doc_the_readme_links_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if "://" not in link:
            assert (ROOT / link).exists(), link


def documented_facts() -> dict[str, str]:
    """docs/facts.md's fact tables: each fact's row (``| `name` | when | fields |``)."""
    rows = re.findall(r"^\| `([a-z_]+)` \|(.*)$", (ROOT / "docs" / "facts.md").read_text(), re.M)
    rows = [(name, row) for name, row in rows if row.count("|") == 2]  # three columns
    facts = dict(rows)
    assert len(facts) == len(rows), "a fact documented twice"
    return facts


def test_docs_facts_md_lists_every_fact_of_the_vocabulary_and_no_other() -> None:
    assert set(documented_facts()) == {str(fact) for fact in Fact}
