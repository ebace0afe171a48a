"""``uv publish`` to our index over HTTPS with a token."""

from __future__ import annotations

import hashlib

from _packages import run, tool


def _publish(site, *paths, token, check=True):
    return run(
        [
            tool("uv"),
            "publish",
            "--publish-url",
            site.upload_url(),
            "--token",
            token,
            *map(str, paths),
        ],
        env=site.env(),
        check=check,
    )


def test_uv_publish(empty_site, releases):
    site = empty_site
    built = releases["alpha-1.0"]
    proc = _publish(site, built.wheel, built.sdist, token=site.token)
    assert site.token not in proc.stdout + proc.stderr
    rec = site.index.file(built.wheel.name)
    assert rec is not None
    assert rec.sha256 == hashlib.sha256(built.wheel.read_bytes()).hexdigest()
    assert site.index.file(built.sdist.name) is not None
    assert site.index.metadata(built.wheel.name)  # core metadata extracted for PEP 658


def test_uv_publish_bad_token(empty_site, releases):
    site = empty_site
    proc = _publish(site, releases["alpha-1.0"].wheel, token="rc-x-y", check=False)
    assert proc.returncode != 0
    assert "401" in proc.stdout + proc.stderr or "403" in proc.stdout + proc.stderr
    assert site.index.file(releases["alpha-1.0"].wheel.name) is None
