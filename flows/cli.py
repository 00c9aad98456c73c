"""`wavecast`: run a retrain from the command line on the embedded or a configured server."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from wavecast.settings import RETRAIN_SETTINGS, nested_settings

if TYPE_CHECKING:
    from wavecast.storage import DataDir

FAN_OUT_FLAGS = ("runner", "dask_address", "workers", "series_per_task")
FORECAST_PATHS = {
    **{name: (name,) for name in ("data_dir", "source", "column", "version")},
    **{name: RETRAIN_SETTINGS[name] for name in FAN_OUT_FLAGS},
}
ENVIRONMENT_DEFAULTS = {"TF_CPP_MIN_LOG_LEVEL": "2"}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"wavecast: error: {message}\n")


MONITOR_FLAGS = ("data_dir", "source", "threshold", "window", "min_realized", "min_coverage")
# A config field -> its flag, where the two differ.
FLAG_NAMES = {"levels": "level", "min_age_s": "min_age"}
RETENTION_PATHS: dict[str, tuple[str, ...]] = {n: (n,) for n in ("keep_versions", "min_age_s")}


def flag(name: str) -> str:
    return "--" + FLAG_NAMES.get(name, name).replace("_", "-")


def field_help(field: Any) -> str:
    """A config field's description and its one default (unless the description tells it,
    or there is none to tell), as argparse help: which treats `%` as a format character, so
    a literal one (in "95 % interval") is doubled."""
    text = field.description or ""
    if "default" not in text and field.default not in (None, ()):
        text = f"{text} (default: {field.default})"
    return text.replace("%", "%%")


def build_parser() -> argparse.ArgumentParser:
    from wavecast.config import RetrainConfig

    parser = OneLineParser(prog="wavecast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    retrain = commands.add_parser("retrain", help="train, evaluate and publish a forecaster")
    add_config_flags(retrain, RetrainConfig, RETRAIN_SETTINGS)
    retrain.add_argument(
        "--series", action="append", help="with --id-column: this series only; repeatable"
    )
    retrain.add_argument("--refresh", action="store_true", help="recompute every cached stage")
    retrain.add_argument("--json", action="store_true", help="print one JSON summary line last")
    add_forecast_command(commands)
    add_monitor_command(commands)
    add_models_commands(commands)
    server = commands.add_parser("server", help="the background Prefect server commands share")
    server_actions = server.add_subparsers(dest="action", required=True)
    server_actions.add_parser("stop", help="stop the server the first command started")
    return parser


def add_config_flags(parser: Any, model: Any, paths: dict[str, tuple[str, ...]]) -> None:
    """A flag per config field, `paths` naming where each sits in `model`, with its help."""
    for name, path in paths.items():
        owner = model
        for part in path[:-1]:
            owner = owner.model_fields[part].annotation
        parser.add_argument(flag(name), dest=name, help=field_help(owner.model_fields[path[-1]]))


def nested_flags(args: argparse.Namespace, paths: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """The flags given among `paths`, nested where their config fields sit."""
    return nested_settings({name: getattr(args, name) for name in paths}, paths)


def add_forecast_command(commands: Any) -> None:
    """`wavecast forecast`: the champion forecasts past the source's last point."""
    from wavecast.config import ForecastConfig

    forecast = commands.add_parser("forecast", help="forecast the steps after the last point")
    add_config_flags(forecast, ForecastConfig, FORECAST_PATHS)
    forecast.add_argument(
        "--series", action="append", help="a panel's series to forecast; repeatable (default: all)"
    )
    forecast.add_argument(
        "--level",
        dest="levels",
        action="append",
        help="interval level in percent; repeat for several (default: 80 and 95)",
    )
    forecast.add_argument("--json", action="store_true", help="print one JSON summary line last")


def add_monitor_command(commands: Any) -> None:
    """`wavecast monitor`: score stored forecasts against actuals, emit drift events."""
    from wavecast.config import MonitorConfig

    monitor = commands.add_parser(
        "monitor", help="score published forecasts against what happened; announce drift"
    )
    for name in MONITOR_FLAGS:
        monitor.add_argument(
            flag(name), dest=name, help=field_help(MonitorConfig.model_fields[name])
        )
    monitor.add_argument(
        "--series", action="append", help="a panel's series to monitor; repeatable (default: all)"
    )
    monitor.add_argument("--json", action="store_true", help="print one JSON summary line last")


def add_models_commands(commands: Any) -> None:
    """`wavecast models list|show|promote|rollback|prune`: read and steer the registry by hand."""
    from wavecast.config import RetentionSpec

    models = commands.add_parser(
        "models", help="list, inspect, promote, roll back or prune versions"
    )
    actions = models.add_subparsers(dest="action", required=True)
    for name, text in (
        ("list", "versions with test MSE; the champion is marked *"),
        ("show", "one version's lineage, scores and gate decision"),
        ("promote", "make VERSION the champion, overriding the gate (logged)"),
        ("rollback", "make the previous champion the champion again (logged)"),
        ("prune", "remove the versions and stored files the retention rules keep no longer"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("--data-dir", default="data", help="local path or fsspec URI")
        action.add_argument("--series", help="a panel's series (list: every series' champion)")
        if name in ("show", "promote"):
            action.add_argument("version")
        if name in ("promote", "rollback"):
            action.add_argument("--reason", required=name == "promote", default="by hand")
        if name == "prune":
            add_config_flags(action, RetentionSpec, RETENTION_PATHS)
            action.add_argument(
                "--dry-run", action="store_true", help="list what would go, and remove nothing"
            )


def config_from_args(args: argparse.Namespace) -> Any:
    """Nest the given flags into a RetrainConfig; pydantic does all the validation, once."""
    from wavecast.config import RetrainConfig

    nested = nested_flags(args, RETRAIN_SETTINGS)
    nested["refresh"] = args.refresh
    if args.series:
        nested.setdefault("series", {})["series"] = args.series
    return RetrainConfig.model_validate(nested)


def validation_message(error: Any) -> str:
    """The first pydantic error as one line naming the CLI flag and what is allowed."""
    first = error.errors()[0]
    names = [part for part in first["loc"] if isinstance(part, str)]
    name = names[-1] if names else "config"
    return f"{flag(name)} {first['input']!r}: {first['msg']}"


def fail(message: str) -> NoReturn:
    print(f"wavecast: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def print_summary(summary: Any) -> None:
    from wavecast.metrics import shown

    status = "unchanged" if summary.unchanged else "promoted" if summary.promoted else "kept out"
    print(f"\nversion   {summary.version}  ({status})")
    print(f"champion  {summary.champion}")
    print(f"model     {summary.model_dir}")
    print(f"report    {summary.report}")
    published = summary.published
    print(f"serves    {published.forecaster}, season {published.season} ({published.reason})")
    m = summary.metrics
    print(
        f"scores    test MASE {shown(m.mase)} (below 1 beats the seasonal naive), "
        f"sMAPE {shown(m.smape, ' %')}, MSE {m.mse:.4g}"
    )
    if published.coverage:
        shares = ", ".join(f"{level} %: {share:.0%}" for level, share in published.coverage.items())
        print(f"coverage  {shares} of test targets (intervals calibrated on validation)")
    header = f"{'validation MSE':>16}{'test MSE':>12}{'MASE':>10}{'sMAPE %':>9}"
    print(f"\n{'forecaster':<24}{header}  form")
    for c in summary.candidates:
        mark = "*" if c.forecaster == published.forecaster else " "
        test = f"{'-':>12}{'-':>10}{'-':>9}"
        if c.test:
            test = f"{c.test.mse:>12.4g}{shown(c.test.mase):>10}{shown(c.test.smape):>9}"
        print(f"{mark}{c.forecaster:<23}{c.validation_mse:>16.4g}{test}  {c.form or c.note}")
    for reason in (*summary.reasons, *summary.changes):
        print(f"- {reason}")


def run_retrain(args: argparse.Namespace) -> None:
    """Exit 0 when at least one series trained; 2 when every series was refused."""
    from wavecast.commands import run_retrain as retrain

    config = validated_config(args)
    with failing_on_bad_input():
        run = retrain(config)
    if args.json:
        print(run.model_dump_json(include={"series", "skipped"}))
    else:
        print_run(run)
    if not run.series:
        fail(f"no series of {config.series.source} could be trained ({len(run.skipped)} skipped)")


def print_run(run: Any) -> None:
    """One series: its version in full (print_summary). More: a line per series."""
    from wavecast.panel import iter_outcomes

    if len(run.series) == 1 and not run.skipped:
        print_summary(run.only())
        return
    print(f"\n{'series':<15} {'status':<11}detail")
    for line in iter_outcomes(run):
        print(line)


@contextlib.contextmanager
def failing_on_bad_input() -> Iterator[None]:
    """Bad input and permanent storage faults end the command: exit 2, one line, no traceback."""
    from wavecast.errors import environment_problem, is_expected_failure

    try:
        yield
    except (ValueError, OSError) as exc:
        if not is_expected_failure(exc):
            raise
        fail(environment_problem(exc) or str(exc))


def validated_config(args: argparse.Namespace) -> Any:
    """The config, or exit 2 with one line: before any Prefect or TensorFlow import."""
    from pydantic import ValidationError

    from wavecast.commands import checked_retrain

    try:
        config = config_from_args(args)
    except ValidationError as exc:
        fail(validation_message(exc))
    with failing_on_bad_input():
        return checked_retrain(config)


def forecast_config(args: argparse.Namespace) -> Any:
    """The forecast's config from its flags, or exit 2 with one line."""
    from wavecast.config import ForecastConfig

    paths = {**FORECAST_PATHS, "levels": ("levels",), "series": ("series",)}
    return config_of(ForecastConfig, args, paths)


def config_of(model: Any, args: argparse.Namespace, paths: dict[str, tuple[str, ...]]) -> Any:
    """`model` from the flags given among `paths`; exit 2 with one line when invalid."""
    from pydantic import ValidationError

    try:
        return model.model_validate(nested_flags(args, paths))
    except ValidationError as exc:
        fail(validation_message(exc))


def run_forecast(args: argparse.Namespace) -> None:
    """A run that forecasts no series (every one skipped) exits 2, like bad input."""
    from wavecast.commands import run_forecast as forecast

    config = forecast_config(args)
    with failing_on_bad_input():
        run = forecast(config)
    if args.json:
        print(run.model_dump_json())
    elif len(run.series) == 1 and not run.skipped:
        print_forecast(run.only())
    else:
        print_panel_forecast(run)
    if not run.series:
        fail(f"no series of {config.data_dir} could be forecast ({len(run.skipped)} skipped)")


def first_interval(row: Mapping[str, Any]) -> str:
    """A forecast row's first (narrowest-level) interval, as "80 %: [lo, hi]"."""
    lows = sorted(key for key in row if key.startswith("lo-"))
    if not lows:
        return ""
    level = lows[0].removeprefix("lo-")
    return f"{level} %: [{row[f'lo-{level}']:.4g}, {row[f'hi-{level}']:.4g}]"


def step_text(row: Mapping[str, Any]) -> str:
    return f"{row['target']}  {row['forecast']:.4g}  {first_interval(row)}".rstrip()


def print_panel_forecast(summary: Any) -> None:
    """Per series its first step (date, forecast, interval) and, for more, its last."""
    from wavecast.tables import shown_id

    for key, one in summary.series.items():
        rows = one.forecasts
        last = f"  ... {rows[-1]['step']} steps to {step_text(rows[-1])}" if len(rows) > 1 else ""
        print(f"{shown_id(key):<15} {step_text(rows[0])}{last}")
    for key, reason in summary.skipped.items():
        print(f"{shown_id(key):<15} not forecast: {reason}")
    print(f"dataset  {summary.path}")


def print_forecast(summary: Any) -> None:
    print(f"\nforecast of {summary.series} from {summary.origin} by {summary.version}")
    for row in summary.forecasts:
        print(f"  {row['step']:>3}  {step_text(row)}")
    print(
        f"held-out coverage {summary.coverage}\ndataset  {summary.path}\nreport   {summary.report}"
    )


def run_monitor(args: argparse.Namespace) -> None:
    """Nothing to monitor is not an error; bad actuals are (exit 2); so is an event that
    cannot be delivered (the run fails)."""
    from wavecast.commands import run_monitor as monitor
    from wavecast.config import MonitorConfig
    from wavecast.tables import shown_id

    config = config_of(MonitorConfig, args, {name: (name,) for name in (*MONITOR_FLAGS, "series")})
    with failing_on_bad_input():
        summary = monitor(config)
    if args.json or summary.note:
        print(summary.model_dump_json(include={"series", "events"}) if args.json else summary.note)
        return
    print(f"\n{'series':<15} {'drift':<7}{'realized':>9}{'ratio':>8}{'cov 95':>8}  reason")
    for name, health in summary.series.items():
        ratio = "-" if health.error_ratio is None else f"{health.error_ratio:.2f}"
        cover = "-" if health.coverage_95 is None else f"{health.coverage_95:.0%}"
        drift = "yes" if health.drift else "no"
        row = f"{shown_id(name):<15} {drift:<7}{health.realized:>9}{ratio:>8}{cover:>8}"
        print(f"{row}  {health.reason}")
    print(f"events   {summary.events}\nrealized {summary.path}\nreport   {summary.report}")


def run_models(args: argparse.Namespace) -> None:
    """`wavecast models list|show|promote|rollback|prune`: a data dir's registry, or the
    registry of its panel's --series (list alone: every series' champion)."""
    import json

    from wavecast import registry
    from wavecast.commands import series_store
    from wavecast.panel import series_homes
    from wavecast.report import champion_lines, version_lines

    with failing_on_bad_input():
        store = series_store(args.data_dir, args.series)
        homes = series_homes(store) if args.action == "list" and args.series is None else {}
        if args.action == "prune":
            run_prune(args, store)
        elif args.action == "show":
            print(json.dumps(registry.describe_version(store, args.version), indent=2))
        elif args.action == "promote":
            champion = registry.promote_manually(store, args.version, args.reason)
            print(f"champion is now {champion.version}")
        elif args.action == "rollback":
            champion = registry.roll_back(store, args.reason)
            print(f"champion is now {champion.version}")
        elif homes.keys() - {None}:  # a panel's list: each series' champion
            rows = [(k, registry.champion_row(h.store)) for k, h in homes.items() if k is not None]
            print("\n".join(champion_lines(rows)))
        else:
            print("\n".join(version_lines(registry.version_rows(store))))


def run_prune(args: argparse.Namespace, store: DataDir) -> None:
    """Each entry that goes (or, with --dry-run, would go) with its bytes and why, then one
    line of totals; what could not be removed is said on stderr."""
    from wavecast.config import RetentionSpec
    from wavecast.retention import prune
    from wavecast.sweep import summary_line

    policy = config_of(RetentionSpec, args, RETENTION_PATHS)
    report = prune(store, policy, dry_run=args.dry_run)
    for removal in report.removed:
        print(f"{removal.size:>14,}  {removal.path}  ({removal.why})")
    print(summary_line(report, policy.min_age_s))
    for problem in report.problems:
        print(f"wavecast: {problem}", file=sys.stderr)


def run_server(args: argparse.Namespace) -> None:
    from wavecast.flows.embedded_server import stop_background_server

    print(stop_background_server())


def main(argv: Sequence[str] | None = None) -> None:
    """The `wavecast` command."""
    for key, value in ENVIRONMENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    commands = {
        "retrain": run_retrain,
        "forecast": run_forecast,
        "monitor": run_monitor,
        "server": run_server,
    }
    try:
        commands.get(args.command, run_models)(args)
    except KeyboardInterrupt:  # Ctrl-C: every stage's finished output is complete and kept
        print("wavecast: interrupted: finished work is kept; rerun to resume", file=sys.stderr)
        raise SystemExit(130) from None
    except RuntimeError as exc:  # Prefect's words when PREFECT_API_URL answers nothing
        if not str(exc).startswith("Failed to reach API"):
            raise
        print(f"wavecast: error: {exc} (is the Prefect server running?)", file=sys.stderr)
        raise SystemExit(1) from None


def run() -> None:
    """The `wavecast` console script: `main`, then an exit without the garbage collection
    Python runs at exit, which walks every object TensorFlow, Prefect and pydantic made
    (~1.2 s after a training) to free memory the process hands back anyway. Objects still
    die by reference count, and atexit handlers (Prefect's, logging's) still run. Not in
    `main`: a process that goes on after a command (a test's) keeps its collector."""
    try:
        main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    run()
