"""Admin: users and roles, the subject map lookup, and the audit log with filters."""
from __future__ import annotations

import streamlit as st

from ui import data
from api.application import create_user, update_user
from ui.auth import audit, authorize, call_application, require_page
from ui.roles import ROLES
from ui.widgets import flash, show_flash

user = require_page("admin")
st.title("Admin")
show_flash()
db = data.get_db()

st.subheader("Users")
users = db.list_users()
st.dataframe([{k: u.get(k) for k in ("username", "name", "email", "role", "active", "created_at")}
              for u in users], hide_index=True, width="stretch")

def _application(call, **kwargs) -> bool:
    """A user-management call of the application layer the gateway uses (the same rules: no
    self-lockout, never without an active Admin, a unique e-mail); False when refused."""
    return call_application(user, call, **kwargs) is not None


c1, c2, c3 = st.columns(3)
with c1, st.form("role_form"):
    st.markdown("**Change a role**")
    who = st.selectbox("User", [u["username"] for u in users], key="role_user")
    # No default: a click on "Set role" never applies a role nobody chose.
    role = st.selectbox("Role", ROLES, index=None, placeholder="Choose a role", key="role_new")
    change = st.form_submit_button("Set role")
if change and authorize("manage_users", action="set_role"):
    old = next(u["role"] for u in users if u["username"] == who)
    if role is None:
        st.error("Choose the new role first.")
    elif _application(update_user, username=who, role=role, active=None):
        flash(f"{who} is now {role}" + (" and must sign in again." if old != role else "."))
        st.rerun()
with c3, st.form("active_form"):
    st.markdown("**Activate or deactivate**")
    active_who = st.selectbox("User", [u["username"] for u in users], key="active_user")
    active = st.checkbox("Active (may sign in)", value=True, key="active_flag")
    save_active = st.form_submit_button("Save account")
if save_active and authorize("manage_users", action="set_active") and \
        _application(update_user, username=active_who, role=None, active=active):
    flash(f"{active_who} is {'active' if active else 'deactivated and signed out everywhere'}.")
    st.rerun()
with c2, st.form("user_form", clear_on_submit=True):
    st.markdown("**Create a user**")
    username = st.text_input("Username", key="new_username")
    name = st.text_input("Name", key="new_name")
    email = st.text_input("E-mail", key="new_email")
    password = st.text_input("Password", type="password", key="new_password")
    new_role = st.selectbox("Role", ROLES, key="new_role")
    create = st.form_submit_button("Create user")
if create and authorize("manage_users", action="create_user") and \
        _application(create_user, username=username, name=name, email=email, password=password,
                     role=new_role):
    flash(f"Created {username.strip()} ({new_role}).")
    st.rerun()

st.subheader("Subject map")
st.caption("Cases carry a pseudonym (P-…) for their subject; the subject_id received is kept only "
           "here. Every lookup is written to the audit log.")
with st.form("subject_form"):
    pseudonym = st.text_input("Pseudonym", key="subject_pseudonym").strip()
    look_up = st.form_submit_button("Look up")
if look_up and pseudonym and authorize("look_up_subject", action="look_up_subject"):
    original = db.subject_for(pseudonym)
    audit(user.username, "look_up_subject", detail={"pseudonym": pseudonym, "found": original is not None})
    if original is None:
        st.warning(f"No subject is mapped to {pseudonym!r}.")
    else:
        st.success(f"{pseudonym} stands for subject_id {original!r}.")

st.subheader("Audit log")
if authorize("view_audit", action="view_audit"):
    a1, a2, a3, a4 = st.columns(4)
    actor = a1.text_input("Actor", key="audit_actor").strip() or None
    action = a2.text_input("Action", key="audit_action").strip() or None
    case_id = a3.text_input("Case", key="audit_case").strip() or None
    denied_only = a4.checkbox("Denials only", key="audit_denied")
    rows = db.list_audit(actor=actor, action=action, case_id=case_id, limit=500)
    if denied_only:
        rows = [r for r in rows if not r["allowed"]]
    st.dataframe(rows, hide_index=True, width="stretch")
