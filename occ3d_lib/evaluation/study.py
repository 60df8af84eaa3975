"""The course study: how much the teacher learns per CPU-second (notebook 03, section 2).

``benchmarks/study_course.py`` trains the course teacher under several set-ups and writes one JSON
record per run: validation-identity landmark ME (pixels at 224) and dense 3D error (mm) of the
network and of the mean face at the true pose, against the CPU-seconds of training. This module
reads those records, checks them, and turns them into the table and the figure that notebook 03
and ``docs/course_study.md`` show. The records the series ships live in ``docs/course_study/``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from occ3d_lib.core.thresholds import COURSE_GOAL_DENSE, COURSE_GOAL_ME, COURSE_GOAL_OCCLUDED

#: Where the committed study records live, relative to the repository root.
STUDY_DIR = Path(__file__).resolve().parents[2] / "docs" / "course_study"
#: Records of runs made on a GPU (wall-clock bound, not CPU-bound; kept apart from the CPU study).
DEVICE_STUDY_DIR = STUDY_DIR / "gpu"

_POINT_KEYS = ("step", "cpu_s", "wall_s", "me", "dense_mm", "baseline_me", "baseline_dense_mm")


def _read_records(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The JSON records at ``paths``; a file that is not JSON is named with what to do."""
    records = []
    for p in paths:
        try:
            records.append(json.loads(p.read_text()))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p} is not valid JSON ({e}); delete it and rerun the study") from e
    return records


def load_study(folder: str | Path = STUDY_DIR) -> list[dict[str, Any]]:
    """Every study record (``*.json``) in ``folder``, sorted by name; each is checked for its fields.

    Raises ``FileNotFoundError`` naming the command that writes them when the folder has none, and
    ``ValueError`` for a record without its fields or without points.

    Args:
        folder: the folder of the records (default :data:`STUDY_DIR`, ``docs/course_study``).

    Returns:
        A list of record dicts, each with ``setup``, ``steps`` and ``points`` (dicts with ``step``, ``cpu_s``,
        ``wall_s``, ``me``, ``dense_mm``, ``baseline_me``, ``baseline_dense_mm``).
    """
    folder = Path(folder)
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"no study records in {folder}; run "
                                f"`.venv/bin/python benchmarks/study_course.py --setup <name> --out {folder}`")
    records = _read_records(paths)
    for p, r in zip(paths, records):
        missing = [k for k in ("setup", "steps", "points") if k not in r]
        bad = [i for i, pt in enumerate(r.get("points", [])) if any(k not in pt for k in _POINT_KEYS)]
        if missing or bad or not r.get("points"):
            raise ValueError(f"{p} is not a study record (missing {missing or 'point fields'}); rerun the study")
    return records


def study_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per record: its last point, with the errors as fractions of the mean face's.

    Args:
        records: study records (:func:`load_study`).

    Returns:
        A list of dicts: ``setup``, ``steps``, ``cpu_min``, ``ms_per_step`` (wall), ``me`` (px at 224),
        ``me_ratio``, ``dense_mm``, ``dense_ratio`` (ratios to the mean face at the true pose).
    """
    rows = []
    for r in records:
        last = r["points"][-1]
        rows.append({"setup": r["setup"], "steps": last["step"], "cpu_min": last["cpu_s"] / 60,
                     "ms_per_step": 1000 * last["wall_s"] / max(last["step"], 1),
                     "me": last["me"], "me_ratio": last["me"] / last["baseline_me"],
                     "dense_mm": last["dense_mm"], "dense_ratio": last["dense_mm"] / last["baseline_dense_mm"]})
    return rows


def study_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """The study as a markdown table (validation identities; ratios to the mean face at the true pose).

    Args:
        records: study records (:func:`load_study`).

    Returns:
        The markdown table as a str, one row per record (:func:`study_rows`).
    """
    lines = ["| set-up | steps | CPU min | wall ms / step | val ME px | x mean face | dense mm | x mean face |",
             "|---|---|---|---|---|---|---|---|"]
    for w in study_rows(records):
        lines.append(f"| {w['setup']} | {w['steps']} | {w['cpu_min']:.1f} | {w['ms_per_step']:.0f} | {w['me']:.2f} | "
                     f"{w['me_ratio']:.2f} | {w['dense_mm']:.2f} | {w['dense_ratio']:.2f} |")
    return "\n".join(lines)



def limit_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """Where the study's budget ends: the longest run's last point against the course goals.

    The goals are :data:`occ3d_lib.core.thresholds.COURSE_GOAL_ME` / ``COURSE_GOAL_DENSE``; the text also
    says how much its landmark error still fell over its last quarter of CPU time. Notebook 03 section 2.

    Args:
        records: study records (:func:`load_study`); the longest is the one with the most CPU time.

    Returns:
        A markdown paragraph as a str.
    """
    longest = max(records, key=lambda r: r["points"][-1]["cpu_s"])
    pts, last = longest["points"], longest["points"][-1]
    earlier = min(pts, key=lambda p: abs(p["cpu_s"] - 0.75 * last["cpu_s"]))
    me_r, dense_r = last["me"] / last["baseline_me"], last["dense_mm"] / last["baseline_dense_mm"]
    verdict = ("reaches both goals" if me_r <= COURSE_GOAL_ME and dense_r <= COURSE_GOAL_DENSE
               else "does not reach the goals")
    return (f"The longest run of the study ({longest['setup']}, {last['step']} steps, {last['cpu_s'] / 60:.0f} "
            f"CPU-minutes) ends at **{me_r:.2f} x** the mean face's landmark ME and **{dense_r:.2f} x** its dense 3D "
            f"error; the course goals are {COURSE_GOAL_ME:g} x and {COURSE_GOAL_DENSE:g} x, so it {verdict}. Over its "
            f"last quarter of CPU time (from step {earlier['step']}) the landmark ME still fell from "
            f"{earlier['me']:.2f} to {last['me']:.2f} px.")


def _last_ratios(record: Mapping[str, Any]) -> tuple[dict[str, Any], float, float]:
    last = record["points"][-1]
    return last, last["me"] / last["baseline_me"], last["dense_mm"] / last["baseline_dense_mm"]


def device_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """The GPU records as a markdown table: set-up, batch, training identities, steps done of the schedule,
    wall-clock minutes, validation errors and their ratios to the mean face. Notebook 03, section 2.

    Args:
        records: study records made on a GPU (:func:`load_study` of :data:`DEVICE_STUDY_DIR`).

    Returns:
        The markdown table as a str, one row per record.
    """
    lines = ["| set-up | batch | training identities | steps done / schedule | wall min | val ME px | x mean face "
             "| dense mm | x mean face |", "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        last, me_r, dense_r = _last_ratios(r)
        prof = r.get("profile", {})
        lines.append(f"| {r['setup']} | {prof.get('teacher_batch_size', '?')} | {prof.get('n_train_identities', '?')} "
                     f"| {last['step']} / {r['steps']} | {last['wall_s'] / 60:.1f} | {last['me']:.2f} | {me_r:.2f} "
                     f"| {last['dense_mm']:.2f} | {dense_r:.2f} |")
    return "\n".join(lines)


def data_limit_markdown(records: Sequence[Mapping[str, Any]]) -> str:
    """What limits the shipped teacher, read from GPU records of the same schedule: more samples per step on
    the same training identities against more samples and more identities, each against the course goals.

    The records compared are those whose schedule (``steps``) is the most common one; each is read at its
    last evaluation. Notebook 03, section 2.

    Args:
        records: study records made on a GPU (:func:`load_study` of :data:`DEVICE_STUDY_DIR`).

    Returns:
        A markdown paragraph as a str.
    """
    if not records:
        raise ValueError("data_limit_markdown needs at least one study record")
    schedules = [r["steps"] for r in records]
    steps = max(set(schedules), key=schedules.count)
    same = [r for r in records if r["steps"] == steps]

    def key(r: Mapping[str, Any]) -> tuple[int, int]:
        prof = r.get("profile", {})
        return int(prof.get("teacher_batch_size", 0)), int(prof.get("n_train_identities", 0))

    base = min(same, key=key)
    best = min(same, key=lambda r: _last_ratios(r)[1])
    parts = []
    for r in sorted(same, key=key):
        last, me_r, dense_r = _last_ratios(r)
        b, n = key(r)
        parts.append(f"batch {b} on {n} training identities reaches **{me_r:.2f} x** (landmarks) and "
                     f"**{dense_r:.2f} x** (3D) at step {last['step']}")
    _, best_me, best_dense = _last_ratios(best)
    meets = best_me <= COURSE_GOAL_ME and best_dense <= COURSE_GOAL_DENSE
    text = (f"On a GPU, with the {steps}-step schedule of the shipped teacher (records in "
            f"`docs/course_study/gpu/`, each stopped by the machine's time limit before the end of its schedule): "
            + "; ".join(parts) + ".")
    same_ids = [r for r in same if key(r)[1] == key(base)[1] and key(r)[0] > key(base)[0]]
    if same_ids and all(_last_ratios(r)[1] > _last_ratios(base)[1] for r in same_ids):
        text += (" More samples of the same identities made the validation error worse, not better: the network "
                 "learns its training faces, so the number of training identities is what limits it.")
    text += (f" The best of these {'meets' if meets else 'does not meet'} the course goals ({COURSE_GOAL_ME:g} x and "
             f"{COURSE_GOAL_DENSE:g} x).")
    return text


def plot_study(records: Sequence[Mapping[str, Any]], axes: Any = None,
               targets: tuple[float, float] | None = (COURSE_GOAL_ME, COURSE_GOAL_DENSE)) -> Any:
    """Validation landmark ME and dense 3D error against CPU-minutes, one line per set-up.

    The mean face at the true pose is a dashed line and, when ``targets`` is given, the course profile's
    goals (that fraction of the mean face's error, landmarks then 3D) are dotted lines.

    Args:
        records: study records (:func:`load_study`); the mean face is read from the first record's last point.
        axes: two matplotlib Axes (landmarks, then 3D), or None for a new figure of two panels.
        targets: ``(landmark goal, 3D goal)`` as fractions of the mean face's error, or None for no goal lines.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(14, 3.8))
    fig = axes[0].figure
    for r in records:
        xs = [p["cpu_s"] / 60 for p in r["points"]]
        label = f"{r['setup']} ({r['steps']} steps)"
        axes[0].plot(xs, [p["me"] for p in r["points"]], "o-", label=label)
        axes[1].plot(xs, [p["dense_mm"] for p in r["points"]], "o-", label=label)
    base = records[0]["points"][-1]
    panels = ((axes[0], "baseline_me", "landmark ME (px at 224)"), (axes[1], "baseline_dense_mm", "dense 3D error (mm)"))
    for i, (ax, key, unit) in enumerate(panels):
        ax.axhline(base[key], color="k", ls="--", lw=1, label="mean face at the true pose")
        if targets is not None:
            ax.axhline(targets[i] * base[key], color="k", ls=":", lw=1.2,
                       label=f"goal: {targets[0]:g}x (landmarks) / {targets[1]:g}x (3D) the mean face")
        ax.set_xlabel("CPU-minutes of training")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].set_title("validation identities: landmarks")
    axes[1].set_title("validation identities: dense shape")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))  # beside the data, not on it
    fig.tight_layout()
    return fig


def load_sopi_study(folder: str | Path = STUDY_DIR) -> list[dict[str, Any]]:
    """The SOPI records (``folder/sopi/*.json``, written by ``study_course.py --sopi-steps``), sorted by name.

    A folder without records is a ``FileNotFoundError`` naming the command that writes them; a record that
    is not a SOPI record a ``ValueError``.

    Args:
        folder: the study folder; its ``sopi`` subfolder is read (default :data:`STUDY_DIR`).

    Returns:
        A list of record dicts with ``stage`` "sopi" and ``points`` (each with ``clean`` and the other kinds' ME).
    """
    paths = sorted((Path(folder) / "sopi").glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"no SOPI study records in {Path(folder) / 'sopi'}; run `.venv/bin/python "
                                f"benchmarks/study_course.py --setup <name> --steps <teacher steps> --sopi-steps <n>`")
    records = _read_records(paths)
    for p, r in zip(paths, records):
        if r.get("stage") != "sopi" or not r.get("points") or any("clean" not in pt for pt in r["points"]):
            raise ValueError(f"{p} is not a SOPI study record; rerun the study")
    return records


#: The SOPI training mix the first SOPI study records were made with (a name in
#: :data:`occ3d_lib.training.stages.SOPI_MIXES`): record names and table rows leave it unnamed.
FIRST_SOPI_MIX = "squares 10 %"


def sopi_markdown(records: Sequence[Mapping[str, Any]], kinds: Sequence[str] = ("clean", "dsofi", "dhofi", "shofi",
                                                                                  "random_pattern", "natural")) -> str:
    """SOPI's validation ME per kind at each recorded step, and the mean face at the true pose as the last row.

    Step 0 is the teacher it starts from (a shipped one named by the start of its BLAKE2b); each SOPI row
    names its loss (Eq. 6 alone, or with the landmark term's weight) and, where the record has them, its
    training mix (unless :data:`FIRST_SOPI_MIX`), frozen BatchNorm statistics, fixed early trunk stages and a
    learning rate set for the run rather than the profile's; a kind a record did not measure is empty; each
    occluded kind has the
    occluded-to-clean ratio in brackets. Where a record holds histogram dissimilarities (``hist_<kind>``), a
    last column gives them on clean and SHOFI faces (empty for records without them).

    Args:
        records: SOPI study records (:func:`load_sopi_study`).
        kinds: the columns: "clean" and the occlusion kinds.

    Returns:
        The markdown table as a str, one row per recorded point.
    """
    with_hist = any("hist_clean" in pt for r in records for pt in r["points"])
    head = "| model | steps | CPU min | " + " | ".join(k.replace("_", " ") for k in kinds) + " |"
    head += " histogram clean / SHOFI |" if with_hist else ""
    lines = [head, "|" + "---|" * (len(kinds) + 3 + with_hist)]
    for r in records:
        for pt in r["points"]:
            shipped = str(r.get("teacher", {}).get("pretrained", ""))[:8]
            which = f"pretrained teacher {shipped}" if shipped else "teacher"
            w = float(r.get("landmark_weight") or 0.0)
            loss = f"Eq. 6 + landmarks x {w:g}" if w else "Eq. 6"
            if r.get("mix") and r["mix"] != FIRST_SOPI_MIX:
                loss += f", {r['mix']}"
            if r.get("freeze_bn"):
                loss += ", frozen BN"
            if r.get("frozen_stages"):
                loss += f", first {r['frozen_stages']} trunk stages fixed"
            if r.get("lr_set"):
                loss += f", lr {r['sopi_lr']:g}"
            name = f"{which} ({r['teacher_steps']} steps)" if pt["step"] == 0 else f"SOPI ({loss})"
            cells = [(f"{pt[k]:.2f}" + (f" ({pt[k] / pt['clean']:.2f})" if k != "clean" else "")) if k in pt else ""
                     for k in kinds]  # a kind the record did not measure (natural occluders in the earlier records): empty
            if with_hist:
                cells.append(f"{pt['hist_clean']:.3f} / {pt['hist_shofi']:.3f}" if "hist_clean" in pt else "")
            lines.append(f"| {name} | {pt['step']} | {pt['cpu_s'] / 60:.1f} | " + " | ".join(cells) + " |")
    base = {k: v for r in records for k, v in r["points"][-1].items() if k.startswith("baseline_")}
    lines.append("| mean face at the true pose | | | " + " | ".join(
        f"{base['baseline_' + k]:.2f}" if "baseline_" + k in base else "" for k in kinds) + " |"
                 + (" |" if with_hist else ""))
    return "\n".join(lines)


#: The command that writes a SOPI study record from the shipped teacher (add the settings' options).
SOPI_STUDY_COMMAND = (".venv/bin/python benchmarks/study_course.py --setup \"efficientnet_lite0 imagenet, no photometric\" "
                      "--pretrained-teacher --sopi-steps 2400 --eval-every 600 --out docs/course_study")


def matching_sopi_record(records: Sequence[Mapping[str, Any]], settings: Any) -> Mapping[str, Any] | None:
    """The longest SOPI study record made from the shipped teacher with ``settings`` and the profile's learning rate.

    Notebook 03 section 6 uses it to read the course's own SOPI recipe from the study.

    Args:
        records: SOPI study records (:func:`load_sopi_study`).
        settings: resolved SOPI settings (``stages.SopiSettings``): its ``landmark_weight``, ``mix``,
            ``freeze_bn`` and ``frozen_stages`` must equal the record's.

    Returns:
        The matching record with the most steps, or None when none matches (the paper profile's settings,
        say: :func:`occluded_goal_markdown` then says so).
    """
    def same(r: Mapping[str, Any]) -> bool:
        return (bool(r.get("teacher", {}).get("pretrained")) and not r.get("lr_set")
                and float(r.get("landmark_weight") or 0.0) == float(settings.landmark_weight or 0.0)
                and dict(r.get("mix_weights") or {}) == dict(settings.mix)
                and bool(r.get("freeze_bn")) == bool(settings.freeze_bn)
                and int(r.get("frozen_stages") or 0) == int(settings.frozen_stages or 0))

    found = [r for r in records if same(r)]
    return max(found, key=lambda r: r["points"][-1]["step"]) if found else None


def occluded_goal_markdown(record: Mapping[str, Any] | None, kinds: Sequence[str] = ("dsofi", "dhofi", "shofi"),
                           goal: float = COURSE_GOAL_OCCLUDED) -> str:
    """How far a SOPI study run is from the course goal "occluded ME <= ``goal`` x clean ME", step by step.

    For each recorded SOPI step (step 0, the teacher, is left out) and each kind: the ME, its ratio to the
    clean ME and the gap ``ME - goal x clean`` in pixels (<= 0: goal met). A closing paragraph reads the last
    interval: per kind, whether the gap closed or widened, and by how much per 100 steps. Notebook 03 section 6.

    Args:
        record: one SOPI study record (e.g. :func:`matching_sopi_record`), with at least one step > 0; None
            gives a sentence saying that no record was made with these settings and the command that makes one.
        kinds: the occluded kinds to read (each must be in the record's points).
        goal: the ratio to reach (default :data:`occ3d_lib.core.thresholds.COURSE_GOAL_OCCLUDED`).

    Returns:
        A markdown table and a paragraph, as a str.
    """
    if record is None:
        return (f"No study record was made with this profile's SOPI settings, so there is no curve to read; "
                f"`{SOPI_STUDY_COMMAND}`, with the options of these settings, makes one.")
    pts = [p for p in record["points"] if p["step"] > 0]
    if not pts or any(k not in p for p in pts for k in kinds):
        raise ValueError(f"the record has no SOPI points with {list(kinds)}; rerun the study")
    head = "| SOPI step | CPU min | clean | " + " | ".join(f"{k.upper()} (ratio; gap px)" for k in kinds) + " |"
    lines = [head, "|" + "---|" * (len(kinds) + 3)]
    for p in pts:
        cells = [f"{p[k]:.2f} ({p[k] / p['clean']:.2f}; {p[k] - goal * p['clean']:+.2f})" for k in kinds]
        lines.append(f"| {p['step']} | {p['cpu_s'] / 60:.1f} | {p['clean']:.2f} | " + " | ".join(cells) + " |")
    text = [f"The gap is the occluded error minus {goal:g} x the clean error: the goal is met where it is at most 0."]
    if len(pts) >= 2:
        a, b = pts[-2], pts[-1]
        per = 100 / (b["step"] - a["step"])
        reading = []
        for k in kinds:
            ga, gb = a[k] - goal * a["clean"], b[k] - goal * b["clean"]
            if gb <= 0:
                reading.append(f"{k.upper()} meets it")
            elif gb < ga:
                reading.append(f"{k.upper()} closes it by {(ga - gb) * per:.3f} px per 100 steps "
                               f"(about {gb / ((ga - gb) * per) * 100:.0f} more steps on a straight line)")
            else:
                reading.append(f"{k.upper()} widens it by {(gb - ga) * per:.3f} px per 100 steps")
        text.append(f"Between steps {a['step']} and {b['step']} the clean error fell from {a['clean']:.2f} to "
                    f"{b['clean']:.2f} px; " + "; ".join(reading) + ". Where a gap widens, more steps of this recipe "
                    "lower the clean error as fast as the occluded one and do not bring the ratio down.")
    return "\n".join(lines) + "\n\n" + " ".join(text)


def _loop_seconds(records: Sequence[Mapping[str, Any]]) -> float:
    """Seconds of a training history. Histories written before the Trainer counted across resumes
    restart their clock at a resume; each such segment's last value is added."""
    total, prev = 0.0, 0.0
    for r in records:
        sec = float(r["seconds"])
        if sec < prev:  # the clock restarted: a resumed run
            total += prev
        prev = sec
    return total + prev


def stage_seconds(run_dir: str | Path) -> list[dict[str, Any]]:
    """Where a run's training time went: one row per trained stage of ``run_dir/checkpoints/``.

    Each finished stage folder (``<stage>-<hash>/final.pt`` beside ``history.json``) gives its
    stage name, steps and the seconds its training loop logged (evaluation and caching excluded);
    when a stage was trained under several configurations the newest is kept. Rows come in the
    order the stages finished. Used by docs/timings.md's and notebook 00's account of the course run.
    """
    rows: dict[str, dict[str, Any]] = {}
    for hist in sorted(Path(run_dir).glob("checkpoints/*/history.json")):
        final = hist.parent / "final.pt"
        if not final.exists():
            continue
        try:
            records = json.loads(hist.read_text())["history"]
            step, seconds = int(records[-1]["step"]), _loop_seconds(records)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ValueError(f"{hist} is not a training history ({e}); delete its folder and rerun the stage") from e
        stage = hist.parent.name.rsplit("-", 1)[0]
        row = {"stage": stage, "steps": step, "seconds": seconds, "s_per_step": seconds / max(step, 1),
               "finished": final.stat().st_mtime}
        if stage not in rows or row["finished"] > rows[stage]["finished"]:
            rows[stage] = row
    return sorted(rows.values(), key=lambda r: r["finished"])


def stage_seconds_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """:func:`stage_seconds` as a markdown table (minutes and seconds per step)."""
    lines = ["| stage | steps | minutes | s / step |", "|---|---|---|---|"]
    lines += [f"| {r['stage']} | {r['steps']} | {r['seconds'] / 60:.1f} | {r['s_per_step']:.2f} |" for r in rows]
    return "\n".join(lines)
