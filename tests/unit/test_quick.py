import tuneforge


def test_smoke(tiny_bert, tiny_data, tmp_path):
    m = tuneforge.tune(
        tiny_data["train"],
        tiny_data["test"],
        base=str(tiny_bert),
        method="full",
        epochs=6,
        lr=3e-3,
        batch_size=8,
        early_stopping=0,
        progress=False,
        out=tmp_path / "m",
    )
    print(m.metrics)
    assert m.metrics["eval"]["accuracy"] > 0.6
