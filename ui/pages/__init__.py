"""Page scripts routed by ui/app.py with st.navigation (not imported as modules)."""
