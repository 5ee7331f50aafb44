"""Settings: digest-mail.toml, overridden by ``DIGEST_MAIL_<SECTION>_<KEY>`` variables.

Settings are validated once into frozen dataclasses. Secrets (SMTP password, unsubscribe
signing key, DKIM key) are never settings: see :func:`read_secret`. The ``[[schedule]]``
tables are checked when a command needs them (:func:`check_schedules`), so that a
broken schedule stops only the scheduler.

Long on purpose: this is the one settings schema. Every section, how a file and the
environment fill it, and every check of a value live here, so that a setting is
looked up in one place and a bad one is reported the same way (file, key, hint)
whichever section it is in; split, the sections would each need the coercion and the
error reporting.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import getaddresses
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest_mail.errors import ConfigError
from digest_mail.text import CONTROL, looks_like_encoded_word

CONFIG_NAME = "digest-mail.toml"
ENV_PREFIX = "DIGEST_MAIL_"
# sqlite:///var/ledger.sqlite3 is relative to the workspace, sqlite:////srv/l.sqlite3 absolute.
SQLITE_SCHEME = "sqlite:///"
DEFAULT_LEDGER_URL = "sqlite:///var/ledger.sqlite3"


# The one grammar of edition ids. An id names a folder (drafts/<id>, archive/<id>) and is
# part of campaign ids and URLs, so it is checked wherever one is read: options, DRAFT
# arguments, edition.json files, the schedule settings.
EDITION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class NewsletterSettings:
    name: str = "Chrysanthemum Digest"
    sender: str = "Chrysanthemum Digest <digest@example.jp>"
    reply_to: str = ""
    contact: str = "editors@example.jp"
    site_url: str = "https://chrysanthemum-digest.example.jp"
    list_id: str = "weekly.chrysanthemum-digest.example.jp"
    why: str = "Chrysanthemum Digest のニュースレターに登録いただいた方にお送りしています。"


@dataclass(frozen=True)
class EditionSettings:
    subject: str = "Chrysanthemum Digest {edition} 今週の注目記事"
    intro: str = ""
    preheader: str = ""
    since: str = "7d"
    # Whom the greeting addresses when a reader has no name (also the public archive's).
    greeting_fallback: str = "読者の皆さま"
    # How each article's sources show: "cards" (title, publisher · date, ✅ points, link),
    # "links" (one line each) or "none".
    sources: str = "cards"
    # The article body in the email: "none" (the card summarises it) or "excerpt" (the
    # first prose paragraphs, at most excerpt_length characters).
    body: str = "none"
    excerpt_length: int = 200


EDITION_SOURCES = ("cards", "links", "none")
EDITION_BODY = ("none", "excerpt")


@dataclass(frozen=True)
class SmtpSettings:
    url: str = "capture"
    username: str = ""
    password_file: str = ""
    timeout: float = 30.0
    concurrency: int = 8
    rate: float = 0.0
    rate_per_hour: int = 0
    insecure_skip_verify: bool = False
    # A PEM file of the CA that signed a private relay's certificate, trusted besides the
    # system's CAs (relative to the workspace).
    ca_file: str = ""
    retry_for: str = "1h"
    # First retry after this (doubling, jittered, capped at 15m); tests set it near 0.
    retry_backoff: str = "30s"
    # "pipelining": digest-mail's own client (RFC 2920, one round trip per message group);
    # "aiosmtplib": the lock-step library client, kept as a fallback.
    client: str = "pipelining"


@dataclass(frozen=True)
class ListsSettings:
    staff: str = "staff"
    default: str = "weekly"


@dataclass(frozen=True)
class UnsubscribeSettings:
    base_url: str = "https://chrysanthemum-digest.example.jp/unsubscribe"
    mailto: str = "unsubscribe@example.jp"
    key_file: str = ""


@dataclass(frozen=True)
class ArchiveSettings:
    base_url: str = "https://chrysanthemum-digest.example.jp/newsletter"
    # Where the unsubscribe link of a public archive page goes (no personal token there):
    # the list's subscription page; empty means "#".
    subscribe_url: str = ""


@dataclass(frozen=True)
class DkimSettings:
    domain: str = ""
    selector: str = ""
    key_file: str = ""


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8025


@dataclass(frozen=True)
class LedgerSettings:
    # Where the ledger lives: empty (or sqlite:///var/ledger.sqlite3, relative to the
    # workspace) is the embedded SQLite file; postgresql://user@host:port/db a shared
    # PostgreSQL. Never a password in it: DIGEST_MAIL_LEDGER_PASSWORD, ``passfile``
    # (a .pgpass-format, owner-only file, relative to the workspace) or the PG* variables.
    url: str = ""
    passfile: str = ""


@dataclass(frozen=True)
class ScheduleSettings:
    name: str
    # One list name, or several: one campaign to all of them, each address once.
    list: tuple[str, ...]
    cron: str
    timezone: str = "Asia/Tokyo"
    edition: str = "approved"
    late_after: str = "6h"


@dataclass(frozen=True)
class Settings:
    newsletter: NewsletterSettings = field(default_factory=NewsletterSettings)
    edition: EditionSettings = field(default_factory=EditionSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    lists: ListsSettings = field(default_factory=ListsSettings)
    unsubscribe: UnsubscribeSettings = field(default_factory=UnsubscribeSettings)
    archive: ArchiveSettings = field(default_factory=ArchiveSettings)
    dkim: DkimSettings = field(default_factory=DkimSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
    schedules: tuple[ScheduleSettings, ...] = ()


# TOML key -> dataclass field, where the TOML name is a Python keyword.
_ALIASES = {"from": "sender"}
_SECTIONS: dict[str, type[Any]] = {
    f.name: typing.get_type_hints(Settings)[f.name]
    for f in dataclasses.fields(Settings)
    if f.name != "schedules"
}
# Secrets have variables of their own and must never be settings.
_SECRET_VARIABLES = {
    "DIGEST_MAIL_SMTP_PASSWORD",
    "DIGEST_MAIL_SECRET",
    "DIGEST_MAIL_WORKSPACE",
    "DIGEST_MAIL_DKIM_KEY",
    "DIGEST_MAIL_LEDGER_PASSWORD",
}


@dataclass(frozen=True)
class Workspace:
    """A newsletter folder: settings plus the paths of DESIGN.md's layout."""

    root: Path
    settings: Settings
    config_path: Path | None = None
    # One line each, for the operator: a DIGEST_MAIL_* variable that sets nothing.
    warnings: tuple[str, ...] = ()

    @property
    def articles_dir(self) -> Path:
        return self.root / "articles"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates" / "email"

    @property
    def subscribers_dir(self) -> Path:
        return self.root / "subscribers"

    @property
    def drafts_dir(self) -> Path:
        return self.root / "drafts"

    @property
    def ca_file(self) -> Path | None:
        """``[smtp] ca_file`` as a path (relative to the workspace), or None."""
        value = self.settings.smtp.ca_file.strip()
        if not value:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    @property
    def archive_dir(self) -> Path:
        return self.root / "archive"

    @property
    def var_dir(self) -> Path:
        return self.root / "var"

    @property
    def ledger_url(self) -> str:
        """``[ledger] url``, or the embedded default ``sqlite:///var/ledger.sqlite3``."""
        return self.settings.ledger.url.strip() or DEFAULT_LEDGER_URL

    @property
    def ledger_path(self) -> Path:
        """The SQLite ledger's file (the default one when the ledger is PostgreSQL)."""
        url = self.ledger_url
        if not url.startswith(SQLITE_SCHEME):
            return self.var_dir / "ledger.sqlite3"
        path = Path(url[len(SQLITE_SCHEME) :]).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def ledger_passfile(self) -> Path | None:
        """``[ledger] passfile`` as a path (relative to the workspace), or None."""
        value = self.settings.ledger.passfile.strip()
        if not value:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    def list_path(self, name: str) -> Path:
        # The name becomes the X-Digest-List header: no control characters or RFC 2047.
        if (
            not name
            or "/" in name
            or "\\" in name
            or name.startswith(".")
            or CONTROL.search(name)
            or looks_like_encoded_word(name)
        ):
            raise ConfigError(f"{name!r} is not a list name (a file stem under subscribers/)")
        return self.subscribers_dir / f"{name}.csv"


def _coerce(value: Any, annotation: Any, *, where: str, path: Path | None) -> Any:
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing))
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    if origin is tuple:  # names: one string, or an array of strings
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(
            f"expected a name or an array of names, got {value!r}", path=path, key=where
        )
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        }:
            return value.lower() in {"1", "true", "yes", "on"}
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - every field is one of the above
        return value
    raise ConfigError(f"expected {annotation.__name__}, got {value!r}", path=path, key=where)


def _build_section(
    cls: type[Any],
    raw: Mapping[str, Any],
    *,
    section: str,
    path: Path | None,
    env: Mapping[str, tuple[str, str]] | None = None,
) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = _ALIASES.get(key, key)
        if name not in names:
            known = ", ".join(sorted(_ALIASES.get(n, n) for n in names))
            raise ConfigError(f"unknown key (known: {known})", path=path, key=f"{section}.{key}")
        values[name] = _coerce(value, hints[name], where=f"{section}.{key}", path=path)
    for key, (value, variable) in (env or {}).items():
        # A bad value from the environment names its variable, not the file.
        values[_ALIASES.get(key, key)] = _coerce(
            value, hints[_ALIASES.get(key, key)], where=variable, path=None
        )
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"missing key: {exc}", path=path, key=section) from None


def _setting_variables() -> dict[str, tuple[str, str]]:
    """Every ``DIGEST_MAIL_<SECTION>_<KEY>`` variable -> (section, TOML key)."""
    out: dict[str, tuple[str, str]] = {}
    for section, cls in _SECTIONS.items():
        for f in dataclasses.fields(cls):
            for key in {f.name, *(k for k, v in _ALIASES.items() if v == f.name)}:
                out[f"{ENV_PREFIX}{section}_{key}".upper()] = (section, key)
    return out


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, tuple[str, str]]]:
    """section -> key -> (value, variable) for each variable that names a setting."""
    known = _setting_variables()
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for var, value in environ.items():
        if var in known:
            section, key = known[var]
            out.setdefault(section, {})[key] = (value, var)
    return out


def environment_warnings(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """One line per ``DIGEST_MAIL_*`` variable that sets nothing (a typo is otherwise
    silently ignored: ``DIGEST_MAIL_SMPT_URL`` would leave the relay unset)."""
    environ = os.environ if environ is None else environ
    known = [*_setting_variables(), *sorted(_SECRET_VARIABLES)]
    lines = []
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var in known:
            continue
        guess = difflib.get_close_matches(var, known, n=1, cutoff=0.8)
        suggestion = f"; did you mean {guess[0]}?" if guess else ""
        lines.append(f"{var} is not a digest-mail setting and is ignored{suggestion}")
    return tuple(lines)


def load_settings(path: Path | None, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (may be None: embedded defaults) and apply environment overrides."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"not valid TOML: {exc}", path=path) from None
        except UnicodeDecodeError:
            raise ConfigError("not UTF-8 text", path=path) from None
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key == "schedule":
            continue
        if key not in _SECTIONS:
            known = ", ".join([*sorted(_SECTIONS), "schedule"])
            raise ConfigError(f"unknown section (known: {known})", path=path, key=f"[{key}]")
        if not isinstance(value, dict):
            raise ConfigError("expected a table", path=path, key=key)
        sections[key] = dict(value)
    overrides = _env_overrides(environ)
    for section, keys in overrides.items():
        # The variable wins over the file, whichever spelling (from/sender) the file used.
        names = {_ALIASES.get(key, key) for key in keys}
        file_values = sections.get(section, {})
        for key in [k for k in file_values if _ALIASES.get(k, k) in names]:
            del file_values[key]
    built = {
        name: _build_section(
            cls, sections.get(name, {}), section=name, path=path, env=overrides.get(name)
        )
        for name, cls in _SECTIONS.items()
    }
    raw_schedules = data.get("schedule", [])
    if not isinstance(raw_schedules, list):
        raise ConfigError("use [[schedule]] tables", path=path, key="schedule")
    schedules = []
    for index, raw in enumerate(raw_schedules):
        label = f"schedule[{index}]"
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            label = f"schedule {raw['name']!r}"
        if not isinstance(raw, dict):
            raise ConfigError("expected a table", path=path, key=label)
        missing = [k for k in ("name", "list", "cron") if k not in raw]
        if missing:
            raise ConfigError(f"missing {', '.join(missing)}", path=path, key=label)
        schedules.append(_build_section(ScheduleSettings, raw, section=label, path=path))

    def source(section: str, key: str) -> tuple[Path | None, str]:
        """Where a setting came from, for its error: the variable, else file and key."""
        for name, (_, variable) in overrides.get(section, {}).items():
            if _ALIASES.get(name, name) == _ALIASES.get(key, key):
                return None, variable
        return path, f"{section}.{key}"

    _check_edition(built["edition"], source)
    newsletter = built["newsletter"]
    _check_mailbox(newsletter.sender, *source("newsletter", "from"), required=True)
    _check_mailbox(newsletter.reply_to, *source("newsletter", "reply_to"))
    for section, key, value in (
        ("newsletter", "name", newsletter.name),
        ("newsletter", "list_id", newsletter.list_id),
        ("edition", "subject", built["edition"].subject),
        ("lists", "staff", built["lists"].staff),
        ("lists", "default", built["lists"].default),
    ):
        _check_header_text(value, *source(section, key))
    if problem := ledger_url_problem(built["ledger"].url.strip() or DEFAULT_LEDGER_URL):
        path, where = source("ledger", "url")
        raise ConfigError(problem[0], path=path, key=where, hint=problem[1])
    return Settings(**built, schedules=tuple(schedules))


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def ledger_url_problem(url: str) -> tuple[str, str] | None:
    """What is wrong with a ledger URL, as (message, hint); None if nothing.

    A password in the URL is refused: the URL is shown in messages and may sit on a
    command line (``ledger copy``), where every user of the host can read it."""
    if url.startswith(SQLITE_SCHEME):
        if len(url) == len(SQLITE_SCHEME) or CONTROL.search(url):
            return (
                "the SQLite ledger URL names no file",
                "e.g. sqlite:///var/ledger.sqlite3 (relative to the workspace)",
            )
        return None
    if not url.startswith(POSTGRES_SCHEMES):
        return (
            f"{mask_url(url)!r} is not a ledger URL",
            "use sqlite:///var/ledger.sqlite3 or postgresql://USER@HOST:PORT/DATABASE",
        )
    authority = url.split("://", 1)[1].split("/", 1)[0]
    if "@" in authority and ":" in authority.rsplit("@", 1)[0]:
        return (
            "the ledger URL carries a password; it would be shown in messages and on command lines",
            "remove it from the URL and set DIGEST_MAIL_LEDGER_PASSWORD, [ledger] passfile "
            "(an owner-only .pgpass file) or PGPASSWORD",
        )
    _, _, query = url.partition("?")
    if "password=" in query:
        return (
            "the ledger URL carries a password parameter",
            "set DIGEST_MAIL_LEDGER_PASSWORD or [ledger] passfile instead",
        )
    return None


def _check_edition(
    edition: EditionSettings, source: Callable[[str, str], tuple[Path | None, str]]
) -> None:
    for key, value, allowed in (
        ("sources", edition.sources, EDITION_SOURCES),
        ("body", edition.body, EDITION_BODY),
    ):
        if value not in allowed:
            path, where = source("edition", key)
            raise ConfigError(f"{value!r} is not one of {', '.join(allowed)}", path=path, key=where)
    if not 20 <= edition.excerpt_length <= 2000:
        path, where = source("edition", "excerpt_length")
        raise ConfigError(
            f"{edition.excerpt_length} is out of range (20 to 2000 characters)",
            path=path,
            key=where,
        )


def _check_header_text(value: str, path: Path | None, key: str) -> None:
    """A setting that becomes (part of) a header: no line breaks or control characters,
    and no RFC 2047 syntax, which a reader would decode (CR LF included) if it were ever
    written as it is. digest-mail encodes header text itself."""
    if CONTROL.search(value):
        raise ConfigError(
            f"{value!r} contains a line break or control character", path=path, key=key
        )
    if looks_like_encoded_word(value):
        raise ConfigError(
            f"{value!r} holds RFC 2047 encoded-word syntax (=?charset?q?…?=)",
            path=path,
            key=key,
            hint="write it as plain text: digest-mail encodes headers itself",
        )


def _check_mailbox(value: str, path: Path | None, key: str, *, required: bool = False) -> None:
    """One ``Name <addr@domain>`` or bare address, no line breaks: it becomes a header.

    A CR or LF made the stdlib raise deep inside compose (a traceback), and a comma
    sent every message "From" two mailboxes.
    """
    if not value and not required:
        return
    _check_header_text(value, path, key)
    mailboxes = getaddresses([value])
    if len(mailboxes) != 1 or "@" not in mailboxes[0][1]:
        raise ConfigError(
            f"{value!r} is not one mailbox",
            path=path,
            key=key,
            hint='write one address, e.g. "Chrysanthemum Digest <digest@example.jp>"',
        )


def find_workspace(
    root: Path | str | None = None, *, environ: Mapping[str, str] | None = None
) -> Workspace:
    """The workspace at ``root`` or ``$DIGEST_MAIL_WORKSPACE``, else the folder holding
    digest-mail.toml: the current directory or the nearest of its parents (like git).

    A folder without digest-mail.toml is refused: commands run there used to fall back to
    the embedded defaults and fail later with a misleading error ("no articles selected").
    """
    environ = os.environ if environ is None else environ
    hint = "cd into the workspace or use --workspace DIR ('digest-mail init DIR' creates one)"
    if root is None and environ.get("DIGEST_MAIL_WORKSPACE"):
        root = environ["DIGEST_MAIL_WORKSPACE"]
    if root is not None:
        folder = Path(root).expanduser().resolve()
        if not folder.is_dir():
            raise ConfigError(f"workspace {folder} is not a folder", hint=hint)
        if not (folder / CONFIG_NAME).is_file():
            raise ConfigError(f"no {CONFIG_NAME} in {folder}", hint=hint)
    else:
        here = Path.cwd().resolve()
        found = next((d for d in (here, *here.parents) if (d / CONFIG_NAME).is_file()), None)
        if found is None:
            raise ConfigError(f"no {CONFIG_NAME} in {here} or its parents", hint=hint)
        folder = found
    config_path = folder / CONFIG_NAME
    workspace = Workspace(
        root=folder,
        settings=load_settings(config_path, environ=environ),
        config_path=config_path,
        warnings=environment_warnings(environ),
    )
    ca_file = workspace.ca_file
    if ca_file is not None and not ca_file.is_file():
        raise ConfigError(
            f"{ca_file} is not a file" if ca_file.exists() else f"{ca_file} does not exist",
            path=config_path,
            key="smtp.ca_file",
            hint="give the PEM file of the CA that signed the relay's certificate",
        )
    return workspace


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*):[^\s]*@")


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: a URL is shown in messages, and
    a password in it must never be."""
    return _URL_PASSWORD.sub(r"\1:***@", url)


def read_secret(
    *, variable: str, file: str | Path | None, what: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """A secret from the environment variable, else from an owner-only file, else None.

    A file that the group or others can read is refused: a secret there is already leaked.
    So is a file another user owns, whatever its mode: that user can read or replace it.
    """
    environ = os.environ if environ is None else environ
    value = environ.get(variable)
    if value:
        return value
    if not file:
        return None
    path = Path(file).expanduser()
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} file {path} does not exist") from None
    mode = info.st_mode
    if info.st_uid != os.geteuid():
        raise ConfigError(
            f"{what} file {path} is owned by another user (uid {info.st_uid})",
            hint=f"make it yours: 'chown {os.geteuid()} {path}' and 'chmod 600 {path}'",
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{what} file {path} is readable by group or others (mode {stat.filemode(mode)})",
            hint=f"run 'chmod 600 {path}'",
        )
    return path.read_text(encoding="utf-8").strip()


def parse_duration(text: str, *, key: str = "duration") -> float:
    """'90s', '15m', '6h', '7d', '2w' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    text = text.strip().lower()
    if len(text) >= 2 and text[-1] in units:
        try:
            number = float(text[:-1])
        except ValueError:
            pass
        else:
            if number >= 0:
                return number * units[text[-1]]
    raise ConfigError(f"{text!r} is not a duration like 90s, 15m, 6h, 7d or 2w", key=key)


# --- schedules: [[schedule]] tables checked into values the scheduler can trust ----------

_CRON_FIELDS = "minute hour day-of-month month day-of-week"


@dataclass(frozen=True)
class CheckedSchedule:
    """A ``[[schedule]]`` once checked: what to send, to which lists, when.

    ``lists`` is sorted and ``list_name`` joins them (``partners+weekly``, the
    campaign's name for its lists); ``cron`` has five fields that match some date;
    ``zone`` is an IANA zone; ``late_after`` is longer than zero; ``edition`` is
    ``approved`` or an edition id.
    """

    name: str
    list_name: str  # the campaign's name for its lists: 'weekly', or 'partners+weekly'
    cron: str
    zone: ZoneInfo
    edition: str
    late_after: timedelta
    late_after_text: str = "6h"
    lists: tuple[str, ...] = ()  # sorted; () means (list_name,)

    @property
    def list_names(self) -> tuple[str, ...]:
        return self.lists or (self.list_name,)

    @property
    def zone_name(self) -> str:
        return self.zone.key


def check_schedules(workspace: Workspace) -> tuple[CheckedSchedule, ...]:
    """The workspace's schedules, checked (errors name the schedule and the field).

    Checked when a command needs the schedules, not when the settings load: a broken
    schedule must not stop ``send`` or ``compose``, and cron parsing is not loaded then.
    """
    schedules = tuple(_check_schedule(raw, workspace) for raw in workspace.settings.schedules)
    seen: set[str] = set()
    for schedule in schedules:
        if schedule.name in seen:
            raise ConfigError(
                "two [[schedule]] tables have this name",
                path=workspace.config_path,
                key=f"schedule {schedule.name!r}.name",
                hint="give each schedule its own name",
            )
        seen.add(schedule.name)
    return schedules


def _check_schedule(raw: ScheduleSettings, workspace: Workspace) -> CheckedSchedule:
    from croniter import croniter
    from croniter.croniter import CroniterBadDateError

    path = workspace.config_path
    label = f"schedule {raw.name!r}"

    def fail(key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, path=path, key=f"{label}.{key}", hint=hint)

    if not raw.name.strip():
        raise ConfigError("name is empty", path=path, key=f"{label}.name")
    lists = tuple(sorted(set(raw.list)))
    try:
        for name in lists:
            workspace.list_path(name)
    except ConfigError as exc:
        raise fail(
            "list",
            str(exc),
            'name a CSV under subscribers/ without .csv, e.g. list = "weekly" '
            '(several: list = ["weekly", "partners"])',
        ) from None
    cron = " ".join(raw.cron.split())
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise fail(
            "cron",
            f"{raw.cron!r} is not a five-field cron expression ({_CRON_FIELDS})",
            'e.g. cron = "0 8 * * MON" for Mondays at 08:00',
        )
    try:
        zone = ZoneInfo(raw.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(
            "timezone", f"{raw.timezone!r} is not an IANA time zone", 'e.g. timezone = "Asia/Tokyo"'
        ) from None
    try:
        seconds = parse_duration(raw.late_after, key="late_after")
    except ConfigError:
        raise fail(
            "late_after",
            f"{raw.late_after!r} is not a duration like 90s, 15m, 6h, 7d or 2w",
            'e.g. late_after = "6h"',
        ) from None
    if seconds <= 0:
        raise fail("late_after", "must be longer than 0", 'e.g. late_after = "6h"')
    edition = raw.edition.strip()
    if not EDITION_ID.fullmatch(edition):
        raise fail(
            "edition",
            f'{raw.edition!r} is neither "approved" nor an edition id',
            'use edition = "approved" (the newest approved draft) or an id like "2026-W48"',
        )
    try:
        croniter(cron, datetime.now(zone)).get_next(datetime)
    except CroniterBadDateError:
        raise fail(
            "cron", f"{raw.cron!r} never matches a date", "check the day-of-month and month fields"
        ) from None
    return CheckedSchedule(
        name=raw.name,
        list_name="+".join(lists),
        lists=lists,
        cron=cron,
        zone=zone,
        edition=edition,
        late_after=timedelta(seconds=seconds),
        late_after_text=raw.late_after,
    )
