"""Is this server ready to serve? The facts ``/readyz`` answers with, and ``belfry
cluster`` shows for the server that answers it.

Each fact is ``"ok"`` or says what is wrong: the database answers; its schema is at the
migration this code was written for (a replica left on an older release after another
one migrated the database further must not write to it, and a database restored from an
older backup is not what the code expects either); this server's clock is near enough to
the database's to lead (``services.leadership``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from belfry.server.node import Node

__all__ = ["OK", "Readiness", "readiness"]

OK = "ok"
_NOT_CHECKED = "not checked: the database is unavailable"


@dataclass(frozen=True)
class Readiness:
    database: str
    migrations: str
    clock: str

    @property
    def ready(self) -> bool:
        return self.database == self.migrations == self.clock == OK

    @property
    def status(self) -> str:
        return OK if self.ready else "unavailable"

    def to_json(self) -> dict[str, str]:
        return {"status": self.status, **asdict(self)}


async def readiness(node: Node) -> Readiness:
    refusal = node.election.refusal if node.election is not None else None
    clock = refusal or OK
    try:
        await node.store.ping()
        revision = await node.store.schema_revision()
    except Exception as error:
        return Readiness(
            database=str(error) or type(error).__name__, migrations=_NOT_CHECKED, clock=clock
        )
    migrations = OK
    if revision != node.schema_head:
        migrations = (
            f"the database's schema is at revision {revision or 'none'}, this server's "
            f"code needs {node.schema_head} (run the same release on every server)"
        )
    return Readiness(database=OK, migrations=migrations, clock=clock)
