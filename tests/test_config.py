"""The configuration file: unknown keys are errors naming the nearest known key, relative paths
are relative to the file's folder, the start-up log names absolute paths, README documents
every accepted key."""
from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path

import pytest

from pyrec.config import ConfigError, known_keys, load_config
from pyrec.serve import Service

README = Path(__file__).resolve().parent.parent / "README.md"

TYPOS = [
    # (file text, the message's end)
    ("[server]\napi_prot = 8081\n", "unknown key 'server.api_prot'; did you mean 'api_port'?"),
    ("[server]\nrecord_rot = \"r\"\n",
     "unknown key 'server.record_rot'; did you mean 'record_root'?"),
    ("[server]\ndatabse = \"t.db\"\n", "unknown key 'server.databse'; did you mean 'database'?"),
    ("[sever]\napi_port = 1\n", "unknown key 'sever'; did you mean 'server'?"),
    ("[limits]\nidle_timeout = 5\n",
     "unknown key 'limits.idle_timeout'; did you mean 'idle_timeout_ms'?"),
    ("[vhosts.default]\nhost = [\"*\"]\n",
     "unknown key 'vhosts.default.host'; did you mean 'hosts'?"),
    ("[vhosts.default.apps.app]\nfile_pth = \"x.mp4\"\n",
     "unknown key 'vhosts.default.apps.app.file_pth'; did you mean 'file_path'?"),
    ("[vhosts.default.apps.app]\ntrack_names = { vidoe = \"v\" }\n",
     "unknown key 'vhosts.default.apps.app.track_names.vidoe'; did you mean 'video'?"),
    ("[vhosts.default.apps.app]\nauto_record = [{ stream = \"a*\", intervall = 1000 }]\n",
     "unknown key 'vhosts.default.apps.app.auto_record[0].intervall'; did you mean 'interval'?"),
    ("[vhosts.default.apps.app]\nauto_record = [{ stream = \"a*\", segmentation_rule = "
     "\"continuity\" }]\n", "did you mean 'segmentationRule'?"),
    ("[server]\nzzzzzz = 1\n", "unknown key 'server.zzzzzz'; known keys: access_token, api_port,"),
]


@pytest.mark.parametrize("text,message", TYPOS, ids=[t[1].split(";")[0] for t in TYPOS])
def test_unknown_key_names_the_nearest(tmp_path, text, message):
    path = tmp_path / "pyrec.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: "), e.value
    assert message in str(e.value)


def test_every_documented_key_loads(tmp_path):
    """The configuration shown in README.md is valid as written."""
    path = tmp_path / "pyrec.toml"
    path.write_text(readme_toml())
    cfg = load_config(path)
    assert cfg.api_port == 8081


def readme_toml() -> str:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert blocks, "README.md has no TOML configuration block"
    return "\n".join(blocks)


def test_readme_documents_every_accepted_key():
    data = tomllib.loads(readme_toml())
    documented = set()

    def walk(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                name = f"{where}.{k}" if where else k
                documented.add(name)
                walk(v, name)
        elif isinstance(node, list):
            for v in node:
                walk(v, f"{where}[]")

    walk(data, "")
    # README's example names its vhost "default" and its app "app"
    generic = {re.sub(r"^vhosts\.default\b", "vhosts.<vhost>",
                      re.sub(r"^vhosts\.default\.apps\.app\b", "vhosts.<vhost>.apps.<app>", d))
               for d in documented}
    missing = [k for k in known_keys() if k not in generic]
    assert not missing, f"README.md's configuration does not show: {missing}"


def test_relative_paths_resolve_against_the_files_folder(tmp_path, monkeypatch):
    conf = tmp_path / "etc" / "pyrec"
    conf.mkdir(parents=True)
    (conf / "pyrec.toml").write_text(
        '[server]\nrecord_root = "rec"\ndatabase = "state/tasks.sqlite3"\n'
        '[vhosts.default.apps.app]\nroot = "../media"\n'
        '[vhosts.default.apps.other]\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config("../etc/pyrec/pyrec.toml")
    assert cfg.source == conf / "pyrec.toml"
    assert cfg.record_root == conf / "rec"
    assert cfg.database == conf / "state" / "tasks.sqlite3"
    assert cfg.vhosts["default"].apps["app"].root == tmp_path / "etc" / "media"
    assert cfg.vhosts["default"].apps["other"].root == conf / "rec"  # the record root
    # A path given as a flag is relative to the working directory, as on any command line.
    cfg = load_config(conf / "pyrec.toml", record_root="flag-root", db_path="t.db")
    assert cfg.record_root == elsewhere / "flag-root"
    assert cfg.database == elsewhere / "t.db"
    assert cfg.vhosts["default"].apps["other"].root == elsewhere / "flag-root"
    # No file, or a file without record_root: the default ./records of the working directory.
    assert load_config(None).record_root == elsewhere / "records"
    (conf / "bare.toml").write_text("[server]\napi_port = 9000\n")
    assert load_config(conf / "bare.toml").record_root == elsewhere / "records"


def test_startup_log_names_absolute_paths(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyrec.toml").write_text('[vhosts.default.apps.app]\nroot = "media"\n')
    cfg = load_config("pyrec.toml", host="127.0.0.1", api_port=0, rtmp_port=0,
                      access_token="u:p", record_root="rec")
    with caplog.at_level(logging.INFO, logger="pyrec"):
        svc = Service(cfg).start()
        svc.stop()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert f"configuration: {tmp_path / 'pyrec.toml'}" in text
    assert f"records under {tmp_path / 'rec'}, tasks in {tmp_path / 'rec/.pyrec/tasks.sqlite3'}" \
        in text
    assert f"app default/app: files under {tmp_path / 'media'}" in text
