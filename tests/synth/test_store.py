"""The run store under misuse: readers write nothing, one writer at a time, foreign databases refused,
full disks named, malformed rows one line, secrets never stored (issue 18 items 5, 7, 8, 9)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from mechsynth.synth.cli import main
from mechsynth.synth.loop import write_report
from mechsynth.synth.store import DB_NAME, RunStore, RunStoreError, candidate_key, load_run, open_run

PROGRAM = "out = map(add(1), tokens)"


def _make_run(path: Path, *, accepted: bool = True, **args: object) -> Path:
    with RunStore(path) as store:
        store.begin({"target": "t", "options": {"seed": 0, **args}})
        store.add_candidate(candidate_key(PROGRAM, "cfg"), program=PROGRAM, correspondence={},
                            source="test", status="accepted" if accepted else "failed",
                            scores={"check": {"iia": 1.0}})
    return path


def _snapshot(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


def one_line_error(rc: int, err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert all(n in lines[0] for n in needles), lines[0]


# --- item 5: show reads, never writes ----------------------------------------------------------------

def test_loading_a_run_writes_nothing(tmp_path: Path) -> None:
    run_dir = _make_run(tmp_path / "r")
    before = _snapshot(run_dir)
    run = load_run(run_dir)
    assert run.n_scored == 1 and len(run.candidates()) == 1
    assert _snapshot(run_dir) == before  # no probe file, no journal, no lock, no new table


def test_a_read_only_store_refuses_writes(tmp_path: Path) -> None:
    run_dir = _make_run(tmp_path / "r")
    with open_run(run_dir, read_only=True) as store:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._db.execute("DELETE FROM candidates")


def test_a_run_in_a_directory_we_cannot_write_is_read_as_immutable(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = _make_run(tmp_path / "r")
    # root ignores chmod; pretend
    monkeypatch.setattr("mechsynth.synth.store.os.access", lambda *a, **k: False)
    assert load_run(run_dir).n_scored == 1


def test_show_refuses_a_foreign_database_and_leaves_it_alone(tmp_path: Path, capsys) -> None:
    foreign = tmp_path / "f"
    foreign.mkdir()
    with sqlite3.connect(foreign / DB_NAME) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    before = _snapshot(foreign)
    rc = main(["show", str(foreign)])
    one_line_error(rc, capsys.readouterr().err, "not a mechsynth run database", "users")
    with pytest.raises(RunStoreError, match="not a mechsynth run database"):
        RunStore(foreign)  # what `run --out` opens
    rc = main(["run", "tracr:reverse", "--out", str(foreign), "--no-llm"])
    one_line_error(rc, capsys.readouterr().err, "not a mechsynth run database")
    assert _snapshot(foreign) == before
    with sqlite3.connect(foreign / DB_NAME) as db:
        assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["users"]


# --- item 7: one writer at a time ----------------------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path, capsys) -> None:
    first = RunStore(tmp_path / "r")
    try:
        with pytest.raises(RunStoreError, match=r"is in use by pid \d+ on .* since"):
            RunStore(tmp_path / "r")
        first.begin({"target": "t", "options": {"seed": 0}})
        rc = main(["run", "tracr:reverse", "--out", str(tmp_path / "r"), "--no-llm"])
        one_line_error(rc, capsys.readouterr().err, "is in use by pid")
        assert load_run(tmp_path / "r").n_candidates == 0  # a reader is not blocked
    finally:
        first.close()
    RunStore(tmp_path / "r").close()  # released on close


# --- item 9: a full disk and malformed rows ----------------------------------------------------------------

def test_a_full_disk_is_named_and_keeps_what_was_committed(tmp_path: Path) -> None:
    run_dir = _make_run(tmp_path / "r", accepted=False)
    with RunStore(run_dir) as store:
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute(f"PRAGMA max_page_count = {pages}")  # the database cannot grow: a full disk
        with pytest.raises(RunStoreError, match="disk full") as info:
            store.add_candidate(candidate_key("big", "cfg"), program="x" * 200_000, correspondence={},
                                source="test", status="failed")
        assert "corrupt" not in str(info.value)
    assert load_run(run_dir).n_candidates == 1


@pytest.mark.parametrize("column, value", [("correspondence", "{not json"), ("meta", "[1, 2]"),
                                           ("correspondence", "[]")])
def test_malformed_json_in_a_row_is_one_line_in_show(tmp_path: Path, capsys, column: str, value: str) -> None:
    run_dir = _make_run(tmp_path / "r")
    with sqlite3.connect(run_dir / DB_NAME) as db:
        db.execute(f"UPDATE candidates SET {column} = ?", (value,))
    rc = main(["show", str(run_dir), "--json"])
    one_line_error(rc, capsys.readouterr().err, "corrupt run database", column)


def test_malformed_json_in_meta_is_one_line(tmp_path: Path, capsys) -> None:
    run_dir = _make_run(tmp_path / "r")
    with sqlite3.connect(run_dir / DB_NAME) as db:
        db.execute("UPDATE meta SET value = '{oops' WHERE key = 'args'")
    rc = main(["show", str(run_dir)])
    one_line_error(rc, capsys.readouterr().err, "corrupt run database", "'args'")


# --- item 8: secrets -------------------------------------------------------------------------------------

def test_credentials_and_the_api_key_never_reach_the_store_or_report(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    key = "test-key-SECRETVALUE-123"
    monkeypatch.setenv("ANTHROPIC_API_KEY", key)
    run_dir = tmp_path / "r"
    with RunStore(run_dir) as store:
        store.begin({"target": "t", "options": {"llm_base_url": "http://u:PASSWORD@127.0.0.1:9/x"}})
        store.add_candidate(candidate_key("echo", "cfg"), program=f"the gateway said: {key}",
                            correspondence={}, source="llm", status="rejected",
                            reason=f"bad reply from http://u:PASSWORD@127.0.0.1:9/x with {key}",
                            meta={"headers": {"x-api-key": key}})
        store.set_meta(**{"usage:llm": [{"endpoint": "http://u:PASSWORD@127.0.0.1:9/x"}]})
        write_report(store)
    stored = (run_dir / DB_NAME).read_bytes() + (run_dir / "report.md").read_bytes()
    assert b"PASSWORD" not in stored and key.encode() not in stored
    assert b"http://***@127.0.0.1:9/x" in stored
    with RunStore(run_dir) as store:  # resuming with the same (secret-bearing) arguments still matches
        assert store.begin({"target": "t", "options": {"llm_base_url": "http://u:PASSWORD@127.0.0.1:9/x"}})


def test_a_stored_expression_bomb_is_one_line_in_show(tmp_path: Path, capsys) -> None:
    # issue 18 item 1: `show` on a run holding `9**9**9` hung.
    run_dir = _make_run(tmp_path / "r")
    with sqlite3.connect(run_dir / DB_NAME) as db:
        db.execute("UPDATE candidates SET program = 'out = map(x + 9**9**9, tokens)'")
    rc = main(["show", str(run_dir), "--json"])
    one_line_error(rc, capsys.readouterr().err, "does not parse", "exponent 387420489 is too large")


def test_a_full_disk_while_writing_the_report_says_so(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def full(*_a: object, **_k: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with RunStore(_make_run(tmp_path / "r")) as store:
        monkeypatch.setattr(Path, "write_text", full)
        with pytest.raises(RunStoreError, match="disk full"):
            write_report(store)
        monkeypatch.undo()
