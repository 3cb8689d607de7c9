from tests.scenario import Scenario


def test_matched_order(scenario: Scenario) -> None:
    scenario.order("O1", "10.00", trade_no="T1")
    scenario.import_(scenario.statement([{"txn": "T1", "order": "O1", "amount": "10.00"}]))
    summary = scenario.run()
    assert summary.counts == {"matched": 1}
