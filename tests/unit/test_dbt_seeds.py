from ingestion.generators.catalog import skus_csv, stores_csv
from lake.gold import DBT_PROJECT_DIR


def test_dbt_seeds_are_the_generator_catalogue() -> None:
    """The stores/skus dimensions in dbt must be the catalogue the generators sell from
    (regenerate with ingestion.generators.catalog.write_seed_csvs(Path('dbt/seeds')))."""
    assert (DBT_PROJECT_DIR / "seeds" / "stores.csv").read_text() == stores_csv()
    assert (DBT_PROJECT_DIR / "seeds" / "skus.csv").read_text() == skus_csv()
