"""Which inputs ``--source`` arguments name: folders filtered by extension, globs, explicit files, cameras."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trtdet.io.sources import collect_sources, iter_frames


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    for name in ("a/img.jpg", "a/notes.txt", "b/img.jpg", "b/deep/x.PNG", "b/clip.mp4", "README.md", ".hidden.jpg",
                 ".cache/c.jpg", "top.webp"):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def _names(sources, root: Path) -> list[str]:
    return [Path(s.name).relative_to(root).as_posix() for s in sources]


def test_a_folder_gives_its_image_and_video_files_and_counts_the_rest(tree):
    found = collect_sources([str(tree)])
    assert _names(found.sources, tree) == ["a/img.jpg", "b/clip.mp4", "b/deep/x.PNG", "b/img.jpg", "top.webp"]
    assert [s.kind for s in found.sources] == ["image", "video", "image", "image", "image"]
    assert sorted(p.name for p in found.skipped) == ["README.md", "notes.txt"]
    assert [s.relative_name for s in found.sources][:2] == ["a/img.jpg", "b/clip.mp4"]


def test_a_file_named_explicitly_is_an_input_whatever_its_extension(tree):
    found = collect_sources([str(tree / "a" / "notes.txt"), str(tree / "missing.jpg")])
    assert [s.name for s in found.sources] == [str(tree / "a" / "notes.txt"), str(tree / "missing.jpg")]
    assert found.skipped == [] and found.sources[0].relative_name == "notes.txt"
    frames = list(iter_frames(found.sources))
    assert frames[0].error.endswith("notes.txt: not a readable image (unknown format or corrupt data)")
    assert frames[1].error.endswith("missing.jpg: file not found")


def test_globs_expand_like_the_glob_module_and_filter_like_folders(tree):
    pattern = str(tree / "*" / "*.jpg")
    found = collect_sources([pattern])
    assert [s.name for s in found.sources] == sorted(glob.glob(pattern))
    recursive = collect_sources([str(tree / "b" / "**")])  # ** matches b/ itself and its folders
    assert _names(recursive.sources, tree) == ["b/clip.mp4", "b/deep/x.PNG", "b/img.jpg"]
    everything = collect_sources([str(tree / "a" / "*")])
    assert _names(everything.sources, tree) == ["a/img.jpg"] and [p.name for p in everything.skipped] == ["notes.txt"]
    assert found.sources[0].relative_name == "a/img.jpg"  # below the pattern's fixed part


def test_a_glob_matching_nothing_is_one_bad_input(tree):
    pattern = str(tree / "*.tiff")
    (frame,) = list(iter_frames(collect_sources([pattern]).sources))
    assert frame.error == f"{pattern}: no file matches this pattern"


def test_cameras_streams_and_a_single_argument(tree):
    found = collect_sources(["0", 3, "rtsp://host/stream", tree / "top.webp"])
    assert [(s.name, s.kind) for s in found.sources] == [
        ("0", "camera"), ("3", "camera"), ("rtsp://host/stream", "stream"), (str(tree / "top.webp"), "image")
    ]
    assert collect_sources(str(tree / "top.webp")).sources[0].name == str(tree / "top.webp")


def test_failing_cameras_and_streams_print_only_trtdets_lines(photos):
    """OpenCV's and FFmpeg's own warnings are silenced; trtdet's one line per input stays."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    done = subprocess.run(
        [sys.executable, "-m", "trtdet.cli.main", "run", "-m", "yolo", "-s", "7", "-s", "rtsp://127.0.0.1:9/none",
         "-s", str(photos["chelsea"]), "-q"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: 7: cannot open camera",
        "error: rtsp://127.0.0.1:9/none: cannot open stream",
        "2 input(s) failed",
    ]


def test_a_recursive_glob_does_not_follow_directory_links_round_a_loop(tmp_path):
    """A link pointing back up the tree made ``**`` yield 2 files 82 times; folders already left links alone."""
    for name in ("photos/a.jpg", "photos/sub/b.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "photos" / "sub" / "loop").symlink_to(tmp_path / "photos", target_is_directory=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "c.jpg").write_bytes(b"x")
    (tmp_path / "photos" / "away").symlink_to(outside, target_is_directory=True)
    assert len(glob.glob(str(tmp_path / "photos" / "**" / "*.*"), recursive=True)) > 2  # the glob module goes round
    expected = {"photos/**/*.*": ["photos/a.jpg", "photos/sub/b.png"], "photos/**": ["photos/a.jpg", "photos/sub/b.png"],
                "photos/*/*.png": ["photos/sub/b.png"], "photos/**/b.png": ["photos/sub/b.png"], "photos/*/*/*": []}
    for pattern, names in expected.items():
        found = collect_sources([str(tmp_path / pattern)])
        assert _names([s for s in found.sources if not s.problem], tmp_path) == names, pattern
    assert _names(collect_sources([str(tmp_path / "photos")]).sources, tmp_path) == ["photos/a.jpg", "photos/sub/b.png"]  # as a folder does
    linked_root = collect_sources([str(tmp_path / "photos" / "away" / "*.jpg")])  # a link written in the pattern is used
    assert [Path(s.name).name for s in linked_root.sources] == ["c.jpg"]


def test_globs_match_the_glob_module_where_no_link_is_involved(tree, monkeypatch):
    monkeypatch.chdir(tree)
    for pattern in ("**", "**/*.jpg", "*/*", "b/**/*.PNG", "*.webp", ".*", ".cache/*", "b/deep/x.PNG", "[ab]/img.jpg", "a/?mg.jpg"):
        reference = sorted(Path(m) for m in glob.glob(pattern, recursive=True) if os.path.isfile(m) and not Path(m).name.startswith("."))
        found = collect_sources([pattern])
        assert sorted([Path(s.name) for s in found.sources] + found.skipped) == reference, pattern
