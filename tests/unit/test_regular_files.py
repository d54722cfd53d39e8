"""Only a regular file of bounded size is read: a FIFO, a device or a directory is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from strangler.regular_files import UnreadableFile, read_regular_file


def refusal(path: Path, max_bytes: int = 1024) -> str:
    with pytest.raises(UnreadableFile) as caught:
        read_regular_file(path, max_bytes)
    assert caught.value.path == str(path)
    return caught.value.reason


def test_a_regular_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 1024)
    assert read_regular_file(path, 1024) == b"x" * 1024


def test_a_symlink_to_a_regular_file_is_followed(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"routes")
    (tmp_path / "link").symlink_to("target")
    assert read_regular_file(tmp_path / "link", 1024) == b"routes"


def test_a_fifo_is_refused_at_once_without_a_writer(tmp_path: Path) -> None:
    # Before: open() waited for a writer forever.
    path = tmp_path / "fifo"
    os.mkfifo(path)
    assert refusal(path) == "not a regular file (a FIFO)"


def test_a_symlink_to_dev_zero_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "zero"
    path.symlink_to("/dev/zero")
    assert refusal(path) == "not a regular file (a character device)"


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert refusal(tmp_path) == "not a regular file (a directory)"


def test_a_file_over_the_cap_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    with open(path, "wb") as f:
        f.truncate(1 << 40)  # sparse: a terabyte that costs no disk
    assert refusal(path, 1 << 20) == f"larger than {1 << 20} bytes ({1 << 40} bytes)"


def test_a_missing_or_forbidden_file_says_so(tmp_path: Path) -> None:
    assert refusal(tmp_path / "missing") == "No such file or directory"
    if os.geteuid() != 0:  # root reads anything
        forbidden = tmp_path / "forbidden"
        forbidden.write_text("x")
        forbidden.chmod(0)
        assert refusal(forbidden) == "Permission denied"
