"""`critlab annotators ...` (people and their passwords) and `critlab studies ...` (the studies and who may
label them).

Registered on the main group by `add_people_commands(main, call, db_option)`; every command sends one admin
operation (app/services/ops.py), locally or to the server that holds the database.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

Call = Callable[[str, str, dict[str, Any]], dict[str, Any]]


def add_people_commands(main: click.Group, call: Call, db_option: Callable[[Any], Any]) -> None:
    @main.group()
    def annotators() -> None:
        """Manage annotators and admins: add, list, disable, enable, reset-password.

        While a server runs, the commands go through it and take effect at once: a disabled person, or one
        whose password was reset, is logged out of every open session. Admins open every study; an
        annotator labels only the studies they are a member of (--study here, or `critlab studies members`).
        """

    @annotators.command("add")
    @click.argument("name")
    @click.option("--role", type=click.Choice(["admin", "annotator"]), default="annotator", show_default=True)
    @click.option("--study", "study_names", multiple=True, metavar="STUDY",
                  help="Make the annotator a member of STUDY (repeatable); without it they see no study until "
                       "an admin adds them (`critlab studies members add`).")
    @click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of "
                                                         "generating one.")
    @db_option
    def annotators_add(name: str, role: str, study_names: tuple[str, ...], password_stdin: bool, db_path: str) -> None:
        """Add a person who can log in. Without --password-stdin a password is generated and printed once."""
        password = sys.stdin.readline().rstrip("\n") if password_stdin else None
        r = call(db_path, "add_annotator", {"name": name, "role": role, "password": password,
                                            "studies": list(study_names)})
        member = f"; member of {', '.join(r['studies'])}" if r.get("studies") else ""
        click.echo(f"Added {r['name']} ({r['role']}{member}).")
        if r.get("password"):
            click.echo(f"Password: {r['password']}")

    @annotators.command("list")
    @db_option
    def annotators_list(db_path: str) -> None:
        """List annotators and admins, and the studies each may label."""
        for a in call(db_path, "list_annotators", {})["annotators"]:
            where = "every study" if a["studies"] is None else ", ".join(a["studies"]) or "no study"
            click.echo(f"{a['name']:<24} {a['role']:<10} {where}{'  (disabled)' if a['disabled'] else ''}")

    @annotators.command("disable")
    @click.argument("name")
    @db_option
    def annotators_disable(name: str, db_path: str) -> None:
        """Stop NAME from logging in; their open sessions stop working at once. Their labels stay.
        The last enabled admin cannot be disabled."""
        r = call(db_path, "disable_annotator", {"name": name})
        click.echo(f"Disabled {r['name']} ({r['role']}); their sessions have ended.")

    @annotators.command("enable")
    @click.argument("name")
    @db_option
    def annotators_enable(name: str, db_path: str) -> None:
        """Let a disabled NAME log in again (sessions ended by the disable stay ended)."""
        r = call(db_path, "enable_annotator", {"name": name})
        click.echo(f"Enabled {r['name']} ({r['role']}).")

    @annotators.command("reset-password")
    @click.argument("name")
    @click.option("--password-stdin", is_flag=True, help="Read the new password from standard input instead of "
                                                         "generating one.")
    @db_option
    def annotators_reset_password(name: str, password_stdin: bool, db_path: str) -> None:
        """Give NAME a new password and end all their sessions. Without --password-stdin a password is
        generated and printed once."""
        password = sys.stdin.readline().rstrip("\n") if password_stdin else None
        r = call(db_path, "reset_password", {"name": name, "password": password})
        click.echo(f"Reset the password of {r['name']}; their sessions have ended.")
        if r.get("password"):
            click.echo(f"Password: {r['password']}")

    @main.group("studies", invoke_without_command=True)
    @db_option
    @click.pass_context
    def studies_cmd(click_ctx: click.Context, db_path: str) -> None:
        """List studies with their prompt counts and generation runs (also `critlab studies list`); manage who
        may label them (`critlab studies members`)."""
        if click_ctx.invoked_subcommand is None:
            _list_studies(call, db_path)

    @studies_cmd.command("list")
    @db_option
    def studies_list(db_path: str) -> None:
        """List studies with their prompt counts and generation runs."""
        _list_studies(call, db_path)

    @studies_cmd.group("members")
    def members_group() -> None:
        """Who may label a study. Admins open every study; an annotator only the studies they are a member
        of. A new study has no members; studies that existed before memberships did have every annotator.
        Removing a member takes effect at once (while a server runs): nothing more of the study is served to
        them, their reserved items go back to the queue, their next submit is refused, their labels stay."""

    @members_group.command("list")
    @click.argument("study")
    @db_option
    def members_list(study: str, db_path: str) -> None:
        """List the members of STUDY."""
        r = call(db_path, "study_members", {"study": study})
        if not r["members"]:
            click.echo(f"Study {r['study']!r} has no members (admins open it all the same).")
        for m in r["members"]:
            by = f" by {m['added_by']}" if m["added_by"] else ""
            click.echo(f"{m['name']:<24} added {m['added_at'][:16].replace('T', ' ')}{by}"
                       f"{'  (disabled)' if m['disabled'] else ''}")

    @members_group.command("add")
    @click.argument("study")
    @click.argument("names", nargs=-1, required=True)
    @db_option
    def members_add(study: str, names: tuple[str, ...], db_path: str) -> None:
        """Make the annotators NAMES members of STUDY."""
        for name in names:
            r = call(db_path, "add_member", {"study": study, "name": name})
            click.echo(f"{r['name']} {'is now' if r['added'] else 'was already'} a member of {r['study']!r}.")

    @members_group.command("remove")
    @click.argument("study")
    @click.argument("names", nargs=-1, required=True)
    @db_option
    def members_remove(study: str, names: tuple[str, ...], db_path: str) -> None:
        """End the membership of the annotators NAMES in STUDY (their labels stay)."""
        for name in names:
            r = call(db_path, "remove_member", {"study": study, "name": name})
            click.echo(f"{r['name']} is no longer a member of {r['study']!r}; their labels stay.")


def _list_studies(call: Call, db_path: str) -> None:
    for s in call(db_path, "list_studies", {})["studies"]:
        runs = ", ".join(f"#{r['id']} {r['engine']} n={r['n']} T={r['temperature']}" for r in s["runs"]) or "no runs"
        click.echo(f"{s['name']:<24} {s['prompts']:>6} prompts   {runs}")
