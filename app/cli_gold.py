"""`critlab gold ...`: a study's gold items (prompts with a known answer) and each person's accuracy on them.

Registered on the main group by `add_gold_commands(main, call, db_option)`; every command sends one admin
operation (`gold_add`, `gold_list` in app/services/ops.py), locally or to the server that holds the database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from storage.gold import MIN_GOLD_ANSWERS

Call = Callable[[str, str, dict[str, Any]], dict[str, Any]]
ANSWER_FORMS = "best:RESPONSE_ID, correct:RESPONSE_ID or incorrect:RESPONSE_ID"
GOLD_HELP = f"""Gold items: prompts whose answer an admin knows, to measure each annotator's accuracy.

\b
critlab gold list s1 --prompt q17          # q17's responses and their ids
critlab gold add s1 --prompt q17 --answer best:412
critlab gold add s1 --prompt q18 --answer incorrect:415
critlab gold list s1                       # the gold answers, who got how many right, who is gated

A gold answer is the best response of a prompt (the best-of-N question) or a verdict on one response (the
correct/incorrect question). A person's answer is their blind label of that question.

Two study settings (Studies tab): with a gold rate above 0, gold items come unannounced in the queue, a
fresh pick being one with that probability; with a gold accuracy gate, a person who answered at least
{MIN_GOLD_ANSWERS} gold items with a share right below it is gated: their labels are left out of every
export and of the agreement report (nothing is deleted; clearing the gate brings them back). Gold items are
never exported nor counted as study items."""


class Answer(click.ParamType):
    """`--answer`: which question the gold answer is for and the response it names, as the gold_add payload.

    >>> Answer().convert("best:12", None, None), Answer().convert("incorrect:r7", None, None)
    ({'question': 'best', 'response_id': 12, 'verdict': None}, {'question': 'correct', 'response_id': 7, \
'verdict': 'incorrect'})
    """

    name = "ANSWER"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        kind, sep, rid = str(value).strip().partition(":")
        rid = rid.strip().removeprefix("r")  # `r<id>`: how judgments exports name responses without an external id
        if not sep or kind not in ("best", "correct", "incorrect") or not rid.isdigit():
            self.fail(f"{value!r} is not a gold answer: give {ANSWER_FORMS} (response ids from "
                      "`critlab gold list STUDY --prompt ID`)", param, ctx)
        return {"question": "best" if kind == "best" else "correct", "response_id": int(rid),
                "verdict": None if kind == "best" else kind}


def add_gold_commands(main: click.Group, call: Call, db_option: Callable[[Any], Any]) -> None:
    @main.group("gold", help=GOLD_HELP)
    def gold_group() -> None:
        pass

    @gold_group.command("add")
    @click.argument("study")
    @click.option("--prompt", "prompt", required=True, metavar="ID", help="The prompt's external id (its id in "
                  "the prompts file).")
    @click.option("--answer", required=True, type=Answer(), metavar="QUESTION:RESPONSE_ID",
                  help=f"The known answer: {ANSWER_FORMS}. best:ID makes ID the prompt's one best response (it "
                       "replaces an earlier best answer); correct:ID / incorrect:ID is the verdict on response ID. "
                       "Response ids: `critlab gold list STUDY --prompt ID`.")
    @db_option
    def gold_add(study: str, prompt: str, answer: dict[str, Any], db_path: str) -> None:
        """Mark a known answer of a prompt of STUDY, making the prompt a gold item. Refused, with nothing
        stored, when the response is not one of the prompt's."""
        r = call(db_path, "gold_add", {"study": study, "prompt": prompt, **answer})
        what = (f"response {r['response_id']} is the best" if r["question"] == "best"
                else f"response {r['response_id']} is {r['verdict']}")
        click.echo(f"Gold answer for prompt {r['prompt']!r} of {r['study']!r}: {what}.")

    @gold_group.command("list")
    @click.argument("study")
    @click.option("--prompt", "prompt", metavar="ID", default=None,
                  help="Also list this prompt's responses (id, origin, model, the start of the text): the ids "
                       "`gold add --answer` takes.")
    @db_option
    def gold_list(study: str, prompt: str | None, db_path: str) -> None:
        """List the gold answers of STUDY, each annotator's accuracy on them and who the gate leaves out."""
        r = call(db_path, "gold_list", {"study": study, "prompt": prompt})
        if prompt is not None:
            click.echo(f"Responses of prompt {prompt!r}:")
            for x in r["responses"]:
                click.echo(f"  {x['id']:>8}  {x['origin']:<9} {(x['model'] or '-')[:32]:<32}  {_preview(x['text'])}")
            click.echo("")
        if not r["gold"]:
            click.echo(f"Study {r['study']!r} has no gold items (add one with `critlab gold add`).")
        for g in r["gold"]:
            what = "best" if g["answer"] is None else g["answer"]
            click.echo(f"gold  {g['prompt']:<24} response {g['response_id']:>8}  {what}")
        gate = ("no gold accuracy gate" if r["min_accuracy"] is None else
                f"gate: below {r['min_accuracy']:.0%} over at least {r['min_answers']} gold answers")
        click.echo(f"\nAccuracy ({gate}):")
        if not r["accuracy"]:
            click.echo("  nobody has answered a gold item yet")
        for a in r["accuracy"]:
            flag = "  gated" if a["annotator"] in r["gated"] else ""
            click.echo(f"  {a['annotator']:<24} {a['right']:>4} / {a['answered']:<4} ({a['accuracy']:.0%}){flag}")


def _preview(text: str, width: int = 60) -> str:
    """The start of a response on one line, control characters shown as spaces (model output is untrusted: it
    must not move the terminal's cursor or colour it).

    >>> _preview("line one\\nline\\x1b[31m two")
    'line one line [31m two'
    """
    flat = "".join(c if c.isprintable() else " " for c in text)
    flat = " ".join(flat.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"
