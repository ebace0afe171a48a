"""A generator of registry traffic whose parameters come from published figures.

:func:`generate` builds a catalogue (projects, releases, files, dependents) and the requests of
developer machines, CI pipelines, mirrors, caching proxies, benign crawlers and maintainers over
``days`` days, plus labelled attack episodes. Every parameter of :class:`TrafficModel` says where
its value comes from (docs/ml.md, "Data", lists the sources); a value that is an assumption says
so. Deterministic for a seed: one ``random.Random(seed)``, no global state, fixed iteration order,
requests sorted by time (stable, so ties keep their generation order).

Time runs from 0.0 (day 0 is a Monday, 00:00 UTC). Client ids are opaque (``c`` and 10 hex
digits): a detector cannot read a client's type from its id; :attr:`Trace.clients` maps each id
to its type for tables and tests.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from dataclasses import asdict, dataclass, replace
from typing import Any

from ...errors import InvalidArgumentError
from ._catalogue import project_names, sdist_name, wheel_name
from ._record import Catalogue, Episode, Release, Request, Trace

__all__ = ["TrafficModel", "diurnal_profile", "generate"]

DAY = 86400.0
HOUR = 3600.0

# wheel platform tags of a binary project and their share of downloads (see TrafficModel)
_PLATFORMS = (
    ("manylinux_2_17_x86_64.manylinux2014_x86_64", 0.80),
    ("manylinux_2_17_aarch64.manylinux2014_aarch64", 0.06),
    ("macosx_11_0_arm64", 0.06),
    ("win_amd64", 0.08),
)


@dataclass(frozen=True)
class TrafficModel:
    """The parameters of the generator. Sources (full references in docs/ml.md, "Data"):

    Popularity (``popularity_s``, ``popularity_q``): downloads by project rank follow a
    Zipf-Mandelbrot law ``(rank + q) ** -s`` fitted (least squares on log downloads) to the PyPI
    BigQuery install counts of May 2024 binned by decade (543k projects; 2,058 projects with over
    1M installs took 94.9%; boto3 first with 1.39B): s=1.75, q=30 gives the bins' boundary ranks
    within 0.2 decades. The catalogue is the index's ``projects`` most downloaded projects.

    Releases (``release_rate_median``, ``release_rate_sigma``, ``release_rate_boost``): releases
    per project per month are log-normal (right-skewed releases per package: Bommarito &
    Bommarito 2019: 1,745,744 releases of 178,592 PyPI packages, about 9.8 per package, with a
    highly right-skewed distribution of releases per package). The median of one release a month
    and the boost of the most downloaded projects (boto3 and botocore release on most weekdays)
    are assumptions. ``bump_shares``: patch / minor / major shares of new versions, following
    semantic versioning's convention; the shares are an assumption.

    Upgrade lag (``upgrade_lag_median_days``, ``upgrade_lag_sigma``, ``never_upgrade_share``):
    the delay between a release and a developer machine that holds the project downloading it is
    log-normal. Technical-lag studies find most dependents lag behind (Kula et al. 2018: 81.5% of
    the 4,600 GitHub projects studied kept outdated dependencies; Zerouali et al. 2018 and Decan
    et al. 2018 on npm: technical lag is common). The median of a few days for machines
    that do upgrade, and the share that never does within the trace, are assumptions.

    CI (``ci_pipelines``, ``ci_runs_per_day``, ``ci_pinned_median``, ``ci_matrix``,
    ``ci_bump_lag_median_days``): pipelines install a pinned set on fresh runners (no cache), on
    weekdays mostly, several jobs of a matrix starting within a minute; a bot bumps the pins
    after a release (Dependabot's ``schedule.interval`` is daily, weekly or monthly; merging the
    bump adds its own delay). Sizes and rates: assumptions (Gaynor 2014 notes that CI servers
    installing the same package over and over inflate PyPI download counts; we know of no
    published rate per pipeline).

    Diurnal and weekly cycles (``work_hour_mean``, ``work_hour_sd``, ``work_share``,
    ``weekend_activity``, ``timezones``): human-driven activity concentrates in local working
    hours on weekdays; the working-hours curve, the weekend dip and the time-zone mix are
    assumptions (no published hourly profile of a package index that we know of).

    Mirrors and proxies (``mirrors``, ``mirror_poll_s``, ``proxies``, ``proxy_projects``,
    ``proxy_lag_median_s``, ``proxy_revalidate_s``): bandersnatch-style mirrors poll the index's
    changes and fetch every file of each new release; caching proxies fetch new releases of the
    projects their users need soon after upload and revalidate pages. Poll periods and counts:
    assumptions (bandersnatch's documentation says to run ``bandersnatch mirror`` regularly;
    deployments run it from cron).

    Platform mix (``sdist_share``, wheel platforms): most downloads are wheels for Linux x86_64
    (what PyPI's BigQuery ``details.system`` and ``file.type`` fields let one measure; the
    shares here are assumptions). File sizes (``size_median``, ``size_sigma``): log-normal,
    right-skewed (Bommarito & Bommarito 2019); the median is an assumption.

    ``tenants``: the share of developer machines and CI pipelines in each tenant (mirrors,
    proxies, crawlers and attackers use "default"); an assumption, there for per-tenant
    forecasts.

    ``shape="static"`` (see :meth:`static_zipf`): independent requests over a fixed set of files
    with Zipf popularity (Breslau et al. 1999: proxy traces follow Zipf-like laws, the exponent
    varying from trace to trace, below 1; ``static_alpha`` 0.8), no releases: the shape where a
    learned eviction policy has nothing release-driven to learn.

    Benign noise (all off by default, on in :meth:`noisy`): the clean model's normal clients
    never get a 404 or a 401 and all exist from the start, which flatters any detector that
    reads "a 404" or "a new client" as an attack. ``probe_share`` / ``probe_per_install``: the
    share of developer machines and CI pipelines whose pip also asks this index for names it
    does not host, and the mean number of such 404s per install: pip's ``--extra-index-url``
    queries every index for every requirement (pip's documentation warns that it gives no
    priority between indexes; Birsan 2021, "Dependency Confusion", rests on that), so a private
    index sees 404s for public names all day; the shares are assumptions. ``typo_per_session``:
    a developer mistypes a name (a 404), an assumption. ``ci_auth_fail_per_run``: a CI run whose
    token has expired or is mistyped gets 401s on each of its jobs (1-3 attempts, pip and CI
    retries), then is re-run with a good token minutes later; an assumption.
    ``ci_fresh_runner_share``: the share of pipelines on hosted runners, a fresh machine (a new
    client id) for every job (GitHub-hosted runners are a fresh VM per job, per GitHub's
    documentation); the share is an assumption. ``dev_churn_per_day``: a developer machine shows
    up under a new id (a new laptop, a container, a new address), an assumption.
    ``release_bursts_per_week`` / ``burst_clients``: a release of one of the 30 most downloaded
    projects pulled within about an hour by hundreds to thousands of fresh CI runners (Gaynor
    2014 on CI inflating downloads); sizes and rates are assumptions.
    """

    name: str = "registry-v1"
    shape: str = "release"
    projects: int = 3000
    popularity_s: float = 1.75
    popularity_q: float = 30.0
    release_rate_median: float = 1.0  # per project per month
    release_rate_sigma: float = 1.2
    release_rate_boost: float = 20.0  # times the median for the top-ranked project
    bump_shares: tuple[float, float, float] = (0.70, 0.25, 0.05)
    binary_share: float = 0.2  # projects that ship platform wheels
    sdist_share: float = 0.06
    size_median: float = 150_000.0
    size_sigma: float = 1.6
    developers: int = 2500
    dev_projects_mean: float = 10.0
    dev_active_weekday: float = 0.55
    dev_sessions_mean: float = 1.5
    dev_new_install: float = 0.3  # chance a session installs a project not held yet
    dev_reinstall: float = 0.3  # chance a session reinstalls a held version (fresh venv)
    upgrade_lag_median_days: float = 3.0
    upgrade_lag_sigma: float = 1.3
    never_upgrade_share: float = 0.5
    ci_pipelines: int = 60
    ci_runs_per_day: float = 1.0
    ci_pinned_median: float = 15.0
    ci_matrix: int = 4
    ci_bump_lag_median_days: float = 2.0
    ci_weekend_activity: float = 0.2
    mirrors: int = 2
    mirror_poll_s: float = 1800.0
    proxies: int = 4
    proxy_projects: int = 300
    proxy_lag_median_s: float = 3600.0
    proxy_revalidate_s: float = 300.0
    crawlers: int = 2
    crawler_interval_s: float = 90.0
    work_hour_mean: float = 13.5
    work_hour_sd: float = 2.5
    work_share: float = 0.85
    weekend_activity: float = 0.3
    timezones: tuple[tuple[float, float], ...] = (
        (-8.0, 0.17),
        (-5.0, 0.20),
        (0.0, 0.10),
        (1.0, 0.22),
        (2.0, 0.06),
        (5.5, 0.12),
        (8.0, 0.13),
    )
    tenants: tuple[tuple[str, float], ...] = (("default", 0.6), ("acme", 0.25), ("globex", 0.15))
    static_alpha: float = 0.8
    static_rate_per_s: float = 0.25
    attacks_per_week: float = 1.0  # episodes of each kind per 7 days
    # benign noise (see the docstring; 0 = off, the clean model)
    probe_share: float = 0.0
    probe_per_install: float = 1.0
    typo_per_session: float = 0.0
    ci_auth_fail_per_run: float = 0.0
    ci_fresh_runner_share: float = 0.0
    dev_churn_per_day: float = 0.0
    release_bursts_per_week: float = 0.0
    burst_clients: tuple[int, int] = (300, 1500)

    @classmethod
    def noisy(cls, **changes: Any) -> TrafficModel:
        """The default model plus benign noise: 404s from index probing and typos, 401s from
        expired CI tokens, client churn (fresh CI runners, new developer machines) and benign
        release bursts, all labelled normal ("registry-v1-noisy"; the anomaly benchmark's
        second trace). The values are assumptions (see the class docstring)."""
        return replace(
            cls(
                name="registry-v1-noisy",
                probe_share=0.3,
                probe_per_install=1.0,
                typo_per_session=0.03,
                ci_auth_fail_per_run=0.03,
                ci_fresh_runner_share=0.5,
                dev_churn_per_day=0.02,
                release_bursts_per_week=2.0,
            ),
            **changes,
        )

    @classmethod
    def static_zipf(cls, **changes: Any) -> TrafficModel:
        """Independent Zipf-distributed requests over a fixed set of files (no releases)."""
        return replace(cls(name="static-zipf", shape="static"), **changes)

    def scaled(self, scale: float) -> TrafficModel:
        """The same model with ``scale`` times the clients (and requests)."""
        if not scale > 0:
            raise InvalidArgumentError(f"scale must be positive, not {scale!r}")
        return replace(
            self,
            developers=max(1, round(self.developers * scale)),
            ci_pipelines=max(1, round(self.ci_pipelines * scale)),
            proxies=max(1, round(self.proxies * scale)),
            crawlers=max(1, round(self.crawlers * scale)),
            static_rate_per_s=self.static_rate_per_s * scale,
        )

    def params(self) -> dict[str, Any]:
        """The parameters as plain JSON values (for model cards and tables)."""
        return asdict(self)


def _check(model: TrafficModel, days: float) -> None:
    if model.shape not in ("release", "static"):
        raise InvalidArgumentError(f"TrafficModel.shape must be release or static: {model.shape}")
    if not (0 < days <= 366):
        raise InvalidArgumentError(f"days must be in (0, 366], not {days!r}")
    if not (1 <= model.projects <= 200_000):
        raise InvalidArgumentError(f"projects must be in [1, 200000], not {model.projects}")
    if not (0 <= model.developers <= 1_000_000 and 0 <= model.ci_pipelines <= 100_000):
        raise InvalidArgumentError(
            "at most 1,000,000 developers and 100,000 CI pipelines (memory bound): use several "
            "traces or a smaller scale"
        )
    if abs(sum(model.bump_shares) - 1.0) > 1e-6 or min(model.bump_shares) < 0:
        raise InvalidArgumentError("bump_shares must be three non-negative shares summing to 1")
    if not model.tenants or min(w for _, w in model.tenants) < 0:
        raise InvalidArgumentError("tenants must be (name, weight) pairs")
    if not model.timezones or min(w for _, w in model.timezones) < 0:
        raise InvalidArgumentError("timezones must be (offset_hours, weight) pairs")
    for share in ("probe_share", "typo_per_session", "ci_auth_fail_per_run",
                  "ci_fresh_runner_share", "dev_churn_per_day"):  # fmt: skip
        v = getattr(model, share)
        if not 0.0 <= v <= 1.0:
            raise InvalidArgumentError(f"{share} must be in [0, 1], not {v!r}")
    if not (0.0 <= model.probe_per_install <= 50 and 0.0 <= model.release_bursts_per_week <= 50):
        raise InvalidArgumentError(
            "probe_per_install and release_bursts_per_week must be in [0, 50]"
        )
    lo, hi = model.burst_clients
    if not 1 <= lo <= hi <= 100_000:
        raise InvalidArgumentError(f"burst_clients must be 1 <= low <= high <= 100000: {lo, hi}")


def diurnal_profile(model: TrafficModel) -> list[float]:
    """The expected share of human-driven (developer) activity in each UTC hour of a weekday,
    from the model's working hours and time-zone mix (what the generator samples from)."""
    prof = [0.0] * 24
    total_w = sum(w for _, w in model.timezones)
    for offset, w in model.timezones:
        for h in range(24):
            # local hour of UTC hour h; working-hours normal plus a uniform background
            local = (h + 0.5 + offset) % 24
            d = min(abs(local - model.work_hour_mean), 24 - abs(local - model.work_hour_mean))
            dens = math.exp(-0.5 * (d / model.work_hour_sd) ** 2) / (
                model.work_hour_sd * math.sqrt(2 * math.pi)
            )
            prof[h] += w / total_w * (model.work_share * dens + (1 - model.work_share) / 24)
    s = sum(prof)
    return [p / s for p in prof]


class _Ids:
    """Opaque, stable client ids (from the seed, the type and the index)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.types: dict[str, str] = {}

    def new(self, kind: str, index: int) -> str:
        cid = (
            "c" + hashlib.blake2b(f"{self.seed}:{kind}:{index}".encode(), digest_size=5).hexdigest()
        )
        self.types[cid] = kind
        return cid


@dataclass
class _Project:
    name: str
    rank: int
    weight: float
    binary: bool
    base_size: float
    releases: list[Release]
    times: list[float]
    files_cum: list[int]  # files listed after 0, 1, ... releases


class _Gen:
    def __init__(self, model: TrafficModel, seed: int, days: float) -> None:
        self.m = model
        self.rng = random.Random(seed)
        self.seed = seed
        self.days = days
        self.end = days * DAY
        self.out: list[Request] = []
        self.ids = _Ids(seed)
        self.tz_offsets = [o for o, _ in model.timezones]
        self.tenant_of: dict[str, str] = {}
        self.tz_weights = [w for _, w in model.timezones]
        # benign noise draws from its own generator: with the noise off, no draw is made and
        # the clean trace is unchanged; with it on, the other draws are the same
        self.noise = random.Random(f"{seed}:noise")
        self.probers: set[str] = set()
        self._fresh = itertools.count(10**8)
        self._public: list[str] = []
        self._public_cum: list[float] = []

    # -- sampling helpers ------------------------------------------------------------------

    def tenant(self) -> str:
        names = [n for n, _ in self.m.tenants]
        return self.rng.choices(names, [w for _, w in self.m.tenants])[0]

    def lognormal(self, median: float, sigma: float) -> float:
        return median * math.exp(sigma * self.rng.gauss(0.0, 1.0))

    def poisson(self, mean: float) -> int:
        if mean <= 0:
            return 0
        if mean > 30:
            return max(0, round(self.rng.gauss(mean, math.sqrt(mean))))
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= self.rng.random()
            if p <= limit:
                return k
            k += 1

    def work_time(self, day: int, offset: float) -> float:
        """A moment of ``day`` (UTC) drawn from the working-hours profile of a time zone."""
        if self.rng.random() < self.m.work_share:
            local = self.rng.gauss(self.m.work_hour_mean, self.m.work_hour_sd)
        else:
            local = self.rng.random() * 24
        return day * DAY + ((local - offset) % 24) * HOUR

    @staticmethod
    def weekend(t: float) -> bool:
        return int(t // DAY) % 7 >= 5

    # -- the catalogue ---------------------------------------------------------------------

    def catalogue(self) -> tuple[list[_Project], Catalogue]:
        m, rng = self.m, self.rng
        names = project_names(m.projects, rng)
        projects: list[_Project] = []
        cat = Catalogue()
        month = 30.0 * DAY
        for rank, name in enumerate(names):
            weight = (rank + 1 + m.popularity_q) ** -m.popularity_s
            boost = (
                1.0
                + (m.release_rate_boost - 1.0)
                * ((1 + m.popularity_q) / (rank + 1 + m.popularity_q)) ** 1.5
            )
            rate = self.lognormal(m.release_rate_median, m.release_rate_sigma) * boost / month
            binary = rng.random() < m.binary_share
            base_size = self.lognormal(m.size_median, m.size_sigma)
            if binary:
                base_size *= 4
            major, minor, patch = rng.randint(0, 3), rng.randint(0, 20), rng.randint(0, 9)
            # a few releases before the trace (so held versions exist), then the trace's
            n_before = 1 + min(12, int(rng.expovariate(0.3)))
            t = -rng.expovariate(rate) - n_before / rate
            times: list[float] = []
            t_hist = t
            for _ in range(n_before):
                times.append(t_hist)
                t_hist += rng.expovariate(rate) if rate > 0 else DAY
            times = [min(x, -60.0) for x in times]
            times.sort()
            if m.shape == "release":
                t_next = max(times[-1], 0.0) + rng.expovariate(rate)
                while t_next < self.end:
                    times.append(t_next)
                    t_next += rng.expovariate(rate)
            releases: list[Release] = []
            for t_rel in times:
                if releases:
                    u = rng.random()
                    if u < m.bump_shares[0]:
                        patch += 1
                    elif u < m.bump_shares[0] + m.bump_shares[1]:
                        minor, patch = minor + 1, 0
                    else:
                        major, minor, patch = major + 1, 0, 0
                version = f"{major}.{minor}.{patch}"
                size = base_size * math.exp(rng.gauss(0.0, 0.05))
                files = [(sdist_name(name, version), max(512, int(size * 1.1)))]
                if binary:
                    for plat, _ in _PLATFORMS:
                        files.append(
                            (
                                wheel_name(name, version, "cp312", "cp312", plat),
                                max(512, int(size * math.exp(rng.gauss(0.0, 0.1)))),
                            )
                        )
                else:
                    files.append((wheel_name(name, version), max(512, int(size * 0.9))))
                base_size *= math.exp(rng.gauss(0.01, 0.02))
                releases.append(Release(version, round(t_rel, 3), tuple(files)))
            cat.projects[name] = releases
            projects.append(
                _Project(
                    name,
                    rank,
                    weight,
                    binary,
                    base_size,
                    releases,
                    [r.time for r in releases],
                    list(itertools.accumulate((len(r.files) for r in releases), initial=0)),
                )
            )
        # dependents: proportional to popularity, heavy-tailed (assumption, see docs)
        total = sum(p.weight for p in projects)
        for p in projects:
            cat.dependents[p.name] = int(round(50 * m.projects * p.weight / total))
        return projects, cat

    # -- request helpers -------------------------------------------------------------------

    def pick_file(self, p: _Project, rel: Release, platform: int | None = None) -> tuple[str, int]:
        """The file a client downloads: an sdist sometimes, else the wheel for its platform."""
        files = rel.files
        if self.rng.random() < self.m.sdist_share or len(files) == 1:
            return files[0]
        if not p.binary:
            return files[1]
        if platform is None:
            u, acc = self.rng.random(), 0.0
            platform = len(_PLATFORMS) - 1
            for i, (_, share) in enumerate(_PLATFORMS):
                acc += share
                if u < acc:
                    platform = i
                    break
        return files[1 + min(platform, len(files) - 2)]

    def install(
        self,
        t: float,
        client: str,
        p: _Project,
        rel: Release,
        held: str = "",
        platform: int | None = None,
        label: str = "",
        page: bool = True,
    ) -> float:
        """page, metadata and file requests of one pip install of ``rel``; returns the end."""
        name, size = self.pick_file(p, rel, platform)
        out = self.out
        tenant = self.tenant_of.get(client, "default")
        if client in self.probers and not label:
            self.probes(t, client, tenant)
        if page:
            out.append(
                Request(
                    t,
                    client,
                    "page",
                    p.name,
                    "",
                    "",
                    self.page_size(p, t),
                    route="/simple/{project}/",
                    held=held,
                    label=label,
                    tenant=tenant,
                )
            )
            t += 0.02 + self.rng.random() * 0.08
        out.append(
            Request(
                t,
                client,
                "metadata",
                p.name,
                name,
                rel.version,
                1500 + (len(name) * 37) % 4000,
                route="/{file}.metadata",
                held=held,
                label=label,
                tenant=tenant,
            )
        )
        t += 0.02 + self.rng.random() * 0.05
        out.append(
            Request(
                t,
                client,
                "file",
                p.name,
                name,
                rel.version,
                size,
                route="/files/{project}/{file}",
                held=held,
                label=label,
                tenant=tenant,
            )
        )
        return t + size / 50e6

    @staticmethod
    def page_size(p: _Project, t: float) -> int:
        """Bytes of the project's simple page at ``t`` (grows with the files listed)."""
        return 300 + 180 * p.files_cum[bisect.bisect_right(p.times, t)]

    @staticmethod
    def released(p: _Project, t: float) -> Release | None:
        i = bisect.bisect_right(p.times, t)
        return p.releases[i - 1] if i else None

    # -- benign noise ----------------------------------------------------------------------

    def public_names(self, hosted: set[str]) -> None:
        """The names a probing client asks for that this index does not host (Zipf-weighted:
        the same public dependencies come up again and again)."""
        rng = random.Random(f"{self.seed}:public")
        names = [n for n in project_names(len(hosted) + 2000, rng) if n not in hosted][:2000]
        acc = 0.0
        for i, _ in enumerate(names):
            acc += (i + 1) ** -1.0
            self._public_cum.append(acc)
        self._public = names

    def noise_poisson(self, mean: float) -> int:
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= self.noise.random()
            if p <= limit:
                return k
            k += 1

    def probes(self, t: float, client: str, tenant: str) -> None:
        """404s for names this index does not host (pip asking every index it is given)."""
        if not self._public:
            return
        for i in range(self.noise_poisson(self.m.probe_per_install)):
            u = self.noise.random() * self._public_cum[-1]
            name = self._public[min(bisect.bisect_left(self._public_cum, u), len(self._public) - 1)]
            self.out.append(
                Request(t + 0.005 * (i + 1), client, "page", name, "", "", 14, status=404,
                        route="/simple/{project}/", tenant=tenant)
            )  # fmt: skip

    def fresh_id(self, kind: str) -> str:
        return self.ids.new(kind, next(self._fresh))

    def typo(self, t: float, cid: str, projects: list[_Project], cum: list[float]) -> None:
        """A mistyped project name: one 404 (the developer retypes it later)."""
        noise = self.noise
        i = bisect.bisect_left(cum, noise.random() * cum[-1])
        name = projects[min(i, len(projects) - 1)].name
        j = noise.randrange(len(name))
        if noise.random() < 0.5 or len(name) < 4:
            typo = name[:j] + name[j] + name[j:]  # a doubled letter
        else:
            typo = name[:j] + name[j + 1 :]  # a dropped one
        if typo in self._hosted:
            return
        self.out.append(
            Request(t - 5.0 - 20 * noise.random(), cid, "page", typo, "", "", 14, status=404,
                    route="/simple/{project}/", tenant=self.tenant_of.get(cid, "default"))
        )  # fmt: skip

    _hosted: frozenset[str] = frozenset()

    def bursts(self, projects: list[_Project]) -> None:
        """Benign release bursts: a top project's release pulled by many fresh CI runners."""
        m, noise = self.m, self.noise
        n = round(m.release_bursts_per_week * self.days / 7.0)
        # the trace's releases of the 30 most downloaded projects
        candidates = [
            (p, r) for p in projects[: min(30, len(projects))] for r in p.releases if r.time >= 0
        ]
        names = [t for t, _ in m.tenants]
        weights = [w for _, w in m.tenants]
        for _ in range(n if candidates else 0):
            p, rel = candidates[noise.randrange(len(candidates))]
            start = rel.time + 1800 * math.exp(0.7 * noise.gauss(0.0, 1.0))
            tenant = noise.choices(names, weights)[0]
            for _ in range(noise.randint(*m.burst_clients)):
                cid = self.fresh_id("ci")
                self.tenant_of[cid] = tenant
                self.install(start + 3600 * noise.betavariate(2, 3), cid, p, rel, platform=0)

    # -- client populations ----------------------------------------------------------------

    def popular(self, projects: list[_Project], cum: list[float], k: int) -> list[_Project]:
        chosen: dict[int, _Project] = {}
        total = cum[-1]
        for _ in range(k * 3):
            if len(chosen) >= k:
                break
            i = bisect.bisect_left(cum, self.rng.random() * total)
            chosen.setdefault(i, projects[min(i, len(projects) - 1)])
        return list(chosen.values())

    def developers(self, projects: list[_Project], cum: list[float]) -> None:
        m, rng = self.m, self.rng
        n_days = math.ceil(self.days)
        for d in range(m.developers):
            cid = self.ids.new("dev", d)
            self.tenant_of[cid] = self.tenant()
            prober = m.probe_share > 0 and self.noise.random() < m.probe_share
            if prober:
                self.probers.add(cid)
            offset = rng.choices(self.tz_offsets, self.tz_weights)[0]
            platform = 0 if rng.random() < 0.7 else rng.randrange(len(_PLATFORMS))
            k = max(1, self.poisson(m.dev_projects_mean))
            held: dict[int, str] = {}
            wants: dict[int, list[float]] = {}
            upgrader = rng.random() >= m.never_upgrade_share
            for p in self.popular(projects, cum, k):
                self.hold(p, held, wants, upgrader)
            for day in range(n_days):
                p_active = m.dev_active_weekday * (m.weekend_activity if day % 7 >= 5 else 1.0)
                if rng.random() >= p_active:
                    continue
                n = 1 + self.poisson(m.dev_sessions_mean - 1)
                if m.dev_churn_per_day > 0 and self.noise.random() < m.dev_churn_per_day:
                    tenant = self.tenant_of[cid]
                    cid = self.fresh_id("dev")  # a new machine, container or address
                    self.tenant_of[cid] = tenant
                    if prober:
                        self.probers.add(cid)
                for t in sorted(self.work_time(day, offset) for _ in range(n)):
                    if m.typo_per_session > 0 and self.noise.random() < m.typo_per_session:
                        self.typo(t, cid, projects, cum)
                    if 0 <= t < self.end:  # in time order: what is held follows the sessions
                        self.session(t, cid, projects, cum, held, wants, upgrader, platform)

    def hold(
        self, p: _Project, held: dict[int, str], wants: dict[int, list[float]], upgrader: bool
    ) -> None:
        before = [r for r in p.releases if r.time < 0]
        rel = before[-1] if self.rng.random() < 0.5 else self.rng.choice(before)
        held[p.rank] = rel.version
        # when this machine wants each release of the trace: its time plus the upgrade lag
        wants[p.rank] = (
            [
                r.time
                + self.lognormal(self.m.upgrade_lag_median_days * DAY, self.m.upgrade_lag_sigma)
                for r in p.releases
                if r.time >= 0
            ]
            if upgrader
            else []
        )

    def session(
        self,
        t: float,
        cid: str,
        projects: list[_Project],
        cum: list[float],
        held: dict[int, str],
        wants: dict[int, list[float]],
        upgrader: bool,
        platform: int,
    ) -> None:
        rng = self.rng
        # upgrades that are due: pip install -U gets the latest release at t
        for rank in sorted(held):
            due = wants.get(rank)
            if not due or min(due) > t:
                continue
            p = projects[rank]
            latest = self.released(p, t)
            wants[rank] = [w for w in due if w > t]
            if latest is None or latest.version == held[rank]:
                continue
            t = self.install(t, cid, p, latest, held=held[rank], platform=platform) + rng.random()
            held[rank] = latest.version
        if rng.random() < self.m.dev_new_install:
            for p in self.popular(projects, cum, 1):
                if p.rank in held:
                    continue
                latest = self.released(p, t)
                if latest is None:
                    continue
                t = self.install(t, cid, p, latest, platform=platform) + rng.random()
                held[p.rank] = latest.version
                self.hold_future(p, wants, upgrader, t)
        if held and rng.random() < self.m.dev_reinstall:
            rank = rng.choice(sorted(held))
            p = projects[rank]
            rel = next((r for r in p.releases if r.version == held[rank]), None)
            if rel is not None:
                self.install(t, cid, p, rel, platform=platform)

    def hold_future(
        self, p: _Project, wants: dict[int, list[float]], upgrader: bool, t: float
    ) -> None:
        wants[p.rank] = (
            [
                r.time
                + self.lognormal(self.m.upgrade_lag_median_days * DAY, self.m.upgrade_lag_sigma)
                for r in p.releases
                if r.time > t
            ]
            if upgrader
            else []
        )

    def ci(self, projects: list[_Project], cum: list[float]) -> None:
        m, rng = self.m, self.rng
        n_days = math.ceil(self.days)
        for c in range(m.ci_pipelines):
            tenant = self.tenant()
            offset = rng.choices(self.tz_offsets, self.tz_weights)[0]
            k = max(1, round(self.lognormal(m.ci_pinned_median, 0.7)))
            pinned = sorted(self.popular(projects, cum, k), key=lambda p: p.name)
            pins: dict[int, list[tuple[float, Release]]] = {}
            for p in pinned:
                before = [r for r in p.releases if r.time < 0]
                start = before[-1] if rng.random() < 0.6 else rng.choice(before)
                seq = [(-1e18, start)]
                for r in p.releases:
                    if r.time >= 0:
                        seq.append(
                            (r.time + self.lognormal(m.ci_bump_lag_median_days * DAY, 1.0), r)
                        )
                seq.sort(key=lambda x: x[0])
                pins[p.rank] = seq
            runs_mean = self.lognormal(m.ci_runs_per_day, 0.8)
            matrix = 1 + rng.randrange(max(1, m.ci_matrix))
            # one runner (client) per matrix job, the same runners every run (a runner pool)
            runners = [self.ids.new("ci", c * 64 + j) for j in range(matrix)]
            for cid in runners:
                self.tenant_of[cid] = tenant
            noise = self.noise
            prober = m.probe_share > 0 and noise.random() < m.probe_share
            fresh = m.ci_fresh_runner_share > 0 and noise.random() < m.ci_fresh_runner_share
            if prober:
                self.probers.update(runners)
            nightly = rng.random() < 0.3
            nightly_hour = rng.randrange(24)
            for day in range(n_days):
                weekend = day % 7 >= 5
                n = self.poisson(runs_mean * (m.ci_weekend_activity if weekend else 1.0))
                starts = [self.work_time(day, offset) for _ in range(n)]
                if nightly:
                    starts.append(day * DAY + nightly_hour * HOUR + rng.random() * 60)
                for t0 in sorted(starts):
                    if not (0 <= t0 < self.end):
                        continue
                    bad_token = (
                        m.ci_auth_fail_per_run > 0 and noise.random() < m.ci_auth_fail_per_run
                    )
                    for job, cid in enumerate(runners):
                        t = t0 + rng.random() * 40  # jobs of one matrix start within a minute
                        platform = 0 if job == 0 else rng.randrange(len(_PLATFORMS))
                        if fresh:  # a hosted runner: a fresh machine for every job
                            cid = self.fresh_id("ci")
                            self.tenant_of[cid] = tenant
                            if prober:
                                self.probers.add(cid)
                        if bad_token and pinned:
                            t = self.bad_token(t, cid, pinned[0], tenant)
                        for p in pinned:
                            seq = pins[p.rank]
                            rel = seq[0][1]
                            for at, r in seq:
                                if at <= t and r.time <= t:
                                    rel = r
                            t = self.install(t, cid, p, rel, platform=platform)

    def bad_token(self, t: float, cid: str, p: _Project, tenant: str) -> float:
        """A job with an expired or mistyped token: 401s (pip and CI retries), then the job is
        re-run with a good token; returns when the re-run starts."""
        for _ in range(self.noise.randint(1, 3)):
            self.out.append(
                Request(t, cid, "page", p.name, "", "", 120, status=401,
                        route="/simple/{project}/", tenant=tenant)
            )  # fmt: skip
            t += 1.0 + 4.0 * self.noise.random()
        return t + 600.0 * math.exp(0.8 * self.noise.gauss(0.0, 1.0))

    def mirrors(self, projects: list[_Project]) -> None:
        m, rng = self.m, self.rng
        events = sorted(
            (r.time, p.rank, i) for p in projects for i, r in enumerate(p.releases) if r.time >= 0
        )
        times = [e[0] for e in events]
        for k in range(m.mirrors):
            cid = self.ids.new("mirror", k)
            poll = rng.random() * m.mirror_poll_s
            last = 0.0
            while poll < self.end:
                t = poll
                lo, hi = bisect.bisect_right(times, last), bisect.bisect_right(times, poll)
                for _, rank, i in events[lo:hi]:
                    p = projects[rank]
                    rel = p.releases[i]
                    prev = p.releases[i - 1].version if i else ""
                    n_files = sum(len(r.files) for r in p.releases[: i + 1])
                    self.out.append(
                        Request(
                            t,
                            cid,
                            "page",
                            p.name,
                            "",
                            "",
                            300 + 180 * n_files,
                            route="/simple/{project}/",
                            held=prev,
                        )
                    )
                    t += 0.05
                    for name, size in rel.files:
                        self.out.append(
                            Request(
                                t,
                                cid,
                                "file",
                                p.name,
                                name,
                                rel.version,
                                size,
                                route="/files/{project}/{file}",
                                held=prev,
                            )
                        )
                        t += 0.05 + size / 100e6
                last = poll
                poll += m.mirror_poll_s * (0.9 + 0.2 * rng.random())

    def proxies(self, projects: list[_Project], cum: list[float]) -> None:
        m, rng = self.m, self.rng
        for k in range(m.proxies):
            cid = self.ids.new("proxy", k)
            mine = self.popular(projects, cum, min(m.proxy_projects, len(projects)))
            for p in sorted(mine, key=lambda p: p.rank):
                prev = self.released(p, 0.0)
                for r in p.releases:
                    if r.time < 0:
                        continue
                    t = r.time + self.lognormal(m.proxy_lag_median_s, 1.0)
                    if t < self.end:
                        self.install(t, cid, p, r, held=prev.version if prev else "", platform=0)
                    prev = r
            # revalidation of pages, popularity-weighted over its projects
            sub = sorted(mine, key=lambda p: p.rank)
            sub_cum: list[float] = []
            acc = 0.0
            for p in sub:
                acc += p.weight
                sub_cum.append(acc)
            t = rng.expovariate(1.0 / m.proxy_revalidate_s)
            while t < self.end and sub:
                p = sub[min(bisect.bisect_left(sub_cum, rng.random() * acc), len(sub) - 1)]
                self.out.append(
                    Request(
                        t,
                        cid,
                        "page",
                        p.name,
                        "",
                        "",
                        self.page_size(p, t),
                        route="/simple/{project}/",
                    )
                )
                t += rng.expovariate(1.0 / m.proxy_revalidate_s)

    def crawlers(self, projects: list[_Project]) -> None:
        m, rng = self.m, self.rng
        for k in range(m.crawlers):
            cid = self.ids.new("crawler", k)
            t = rng.random() * m.crawler_interval_s
            while t < self.end:
                p = projects[rng.randrange(len(projects))]
                self.out.append(
                    Request(
                        t,
                        cid,
                        "page",
                        p.name,
                        "",
                        "",
                        self.page_size(p, t),
                        route="/simple/{project}/",
                    )
                )
                t += rng.expovariate(1.0 / m.crawler_interval_s)

    def maintainers(self, projects: list[_Project]) -> None:
        for p in projects:
            cid = ""
            for r in p.releases:
                if r.time < 0:
                    continue
                if not cid:
                    cid = self.ids.new("maintainer", p.rank)
                t = r.time - 1.0
                self.out.append(
                    Request(t - 2.0, cid, "login", "", "", "", 200, method="POST", route="/_/login")
                )
                for name, size in r.files:
                    self.out.append(
                        Request(
                            t,
                            cid,
                            "upload",
                            p.name,
                            name,
                            r.version,
                            size,
                            method="POST",
                            route="/legacy/",
                        )
                    )
                    t += 0.1 + size / 20e6

    # -- attacks ---------------------------------------------------------------------------

    def attacks(self, projects: list[_Project], cum: list[float]) -> list[Episode]:
        m, rng = self.m, self.rng
        episodes: list[Episode] = []
        kinds = ("scraper", "credential_stuffing", "dependency_confusion", "download_spike")
        per_kind = max(1, round(m.attacks_per_week * self.days / 7.0))
        n = 0
        for kind in kinds:
            for _ in range(per_kind):
                start = rng.uniform(0.05, 0.95) * self.end
                n += 1
                first = len(self.out)
                if kind == "scraper":
                    clients = [
                        self.ids.new("attacker", n * 100 + i) for i in range(rng.randint(1, 3))
                    ]
                    rate = rng.uniform(2.0, 6.0)  # requests per second per client
                    duration = rng.uniform(300, 900)
                    for c in clients:
                        t, i = start + rng.random() * 5, rng.randrange(len(projects))
                        order = sorted(projects, key=lambda p: p.name)
                        while t < start + duration:
                            p = order[i % len(order)]
                            i += 1
                            self.out.append(
                                Request(
                                    t,
                                    c,
                                    "page",
                                    p.name,
                                    "",
                                    "",
                                    self.page_size(p, t),
                                    route="/simple/{project}/",
                                    label=kind,
                                )
                            )
                            t += rng.expovariate(rate)
                elif kind == "credential_stuffing":
                    clients = [
                        self.ids.new("attacker", n * 1000 + i) for i in range(rng.randint(50, 150))
                    ]
                    duration = rng.uniform(900, 2400)
                    for c in clients:
                        t = start + rng.random() * duration
                        for _ in range(rng.randint(2, 8)):
                            if rng.random() < 0.7:
                                self.out.append(
                                    Request(
                                        t,
                                        c,
                                        "login",
                                        "",
                                        "",
                                        "",
                                        120,
                                        status=401,
                                        method="POST",
                                        route="/_/login",
                                        label=kind,
                                    )
                                )
                            else:
                                p = projects[rng.randrange(min(200, len(projects)))]
                                self.out.append(
                                    Request(
                                        t,
                                        c,
                                        "upload",
                                        p.name,
                                        "",
                                        "",
                                        120,
                                        status=403,
                                        method="POST",
                                        route="/legacy/",
                                        label=kind,
                                    )
                                )
                            t += rng.uniform(1.0, 30.0)
                    duration = max(duration, 1.0)
                elif kind == "dependency_confusion":
                    clients = [
                        self.ids.new("attacker", n * 100 + i) for i in range(rng.randint(1, 4))
                    ]
                    duration = rng.uniform(1200, 3600)
                    prefixes = ("acme", "corp", "internal", "contoso", "initech", "globex")
                    suffixes = ("utils", "core", "common", "auth", "sdk", "config", "client")
                    for c in clients:
                        t = start + rng.random() * 10
                        while t < start + duration:
                            name = f"{rng.choice(prefixes)}-{rng.choice(suffixes)}"
                            if rng.random() < 0.5:
                                name += f"-{rng.choice(suffixes)}"
                            self.out.append(
                                Request(
                                    t,
                                    c,
                                    "page",
                                    name,
                                    "",
                                    "",
                                    14,
                                    status=404,
                                    route="/simple/{project}/",
                                    label=kind,
                                )
                            )
                            t += rng.expovariate(0.5)
                else:  # download_spike: one file, many new clients, minutes
                    duration = rng.uniform(600, 1800)
                    p = projects[rng.randrange(len(projects) // 10, len(projects))]
                    rel = self.released(p, start)
                    clients = []
                    if rel is not None:
                        count = rng.randint(200, 600)
                        clients = [self.ids.new("attacker", n * 1000 + i) for i in range(count)]
                        for c in clients:
                            t = start + duration * rng.betavariate(2, 3)
                            self.install(t, c, p, rel, platform=0, label=kind)
                made = [r.time for r in self.out[first:] if r.time < self.end]
                if not made:
                    continue
                episodes.append(
                    Episode(
                        kind, min(made), max(made), frozenset(r.client for r in self.out[first:])
                    )
                )
        episodes.sort(key=lambda e: (e.start, e.label))
        return episodes

    # -- the static shape ------------------------------------------------------------------

    def static(self, projects: list[_Project]) -> None:
        m, rng = self.m, self.rng
        files = [(p, r, f) for p in projects for r in p.releases[-1:] for f in r.files]
        order = list(range(len(files)))
        rng.shuffle(order)
        acc = 0.0
        cum: list[float] = []
        for rank in range(len(files)):
            acc += (rank + 1) ** -m.static_alpha
            cum.append(acc)
        clients = [self.ids.new("dev", i) for i in range(max(1, m.developers))]
        t = rng.expovariate(m.static_rate_per_s)
        while t < self.end:
            p, r, (name, size) = files[order[bisect.bisect_left(cum, rng.random() * acc)]]
            self.out.append(
                Request(
                    t,
                    clients[rng.randrange(len(clients))],
                    "file",
                    p.name,
                    name,
                    r.version,
                    size,
                    route="/files/{project}/{file}",
                )
            )
            t += rng.expovariate(m.static_rate_per_s)


def generate(
    model: TrafficModel | None = None,
    *,
    seed: int = 0,
    days: float = 14,
    clients: int | None = None,
    attacks: bool = True,
    scale: float = 1.0,
) -> Trace:
    """A generated trace of ``days`` days: deterministic for ``(model, seed, days, clients,
    attacks, scale)``, sorted by time. ``clients`` sets the number of developer machines (the
    CI pipelines follow in proportion); ``scale`` multiplies every client population;
    ``attacks=False`` leaves the attack episodes out. The trace's ``source`` names the model and
    the seed: cite it beside every figure."""
    model = model or TrafficModel()
    if clients is not None:
        if clients < 1:
            raise InvalidArgumentError(f"clients must be at least 1, not {clients}")
        ratio = clients / max(1, model.developers)
        model = replace(
            model,
            developers=clients,
            ci_pipelines=max(1, round(model.ci_pipelines * ratio)),
            static_rate_per_s=model.static_rate_per_s * ratio,
        )
    if scale != 1.0:
        model = model.scaled(scale)
    _check(model, days)
    g = _Gen(model, seed, days)
    projects, cat = g.catalogue()
    g._hosted = frozenset(p.name for p in projects)
    if model.probe_share > 0:
        g.public_names(set(g._hosted))
    cum: list[float] = []
    acc = 0.0
    for p in projects:
        acc += p.weight
        cum.append(acc)
    episodes: list[Episode] = []
    if model.shape == "static":
        g.static(projects)
    else:
        g.developers(projects, cum)
        g.ci(projects, cum)
        g.mirrors(projects)
        g.proxies(projects, cum)
        g.crawlers(projects)
        g.maintainers(projects)
        if attacks:
            episodes = g.attacks(projects, cum)
        if model.release_bursts_per_week > 0:
            g.bursts(projects)  # last: the draws before it are those of the clean model
    reqs = [r for r in g.out if 0.0 <= r.time < g.end]
    reqs.sort(key=_time)
    source = f"generated:{model.name}:seed={seed}"
    if days != 14 or scale != 1.0 or clients is not None or not attacks:
        source += f":days={days:g}"
        if scale != 1.0:
            source += f":scale={scale:g}"
        if clients is not None:
            source += f":clients={clients}"
        if not attacks:
            source += ":attacks=off"
    used = {r.client for r in reqs}
    types = {c: t for c, t in g.ids.types.items() if c in used}
    return Trace(reqs, cat, episodes, source, clients=types)


def _time(r: Request) -> float:
    return r.time
