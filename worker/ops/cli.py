"""`account-reset`: run the worker, migrate the database, handle dead letters, run the demo."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError
from rich.console import Console

from client import cli as client_cli
from client import local_broker
from client.settings import settings_problems
from schemas.fields import COMMAND_ID
from worker.ops.accounts import accounts, reset_codes
from worker.ops.worker_extra import require_worker_extra

if TYPE_CHECKING:
    from worker.security.sealing_keys import SealingKeys
    from worker.settings import Settings
    from worker.streams.dead_letters import DeadLetter, DeadLetterBox

# A producer's and an audit consumer's commands: they need Redis (or nothing),
# never the worker's settings, which they would have to satisfy with the worker's secrets.
NO_WORKER_SETTINGS = frozenset({"schema", "enqueue", "events", "status"})
# Commands that talk to a Redis they do not start: without a broker URL, each finds this user's
# running embedded Redis, else the default, and says which (client/local_broker.py).
FINDS_THE_BROKER = frozenset({"enqueue", "events", "failed", "health", "status"})


# Set on the context when the subcommand's own arguments ask for its help.
HELP = "account-reset.asks-for-help"


# Set to 1 to see the traceback of an error the commands do not expect (its text withheld).
DEBUG_VARIABLE = "ACCOUNT_RESET_DEBUG"
CLICKS_OWN = (click.ClickException, click.exceptions.Exit, click.Abort)


class OneLineErrors(click.Group):
    """A Redis or database out of reach, or refusing this user, is one line, not a traceback
    (the line names the server and the fault, never a password or a value). So is any error
    the commands do not expect: its type, never its text, which may quote a URL or a secret
    (SQLAlchemy's "Invalid SQLite URL: sqlite://<password>@..."), unless ACCOUNT_RESET_DEBUG=1."""

    def invoke(self, ctx: click.Context) -> Any:
        # The subcommand's arguments, unparsed until after the group's callback has run.
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        ctx.meta[HELP] = any(argument in ("-h", "--help") for argument in rest)
        try:
            return super().invoke(ctx)
        except Exception as exc:
            line = _unreachable(exc)
            if line is not None:
                raise click.ClickException(line) from None
            if isinstance(exc, ValidationError) and exc.title.endswith("Settings"):
                raise _invalid_settings(exc) from None
            if isinstance(exc, CLICKS_OWN) or os.environ.get(DEBUG_VARIABLE) == "1":
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__} (its text withheld, as it may quote a secret;"
                f" {DEBUG_VARIABLE}=1 shows the traceback)"
            ) from None


def _unreachable(exc: BaseException) -> str | None:
    import redis
    from kombu.exceptions import OperationalError as BrokerError

    if isinstance(exc, redis.AuthenticationError | redis.exceptions.NoPermissionError):
        return f"Redis refused this user: {exc}"
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | BrokerError):
        return f"cannot reach Redis: {exc}"
    database_errors = sys.modules.get("sqlalchemy.exc")
    if database_errors is not None and isinstance(exc, database_errors.OperationalError):
        from worker.db.faults import fault_cause

        # The driver's own message may quote the statement: the cause in fixed words only.
        return f"cannot use the database: {fault_cause(exc) or type(exc.orig).__name__}"
    return None


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="account-reset-worker", prog_name="account-reset")
@click.pass_context
def main(ctx: click.Context) -> None:
    """account-reset-worker: applies account-security commands from a Redis queue."""
    if _asks_for_help(ctx):
        return  # help reads no setting and connects to nothing
    worker_settings = ctx.invoked_subcommand not in NO_WORKER_SETTINGS
    if worker_settings:
        require_worker_extra(ctx.invoked_subcommand)
    if ctx.invoked_subcommand in FINDS_THE_BROKER and not local_broker.broker_url_is_set():
        _use_the_found_broker(worker_settings=worker_settings)
    if not worker_settings:
        return
    try:
        _settings()
    except ValidationError as error:
        raise _invalid_settings(error) from None


def _asks_for_help(ctx: click.Context) -> bool:
    """`account-reset <command> ... --help` (noted by `OneLineErrors.invoke`)."""
    return bool(ctx.meta.get(HELP))


def _invalid_settings(error: ValidationError) -> click.ClickException:
    return click.ClickException(f"invalid settings: {settings_problems(error)}")


def _use_the_found_broker(*, worker_settings: bool) -> None:
    found = local_broker.found_broker()
    click.echo(found.said, err=True)
    if worker_settings:
        # Not through the variable: a set broker URL would make the settings production's.
        from worker.bootstrap import use_found_broker

        use_found_broker(found.url)
    else:
        os.environ[local_broker.BROKER_URL_VARIABLE] = found.url


def _settings() -> Settings:
    """The worker's settings, through the bootstrap; imported here, so that a producer's
    commands never load the worker's parts."""
    from worker import bootstrap

    return bootstrap.settings()


main.add_command(client_cli.schema)
main.add_command(client_cli.enqueue)
main.add_command(client_cli.events)
main.add_command(accounts)
main.add_command(reset_codes)


class CeleryWorkerCommand(click.Command):
    """`account-reset worker`: its own options, then `celery worker`'s, which it passes on."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        from celery.bin.worker import worker as celery_worker

        celery_ctx = click.Context(celery_worker, info_name=ctx.info_name, obj=_celery_context())
        with formatter.section("Celery's worker options (passed on)"):
            celery_worker.format_options(celery_ctx, formatter)


@main.command(
    cls=CeleryWorkerCommand,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.option(
    "--sessions",
    is_flag=True,
    help="Consume ACCOUNT_RESET_SESSIONS_QUEUE only, and only reset-session-key.",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(sessions: bool, celery_args: tuple[str, ...]) -> None:
    """Start a worker; any further options go to `celery worker` (e.g. --concurrency=4).

    Its defaults (the queue, the log level, a node name unique on this machine, no gossip or
    mingle) are the app's, so `celery -A worker worker` starts the same worker.
    """
    if sessions:
        # Before the settings are first read, here and in every pool process.
        os.environ["ACCOUNT_RESET_NODE_ROLE"] = "sessions"
        from worker.bootstrap import reread_settings

        reread_settings()
    from worker.bootstrap import broker_url
    from worker.broker.signing import worker_signing_config
    from worker.dev.embedded_redis import EmbeddedRedisUnavailable

    settings = _settings()
    try:
        worker_signing_config(settings)
        url = broker_url(settings)
    except (ValueError, EmbeddedRedisUnavailable) as problem:  # a producer's signing settings
        raise click.ClickException(str(problem)) from None
    if settings.broker_url is None:
        click.echo(f"No ACCOUNT_RESET_BROKER_URL: embedded Redis listening at {url}", err=True)
        # Processes it starts read the embedded broker under the usual variable; this user's
        # other commands find it through its record (client/local_broker.py).
        os.environ["ACCOUNT_RESET_BROKER_URL"] = url
    run_celery_worker(list(celery_args))


def _celery_context() -> Any:
    from celery.bin.base import CLIContext

    from worker.app import app

    # no_color None, as Celery's own command leaves it: colours only on a terminal.
    return CLIContext(app=app, no_color=None, workdir=None)  # type: ignore[arg-type]


def run_celery_worker(argv: list[str]) -> None:
    """Celery's `worker` command alone. `app.worker_main` goes through Celery's command group,
    which imports every installed `celery.commands` plugin first: with Flower installed, Flower
    and tornado would be loaded into the worker and every pool process."""
    from celery.bin.worker import worker as celery_worker

    celery_worker.main(
        args=argv, prog_name="account-reset worker", obj=_celery_context(), standalone_mode=False
    )


@main.group()
def db() -> None:
    """The database schema (Alembic migrations)."""


@db.command()
@click.option(
    "--wait-seconds", default=60.0, show_default=True, help="How long to wait for the database."
)
def upgrade(wait_seconds: float) -> None:
    """Create the worker's table, and the dashboard's where they are missing (as it would)."""
    from worker.db.engine import wait_for_database
    from worker.db.migrate import upgrade as run_upgrade

    settings = _settings()
    url = settings.database_url
    wait_for_database(url, timeout_s=wait_seconds, on_wait=lambda line: click.echo(line, err=True))
    run_upgrade(url, appid=settings.appid)
    click.echo("database is at the latest revision", err=True)


@db.command()
def current() -> None:
    """Print the database's revision, and whether it is the latest."""
    from worker.db.migrate import current as current_revision

    revision, head = current_revision(_settings().database_url)
    if revision is None:
        click.echo(f"no revision (run `account-reset db upgrade`; the latest is {head})")
    else:
        click.echo(f"{revision} (latest)" if revision == head else f"{revision} (latest: {head})")


@db.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Migrate the worker's own table down to REVISION (e.g. 0002); the dashboard's stay."""
    from alembic.util import CommandError

    from worker.db.migrate import downgrade as run_downgrade

    try:
        run_downgrade(_settings().database_url, revision)
    except (RuntimeError, CommandError) as refused:  # one line: why it cannot go down
        raise click.ClickException(str(refused)) from None
    click.echo(f"database is at revision {revision}", err=True)


@main.group()
def failed() -> None:
    """Dead letters: commands the worker gave up on. List, show, retry or drop them."""


@failed.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show the oldest N.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def failed_list(limit: int | None, as_json: bool) -> None:
    """Every dead letter, oldest first (identifiers and reasons only, never a secret)."""
    letters = _dead_letters().all(limit=limit)
    if as_json:
        for letter in letters:
            click.echo(json.dumps(letter.shown()))
        return
    from worker.ops.tables import print_dead_letters

    print_dead_letters(Console(), letters)
    click.echo(f"{len(letters)} dead letter(s)", err=True)


@failed.command("show")
@click.argument("letter_id")
def failed_show(letter_id: str) -> None:
    """One dead letter, as JSON."""
    letter = _dead_letters().get(letter_id)
    if letter is None:
        raise click.ClickException(f"no dead letter {letter_id}")
    click.echo(json.dumps(letter.shown(), indent=2))


@failed.command("retry")
@click.argument("letter_ids", nargs=-1)
@click.option("--all", "retry_all", is_flag=True, help="Retry every retryable dead letter.")
def failed_retry(letter_ids: tuple[str, ...], retry_all: bool) -> None:
    """Send dead letters back to the queue, with their command_id: a repeat is only a replay."""
    from schemas.display import redacted_kwargs
    from worker.app import app
    from worker.security.sealing import SealError
    from worker.streams.dead_letters import NotRetryable

    box = _dead_letters()
    letters = _chosen(box, letter_ids, everything=retry_all)
    refused = 0
    for letter in letters:
        try:
            payload = _resealed(box.payload(letter), letter=letter)
        except (NotRetryable, SealError) as why:
            refused += 1
            click.echo(f"{letter.letter_id}: not retried, {why}", err=True)
            continue
        app.send_task(
            str(letter.task),
            kwargs=payload,
            queue=_settings().queue,
            argsrepr="()",
            kwargsrepr=redacted_kwargs(payload),
        )
        box.drop(letter.letter_id)
        click.echo(f"{letter.letter_id}: retried as command_id {letter.command_id}")
    if refused and not retry_all:
        raise SystemExit(1)


@failed.command("drop")
@click.argument("letter_ids", nargs=-1)
@click.option("--all", "drop_all", is_flag=True, help="Drop every dead letter.")
@click.confirmation_option("--yes", prompt="Drop these dead letters for good?")
def failed_drop(letter_ids: tuple[str, ...], drop_all: bool) -> None:
    """Delete dead letters (their commands are not run)."""
    box = _dead_letters()
    for letter in _chosen(box, letter_ids, everything=drop_all):
        box.drop(letter.letter_id)
        click.echo(f"{letter.letter_id}: dropped")


def _resealed(payload: dict[str, Any], *, letter: DeadLetter) -> dict[str, Any]:
    """The letter's JWE fields sealed again, stamped now: those it kept were stamped when the
    command was first sent, and would be refused as expired. Fields already expired when the
    command was dead-lettered stay expired (NotRetryable)."""
    from worker.security.sealed_fields import resealed
    from worker.streams.dead_letters import NotRetryable

    settings = _settings()
    keys = settings.sealing_key_set
    if keys is None:
        return payload
    command_id = payload.get(COMMAND_ID)
    if not isinstance(command_id, str):
        raise NotRetryable("it carries no command_id, which its sealed fields are bound to")
    young_at_letter = letter.dead_lettered_at.timestamp() - settings.sealed_max_age_s
    return resealed(
        payload, keys=keys, command=str(letter.task), command_id=command_id,
        issued_after=int(young_at_letter),
    )  # fmt: skip


def _dead_letters() -> DeadLetterBox:
    from worker.bootstrap import dead_letter_box

    return dead_letter_box(_settings())


def _chosen(
    box: DeadLetterBox, letter_ids: tuple[str, ...], *, everything: bool
) -> list[DeadLetter]:
    if everything == bool(letter_ids):
        raise click.UsageError("name dead letter ids, or give --all")
    if everything:
        return box.all()
    letters = [box.get(letter_id) for letter_id in letter_ids]
    missing = [i for i, letter in zip(letter_ids, letters, strict=True) if letter is None]
    if missing:
        raise click.ClickException(f"no dead letter {', '.join(missing)}")
    return [letter for letter in letters if letter is not None]


@main.group("sealing-keys")
def sealing_keys() -> None:
    """The worker's sealing keys (ACCOUNT_RESET_SEALING_KEYS), and the public key producers use."""


KEYS_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@sealing_keys.command("new")
@click.option("--keys-file", type=KEYS_FILE, help="Keep this JWK Set's keys after the new one.")
def sealing_keys_new(keys_file: Path | None) -> None:
    """Print a JWK Set with a new private key first (then those of --keys-file, to rotate).

    It opens every producer's secrets: write it where only the worker reads it, e.g.
    `(umask 077; account-reset sealing-keys new > sealing-keys.json)`.
    """
    from worker.security.sealing_keys import SealingKeys

    keeping = _key_set(keys_file) if keys_file else None
    click.echo(json.dumps(SealingKeys.generated(keeping=keeping).private_jwk_set()))


@sealing_keys.command("public")
@click.option("--keys-file", type=KEYS_FILE, help="Read this JWK Set, not the worker's setting.")
def sealing_keys_public(keys_file: Path | None) -> None:
    """Print the newest key's public JWK: producers' ACCOUNT_RESET_SEALING_PUBLIC_KEY."""
    keys = _key_set(keys_file) if keys_file else _settings().sealing_key_set
    if keys is None:
        raise click.UsageError("no sealing keys: set ACCOUNT_RESET_SEALING_KEYS or --keys-file")
    click.echo(json.dumps(keys.public_jwk()))


def _key_set(path: Path) -> SealingKeys:
    from worker.security.sealing_keys import SealingKeys

    try:
        return SealingKeys.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as why:
        raise click.ClickException(f"--keys-file {path}: {why}") from None


@main.command()
@click.option("--node", help="Check this worker node only (its name, as `celery status` shows).")
def health(node: str | None) -> None:
    """Exit 0 only if this machine's workers (or --node) consumed recently (a liveness probe)."""
    from worker.bootstrap import events_url
    from worker.ops.health_notes import node_name, node_note, node_notes, nodes_folder
    from worker.ops.probe import consumed_s_ago, node_problem
    from worker.security.eviction import eviction_status

    settings = _settings()
    notes = [node_note(settings.health_file, node)] if node else node_notes(settings.health_file)
    if not notes:
        click.echo(f"unhealthy: no note in {nodes_folder(settings.health_file)}", err=True)
        raise SystemExit(1)
    problems = {note: node_problem(note, max_age_s=settings.health_max_age_s) for note in notes}
    for note, problem in problems.items():
        if problem is not None:
            named = f"{node_name(note)}: " if len(notes) > 1 else ""
            click.echo(f"unhealthy: {named}{problem}", err=True)
    if any(problems.values()):
        raise SystemExit(1)
    # Counts that could vanish are a worker not fit to serve, whatever else it does.
    kept, said = eviction_status(events_url(settings), settings.redis_options)
    if not kept:
        click.echo(f"unhealthy: {said}", err=True)
        raise SystemExit(1)
    ages = ", ".join(f"{consumed_s_ago(note):.1f} s ago" for note in notes)
    click.echo(f"healthy: consuming ({ages}); {said}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object (docs/operations.md).")
@click.option(
    "--timeout", "timeout_s", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
    help="How long workers have to answer, in seconds.",
)  # fmt: skip
def status(as_json: bool, timeout_s: float) -> None:
    """Queues, unacknowledged messages, dead letters, consumer groups' lag and live workers."""
    from worker.ops.status import StatusSettings, gather_status, render

    try:
        settings = StatusSettings()
    except ValidationError as error:
        raise _invalid_settings(error) from None
    figures = gather_status(settings, timeout_s=timeout_s)
    if as_json:
        click.echo(figures.model_dump_json())
    else:
        render(figures, Console())


@main.command("redis-acl")
@click.option("--prefix", default="account-reset", show_default=True, help="User name prefix.")
@click.option(
    "--acl-file", is_flag=True,
    help="Print an ACL file instead, passwords taken from ACCOUNT_RESET_ACL_PRODUCER_PASSWORD,"
    " _WORKER_PASSWORD and _AUDITOR_PASSWORD (stored as SHA-256), the default user shut out.",
)  # fmt: skip
def redis_acl(prefix: str, acl_file: bool) -> None:
    """Print ACL SETUSER lines for the producer, worker and auditor users.

    Add a password to each (`>secret`) and run them with redis-cli; or, with --acl-file, print
    a file for `redis-server --aclfile` (what docker-compose.yml loads).
    """
    from worker.security.acl import ROLES, acl_file_lines, setuser_lines

    if not acl_file:
        for line in setuser_lines(_settings(), prefix):
            click.echo(line)
        return
    variables = {role: f"ACCOUNT_RESET_ACL_{role.upper()}_PASSWORD" for role in ROLES}
    missing = [name for name in variables.values() if not os.environ.get(name)]
    if missing:
        raise click.UsageError(f"--acl-file needs {', '.join(missing)} (one password per user)")
    passwords = {role: os.environ[name] for role, name in variables.items()}
    for line in acl_file_lines(_settings(), passwords, prefix):
        click.echo(line)


@main.command()
@click.option(
    "--database-url",
    default=None,
    help="Run on this database (a dashboard's: demo accounts are added) instead of a new SQLite"
    " file. Hashes follow ACCOUNT_RESET_HASH_MODE / _HASH_KEY, the appid ACCOUNT_RESET_APPID.",
)
def demo(database_url: str | None) -> None:
    """Every seed scenario through an embedded Redis, a real worker and SQLite."""
    from worker.dev.demo import run_demo

    run_demo(Console(), database_url=database_url)


if __name__ == "__main__":
    sys.exit(main())
