"""bench.seed_spread: rows of several runs lined up by name, with mean and range."""

from bench.seed_spread import markdown, spread


def _row(name, acc, threshold=0.1):
    return {
        "name": name,
        "accuracy": acc,
        "sensitivity": 0.9,
        "specificity": 0.8,
        "roc_auc": None if "cross" in name else 0.97,
        "threshold": threshold,
    }


def test_rows_matched_by_name_without_fitted_values():
    runs = [
        [_row("stored", 0.90), _row('adapt --method shift ({"prevalence": 0.6})', 0.92)],
        [
            _row("stored", 0.94),
            _row('adapt --method shift ({"prevalence": 0.7})', 0.93),
            _row("only here", 0.5),
        ],
    ]
    table = spread(runs)
    assert list(table) == ["stored", "adapt --method shift"]
    assert table["stored"]["accuracy"] == [0.90, 0.94]
    lines = markdown(table, "recipe")
    assert "| stored | 0.920 (0.900–0.940): 0.900 / 0.940 |" in lines[2]


def test_missing_metric_prints_a_dash():
    table = spread([[_row("cross-fitted", 0.9)], [_row("cross-fitted", 0.8)]])
    assert markdown(table, "x")[2].endswith("| — |")
