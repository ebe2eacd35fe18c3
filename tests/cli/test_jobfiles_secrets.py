"""Secret env values in job files: loaded, checked, and never quoted in a problem."""

from __future__ import annotations

from pathlib import Path

from job_file_helpers import problems, write

from belfry.core.env_secrets import KeepSecret, SecretInput
from belfry.services.job_files import load_job_files


def test_secrets_load_in_both_forms_users_write(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: a
            schedule: every 1m
            command: ./deploy
            env:
              MODE: production
              TOKEN: {secret: "hunter2-horse"}
              KEPT:
                keep: true
        """,
    )
    (job,) = load_job_files([Path("jobs.yaml")]).jobs
    assert job.env == {
        "MODE": "production",
        "TOKEN": SecretInput(secret="hunter2-horse"),
        "KEPT": KeepSecret(keep=True),
    }
    # What `belfry apply` sends to the server: the value, once, to be sealed there.
    assert job.model_dump(mode="json")["env"]["TOKEN"] == {"secret": "hunter2-horse"}


def test_problems_name_the_variable_and_never_quote_a_secret(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: a
            schedule: every 1m
            command: ./deploy
            env:
              PIN: {secret: 98765432}
              FLAG: {keep: false}
              BOTH: {secret: "hunter2-horse", keep: true}
              PORT: 8080
        """,
    )
    found = problems(Path("jobs.yaml"))
    assert found == [
        "jobs.yaml:6: jobs[0].env.PIN: a secret must be a string (quote it in YAML); its "
        "value is not shown",
        "jobs.yaml:7: jobs[0].env.FLAG: 'keep' must be true (keep the value stored already)",
        "jobs.yaml:8: jobs[0].env.BOTH: expected a string, {secret: VALUE} or {keep: true}; "
        "got a mapping with the keys 'keep', 'secret'",
        "jobs.yaml:9: jobs[0].env.PORT: expected a string, got a number (8080); quote it if "
        'you mean the text "8080"',
    ]
    assert not any("98765432" in problem or "hunter2" in problem for problem in found)


def test_the_stored_form_is_refused_with_its_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        "jobs.yaml",
        """
        jobs:
          - name: a
            schedule: every 1m
            command: ./deploy
            env:
              MODE: production
              TOKEN: {encrypted: "gAAAA-token", digest: "0123abcd"}
        """,
    )
    (problem,) = problems(Path("jobs.yaml"))
    assert problem.startswith("jobs.yaml:7: jobs[0].env.TOKEN: {encrypted, digest} is how the")
    assert "gAAAA-token" not in problem
