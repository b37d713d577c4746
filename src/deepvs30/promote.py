"""promote: champion/challenger in the MLflow Model Registry, by aliases (no stages).

The newest registered version carries the alias ``challenger`` (``deepvs30 register``); the
version in use carries ``champion``. ``deepvs30 promote`` scores both on one basis — by default
both are re-evaluated on the current prepared split (``evaluate.split`` of
``train.split_column``); without prepared data it falls back to the metrics registered with
each version, and refuses when their data version or split differ — and moves ``champion`` only
if the challenger's station MAPE is lower by ``promote.margin_pct`` percentage points and its
station std of ln(pred/true) is not higher by more than ``promote.max_std_ln_increase``.
``--force`` promotes anyway and says so; ``--to VERSION`` is the rollback.

Every decision (also a rejection or a refusal) is written to the deciding version's tags
(``promotion.*``: both versions' metrics, basis, data version, split, who, when, forced) and
appended as one line to its description and to the registered model's description, so the
registry itself tells the history. The last decision is also written to ``promote.out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deepvs30.config import data_path, section
from deepvs30.errors import DeepVs30Error, LeakageError
from deepvs30.register import CHALLENGER, CHAMPION, TARGETS_TAG
from deepvs30.tracking import MlflowParams, configure, data_version

TAG = "promotion"


@dataclass(frozen=True)
class PromoteParams:
    margin_pct: float = 1.0  # challenger station MAPE must be lower by this (percentage points)
    max_std_ln_increase: float = 0.0  # challenger station std ln may exceed champion's by this
    reevaluate: bool = True  # re-evaluate both on the prepared split (else: registered metrics)
    out: str = "reports/promotion.json"


@dataclass(frozen=True)
class Scores:
    """Station-level test metrics of one model version, and where they come from."""

    version: int
    mape_pct: float
    std_ln: float
    n_stations: int
    trained_on: str  # the data_version tag of the version
    targets_met: int | None = None  # the real benchmark's targets met (registered tag)


@dataclass(frozen=True)
class Basis:
    """What the two versions were scored on."""

    kind: str  # "re-evaluated" | "registered metrics"
    data_version: str
    split: str  # split_column:part


@dataclass
class Decision:
    action: str  # promoted | rejected | forced | rollback | first champion | refused | unchanged
    version: int | None  # the version decided about
    previous_champion: int | None
    reason: str
    challenger: Scores | None = None
    champion: Scores | None = None
    basis: Basis | None = None
    forced: bool = False
    by: str = ""
    at_utc: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def champion_moved(self) -> bool:
        return self.action in ("promoted", "forced", "rollback", "first champion")

    def line(self, model: str) -> str:
        """One line of history for the descriptions."""
        head = f"[{self.at_utc} by {self.by}] {model} v{self.version}: {self.action}"
        parts = [head, self.reason]
        if self.basis is not None:
            parts.append(f"{self.basis.kind} on {self.basis.split}, data {self.basis.data_version}")
        return "; ".join(parts + self.notes)


class PromotionRefused(DeepVs30Error):
    """The two versions cannot be compared on one basis."""


# --- the rule ----------------------------------------------------------------------------


def decide(challenger: Scores, champion: Scores, params: PromoteParams) -> tuple[bool, str]:
    """Whether the challenger replaces the champion, and why (numbers in the reason)."""
    gain = champion.mape_pct - challenger.mape_pct
    std_rise = challenger.std_ln - champion.std_ln
    numbers = (
        f"station MAPE {challenger.mape_pct:.2f}% vs {champion.mape_pct:.2f}% "
        f"(gain {gain:+.2f} points, margin {params.margin_pct:.2f}); station std ln "
        f"{challenger.std_ln:.3f} vs {champion.std_ln:.3f} "
        f"(change {std_rise:+.3f}, max +{params.max_std_ln_increase:.3f})"
    )
    if not (math.isfinite(challenger.mape_pct) and math.isfinite(challenger.std_ln)):
        return False, f"challenger metrics are not finite: {numbers}"
    met = (challenger.targets_met, champion.targets_met)
    if None not in met and met[0] != met[1]:  # targets (regions served) first, then MAPE
        verdict = "meets more" if met[0] > met[1] else "meets fewer"
        return met[0] > met[1], (f"{verdict} of the real benchmark's targets "
                                 f"({met[0]} vs {met[1]}): {numbers}")  # fmt: skip
    if gain < params.margin_pct:
        return False, f"MAPE not better by the margin: {numbers}"
    if std_rise > params.max_std_ln_increase + 1e-12:
        return False, f"std ln worse: {numbers}"
    return True, f"better: {numbers}"


# --- scoring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSetup:
    """Everything needed to re-evaluate a version on the current prepared split."""

    prepared: Path
    train: object  # TrainParams (imported lazily: torch)
    part: str
    data_dir: Path


def reevaluated_scores(model: str, version: int, setup: EvalSetup, trained_on: str) -> Scores:
    from deepvs30.evaluate import evaluate
    from deepvs30.pyfunc import load_bundle

    bundle = load_bundle(f"models:/{model}/{version}")
    metrics = evaluate(bundle, setup.prepared, setup.train, setup.part)["metrics"]  # type: ignore[arg-type]
    station = metrics["station"]
    return Scores(
        version,
        float(station["mape_pct"]),
        float(station["std_ln"]),
        int(metrics["n_stations"]),
        trained_on,
    )


def registered_scores(mv) -> Scores:
    """Scores from the metrics tags ``register`` wrote; PromotionRefused if absent."""
    try:
        mape = float(mv.tags["test.station.mape_pct"])
        std = float(mv.tags["test.station.std_ln"])
    except (KeyError, ValueError) as exc:
        raise PromotionRefused(
            f"version {mv.version} has no registered test metrics ({exc}); re-evaluation needs "
            "the prepared data (deepvs30 prepare)"
        ) from exc
    met = mv.tags.get(TARGETS_TAG)
    return Scores(int(mv.version), mape, std, -1, mv.tags.get("data_version", "unknown"),
                  int(met) if met is not None and met.isdigit() else None)  # fmt: skip


def score_pair(
    client, model: str, challenger, champion, setup: EvalSetup | None
) -> tuple[Scores, Scores, Basis]:
    """Both versions scored on one basis: re-evaluated if possible, else their registered
    metrics if they were measured on the same data version and split, else refused."""
    if setup is not None:
        current = data_version(setup.data_dir)
        split = f"{setup.train.split_column}:{setup.part}"
        try:  # evaluate refuses a version on stations its provenance says it trained on
            scores = [
                reevaluated_scores(
                    model, int(mv.version), setup, mv.tags.get("data_version", "unknown")
                )
                for mv in (challenger, champion)
            ]
        except LeakageError as exc:
            raise PromotionRefused(f"re-evaluation refused: {exc}") from exc
        return scores[0], scores[1], Basis("re-evaluated", current, split)
    differ = [
        key
        for key in ("data_version", "split")
        if challenger.tags.get(key, "unknown") != champion.tags.get(key, "unknown")
        or challenger.tags.get(key, "unknown") == "unknown"
    ]
    if differ:
        shown = ", ".join(
            f"{k}: v{challenger.version}={challenger.tags.get(k, 'unknown')} "
            f"v{champion.version}={champion.tags.get(k, 'unknown')}"
            for k in differ
        )
        raise PromotionRefused(
            f"cannot compare v{challenger.version} with v{champion.version}: registered metrics "
            f"differ in {shown}, and no prepared data to re-evaluate both (run deepvs30 prepare)"
        )
    basis = Basis("registered metrics", challenger.tags["data_version"], challenger.tags["split"])
    return registered_scores(challenger), registered_scores(champion), basis


def eval_setup(params: dict, promote: PromoteParams) -> tuple[EvalSetup | None, str]:
    """The re-evaluation set-up, or None and why not."""
    from deepvs30.evaluate import EvaluateParams
    from deepvs30.prepare import PrepareParams
    from deepvs30.train import TrainParams

    if not promote.reevaluate:
        return None, "promote.reevaluate is false"
    prepared = Path(section(params, "prepare", PrepareParams).out)
    if not (prepared / "records.csv").is_file():
        return None, f"no prepared data at {prepared}"
    setup = EvalSetup(
        prepared=prepared,
        train=section(params, "train", TrainParams),
        part=section(params, "evaluate", EvaluateParams).split,
        data_dir=Path(data_path(params)),
    )
    return setup, ""


# --- the registry ------------------------------------------------------------------------


def version_by_alias(client, model: str, alias: str):
    import mlflow

    try:
        return client.get_model_version_by_alias(model, alias)
    except mlflow.exceptions.MlflowException:
        return None


def _version(client, model: str, version: int | str):
    import mlflow

    try:
        return client.get_model_version(model, str(version))
    except mlflow.exceptions.MlflowException as exc:
        raise DeepVs30Error(f"{model} version {version}: not in the registry ({exc})") from exc


def _challenger(client, model: str):
    """The version aliased challenger, else the newest version; DeepVs30Error if none."""
    found = version_by_alias(client, model, CHALLENGER)
    if found is not None:
        return found, ""
    versions = client.search_model_versions(f"name='{model}'")
    if not versions:
        raise DeepVs30Error(f"no registered versions of {model!r}; run deepvs30 register first")
    newest = max(versions, key=lambda mv: int(mv.version))
    return newest, f"no '{CHALLENGER}' alias: newest version v{newest.version} used"


def who_and_when() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return user, dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def decision_tags(decision: Decision) -> dict[str, str]:
    tags = {
        f"{TAG}.decision": decision.action,
        f"{TAG}.reason": decision.reason,
        f"{TAG}.by": decision.by,
        f"{TAG}.at_utc": decision.at_utc,
        f"{TAG}.forced": str(decision.forced).lower(),
        f"{TAG}.champion_before": _v(decision.previous_champion),
    }
    if decision.basis is not None:
        tags.update(
            {
                f"{TAG}.basis": decision.basis.kind,
                f"{TAG}.data_version": decision.basis.data_version,
                f"{TAG}.split": decision.basis.split,
            }
        )
    for role, scores in (("challenger", decision.challenger), ("champion", decision.champion)):
        if scores is not None:
            tags.update(
                {
                    f"{TAG}.{role}.version": str(scores.version),
                    f"{TAG}.{role}.station_mape_pct": f"{scores.mape_pct:.4f}",
                    f"{TAG}.{role}.station_std_ln": f"{scores.std_ln:.4f}",
                    f"{TAG}.{role}.n_stations": str(scores.n_stations),
                    f"{TAG}.{role}.trained_on": scores.trained_on,
                }
            )
    if decision.notes:
        tags[f"{TAG}.notes"] = " | ".join(decision.notes)
    return tags


def _v(version: int | None) -> str:
    return "none" if version is None else str(version)


def _append(existing: str | None, line: str) -> str:
    return f"{existing.rstrip()}\n{line}" if existing else line


def record(client, model: str, decision: Decision) -> None:
    """Tags and description lines on the version, the replaced champion and the model."""
    version = str(decision.version)
    for key, value in decision_tags(decision).items():
        client.set_model_version_tag(model, version, key, value[:5000])
    line = decision.line(model)
    mv = client.get_model_version(model, version)
    client.update_model_version(model, version, description=_append(mv.description, line))
    old = decision.previous_champion
    if decision.champion_moved and old is not None and str(old) != version:
        client.set_model_version_tag(model, str(old), f"{TAG}.replaced_by", version)
        client.set_model_version_tag(model, str(old), f"{TAG}.replaced_at_utc", decision.at_utc)
        previous = client.get_model_version(model, str(old))
        note = (
            f"[{decision.at_utc} by {decision.by}] replaced as {CHAMPION} by v{version} "
            f"({decision.action})"
        )
        client.update_model_version(
            model, str(old), description=_append(previous.description, note)
        )
    registered = client.get_registered_model(model)
    client.update_registered_model(model, description=_append(registered.description, line))


# --- the two commands --------------------------------------------------------------------


def promote(
    client,
    model: str,
    params: PromoteParams,
    setup: EvalSetup | None,
    why_no_setup: str = "",
    force: bool = False,
    note: str = "",
) -> Decision:
    """Compare challenger with champion, move the alias if warranted, record the decision."""
    challenger, how = _challenger(client, model)
    champion = version_by_alias(client, model, CHAMPION)
    by, at = who_and_when()
    notes = [n for n in (how, note and f"note: {note}") if n]
    version = int(challenger.version)
    if champion is None:
        decision = Decision(
            "first champion",
            version,
            None,
            "no champion yet",
            forced=force,
            by=by,
            at_utc=at,
            notes=notes,
        )
        return _apply(client, model, decision)
    if int(champion.version) == version:
        return Decision(
            "unchanged",
            version,
            version,
            f"v{version} is already {CHAMPION}: nothing to compare",
            by=by,
            at_utc=at,
        )
    previous = int(champion.version)
    if setup is None and why_no_setup:
        notes.append(f"not re-evaluated: {why_no_setup}")
    try:
        ch, cp, basis = score_pair(client, model, challenger, champion, setup)
    except PromotionRefused as exc:
        action, reason = (
            ("forced", f"--force without comparison: {exc}") if force else ("refused", str(exc))
        )
        return _apply(
            client,
            model,
            Decision(
                action, version, previous, reason, forced=force, by=by, at_utc=at, notes=notes
            ),
        )
    better, reason = decide(ch, cp, params)
    for scores in (ch, cp):
        if basis.kind == "re-evaluated" and scores.trained_on != basis.data_version:
            notes.append(
                f"v{scores.version} was trained on data {scores.trained_on}, not the "
                f"evaluated {basis.data_version} (its training stations were checked "
                "against this test split: none overlap)"
            )
    if better:
        action = "promoted"
    elif force:
        action, reason = "forced", f"--force, although the rule says no: {reason}"
    else:
        action = "rejected"
    decision = Decision(action, version, previous, reason, ch, cp, basis, force, by, at, notes)
    return _apply(client, model, decision)


def rollback(client, model: str, to_version: int, note: str = "") -> Decision:
    """Point champion at an earlier (or any) version; recorded like a promotion."""
    target = _version(client, model, to_version)
    champion = version_by_alias(client, model, CHAMPION)
    previous = None if champion is None else int(champion.version)
    by, at = who_and_when()
    version = int(target.version)
    if previous == version:
        return Decision(
            "unchanged", version, previous, f"v{version} is already {CHAMPION}", by=by, at_utc=at
        )
    reason = f"--to {version}: {CHAMPION} moved from v{_v(previous)} to v{version}"
    notes = [f"note: {note}"] if note else []
    return _apply(
        client,
        model,
        Decision("rollback", version, previous, reason, by=by, at_utc=at, notes=notes),
    )


def _apply(client, model: str, decision: Decision) -> Decision:
    if decision.champion_moved:
        client.set_registered_model_alias(model, CHAMPION, str(decision.version))
    record(client, model, decision)
    return decision


# --- the stage ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force",
        action="store_true",
        help="promote the challenger even if the rule says no (recorded)",
    )
    parser.add_argument(
        "--to", type=int, metavar="VERSION", help="rollback: make VERSION the champion (recorded)"
    )
    parser.add_argument("--note", default="", help="free text recorded with the decision")
    parser.add_argument("--model", help="registered model name (default: mlflow.registered_model)")


def run(args: argparse.Namespace, params: dict) -> int:
    from mlflow import MlflowClient

    promote_params = section(params, "promote", PromoteParams)
    mlflow_params = section(params, "mlflow", MlflowParams)
    configure(mlflow_params)
    client = MlflowClient()
    model = args.model or mlflow_params.registered_model
    if args.to is not None:
        if args.force:
            raise DeepVs30Error("--to and --force do not go together: --to always moves")
        decision = rollback(client, model, args.to, args.note)
    else:
        setup, why = eval_setup(params, promote_params)
        decision = promote(client, model, promote_params, setup, why, args.force, args.note)
    print(decision.line(model))
    print(f"{CHAMPION}: v{_current(client, model)}")
    out = Path(promote_params.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": model, **asdict(decision)}, indent=1))
    return 1 if decision.action == "refused" else 0


def _current(client, model: str) -> str:
    mv = version_by_alias(client, model, CHAMPION)
    return "none" if mv is None else str(mv.version)
