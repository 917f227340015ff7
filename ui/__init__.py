"""aooct review app (Streamlit): pages, data access through resources/, roles and auth."""
