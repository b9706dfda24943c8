"""Request bodies of the decision service: the seed's `transactions` schema, strictly
(ingestion/schemas/transactions.v2.json, v1 events included: same fields, lengths and ranges; unknown fields are
rejected with 422)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class TransactionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transaction_id: str = Field(min_length=1, max_length=64)
    timestamp: AwareDatetime
    account_id: str = Field(min_length=1, max_length=64)
    card_hash: str = Field(min_length=1, max_length=128)
    amount: float = Field(ge=0, allow_inf_nan=False)
    currency: str = Field(min_length=3, max_length=3)
    merchant_id: str = Field(min_length=1, max_length=64)
    merchant_category: str = Field(min_length=1, max_length=64)
    channel: str = Field(min_length=1, max_length=16)
    country: str = Field(min_length=2, max_length=2)
    device_id: str | None = Field(max_length=64)
    ip: str | None = Field(max_length=64)
    lat: float | None = Field(ge=-90, le=90)
    lon: float | None = Field(ge=-180, le=180)
    # transactions v2 (optional): EMV 3DS transStatus; absent in v1 events
    three_ds_status: Literal["Y", "A", "N", "U", "R"] | None = None


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transaction_id: str = Field(min_length=1, max_length=64)
    is_fraud: bool
    reported_at: datetime
