"""Writing into directories a user's files may have tampered with: links are removed, never
written through; names read from files stay names; printed names cannot forge lines."""

import os

import pytest

from tfcontrast import _files


def test_open_new_replaces_a_planted_link_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "metrics.json.partial"
    link.symlink_to(victim)
    with _files.open_new(str(link)) as f:
        f.write("ours")
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_text() == "ours"


def test_remove_entry_removes_links_files_and_trees_but_not_link_targets(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep").write_text("x")
    link = tmp_path / "index.partial"
    link.symlink_to(target, target_is_directory=True)
    _files.remove_entry(str(link))
    assert not os.path.lexists(link) and (target / "keep").exists()
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    _files.remove_entry(str(tree))
    assert not tree.exists()
    _files.remove_entry(str(tmp_path / "nothing"))  # nothing there is fine


def test_remove_links_empties_a_run_directory_of_links_only(tmp_path):
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    (run / "history.csv").write_text("epoch,loss\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "index").symlink_to(outside, target_is_directory=True)
    (run / "plots" / "projection.png").symlink_to(tmp_path / "outside" / "file")
    removed = _files.remove_links(str(run))
    assert sorted(removed) == sorted([str(run / "index"), str(run / "plots" / "projection.png")])
    assert (run / "history.csv").exists() and outside.exists()


@pytest.mark.parametrize("name", ["digits_vicreg", "my-model.v2", "photos_simclr"])
def test_plain_names_pass(name):
    assert _files.check_name(name, "--name") == name


@pytest.mark.parametrize(
    "name", ["", ".", "..", "x/../../../../elsewhere", "/abs", "a\nb", "tab\there"]
)
def test_names_that_leave_the_directory_are_refused(name):
    with pytest.raises(ValueError, match="--name .* is not a plain name"):
        _files.check_name(name, "--name")


def test_printable_escapes_what_would_forge_a_line():
    assert _files.printable("photos/cat.jpg") == "photos/cat.jpg"
    forged = _files.printable("a.jpg\n  1.0000  forged.jpg")
    assert "\n" not in forged and forged == "a.jpg\\n  1.0000  forged.jpg"
