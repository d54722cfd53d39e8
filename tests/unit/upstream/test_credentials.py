"""Credentials name where secrets live; resolve_credentials reads them, never leaking them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strangler.routes import Credentials
from strangler.upstream import CredentialsError, resolve_credentials

SECRET = "s3cr3t-Pa55!"


def env_credentials() -> Credentials:
    return Credentials(username_env="MQ_USER", password_env="MQ_PASSWORD")


def test_resolve_reads_both_env_vars() -> None:
    environ = {"MQ_USER": "alice", "MQ_PASSWORD": SECRET}
    assert resolve_credentials(env_credentials(), environ) == ("alice", SECRET)


def test_resolve_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQ_USER", "bob")
    monkeypatch.setenv("MQ_PASSWORD", SECRET)
    assert resolve_credentials(env_credentials()) == ("bob", SECRET)


def test_missing_env_var_is_named_in_the_error() -> None:
    with pytest.raises(CredentialsError) as caught:
        resolve_credentials(env_credentials(), {"MQ_USER": "alice"})
    assert str(caught.value) == "environment variable MQ_PASSWORD is not set"
    assert caught.value.reason == str(caught.value)


def test_empty_env_var_is_an_error_naming_it() -> None:
    with pytest.raises(CredentialsError, match="environment variable MQ_USER is empty"):
        resolve_credentials(env_credentials(), {"MQ_USER": "", "MQ_PASSWORD": SECRET})


def test_env_error_never_contains_the_other_secret() -> None:
    with pytest.raises(CredentialsError) as caught:
        resolve_credentials(env_credentials(), {"MQ_USER": "", "MQ_PASSWORD": SECRET})
    assert SECRET not in str(caught.value)


def test_resolve_reads_a_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "amazonmq.yaml"
    path.write_text(f"username: alice\npassword: '{SECRET}'\n")
    assert resolve_credentials(Credentials(file=str(path)), {}) == ("alice", SECRET)


def test_resolve_reads_a_json_file_and_ignores_extra_keys(tmp_path: Path) -> None:
    path = tmp_path / "amazonmq.json"
    path.write_text(json.dumps({"username": "alice", "password": SECRET, "engine": "activemq"}))
    assert resolve_credentials(Credentials(file=str(path)), {}) == ("alice", SECRET)


def test_file_is_read_at_resolve_time_so_rotation_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "amazonmq.yaml"
    credentials = Credentials(file=str(path))
    path.write_text("username: a\npassword: one\n")
    assert resolve_credentials(credentials, {}) == ("a", "one")
    path.write_text("username: a\npassword: two\n")
    assert resolve_credentials(credentials, {}) == ("a", "two")


def test_missing_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(CredentialsError) as caught:
        resolve_credentials(Credentials(file=str(path)), {})
    assert str(path) in str(caught.value)
    assert "No such file" in str(caught.value)


def test_file_missing_password_names_the_key_not_the_username(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"username: {SECRET}\n")
    with pytest.raises(CredentialsError) as caught:
        resolve_credentials(Credentials(file=str(path)), {})
    assert "missing 'password'" in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (f"username: alice\npassword: {SECRET}: extra\n", "not a valid YAML/JSON mapping (line 2)"),
        (f'{{"username": "alice", "password": "{SECRET}"', "not a valid YAML/JSON mapping"),
        (f"- {SECRET}\n", "expected a mapping with 'username' and 'password'"),
        ("username: alice\npassword: 12345678\n", "'password' must be a string"),
        ("username: alice\npassword: ''\n", "'password' is empty"),
    ],
    ids=["yaml-error", "truncated-json", "not-a-mapping", "number-password", "empty-password"],
)
def test_bad_file_errors_never_quote_the_file(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(CredentialsError) as caught:
        resolve_credentials(Credentials(file=str(path)), {})
    message = str(caught.value)
    assert reason in message
    assert str(path) in message
    assert SECRET not in message
    assert "12345678" not in message
    # A chained YAML error would print the offending line, i.e. the secret, in tracebacks.
    error = caught.value
    assert error.__cause__ is None
    assert error.__context__ is None or error.__suppress_context__


def test_non_utf8_file_error_does_not_quote_bytes(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"username: a\npassword: \xff\xfe\n")
    with pytest.raises(CredentialsError) as caught:
        resolve_credentials(Credentials(file=str(path)), {})
    assert "not valid UTF-8" in str(caught.value)
    assert "0xff" not in str(caught.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"username_env": "U"},
        {"password_env": "P"},
        {"file": "f", "username_env": "U", "password_env": "P"},
        {"file": "f", "password_env": "P"},
    ],
)
def test_credentials_must_be_exactly_one_form(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        Credentials(**kwargs)


def test_credentials_repr_holds_only_names(tmp_path: Path) -> None:
    assert SECRET not in repr(env_credentials())
    assert "MQ_PASSWORD" in repr(env_credentials())
