"""deploy/grafana: the committed dashboards are what alur/infra/grafana.py builds, and they
only use the provisioned datasource and variables the test can resolve. (Whether each query
parses and returns series is checked against a live Prometheus in tests/e2e.)"""

from __future__ import annotations

import json

import yaml

from alur.infra import grafana

BOARDS = {b.uid: b for b in grafana.DASHBOARDS}


def test_the_committed_dashboards_are_what_the_module_builds() -> None:
    files = sorted((grafana.DEPLOY / "dashboards").glob("*.json"))
    assert [f.stem for f in files] == sorted(BOARDS), "run `alur deploy render`"
    for path in files:
        assert json.loads(path.read_text()) == grafana.to_json(BOARDS[path.stem]), \
            f"{path.name} drifted; run `alur deploy render`"


def test_every_panel_uses_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (grafana.DEPLOY / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uids = {d["uid"] for d in provisioned["datasources"]}
    for board in BOARDS.values():
        model = grafana.to_json(board)
        panels = [p for p in model["panels"] if p["type"] != "row"]
        assert panels and len({p["id"] for p in model["panels"]}) == len(model["panels"])
        for panel in panels:
            assert panel["datasource"]["uid"] in uids
            assert panel["targets"] and all(t["expr"] for t in panel["targets"])


def test_every_query_resolves_its_variables() -> None:
    for board in BOARDS.values():
        declared = {v["name"] for v in board.variables}
        for panel in board.panels():
            for query in panel.queries:
                assert grafana.concrete(query.expr, service="orders")
                if "$service" in query.expr:
                    assert "service" in declared, (board.uid, panel.title)


def test_panels_do_not_overlap() -> None:
    for board in BOARDS.values():
        cells: set[tuple[int, int]] = set()
        for panel in grafana.to_json(board)["panels"]:
            g = panel["gridPos"]
            area = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                    for y in range(g["y"], g["y"] + g["h"])}
            assert not area & cells, (board.uid, panel["title"])
            assert g["x"] + g["w"] <= 24
            cells |= area
