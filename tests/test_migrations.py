"""Migrations never lock a busy table for long: indexes on the hot tables are built
CONCURRENTLY, constraints are added NOT VALID and validated in a transaction of their own.

Every migration of the project's apps is turned into the SQL it runs (as ``sqlmigrate``
does) and each statement on a hot table is checked. A table created by the same migration
is new and empty, and exempt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState

PROJECT_APPS = ("kgc", "compliance", "notifications")
# Tables written all day by the workers and the morning runs, and large: a lock that blocks
# their writes for the length of a build or a scan stalls every claim, finish, defer or send.
HOT_TABLES = frozenset(
    {
        "procrastinate_jobs",
        "procrastinate_events",
        "kgc_jobfailure",
        "notifications_notification",
        "notifications_outboundemail",
        "compliance_document",
        "compliance_filing",
    }
)

# How to do each safely, said once at the end of the failure message.
REMEDIES = {
    "index": (
        "An index: build it CONCURRENTLY in a migration with `atomic = False`: "
        "django.contrib.postgres.operations.AddIndexConcurrently, or RunSQL('DROP INDEX CONCURRENTLY IF EXISTS "
        "<name>') then RunSQL('CREATE INDEX CONCURRENTLY <name> ON ...') (the drop clears what a failed build "
        "leaves). A unique constraint: build its unique index CONCURRENTLY, then RunSQL('ALTER TABLE ... ADD "
        "CONSTRAINT <name> UNIQUE USING INDEX <index>'), with SeparateDatabaseAndState for Django's state."
    ),
    "constraint": (
        "A check or foreign key: add it NOT VALID, then VALIDATE it in a transaction of its own (a migration "
        "with `atomic = False`, or the next migration): AddConstraintNotValid then ValidateConstraint "
        "(django.contrib.postgres.operations), or RunSQL('ALTER TABLE ... ADD CONSTRAINT ... NOT VALID') then "
        "RunSQL('ALTER TABLE ... VALIDATE CONSTRAINT ...'). A new foreign key column: SeparateDatabaseAndState, "
        "with the column added alone and its constraint as above (see notifications 0004)."
    ),
}

_DOLLAR_QUOTED = re.compile(r"\$(\w*)\$.*?\$\1\$", re.DOTALL)
_COMMENT = re.compile(r"--[^\n]*")
_NAME = r'(?:"?\w+"?\.)?"?(\w+)"?'
_CREATE_TABLE = re.compile(rf"^CREATE (?:UNLOGGED )?TABLE (?:IF NOT EXISTS )?{_NAME}", re.I)
_CREATE_INDEX = re.compile(
    rf"^CREATE (?:UNIQUE )?INDEX (CONCURRENTLY )?(?:IF NOT EXISTS )?(?:{_NAME} )?ON (?:ONLY )?{_NAME}", re.I
)
_ALTER_TABLE = re.compile(rf"^ALTER TABLE (?:IF EXISTS )?(?:ONLY )?{_NAME} (.*)$", re.I | re.S)
_ADD_CHECKED = re.compile(r"\bADD CONSTRAINT \S+ (CHECK|FOREIGN KEY)\b", re.I)
_ADD_UNIQUE = re.compile(r"\bADD CONSTRAINT \S+ (UNIQUE|PRIMARY KEY|EXCLUDE)\b", re.I)
_INLINE = re.compile(r"\bADD (?:COLUMN )?(?:IF NOT EXISTS )?\S+ [^,]*\b(REFERENCES|UNIQUE|PRIMARY KEY|CHECK)\b", re.I)
_NOT_VALID_ADDED = re.compile(r"\bADD CONSTRAINT (\S+) .*\bNOT VALID\b", re.I | re.S)
_VALIDATE = re.compile(r"\bVALIDATE CONSTRAINT (\S+)", re.I)


@dataclass(frozen=True)
class Violation:
    migration: str
    statement: str
    problem: str
    kind: str = "index"  # which of REMEDIES says how to do it safely

    def __str__(self) -> str:
        shown = self.statement if len(self.statement) <= 200 else self.statement[:200] + "…"
        return f"{self.migration}: {shown}\n    {self.problem}"


def statements_of(sql: str) -> list[str]:
    """The statements of collected SQL, function bodies and comments left out."""
    text = _COMMENT.sub("", _DOLLAR_QUOTED.sub("$$", sql))
    return [" ".join(part.split()) for part in text.split(";") if part.strip()]


def hot_table_violations(name: str, statements: list[str], *, atomic: bool) -> list[Violation]:
    """What a migration's statements do to a hot table that would block its writes for long."""
    created = {match.group(1).lower() for s in statements if (match := _CREATE_TABLE.match(s))}
    hot = HOT_TABLES - created
    found: list[Violation] = []
    not_valid: set[str] = set()
    for statement in statements:
        if (index := _CREATE_INDEX.match(statement)) and index.group(3).lower() in hot:
            if not index.group(1):
                problem = f"an index on {index.group(3)} built without CONCURRENTLY blocks its writes while it builds"
                found.append(Violation(name, statement, problem))
            elif atomic:
                found.append(Violation(name, statement, "CONCURRENTLY needs a migration with `atomic = False`"))
        table = _ALTER_TABLE.match(statement)
        if not table or table.group(1).lower() not in hot:
            continue
        target, actions = table.group(1), table.group(2)
        if _ADD_CHECKED.search(actions) and "NOT VALID" not in actions.upper():
            problem = f"a constraint added to {target} and checked at once locks it while every row is checked"
            found.append(Violation(name, statement, problem, "constraint"))
        if _ADD_UNIQUE.search(actions) and "USING INDEX" not in actions.upper():
            problem = f"a unique constraint added to {target} builds its index while blocking writes"
            found.append(Violation(name, statement, problem))
        if _INLINE.search(actions) and not _ADD_CHECKED.search(actions) and not _ADD_UNIQUE.search(actions):
            problem = f"a column of {target} added with its constraint or index inline (checked or built at once)"
            found.append(Violation(name, statement, problem, "constraint"))
        if added := _NOT_VALID_ADDED.search(actions):
            not_valid.add(added.group(1).strip('"').lower())
        if (validated := _VALIDATE.search(actions)) and atomic and validated.group(1).strip('"').lower() in not_valid:
            problem = (
                "validated in the transaction that added it NOT VALID: the lock taken to add it is held for the "
                "whole check"
            )
            found.append(Violation(name, statement, problem, "constraint"))
    return found


def failure_message(violations: list[Violation]) -> str:
    lines = ["Migrations that would block writes to a busy table (" + ", ".join(sorted(HOT_TABLES)) + "):"]
    lines += [str(violation) for violation in violations]
    lines += ["How to do it without blocking:"] + [
        f"  {REMEDIES[kind]}" for kind in sorted({v.kind for v in violations})
    ]
    return "\n".join(lines)


def project_migrations_sql() -> list[tuple[str, list[str], bool]]:
    """Each project migration's name, statements and atomicity, in the order ``migrate`` applies them."""
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    plan = []
    seen: set[tuple[str, str]] = set()
    for target in sorted(loader.graph.leaf_nodes()):
        for node in loader.graph.forwards_plan(target):
            if node not in seen:
                seen.add(node)
                plan.append(loader.graph.nodes[node])
    state = ProjectState(real_apps=loader.unmigrated_apps)
    found = []
    for migration in plan:
        with connection.schema_editor(collect_sql=True, atomic=migration.atomic) as editor:
            state = migration.apply(state, editor, collect_sql=True)
        if migration.app_label in PROJECT_APPS:
            sql = "\n".join(editor.collected_sql)
            found.append((f"{migration.app_label}.{migration.name}", statements_of(sql), migration.atomic))
    return found


# Outside a transaction: Django's concurrent operations refuse to be collected inside one.
@pytest.mark.django_db(transaction=True)
def test_no_migration_locks_a_hot_table_for_long():
    violations = [
        violation
        for name, statements, atomic in project_migrations_sql()
        for violation in hot_table_violations(name, statements, atomic=atomic)
    ]
    assert not violations, failure_message(violations)


@pytest.mark.parametrize(
    ("sql", "atomic"),
    [
        ('CREATE INDEX "outbound_x_idx" ON "notifications_outboundemail" ("tenant_id")', False),
        ("CREATE UNIQUE INDEX jobs_x ON procrastinate_jobs (lock) WHERE status = 'doing'", False),
        ("CREATE INDEX CONCURRENTLY events_x ON procrastinate_events (at)", True),
        ('ALTER TABLE "notifications_notification" ADD CONSTRAINT "n_x" CHECK ("kind" <> \'\')', False),
        (
            "ALTER TABLE compliance_document ADD CONSTRAINT d_fk FOREIGN KEY (t) REFERENCES compliance_tenant (id)",
            False,
        ),
        ('ALTER TABLE "compliance_filing" ADD CONSTRAINT "f_u" UNIQUE ("client_id", "due_date")', False),
        (
            'ALTER TABLE "kgc_jobfailure" ADD COLUMN "x_id" bigint NULL CONSTRAINT "x_fk" REFERENCES "kgc_x"("id")',
            False,
        ),
        (
            "ALTER TABLE notifications_notification ADD CONSTRAINT n_c CHECK (x) NOT VALID; "
            "ALTER TABLE notifications_notification VALIDATE CONSTRAINT n_c",
            True,
        ),  # fmt: skip
    ],
)
def test_a_migration_that_would_block_a_hot_table_is_caught(sql, atomic):
    """What a new migration on a hot table (another branch's, say) must not do."""
    assert hot_table_violations("notifications.0099_new", statements_of(sql), atomic=atomic)


@pytest.mark.parametrize(
    ("sql", "atomic"),
    [
        ("CREATE INDEX CONCURRENTLY IF NOT EXISTS outbound_x_idx ON notifications_outboundemail (tenant_id)", False),
        ("ALTER TABLE notifications_notification ADD CONSTRAINT n_c CHECK (x) NOT VALID", True),
        ("ALTER TABLE notifications_notification VALIDATE CONSTRAINT n_c", True),  # the next migration
        ("ALTER TABLE compliance_filing ADD CONSTRAINT f_u UNIQUE USING INDEX f_u_idx", False),
        ('ALTER TABLE "notifications_outboundemail" ADD COLUMN "note" text DEFAULT \'\' NOT NULL', True),
        ("CREATE INDEX client_x ON compliance_client (name)", True),  # not a hot table
        # A table created by the same migration is new and empty.
        (
            'CREATE TABLE "notifications_notification" ("id" bigint); CREATE INDEX n_x ON "notifications_notification" '
            '("id")',
            True,
        ),  # fmt: skip
        # A function body mentioning an index is not a statement.
        ("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ CREATE INDEX x ON procrastinate_jobs (id) $$", True),
    ],
)
def test_a_migration_that_keeps_hot_tables_writable_passes(sql, atomic):
    assert hot_table_violations("notifications.0099_new", statements_of(sql), atomic=atomic) == []
