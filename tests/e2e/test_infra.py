"""`alur infra up` is idempotent: a second call reuses what runs."""

from alur.infra import stack


def test_a_second_up_reuses_the_running_components(infra) -> None:
    before = stack.status(infra)
    running = {name for name, state, *_ in before if state.startswith("running")}
    assert {"kafka", "postgres", "smtp-sink", "gateway-sim"} <= running
    lines: list[str] = []
    stack.infra_up(infra, say=lines.append)
    assert stack.status(infra) == before
    assert not any("created topics" in line for line in lines)
