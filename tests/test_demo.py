"""``brokerhooks demo --no-serve`` plays the journey and says how it went."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port


@pytest.mark.slow
def test_demo_plays_the_journey_and_exits_zero(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("BROKERHOOKS_")
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "brokerhooks",
            "demo",
            "--no-serve",
            "--pause",
            "0",
            "--port",
            str(free_port()),
            "--simulator-port",
            str(free_port()),
            "--graph-port",
            str(free_port()),
            "--folder",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "journey succeeded" in result.stdout
    assert "stage: 5. Conditionally Approved → 6. Approved" in result.stdout
    assert "event noteCreated" in result.stdout
    assert "won: False → True" in result.stdout
    assert "run stage-task         todo_task          done" in result.stdout
    assert "calendar_event     done (updated)" in result.stdout
    # Microsoft 365 as a source: a client's mail and the task ticked off
    # each become a note, whose noteCreated mails the broker (2 more mails).
    assert "run client-mail-note   salestrekker_note  done" in result.stdout
    assert "event taskCompleted" in result.stdout
    assert "run task-done-note     salestrekker_note  done" in result.stdout
    assert (
        "in Microsoft 365: 1 task(s), 4 mail(s), 1 calendar event(s)" in result.stdout
    )
    # What the rules made comes back, and is known for theirs: the notes they
    # write, and the mails to the broker's watched inbox (sent after it is).
    assert "caused by rule documents-note (salestrekker_note)" in result.stdout
    mails_back = (
        "event messageCreated         done             caused by rule note-mail"
    )
    assert result.stdout.count(mails_back) == 2
