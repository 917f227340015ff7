"""Models (ML Engineer): registered versions with model cards, metrics and aliases."""
from __future__ import annotations

import streamlit as st

from ui import data
from ui.auth import require_page

require_page("models")
st.title("Models")
models = data.get_registry().list_models()
if not models:
    st.info("No registered models. `aooct demo` seeds the committed weights into the registry.")
    st.stop()
for model in models:
    aliases = model.get("aliases") or {}
    st.subheader(model["name"])
    st.caption("Aliases: " + (", ".join(f"{a} → v{v}" for a, v in aliases.items()) or "none"))
    versions = model.get("versions") or []
    st.dataframe(
        [{"version": v.get("version"), "aliases": ", ".join(a for a, av in aliases.items() if str(av) == str(v.get("version"))),
          **{f"metric: {k}": val for k, val in (v.get("metrics") or {}).items()}} for v in versions],
        hide_index=True, width="stretch",
    )
    with st.expander(f"Model card · {model['name']}"):
        st.markdown(model.get("model_card") or "_No model card text._")
