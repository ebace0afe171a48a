"""The generator's benign noise (``TrafficModel.noisy()``): off by default (clean traces are
unchanged), and when on, normal 404s, 401s with their retry, client churn and release bursts
exist, all labelled normal, the attack episodes untouched."""

from __future__ import annotations

import dataclasses

import pytest

from registry_core.errors import InvalidArgumentError
from registry_core.ml.traces import Trace, TrafficModel, generate

DAY = 86400.0
_OFF = dict(
    probe_share=0.0,
    typo_per_session=0.0,
    ci_auth_fail_per_run=0.0,
    ci_fresh_runner_share=0.0,
    dev_churn_per_day=0.0,
    release_bursts_per_week=0.0,
)


def _noisy(**kw: object) -> TrafficModel:
    # higher rates than noisy()'s so that a 2-day trace with few CI pipelines holds each kind
    return TrafficModel.noisy(
        projects=300, ci_auth_fail_per_run=0.3, release_bursts_per_week=7, **kw
    )


@pytest.fixture(scope="module")
def noisy() -> Trace:
    return generate(_noisy(), seed=3, days=2, clients=300)


@pytest.fixture(scope="module")
def clean() -> Trace:
    return generate(dataclasses.replace(TrafficModel(), projects=300), seed=3, days=2, clients=300)


def test_noise_off_leaves_the_clean_trace_unchanged(clean: Trace) -> None:
    off = dataclasses.replace(_noisy(), name="registry-v1", **_OFF)
    again = generate(off, seed=3, days=2, clients=300)
    assert again.sha256() == clean.sha256() and again.requests == clean.requests
    assert TrafficModel().probe_share == 0.0 and TrafficModel().release_bursts_per_week == 0.0


def test_noisy_is_deterministic_and_named(noisy: Trace) -> None:
    again = generate(_noisy(), seed=3, days=2, clients=300)
    assert again.sha256() == noisy.sha256()
    assert noisy.source.startswith("generated:registry-v1-noisy:seed=3")
    assert TrafficModel.noisy().name == "registry-v1-noisy"


def test_attack_episodes_are_those_of_the_clean_trace(noisy: Trace, clean: Trace) -> None:
    assert noisy.episodes == clean.episodes
    labelled = [r for r in noisy.requests if r.label]
    assert labelled == [r for r in clean.requests if r.label]


def test_benign_404s_are_names_the_index_does_not_host(noisy: Trace, clean: Trace) -> None:
    assert not [r for r in clean.requests if not r.label and r.status >= 400]
    nf = [r for r in noisy.requests if not r.label and r.status == 404]
    assert len(nf) > 50
    assert all(r.kind == "page" and r.project not in noisy.catalogue.projects for r in nf)
    assert {noisy.clients[r.client] for r in nf} <= {"dev", "ci"}
    # probing clients also install: a 404 comes with successful downloads of the same client
    ok = {r.client for r in noisy.requests if r.status == 200 and r.kind == "file"}
    assert sum(r.client in ok for r in nf) > 0.8 * len(nf)


def test_benign_401s_come_from_ci_and_the_job_is_retried(noisy: Trace) -> None:
    bad = [r for r in noisy.requests if not r.label and r.status == 401]
    assert len(bad) >= 3
    assert {noisy.clients[r.client] for r in bad} == {"ci"}
    later_ok = {
        r.client for r in noisy.requests if r.status == 200 and r.kind == "file" and not r.label
    }
    retried = [r for r in bad if r.client in later_ok]
    assert len(retried) > 0.9 * len(bad)  # the re-run with a good token downloads (in the trace)


def test_clients_churn(noisy: Trace, clean: Trace) -> None:
    def ids(trace: Trace, kind: str) -> int:
        return len(
            {r.client for r in trace.requests if not r.label and trace.clients[r.client] == kind}
        )

    # fresh CI runners every job, developer machines under new ids
    assert ids(noisy, "ci") > 3 * ids(clean, "ci")
    assert ids(noisy, "dev") > ids(clean, "dev")


def test_release_bursts_are_many_fresh_ci_clients_on_a_top_project(noisy: Trace) -> None:
    top = set(list(noisy.catalogue.projects)[:30])
    by_project: dict[str, set[str]] = {}
    for r in noisy.requests:
        if (
            not r.label
            and r.kind == "file"
            and r.project in top
            and noisy.clients[r.client] == "ci"
        ):
            by_project.setdefault(r.project, set()).add(r.client)
    assert max(len(v) for v in by_project.values()) >= 300  # TrafficModel.burst_clients low


@pytest.mark.parametrize(
    "change",
    [
        {"probe_share": 1.5},
        {"ci_auth_fail_per_run": -0.1},
        {"probe_per_install": 100.0},
        {"burst_clients": (10, 5)},
        {"burst_clients": (0, 5)},
    ],
)
def test_bad_noise_parameters_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        generate(TrafficModel.noisy(**change), seed=0, days=1, clients=10)
