"""Request bodies of the gateway's routes (pydantic models, each bounded in size), and the check
of the review app's run-length masks. Roles and case statuses come from their one statement
(:mod:`api.policy`, :mod:`resources.metadata_db`)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.policy import PERMISSIONS, ROLES
from resources.metadata_db import CASE_STATUSES

__all__ = ["PasswordSignIn", "NewServiceToken", "NewReview", "PointLabels", "MaskLabels", "NewLabels", "Role",
           "NewUser", "NewExport", "UserChange", "CaseStatus", "rle_problem"]


class PasswordSignIn(BaseModel):
    username: str = Field(min_length=1, max_length=128)
    password: str = Field(min_length=1, max_length=1024)


class NewServiceToken(BaseModel):
    name: str = Field(min_length=1, max_length=64, description="what the token is for, e.g. 'OCT-2 scanner'")
    scopes: list[str] = Field(min_length=1, max_length=len(PERMISSIONS),
                              description="permission names, e.g. ['upload_case']")


class NewReview(BaseModel):
    decision: Literal["approve", "reject"]
    comment: str = Field("", max_length=4000)


class PointLabels(BaseModel):
    kind: Literal["points"]
    points_rc: list[tuple[float, float]] = Field(max_length=200_000, description="(row, col) px in the slab")
    source: str = Field("", max_length=256)


class MaskLabels(BaseModel):
    kind: Literal["mask"]
    shape: tuple[int, int]
    rle: list[int] = Field(max_length=2_000_000, description="run lengths, as the review app writes them")
    source: str = Field("", max_length=256)


class NewLabels(BaseModel):
    structure: Literal["cones", "rpe", "capillaries", "nfl"]
    payload: PointLabels | MaskLabels = Field(discriminator="kind")


Role = Literal[ROLES]       # the policy's roles, stated once (api/policy.py)


class NewUser(BaseModel):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[\w.@-]+$")
    name: str = Field("", max_length=128)
    email: str = Field("", max_length=256)
    password: str = Field(min_length=1, max_length=1024)
    role: Role


class NewExport(BaseModel):
    format: Literal["csv", "parquet"] = "csv"
    case_id: str | None = Field(None, max_length=140, description="one case; all cases when omitted")
    include_rejected: bool = Field(False, description="all cases: also the rejected ones (left out by default)")


class UserChange(BaseModel):
    role: Role | None = None
    active: bool | None = None


CaseStatus = Literal[CASE_STATUSES]


def rle_problem(rle: list[int], shape: tuple[int, int]) -> str:
    """Why ``rle`` (``[start, length, ...]`` of true pixels, row-major, as the review app
    writes it) is not a mask of ``shape``; empty when it is."""
    if not (1 <= shape[0] <= 16384 and 1 <= shape[1] <= 16384):
        return f"mask shape must be two sizes in [1, 16384]; got {list(shape)}"
    if len(rle) % 2:
        return "rle must be [start, length, ...] pairs"
    end = -1
    for start, length in zip(rle[0::2], rle[1::2]):
        if start <= end or length < 1 or start + length > shape[0] * shape[1]:
            return "rle runs must be increasing, non-overlapping, of length >= 1 and inside the mask"
        end = start + length - 1
    return ""
