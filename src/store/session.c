/* session.c — what all session backends share: the names of the reasons a session ends, which
 * are the `reason` label of gatehouse_sessions_ended_total and so must never change. */
#include "store/session.h"

static const char *const end_names[] = {
#define GH__END_NAME(e, n) n,
    GH_SESSION_END_MAP(GH__END_NAME)
#undef GH__END_NAME
};

const char *gh_session_end_name(gh_session_end_t reason)
{
    return (unsigned)reason < GH_END__COUNT ? end_names[reason] : "?";
}
