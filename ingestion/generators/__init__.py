"""Deterministic generators for the retail topics (orders, sessions, inventory)."""

from ingestion.generators.catalog import CITIES, SKUS, promo_calendar, write_seed_csvs
from ingestion.generators.inventory import InventoryStream, generate_inventory
from ingestion.generators.live import paced, timed_messages
from ingestion.generators.orders import OrderStream, generate_orders, order_rate

__all__ = [
    "CITIES",
    "SKUS",
    "InventoryStream",
    "OrderStream",
    "generate_inventory",
    "generate_orders",
    "order_rate",
    "paced",
    "promo_calendar",
    "timed_messages",
    "write_seed_csvs",
]
