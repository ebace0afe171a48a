"""``registry-core keys generate | list | rotate | retire``, run in-process with ``main``: what
they print and store, passphrase sources, and their one-line errors (exit 2)."""

from __future__ import annotations

import json

import pytest

from registry_core.cli import main
from registry_core.signing import DEFAULT_PASSPHRASE_ENV, Keyring, keyring_dir

PASS = "cli passphrase"


@pytest.fixture(autouse=True)
def _passphrase_env(monkeypatch):
    monkeypatch.setenv(DEFAULT_PASSPHRASE_ENV, PASS)


def _error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"registry-core {command}: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def _ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.strip().splitlines()]


def test_generate_hybrid_by_default_and_single_algorithms(tmp_path, capsys):
    assert main(["keys", "generate", str(tmp_path), "--role", "root"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert [ln.split()[1:3] for ln in lines] == [["ed25519", "root"], ["ml-dsa-65", "root"]]
    assert main(["keys", "generate", str(tmp_path), "--role", "targets", "--hybrid"]) == 0
    capsys.readouterr()
    args = ["keys", "generate", str(tmp_path), "--role", "timestamp", "--algorithm", "ml-dsa-87"]
    assert main([*args, "--valid-days", "2"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.split()[1:3] == ["ml-dsa-87", "timestamp"]
    ring = Keyring(keyring_dir(tmp_path), passphrase=PASS)
    (ts,) = ring.keys("timestamp")
    assert ts.not_after is not None and (ts.not_after - ts.created).days == 2
    assert [k.key_id for k in ring.keys("root")] == _ids(out)
    ring.signer(ts.key_id).sign(b"x")
    for pem in keyring_dir(tmp_path).glob("*.pem"):
        assert b"ENCRYPTED PRIVATE KEY" in pem.read_bytes()


def test_passphrase_file_wins_and_env_absent_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(DEFAULT_PASSPHRASE_ENV)
    assert main(["keys", "generate", str(tmp_path), "--role", "root"]) == 2
    assert DEFAULT_PASSPHRASE_ENV in _error(capsys, "keys generate")
    secret = tmp_path / "pass.txt"
    secret.write_text("from file\n")
    args = ["keys", "generate", str(tmp_path), "--role", "root", "--passphrase-file", str(secret)]
    assert main(args) == 0
    ids = _ids(capsys.readouterr().out)
    Keyring(keyring_dir(tmp_path), passphrase="from file").signer(ids[1])
    secret.write_text("\n")
    assert main(args) == 2
    assert "empty" in _error(capsys, "keys generate")
    assert main([*args[:-1], str(tmp_path / "missing")]) == 2
    _error(capsys, "keys generate")


def test_list_table_and_json_hold_no_private_material(tmp_path, capsys):
    main(["keys", "generate", str(tmp_path), "--role", "snapshot"])
    ids = _ids(capsys.readouterr().out)
    assert main(["keys", "list", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == [
        "ID",
        "ALGORITHM",
        "ROLE",
        "STATUS",
        "CREATED",
        "NOT_AFTER",
        "PAIR",
    ]
    assert [row.split()[0] for row in table[1:]] == ids
    assert all(row.split()[3] == "active" for row in table[1:])
    assert main(["keys", "list", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert [d["keyid"] for d in doc] == ids and {d["status"] for d in doc} == {"active"}
    assert "PRIVATE" not in out and PASS not in out
    assert main(["keys", "list", str(tmp_path), "--role", "root"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1  # header only
    assert main(["keys", "list", str(tmp_path / "nothing-here")]) == 0


def test_rotate_then_retire(tmp_path, capsys):
    main(["keys", "generate", str(tmp_path), "--role", "root", "--pq", "ml-dsa-44"])
    old = _ids(capsys.readouterr().out)
    assert main(["keys", "rotate", str(tmp_path), "--role", "root"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    new = [ln.split()[0] for ln in out[:2]]
    assert [ln.split()[1] for ln in out[:2]] == ["ed25519", "ml-dsa-44"]
    assert "2 previous root keys stay active" in out[2]
    for key_id in old:
        assert main(["keys", "retire", str(tmp_path), key_id[:12]]) == 0
        assert capsys.readouterr().out.startswith(f"retired {key_id}")
    ring = Keyring(keyring_dir(tmp_path))
    assert [k.key_id for k in ring.keys("root")] == new
    main(["keys", "list", str(tmp_path), "--all"])
    rows = capsys.readouterr().out.splitlines()[1:]
    assert sorted(r.split()[3] for r in rows) == ["active", "active", "retired", "retired"]
    assert not any((keyring_dir(tmp_path) / f"{k}.pem").exists() for k in old)


@pytest.mark.parametrize(
    ("args", "command", "needle"),
    [
        (["keys", "retire", "{d}", "0" * 64], "keys retire", "no key"),
        (["keys", "generate", "{d}", "--role", "a b"], "keys generate", "role"),
        (["keys", "rotate", "{d}", "--role", "../x"], "keys rotate", "role"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, capsys, args, command, needle):
    assert main([a.replace("{d}", str(tmp_path)) for a in args]) == 2
    assert needle in _error(capsys, command)


def test_usage_errors_exit_2(tmp_path, capsys):
    d = str(tmp_path)
    for args in (
        ["keys", "generate", d],  # no --role
        ["keys", "generate", d, "--role", "r", "--algorithm", "rsa"],
        ["keys", "generate", d, "--role", "r", "--algorithm", "ed25519", "--hybrid"],
        ["keys", "generate", d, "--role", "r", "--valid-days", "0"],
        ["keys"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "error" in err[0], err
    assert not keyring_dir(tmp_path).exists()


def test_corrupt_keyring_is_a_one_line_error(tmp_path, capsys):
    directory = keyring_dir(tmp_path)
    directory.mkdir(parents=True)
    (directory / "keyring.json").write_text("{")
    assert main(["keys", "list", str(tmp_path)]) == 2
    assert "corrupt keyring" in _error(capsys, "keys list")
