"""aooct review app: sign in, then route to the pages (``st.navigation`` only).

Run with ``aooct ui`` (``streamlit run ui/server.py``: security headers and an HttpOnly
session cookie, see :mod:`ui.server`) or, without those, ``streamlit run ui/app.py``;
configuration comes from the environment, see :mod:`ui.data` and :mod:`resources.config`.
"""
from __future__ import annotations

import streamlit as st

from ui.auth import current_user, sign_in, sign_out

st.set_page_config(page_title="aooct review", page_icon=":eye:", layout="wide")

# Re-read on every run: a revoked session or a changed role takes effect at the next click.
user = current_user()
if user is None:
    # Only the sign-in page exists until someone signs in (this also hides the pages/
    # folder that streamlit would otherwise list in the sidebar).
    st.navigation([st.Page(sign_in, title="Sign in", url_path="signin")], position="hidden").run()
    st.stop()

with st.sidebar:
    st.markdown(f"**{user.name}** · {user.role}")
    st.button("Sign out", on_click=sign_out, key="sign_out")

# Every page is listed for every role: a page the role may not use says so and
# audits the attempt, instead of a link that silently goes nowhere.
pages = {
    "Cases": [
        st.Page("pages/cases.py", title="Cases", icon=":material/list:", default=True),
        st.Page("pages/review.py", title="Case review", icon=":material/visibility:"),
        st.Page("pages/labeling.py", title="Labeling", icon=":material/edit:"),
        st.Page("pages/upload.py", title="Upload", icon=":material/upload:"),
    ],
    "Cohort": [st.Page("pages/dashboards.py", title="Dashboards", icon=":material/monitoring:")],
    "Platform": [
        st.Page("pages/models.py", title="Models", icon=":material/model_training:"),
        st.Page("pages/admin.py", title="Admin", icon=":material/admin_panel_settings:"),
    ],
}
st.navigation(pages).run()
