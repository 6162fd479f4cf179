"""``calibrate`` and ``report``: the analyst's commands."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from wis_monitor.cli.app import (
    MissingInput,
    cli,
    config_option,
    existing_db,
    load_config_or_exit,
    now_ms,
    output_path,
    store_at,
)
from wis_monitor.cli.recordings import (
    default_replay_config,
    progress,
    progress_bars,
    recorded,
    recording_options,
    report_bad_lines,
)
from wis_monitor.config import Config
from wis_monitor.errors import Problem, StoreError

if TYPE_CHECKING:
    from wis_monitor.signals import Kernel
    from wis_monitor.sources import Observation
    from wis_monitor.sources.recordings import ImportOptions
    from wis_monitor.store import Store
    from wis_monitor.tools.alertrate import Threshold
    from wis_monitor.tools.calibrate import CalibrationResult
    from wis_monitor.tools.calibrate import Table as CalibrationTable

@cli.command()
@config_option
@click.option("--books", "books", multiple=True, metavar="GLOB",
              help="Book recordings (a file or a glob); repeatable.")
@click.option("--db", "db_in", default=None, metavar="DB", help="Books recorded in a DB.")
@click.option("--horizon", default="1s,5s,10s", show_default=True, metavar="LIST",
              help="Comma-separated horizons of the mid move to predict; the recommendation "
              "is made at the longest.")
@click.option("--kernels", default="exponential,linear,flat,levels", show_default=True,
              metavar="LIST", help="Comma-separated kernel families to score.")
@click.option("--band", default=50.0, show_default=True, help="Band of every kernel (bps).")
@click.option("--seed", default=12, show_default=True, help="Seed of the bootstrap.")
@click.option("--replicates", default=500, show_default=True,
              type=click.IntRange(min=50, max=100_000), help="Bootstrap replicates.")
@click.option("--pooled", is_flag=True, help="Also score all series together.")
@click.option("--target", default=None, metavar="VENUE:SYMBOL",
              help="Score every series against this series' future moves (cross-venue).")
@click.option("--write", "write", default=None, metavar="FILE",
              help="Write the recommended per-series settings (a series_settings file).")
@click.option("--alert-rate", "alert_rate", default=None, metavar="N/PERIOD",
              help="Instead of scoring kernels: the thresholds of --metric that fire at this "
              "rate on the recording, e.g. 2/h.")
@click.option("--metric", default="wis_z", show_default=True,
              help="The metric of --alert-rate (any metric the replay pipeline computes).")
@click.option("--for", "for_", default="0s", show_default=True, metavar="DURATION",
              help="With --alert-rate: an episode must hold this long (a rule's `for`).")
@recording_options
def calibrate(config: str | None, books: tuple[str, ...], db_in: str | None, horizon: str,
              kernels: str, band: float, seed: int, replicates: int, pooled: bool,
              target: str | None, write: str | None, alert_rate: str | None, metric: str,
              for_: str, reading: ImportOptions) -> None:
    """Score WIS kernels as predictors of the mid move, with intervals, effective N and
    baselines; recommend per series only what beats the current setting.

    Example: wis-monitor calibrate --books btc.jsonl.gz --horizon 1s,10s --write tuned.yaml
    """
    from wis_monitor.duration import ms, parse_duration
    from wis_monitor.signals import KERNELS
    from wis_monitor.tools.calibrate import calibrate as run_calibration
    from wis_monitor.tools.calibrate import default_grid

    if not books and not db_in:
        raise click.UsageError("give --books FILE or --db DB")
    if db_in and not Path(db_in).exists():
        raise MissingInput(f"no database at {db_in}")
    cfg = load_config_or_exit(config, secrets=False) if config else None
    problems: list[Problem] = []
    if alert_rate is not None:
        if target or write or pooled:
            raise click.UsageError("--alert-rate does not go with --target, --write, --pooled")
        observations = recorded(books, db_in, problems, reading, "reading books")
        _alert_rates(cfg or default_replay_config(), observations, alert_rate, metric, for_)
        report_bad_lines(problems)
        return
    try:
        horizons = [ms(parse_duration(h)) for h in horizon.split(",") if h.strip()]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--horizon") from None
    if not horizons or min(horizons) <= 0:
        raise click.BadParameter("give horizons longer than 0s, e.g. 1s,5s",
                                 param_hint="--horizon")
    families = [k.strip() for k in kernels.split(",") if k.strip()]
    unknown = sorted(set(families) - set(KERNELS))
    if unknown or not families:
        raise click.BadParameter(f"unknown kernel {', '.join(unknown) or '(none given)'}; "
                                 f"choose from {', '.join(KERNELS)}", param_hint="--kernels")
    if target is not None and ":" not in target:
        raise click.BadParameter(f'"{target}" is not VENUE:SYMBOL', param_hint="--target")
    if target and write:
        raise click.UsageError("--write recommends per series from their own moves: "
                               "not with --target")
    if write:
        output_path(write)
    observations = recorded(books, db_in, problems, reading, "reading books")
    grid = [(label, k) for label, k in default_grid(band) if k.kernel in families]
    try:
        result = run_calibration(observations, horizons, grid, band_bps=band,
                                 current=_current_kernels(cfg), replicates=replicates,
                                 seed=seed, pooled=pooled, target=target,
                                 progress=progress if progress_bars() else None)
    except (StoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    except LookupError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--target") from None
    report_bad_lines(problems)
    click.echo(_calibration_report(result))
    if write:
        _write_settings(write, result, books, db_in)


def _current_kernels(cfg: Config | None) -> Callable[[str, str], Kernel]:
    """A series' configured kernel: the config's settings for it, else the built-in one."""
    from wis_monitor.signals import Kernel

    if cfg is None:
        return lambda venue, symbol: Kernel()
    default = cfg.settings.metrics.wis.to_kernel()
    per_series = getattr(cfg, "metrics_for", None)  # per-series settings, where supported
    configured = {(v.id, str(getattr(sym, "symbol", sym))) for v in cfg.settings.venues
                  for sym in v.symbols}

    def current(venue: str, symbol: str) -> Kernel:
        if per_series is None or (venue, symbol) not in configured:
            return default
        kernel: Kernel = per_series(venue, symbol).wis.to_kernel()
        return kernel

    return current


def _calibration_report(result: CalibrationResult) -> str:
    from wis_monitor.tools.calibrate import REACH_TOLERANCE, describe

    lines = [f"{result.books} books, {len(result.coverage)} series; 95% intervals from a "
             f"moving-block bootstrap ({result.replicates} replicates, seed {result.seed}, "
             "blocks as long as the horizon); n_eff = n × min(1, interval / horizon)", ""]
    for name, cov in result.coverage.items():
        if cov.warn:
            lines.append(
                f"WARNING: {name}: {cov.short_share:.0%} of books reach less than "
                f"{cov.band_bps * REACH_TOLERANCE:g} bps on one side (median reach "
                f"{cov.median_reach_bps:.1f} bps): WIS over the band leans to the deeper side")
    for table in result.tables:
        lines += ["", table.name + (f"  (current: {describe(table.current)})"
                                    if table.current is not None else "")]
        for h in result.horizons_ms:
            lines += _horizon_rows(table, h)
    if result.target is None:
        h = max(result.horizons_ms)
        lines += ["", f"recommendations at {h / 1000:g}s (a kernel only where the paired "
                  "bootstrap of its AUC difference with the current setting and with the "
                  "touch imbalance stays above 0):"]
        for r in result.recommendations(h):
            what = (f"use {describe(r.kernel)}" if r.kernel is not None
                    else "keep the current setting")
            lines.append(f"  {r.venue}:{r.symbol}: {what} ({r.reason})")
    return "\n".join(lines) + "\n"


def _horizon_rows(table: CalibrationTable, h: int) -> list[str]:
    from wis_monitor.tools.calibrate import BASELINES

    scores = sorted(table.at(h), key=lambda s: -(s.auc if s.auc is not None else -1.0))
    best = table.best(h)
    rows = [f"  horizon {h / 1000:g}s",
            f"    {'predictor':<24} {'n':>6} {'n_eff':>7} {'AUC':>6} {'95% interval':>15} "
            f"{'IC':>7} {'95% interval':>16}"]
    for s in scores:
        label = s.label + (" (baseline)" if s.label in BASELINES else "")
        mark = ("  <- best" if s is best else "") + (
            "  <- current" if s.kernel is not None and s.kernel == table.current else "")
        rows.append(f"    {label:<24} {s.n:>6} {s.n_eff:>7.1f} {_f3(s.auc):>6} "
                    f"{_ci(s.auc_ci):>15} {_f3(s.ic):>7} {_ci(s.ic_ci):>16}{mark}")
    return rows


def _f3(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _ci(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _write_settings(path: str, result: CalibrationResult, books: tuple[str, ...],
                    db: str | None) -> None:
    from wis_monitor.clock import SYSTEM, utc
    from wis_monitor.tools.calibrate import series_settings_yaml

    h = max(result.horizons_ms)
    recs = result.recommendations(h)
    header = [
        f"made by: wis-monitor {' '.join(sys.argv[1:])}",
        f"made at: {utc(SYSTEM):%Y-%m-%dT%H:%M:%SZ}",
        f"recordings: {', '.join([*books, *([db] if db else [])])}",
        f"horizon: {h / 1000:g}s; data: {result.span()}",
        f"intervals: 95% moving-block bootstrap, {result.replicates} replicates, seed "
        f"{result.seed}; a series is listed only where the lower bound of the paired AUC "
        "difference with its current kernel and with the touch imbalance is above 0",
    ]
    for r in recs:
        header.append(f"{r.venue}:{r.symbol}: " + (r.reason if r.kernel is not None
                                                   else f"kept: {r.reason}"))
    try:
        Path(path).write_text(series_settings_yaml(recs, header))
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror or exc}") from None
    chosen = sum(r.kernel is not None for r in recs)
    click.echo(f"wrote {path}: {chosen} of {len(recs)} series with a recommendation")


def _alert_rates(cfg: Config, observations: Iterable[Observation], rate: str, metric: str,
                 for_: str) -> None:
    from wis_monitor.duration import ms, parse_duration
    from wis_monitor.tools.alertrate import iter_thresholds, metric_series

    per_h = _rate_per_hour(rate)
    try:
        for_ms = ms(parse_duration(for_))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--for") from None
    try:
        series, names = metric_series(cfg, observations, metric)
    except (StoreError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if metric not in names:
        raise click.BadParameter(f'the pipeline computes no "{metric}"; it computes '
                                 f"{', '.join(sorted(names)) or 'nothing (no good books)'}",
                                 param_hint="--metric")
    click.echo(f"thresholds of {metric} that fire {per_h:g}/h on the recording (episodes: a "
               f"crossing held {for_}, not samples; the replay pipeline's values)")
    click.echo(f"  {'series':<28} {'hours':>6}  {'above':<34} {'below':<34} either sign")
    short = False
    for s, (up, down, both) in iter_thresholds(series, per_h, for_ms):
        cells = [_threshold(metric, t) for t in (up, down, both)]
        click.echo(f"  {s.venue + ':' + s.symbol:<28} {s.hours:>6.2f}  "
                   + " ".join(f"{c:<34}" for c in cells).rstrip())
        short = short or per_h * s.hours < 1
    if short:
        click.echo(f"note: a recording shorter than {60 / per_h:g} min cannot show {per_h:g}/h: "
                   "at least one episode is counted, so the rates above are higher; record "
                   "longer to calibrate rare alerts")


def _threshold(metric: str, t: Threshold) -> str:
    if t.threshold is None:
        return "never"
    op = {"above": f"{metric} >= ", "below": f"{metric} <= ", "abs": f"|{metric}| >= "}[t.side]
    return f"{op}{t.threshold:g} ({t.episodes}, {t.rate_per_h:.1f}/h)"


def _rate_per_hour(text: str) -> float:
    """``N/PERIOD`` (``2/h``, ``10/d``, ``1/30m``) as alerts per hour."""
    from wis_monitor.duration import ms, parse_duration

    count, sep, period = text.partition("/")
    try:
        n = float(count)
        per = ms(parse_duration(period if period[:1].isdigit() else "1" + period))
    except ValueError:
        n, per = -1.0, 0
    if not sep or not n > 0 or per <= 0 or not math.isfinite(n):
        raise click.BadParameter(f'"{text}" is not a rate like 2/h, 10/d or 1/30m',
                                 param_hint="--alert-rate")
    return n * 3_600_000 / per


@cli.command()
@config_option
@click.option("--db", "db", default=None, metavar="DB", help="Database (default: the config's).")
@click.option("--since", default="1h", show_default=True, metavar="DURATION",
              help="Start this long before the end.")
@click.option("--until", "until", default=None, metavar="DURATION",
              help="End this long ago (default: now, or the newest sample if older).")
@click.option("--from", "start", default=None, metavar="TIME",
              help="Start at this UTC time (2024-08-08T23:54:00Z, or a date: its start).")
@click.option("--to", "end", default=None, metavar="TIME",
              help="End at this UTC time (or a date: its end).")
@click.option("--venue", default=None, metavar="VENUE", help="Only this venue's series.")
@click.option("--symbol", default=None, metavar="SYMBOL",
              help="Only this symbol's series (ccxt form, e.g. BTC/USDT).")
@click.option("--threshold", "thresholds", multiple=True, type=float, metavar="Z",
              help="Draw z-score lines at +Z and -Z; repeatable (default: the levels of the "
              "rules that fired in the period, else those the rules compare wis_z with, else 3).")
@click.option("-o", "--output", required=True, metavar="FILE",
              help="The chart; its suffix chooses the format: .png, .svg or .pdf.")
def report(config: str | None, db: str | None, since: str, until: str | None,
           start: str | None, end: str | None, venue: str | None, symbol: str | None,
           thresholds: tuple[float, ...], output: str) -> None:
    """Chart mid, WIS, z-score and alert markers over a period (PNG, SVG or PDF).

    Example: wis-monitor report -c config.yaml --since 1h --venue binance -o report.png
    """
    from wis_monitor.duration import ms, parse_duration
    from wis_monitor.tools.chart import FORMATS, render_report

    try:
        since_ms = ms(parse_duration(since))
        until_ago = ms(parse_duration(until)) if until else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    if since_ms <= 0:
        raise click.BadParameter("must be longer than 0s", param_hint="--since")
    fmt = Path(output).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise click.BadParameter(f'"{output}": the suffix must be one of '
                                 f"{', '.join('.' + f for f in FORMATS)}", param_hint="-o")
    from_ms, to_ms = _utc_ms(start, "--from"), _utc_ms(end, "--to", end_of_day=True)
    cfg = load_config_or_exit(config, secrets=False) if config or not db else None
    if db is None and cfg is not None:
        path = existing_db(cfg)
    elif db is not None and Path(db).exists():
        path = db
    else:
        raise MissingInput(f"no database at {db}")
    fallback = (_rule_thresholds(cfg) if cfg else ()) or (3.0, -3.0)
    target = output_path(output)
    store = store_at(path)
    try:
        _check_series(list(store.series_names()), venue, symbol)
        from_ms, to_ms = _window(store, since_ms, until_ago, from_ms, to_ms)
        chart = render_report(store, from_ms, to_ms, venue, symbol, _both_signs(thresholds),
                              fallback, fmt)
    finally:
        store.close()
    try:
        target.write_bytes(chart.data)
    except OSError as exc:
        raise click.ClickException(f"{output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output}: {_utc(from_ms)} to {_utc(to_ms)} UTC, z lines at "
               f"{', '.join(f'{z:+g}' for z in chart.thresholds)} ({len(chart.data):,} bytes)")


def _check_series(names: list[tuple[str, str]], venue: str | None, symbol: str | None) -> None:
    """Exit 2 when --venue/--symbol select no series of the database, naming those it has."""
    if any((venue is None or v == venue) and (symbol is None or s == symbol) for v, s in names):
        return
    if not names:
        raise click.UsageError("the database has no samples")
    what = " ".join(f"--{k} {x}" for k, x in (("venue", venue), ("symbol", symbol)) if x)
    have = ", ".join(f"{v} {s}" for v, s in names)
    raise click.UsageError(f"no series matches {what}; the database has: {have}")


def _window(store: Store, since_ms: int, until_ago: int | None, from_ms: int | None,
            to_ms: int | None) -> tuple[int, int]:
    """The period to chart: ``--from``/``--to`` where given; else it ends now (or
    ``--until`` ago), or at the newest sample of a database older than the window (a replay
    of old books), and starts ``--since`` before, or at the first sample if that is later."""
    if to_ms is None:
        now = now_ms()
        span = store.sample_span()
        newest = span[1] if span else None
        if until_ago is not None:
            to_ms = now - until_ago
        elif newest is not None and newest < now - since_ms:
            to_ms = int(newest)
        else:
            to_ms = now
    if from_ms is None:
        from_ms = to_ms - since_ms
        within = store.sample_span(from_ms, to_ms)
        from_ms = within[0] if within else from_ms
    if from_ms >= to_ms:
        raise click.BadParameter("the start must be before the end", param_hint="--from")
    return from_ms, to_ms


def _utc(ts_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ms / 1000))


def _both_signs(levels: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(sorted({s * abs(z) for z in levels for s in (1.0, -1.0)}, reverse=True))


def _rule_thresholds(cfg: Config) -> tuple[float, ...]:
    """The z-score levels the rules compare ``wis_z`` with."""
    return tuple(sorted({z for r in cfg.rules for z in r.z_levels()}, reverse=True))


def _utc_ms(text: str | None, option: str, *, end_of_day: bool = False) -> int | None:
    """Milliseconds of an ISO-8601 time (UTC unless it says otherwise), or None; a date
    alone is its start, or with ``end_of_day`` its end (the next day's start)."""
    if text is None:
        return None
    from datetime import UTC, date, datetime, timedelta

    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    try:
        when = (datetime(day.year, day.month, day.day) + timedelta(days=end_of_day) if day
                else datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise click.BadParameter(f'"{text}" is not a time like 2024-08-08T23:54:00Z',
                                 param_hint=option) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)
