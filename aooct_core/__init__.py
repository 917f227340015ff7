"""Pure compute for AO-OCT microstructure analytics (numpy/scipy; CuPy/torch on GPU).

No Dagster, SQL, boto3, MLflow or Streamlit imports here (checked by import-linter).
"""
__version__ = "0.1.0"
