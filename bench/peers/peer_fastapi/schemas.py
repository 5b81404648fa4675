from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

Visibility = Literal["public", "followers", "private"]


class PostBase(BaseModel):
    body: str = Field(min_length=1, max_length=5000)
    visibility: Visibility = "public"


class PostCreate(PostBase):
    author: UUID


class PostUpdate(BaseModel):
    body: str | None = Field(default=None, min_length=1, max_length=5000)
    visibility: Visibility | None = None
    version: int  # the version the client last saw


class PostPublic(PostBase):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    author: UUID
    like_count: int
    version: int
    created_at: datetime
