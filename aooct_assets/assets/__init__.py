"""Per-case assets: raw_volume → corrected_volume → enface_projections → masks → metrics → report."""
from aooct_assets.assets.ingest import raw_volume
from aooct_assets.assets.preprocess import preprocessed
from aooct_assets.assets.masks import mask_assets
from aooct_assets.assets.metrics import metrics
from aooct_assets.assets.report import report

#: Every per-case asset definition, in lineage order.
case_assets = [raw_volume, preprocessed, *mask_assets, metrics, report]

__all__ = ["case_assets", "raw_volume", "preprocessed", "mask_assets", "metrics", "report"]
