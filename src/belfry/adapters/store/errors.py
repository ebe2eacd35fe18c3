"""How the SQL store reports that its database cannot be used."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

__all__ = ["UNAVAILABLE_ERRORS", "StoreUnavailable"]

# Errors meaning "the database is not there / not answering", as opposed to a bad query.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, OSError)


class StoreUnavailable(ConnectionError):
    """The database cannot be reached, or refused to serve.

    A ConnectionError, so layers that may not import adapters (services) can still catch
    it as one.
    """

    def __init__(self, url: str, reason: str) -> None:
        lines = [line.strip() for line in reason.splitlines() if line.strip()]
        super().__init__(f"database unavailable at {url}: {lines[0] if lines else 'no reason'}")
        self.url = url

    @classmethod
    def from_error(cls, url: str, error: BaseException) -> StoreUnavailable:
        # The driver's own message, without SQLAlchemy's statement dump and doc links.
        cause = error.orig if isinstance(error, DBAPIError) and error.orig else error
        return cls(url, str(cause) or type(cause).__name__)
