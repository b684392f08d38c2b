"""The CLI's exit statuses: 0 done, 1 a check found problems, 2 a usage error, 3 PostgreSQL or
Kafka cannot be reached (one line saying so, not a traceback), and --version."""

from __future__ import annotations

import pytest

from alur import cli


@pytest.fixture
def nothing_listens(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    """PostgreSQL and Kafka looked for on a loopback port where nothing listens."""
    monkeypatch.setenv("ALUR_PG_PORT", "9")
    monkeypatch.setenv("ALUR_KAFKA_PORT", "9")
    monkeypatch.setenv("ALUR_STATE_DIR", str(tmp_path))


@pytest.mark.parametrize("argv", [["check"], ["check", "--json", "ord_1"], ["trace", "ord_1"],
                                  ["report", "sales"], ["shops", "list"], ["dlq", "list"],
                                  ["events", "--limit", "1"], ["replay", "sales"]])
def test_a_tool_that_cannot_reach_the_infrastructure_says_so_in_one_line_and_exits_3(
        argv: list[str], nothing_listens: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == cli.EXIT_UNREACHABLE
    out, err = capsys.readouterr()
    [line] = err.strip().splitlines()
    assert line.startswith(f"alur {argv[0]}: cannot reach the infrastructure") and ":9" in line
    assert out == ""


def test_a_usage_error_exits_2_and_the_version_is_told(
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        cli.main(["report"])
    assert usage.value.code == cli.EXIT_USAGE
    with pytest.raises(SystemExit) as version:
        cli.main(["--version"])
    assert version.value.code == 0 and capsys.readouterr().out.startswith("alur ")


def test_every_subcommand_s_help_describes_it_and_shows_how_it_is_run(
        capsys: pytest.CaptureFixture[str]) -> None:
    commands = cli.build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(commands) == set(cli.EXAMPLES)
    for name in commands:
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        text = capsys.readouterr().out
        usage, _, rest = text.partition("\n\n")
        assert usage.startswith(f"usage: alur {name}") and rest.strip(), name
        assert f"examples:\n  alur {name}" in text, name


def test_a_production_run_with_default_secrets_is_refused_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ALUR_ENVIRONMENT", "production")
    assert cli.main(["infra", "status"]) == cli.EXIT_USAGE
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("alur: the settings are refused: a production run refuses the "
                           "local default of ALUR_PG_PASSWORD")
