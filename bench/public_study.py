"""A study built from a public dataset: PandaLM's human-annotated test set, with two model judges.

The data (Apache-2.0) is PandaLM's test set (Wang et al., "PandaLM: An Automatic Evaluation Benchmark for LLM
Instruction Tuning Optimization", 2023), in the repository https://github.com/WeOpenML/PandaLM, folder
`data/` (read at commit 3871806e72b4832f815ecafd24d3503c73403f48):

- `testset-v1.json`: 999 pairs of responses (from 5 base models: llama-7b, bloom-7b, cerebras-gpt-6.7B,
  opt-7b, pythia-6.9b; `cmp_key` = "<model of response1>_<model of response2>") to 170 instructions, each
  pair voted by three people (`annotator1..3`: 0 = tie, 1 = response1 better, 2 = response2 better);
- `gpt-3.5-turbo-testset-v1.json`, `pandalm-7b-testset-v1.json`: the verdicts of GPT-3.5-turbo and of
  PandaLM-7B on the same pairs, in the same order (`idx`), each judged once with response1 shown first
  (`gpt_result` "1" / "2" / "Tie" / "garbage", `pandalm_result` 1 / 2 / 0).

Get it with `git clone https://github.com/WeOpenML/PandaLM` (the three files are 1.8 MB; nothing is
downloaded by this script). This script turns them into critlab's own judgments file (docs/formats.md,
"Judgments files") and then uses critlab's public commands only: `critlab import judgments` into a fresh
database and `critlab agreement` (JSON and Markdown, with `--annotator-models`).

Mapping: one item per distinct instruction (instruction, then the input after a blank line), its category
the `motivation_app`; one response per (model, text) within the item, id = the model name (a model that
gave two different texts to the same instruction in different pairs, which happens 17 times, gets a
second response `<model>#2`; six answers stored as JSON `true` by the file's pandas export become the text
"True"); per pair, three human `pairwise` votes (judges `annotator1..3`, shown =
[response1, response2]) and one model `pairwise` verdict per judge in that one order. GPT-3.5's "garbage"
(an unparseable answer, 25 pairs) counts as a tie, as PandaLM's own `data/compute_metrics.py` does, unless
`--drop-garbage` leaves those verdicts out. The pairs' `idx` are kept in the prompt's metadata.

PandaLM's published figures (data/compute_metrics.py, against the majority of the three annotators over
all 999 pairs): GPT-3.5-turbo accuracy 0.7107, macro precision 0.5879, recall 0.5736, F1 0.5755; PandaLM-7B
0.6677, 0.5738, 0.5750, 0.5743. critlab's figures of each model judge against `human consensus` are the same
quantities (no pair of this set has three different votes, so the majority is always unique), except that
critlab's classes are "the pair's lower response id wins / the other / tie" where PandaLM's are "response1
/ response2 / tie": accuracy is the same, the macro figures move in the 4th decimal. The script also prints
the macro figures with PandaLM's classes, rebuilt from the report's per-order confusion matrices.

`--cross-check` then refits the humans' Bradley–Terry scores of the models with scipy and the annotators'
Dawid–Skene / MACE competences with crowd-kit on the same votes, and prints the differences.

Usage: python bench/public_study.py PANDALM_DATA_DIR [--out-dir DIR] [--bootstrap 1000] [--drop-garbage]
                                   [--cross-check]
       python bench/public_study.py PANDALM_DATA_DIR --convert-only OUT.jsonl
Writes DIR/pandalm.jsonl, DIR/pandalm.duckdb, DIR/report.json, DIR/report.md (DIR defaults to
./public-study, which must not hold a database yet) and prints the published figures next to critlab's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HUMAN_FILE = "testset-v1.json"
MODEL_FILES = {  # judge name -> (file, verdict key, rationale key)
    "gpt-3.5-turbo": ("gpt-3.5-turbo-testset-v1.json", "gpt_result", "gpt_reason"),
    "pandalm-7b": ("pandalm-7b-testset-v1.json", "pandalm_result", "pandalm_reason"),
}
ANNOTATORS = ("annotator1", "annotator2", "annotator3")
# PandaLM's data/compute_metrics.py, printed in its comments (majority of the three annotators, 999 pairs)
PUBLISHED = {"gpt-3.5-turbo": {"accuracy": 0.7107, "precision_macro": 0.5879, "recall_macro": 0.5736,
                               "f1_macro": 0.5755},
             "pandalm-7b": {"accuracy": 0.6677, "precision_macro": 0.5738, "recall_macro": 0.5750,
                            "f1_macro": 0.5743}}


class DataError(ValueError):
    """The input files are not PandaLM's test set as described above."""


def _prompt_text(rec: dict[str, Any]) -> str:
    extra = rec.get("input")
    # older revisions of the file hold NaN (pandas' missing value) where newer ones hold ""
    if not isinstance(extra, str) or not extra.strip():
        return rec["instruction"]
    return f"{rec['instruction']}\n\n{extra}"


def _verdict(raw: Any, judge: str, idx: int, drop_garbage: bool) -> str | None:
    """'1' / '2' / 'tie', or None for a verdict left out."""
    v = str(raw).strip().lower()
    if v in ("1", "2"):
        return v
    if v in ("0", "tie"):
        return "tie"
    if v == "garbage":
        return None if drop_garbage else "tie"
    raise DataError(f"{judge}: pair idx {idx}: unknown verdict {raw!r}")


def load(data_dir: Path) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    try:
        pairs = json.loads((data_dir / HUMAN_FILE).read_text(encoding="utf-8"))
        models = {j: json.loads((data_dir / f).read_text(encoding="utf-8")) for j, (f, _, _) in MODEL_FILES.items()}
    except FileNotFoundError as e:
        raise DataError(f"missing {e.filename}: give the PandaLM repository's data/ folder") from e
    for judge, rows in models.items():
        if len(rows) != len(pairs) or any(r.get("idx") != p.get("idx") for r, p in zip(rows, pairs)):
            raise DataError(f"{MODEL_FILES[judge][0]}: its idx do not follow {HUMAN_FILE}'s one by one")
    return pairs, models


def items(pairs: list[dict[str, Any]], models: dict[str, list[dict[str, Any]]],
          drop_garbage: bool = False) -> Iterator[dict[str, Any]]:
    """critlab judgments-file items, one per distinct instruction, in first-seen order."""
    by_prompt: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(pairs):
        names = rec["cmp_key"].split("_")
        if len(names) != 2:
            raise DataError(f"{HUMAN_FILE}: pair idx {rec['idx']}: cmp_key {rec['cmp_key']!r} is not '<model>_<model>'")
        text = _prompt_text(rec)
        item = by_prompt.setdefault(text, {
            "item_id": f"p{len(by_prompt) + 1}", "prompt": text, "category": rec.get("motivation_app") or None,
            "metadata": {"source": "PandaLM data/testset-v1.json", "pair_idx": []},
            "responses": [], "judgments": []})
        item["metadata"]["pair_idx"].append(rec["idx"])
        shown = [_response_id(item, names[0], _response_text(rec, "response1")),
                 _response_id(item, names[1], _response_text(rec, "response2"))]
        for ann in ANNOTATORS:
            vote = {0: "tie", 1: shown[0], 2: shown[1]}.get(rec[ann])
            if vote is None:
                raise DataError(f"{HUMAN_FILE}: pair idx {rec['idx']}: {ann} = {rec[ann]!r} (expected 0, 1 or 2)")
            item["judgments"].append({"judge": ann, "judge_kind": "human", "type": "pairwise",
                                      "shown": shown, "winner": vote})
        for judge, rows in models.items():
            _, key, why = MODEL_FILES[judge]
            v = _verdict(rows[i][key], judge, rec["idx"], drop_garbage)
            if v is None:
                continue
            j = {"judge": judge, "judge_kind": "model", "type": "pairwise", "shown": shown,
                 "winner": {"1": shown[0], "2": shown[1]}.get(v, "tie")}
            if isinstance(rows[i].get(why), str) and rows[i][why].strip():
                j["rationale"] = rows[i][why]
            item["judgments"].append(j)
    yield from by_prompt.values()


def _response_text(rec: dict[str, Any], key: str) -> str:
    text = rec[key]
    # the file was written through pandas, which read six one-word answers "True" as booleans
    if isinstance(text, bool):
        return str(text)
    if not isinstance(text, str):
        raise DataError(f"{HUMAN_FILE}: pair idx {rec['idx']}: {key} is {type(text).__name__}, not text")
    return text


def _response_id(item: dict[str, Any], model: str, text: str) -> str:
    same_model = [r for r in item["responses"] if r["model"] == model]
    for r in same_model:
        if r["text"] == text:
            return r["id"]
    rid = model if not same_model else f"{model}#{len(same_model) + 1}"
    item["responses"].append({"id": rid, "text": text, "model": model})
    return rid


def convert(data_dir: Path, out: Path, drop_garbage: bool = False) -> dict[str, int]:
    pairs, models = load(data_dir)
    counts = {"items": 0, "responses": 0, "judgments": 0, "pairs": len(pairs)}
    with out.open("w", encoding="utf-8") as f:
        for it in items(pairs, models, drop_garbage):
            counts["items"] += 1
            counts["responses"] += len(it["responses"])
            counts["judgments"] += len(it["judgments"])
            f.write(json.dumps(it, ensure_ascii=False) + "\n")
    return counts


def critlab(*args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    r = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"critlab {' '.join(args)} failed ({r.returncode}):\n{r.stderr or r.stdout}")
    return r.stdout


def headline(report: dict[str, Any]) -> list[str]:
    """The published figures beside critlab's (model judge vs human consensus)."""
    found = {}
    for f in _figures(report.get("pairwise", {}).get("vs_consensus", [])):
        if f.get("order") == "combined" and f["judges"][1] == "human consensus":
            found[(f["judges"][0], f["metric"])] = f
    lines = []
    for judge, pub in PUBLISHED.items():
        for metric, value in pub.items():
            f = found.get((judge, metric))
            ours = "not in the report" if f is None else f"{f['value']:.4f} (n {f['n']}, 95% CI {_ci(f.get('ci'))})"
            lines.append(f"{judge:14} {metric:15} published {value:.4f}   critlab {ours}")
        pos = positional(report, judge)
        if pos:
            lines.append(f"{judge:14} with PandaLM's positional classes (response1 / response2 / tie): " +
                         ", ".join(f"{k} {v:.4f}" for k, v in pos.items()))
    return lines


def positional(report: dict[str, Any], judge: str) -> dict[str, float] | None:
    """Macro precision / recall / F1 with PandaLM's classes (response1 wins, response2 wins, tie: by position)
    from the report's per-order confusion matrices. critlab's classes put the pair's lower response id first,
    so a verdict shown the other way round (`ba`) swaps its first and second classes; each model judge here
    saw each pair once, so `ab` + `ba` turned back is the positional matrix of all 999 pairs."""
    mats = {r["order"]: np.array(r["confusion"]["matrix"], dtype=float)
            for r in report.get("pairwise", {}).get("vs_consensus", [])
            if r["judge"] == judge and r.get("order") in ("ab", "ba") and r.get("confusion")}
    if set(mats) != {"ab", "ba"}:
        return None
    swap = [1, 0, 2]
    m = mats["ab"] + mats["ba"][np.ix_(swap, swap)]
    tp = np.diag(m)
    precision, recall = tp / m.sum(axis=0), tp / m.sum(axis=1)
    f1 = 2 * precision * recall / (precision + recall)
    return {"accuracy": float(tp.sum() / m.sum()), "precision_macro": float(precision.mean()),
            "recall_macro": float(recall.mean()), "f1_macro": float(f1.mean())}


def _ci(ci: list[float] | None) -> str:
    return "none" if not ci else f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def _figures(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "metric" in node and "judges" in node and "value" in node:
            yield node
        for v in node.values():
            yield from _figures(v)
    elif isinstance(node, list):
        for v in node:
            yield from _figures(v)


def cross_check(db: Path, report: dict[str, Any]) -> list[str]:
    """The report's Bradley–Terry scores of the models (humans' votes) against a maximum-likelihood fit by
    scipy written here, and its Dawid–Skene / MACE competences against crowd-kit (a test extra) on the same
    votes, labelled as the report labels them (the pair's lower response id first)."""
    import duckdb
    import pandas as pd
    from scipy.optimize import minimize

    con = duckdb.connect(str(db), read_only=True)
    votes = con.execute("""
        SELECT least(j.response_id, j.response_b_id) || '-' || greatest(j.response_id, j.response_b_id) AS task,
               j.judge AS worker,
               CASE WHEN j.label IN ('tie', 'both_bad') THEN 'tie'
                    WHEN CAST(j.label AS BIGINT) = least(j.response_id, j.response_b_id) THEN 'first'
                    ELSE 'second' END AS label,
               ra.model_id AS model_a, rb.model_id AS model_b
        FROM judgment j JOIN response ra ON ra.id = least(j.response_id, j.response_b_id)
                        JOIN response rb ON rb.id = greatest(j.response_id, j.response_b_id)
        WHERE j.judge_kind = 'human' AND j.method = 'pairwise' AND j.superseded_at IS NULL""").df()
    con.close()
    lines = []
    # Bradley–Terry: P(a beats b) = σ(θa − θb), a tie half a win each way, θ centred
    models = sorted(set(votes["model_a"]) | set(votes["model_b"]))
    ix = {m: i for i, m in enumerate(models)}
    a, b = votes["model_a"].map(ix).to_numpy(), votes["model_b"].map(ix).to_numpy()
    y = votes["label"].map({"first": 1.0, "second": 0.0, "tie": 0.5}).to_numpy()

    def nll(theta: np.ndarray) -> float:
        p = 1 / (1 + np.exp(-(theta[a] - theta[b])))
        return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum())
    theta = minimize(nll, np.zeros(len(models)), method="BFGS", options={"gtol": 1e-10}).x
    theta -= theta.mean()
    humans = next((r for r in report.get("rankings", {}).get("models", {}).get("rankings", [])
                   if r.get("judge") == "humans"), None)
    if humans:
        ours = {sc["item"]: sc["score"] for sc in humans["scores"]}
        diff = max(abs(ours[m] - theta[ix[m]]) for m in models)
        lines.append(f"Bradley-Terry (models, humans' votes): largest difference to scipy's MLE {diff:.1e}")
    try:
        from crowdkit.aggregation import MACE, DawidSkene
    except ImportError:
        return [*lines, "crowd-kit is not installed (pip install -e '.[test]'): Dawid-Skene / MACE not checked"]
    # crowd-kit 1.4.2's MACE agrees with itself only when workers and labels first appear in sorted order
    df = pd.DataFrame(votes[["task", "worker", "label"]]).sort_values(["worker", "label"]).reset_index(drop=True)
    ds = DawidSkene(n_iter=100, tol=1e-5).fit(df)
    ds_acc = {w: float(sum(ds.priors_[c] * ds.errors_.loc[(w, c), c] for c in ds.priors_.index))
              for w in sorted(df["worker"].unique())}
    mace = MACE(n_restarts=1, n_iter=50, method="vb", random_state=0).fit(df)
    mace_k = dict(zip(sorted(df["worker"].unique()), mace.spamming_[:, 1]))
    rows = report.get("annotators", {}).get("questions", {}).get("pairwise", {}).get("annotators", [])
    for r in rows:
        if r.get("dawid_skene") is not None:
            lines.append(f"{r['judge']}: Dawid-Skene {r['dawid_skene']:.8f} (crowd-kit {ds_acc[r['judge']]:.8f}), "
                         f"MACE {r['mace']:.8f} (crowd-kit {mace_k[r['judge']]:.8f})")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", type=Path, help="the PandaLM repository's data/ folder")
    ap.add_argument("--out-dir", type=Path, default=Path("public-study"))
    ap.add_argument("--study", default="pandalm")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--drop-garbage", action="store_true", help="leave GPT-3.5's unparseable verdicts out")
    ap.add_argument("--convert-only", type=Path, metavar="OUT.jsonl", help="only write the judgments file")
    ap.add_argument("--cross-check", action="store_true",
                    help="also refit Bradley-Terry with scipy and Dawid-Skene / MACE with crowd-kit and compare")
    a = ap.parse_args()
    try:
        if a.convert_only:
            print(convert(a.data_dir, a.convert_only, a.drop_garbage))
            return
        a.out_dir.mkdir(parents=True, exist_ok=True)
        db, jsonl = (a.out_dir / "pandalm.duckdb").resolve(), (a.out_dir / "pandalm.jsonl").resolve()
        if db.exists():
            raise SystemExit(f"{db} exists: give another --out-dir")
        print("converted:", convert(a.data_dir, jsonl, a.drop_garbage))
    except DataError as e:
        raise SystemExit(f"error: {e}") from e
    t0 = time.perf_counter()
    print(critlab("import", "judgments", str(jsonl), "--study", a.study, "--db", str(db)).strip())
    print(f"import: {time.perf_counter() - t0:.1f} s")
    common = ("--study", a.study, "--db", str(db), "--bootstrap", str(a.bootstrap), "--annotator-models")
    for fmt in ("json", "md"):
        t0 = time.perf_counter()
        critlab("agreement", *common, "--format", fmt, "--out", str((a.out_dir / f"report.{fmt}").resolve()))
        print(f"agreement --format {fmt}: {time.perf_counter() - t0:.1f} s")
    report = json.loads((a.out_dir / "report.json").read_text(encoding="utf-8"))
    print("\n".join(headline(report)))
    if a.cross_check:
        print("\n".join(cross_check(db, report)))


if __name__ == "__main__":
    main()
