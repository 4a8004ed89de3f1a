"""`respd /path/to/respd.conf`: Redis's config-file syntax for every parameter respd has.

The server runs as the `respd` command (python -m server) in a child process; bad files
must stop it at start-up with Redis's report naming the line.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import DEADLINE

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def start(*args: str) -> tuple[subprocess.Popen[str], int]:
    """`python -m server ARGS`, once it has printed the port it listens on."""
    proc = subprocess.Popen([sys.executable, "-m", "server", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"listening on redis://127\.0\.0\.1:(\d+)", line)
        if found:
            return proc, int(found.group(1))
    proc.wait(DEADLINE)
    pytest.fail(f"respd did not start (exit {proc.returncode})")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(DEADLINE)
        if proc.stdout is not None:
            proc.stdout.close()


def fails(*args: str) -> tuple[int, str]:
    """Run `python -m server ARGS` that must not start: its exit code and error output."""
    done = subprocess.run([sys.executable, "-m", "server", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=DEADLINE, check=False)
    return done.returncode, done.stderr


CONFIG = """\
# respd configuration, in redis.conf's syntax
port 0
bind 127.0.0.1
   # indented comments and blank lines are skipped

requirepass "pass word"
maxclients 123
timeout 300
tcp-keepalive 60
client-output-buffer-limit normal 1mb 512kb 10
client-output-buffer-limit pubsub 64mb 16mb 90
proto-max-bulk-len 2mb
notify-keyspace-events KEA
protected-mode no
include {include}
user alice on >wonderland +@pubsub &news.*
"""


def test_a_config_file_sets_every_kind_of_parameter(tmp_path: Path,
                                                     processes: list) -> None:
    extra = tmp_path / "extra.conf"
    extra.write_text("loglevel verbose\nshutdown-timeout 3\n")
    conf = tmp_path / "respd.conf"
    conf.write_text(CONFIG.format(include=extra))
    proc, port = start(str(conf))
    processes.append(proc)
    r = redis.Redis(port=port, password="pass word")
    config = r.config_get("*")
    assert {k: config[k] for k in ("maxclients", "timeout", "tcp-keepalive", "loglevel",
                                   "proto-max-bulk-len", "notify-keyspace-events",
                                   "protected-mode", "shutdown-timeout", "requirepass")} == {
        "maxclients": "123", "timeout": "300", "tcp-keepalive": "60", "loglevel": "verbose",
        "proto-max-bulk-len": "2097152", "notify-keyspace-events": "AKE",
        "protected-mode": "no", "shutdown-timeout": "3", "requirepass": "pass word"}
    assert config["client-output-buffer-limit"] == (
        "normal 1048576 524288 10 slave 268435456 67108864 60 pubsub 67108864 16777216 90")
    assert r.info("server")["config_file"] == str(conf)
    with pytest.raises(redis.ResponseError, match=f"Rewriting config file: .*{conf}"):
        r.config_rewrite()
    # The user declared in the file can log in, and publish only where it may.
    alice = redis.Redis(port=port, username="alice", password="wonderland")
    assert alice.publish("news.today", "hi") == 0
    with pytest.raises(redis.exceptions.NoPermissionError):
        alice.publish("gossip", "psst")
    alice.close()
    r.close()


def test_options_after_the_file_override_it(tmp_path: Path, processes: list) -> None:
    conf = tmp_path / "respd.conf"
    conf.write_text("port 0\nbind 127.0.0.1\nmaxclients 50\nhz 20\n")
    proc, port = start(str(conf), "--maxclients", "60")
    processes.append(proc)
    r = redis.Redis(port=port)
    assert r.config_get("maxclients") == {"maxclients": "60"}
    assert r.config_get("hz") == {"hz": "20"}
    r.close()


@pytest.mark.parametrize(("lines", "number", "shown", "reason"), [
    ("port 0\n# fine\n\nfoo bar\n", 4, "foo bar", "Bad directive or wrong number of arguments"),
    ("maxclients abc\n", 1, "maxclients abc", "argument couldn't be parsed into an integer"),
    ("port 7000 7001\n", 1, "port 7000 7001", "wrong number of arguments"),
    ('requirepass "abc\n', 1, 'requirepass "abc', "Unbalanced quotes in configuration line"),
    ("client-output-buffer-limit pubsub 1 2\n", 1, "client-output-buffer-limit pubsub 1 2",
     "Wrong number of arguments in buffer limit configuration."),
    ("timeout -1\n", 1, "timeout -1", "argument must be between 0 and 2147483647 inclusive"),
    ("bind\n", 1, "bind", "Bad directive or wrong number of arguments"),
    ("user bob on +nosuchcommand\n", 1, "user bob on +nosuchcommand",
     "Error in user declaration '+nosuchcommand': Unknown command or category name in ACL"),
])
def test_a_bad_line_stops_the_start_and_is_named(tmp_path: Path, lines: str, number: int,
                                                 shown: str, reason: str) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(lines)
    code, output = fails(str(conf))
    assert code == 1
    assert output.splitlines()[-4:] == [
        f"*** FATAL CONFIG FILE ERROR (respd {_version()}) ***",
        f"Reading the configuration file, at line {number}",
        f">>> '{shown}'",
        reason,
    ]


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    code, output = fails(str(tmp_path / "nowhere.conf"))
    assert code == 1
    assert "can't open config file" in output
    assert "nowhere.conf" in output


def _version() -> str:
    from server.serve import VERSION

    return VERSION
