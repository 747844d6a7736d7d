/*
 * oidc_end.c — what the session workflows call when sessions end: the OpenID Connect families
 * issued in those sessions, or to that user, end with them (logging out of Gatehouse ends what
 * the relying parties were handed in that session).
 *
 * The one design decision: this file calls only the grant store, never the protocol workflows
 * of oidc.c (which call the session workflows of account.c themselves), so the calls between
 * the account service's files form no loop. A failure here is logged and never fails the
 * workflow that ended the session: the session is gone either way, and a family that outlives
 * it is still bounded by its refresh lifetime and revocable by RFC 7009.
 */
#include "account/oidc.h"

#include "common/log.h"

void gh_oidc_end_session_grants(gh_account_t *a, const char *session_id)
{
    if (!a->grants || !session_id || !*session_id)
        return;
    size_t n = 0;
    int rc = gh_grant_revoke_session(a->grants, session_id, &n);
    if (rc != 0)
        GH_LOG(GH_LOG_WARN, "oidc grants of a session not revoked", GH_LS("error", gh_errname(rc)));
    else if (n)
        GH_LOG(GH_LOG_INFO, "oidc grants revoked", GH_LS("by", "session_end"), GH_LI("count", n));
}

void gh_oidc_end_user_grants(gh_account_t *a, uint64_t user_id)
{
    if (!a->grants || user_id == 0)
        return;
    size_t n = 0;
    int rc = gh_grant_revoke_user(a->grants, user_id, &n);
    if (rc != 0)
        GH_LOG(GH_LOG_WARN, "oidc grants of a user not revoked", GH_LI("user_id", user_id),
               GH_LS("error", gh_errname(rc)));
    else if (n)
        GH_LOG(GH_LOG_INFO, "oidc grants revoked", GH_LS("by", "user"), GH_LI("user_id", user_id),
               GH_LI("count", n));
}

void gh_oidc_end_client_grants(gh_account_t *a, const char *client_id)
{
    if (!a->grants || !client_id || !*client_id)
        return;
    size_t n = 0;
    int rc = gh_grant_revoke_client(a->grants, client_id, &n);
    if (rc != 0)
        GH_LOG(GH_LOG_WARN, "oidc grants of a client not revoked", GH_LS("error", gh_errname(rc)));
    else if (n)
        GH_LOG(GH_LOG_INFO, "oidc grants revoked", GH_LS("by", "client_delete"), GH_LI("count", n));
}
