/*
 * policy.h — the session store's settings that the configuration names: what happens at the
 * memory budget, and how sessions.db commits. The store owns them (config/ reads them into these
 * types), so the store needs nothing of the configuration.
 */
#ifndef GH_STORE_POLICY_H
#define GH_STORE_POLICY_H

/* At the session budget: end the least recently used session, or refuse the new one. */
typedef enum { GH_POLICY_EVICT_IDLE = 0, GH_POLICY_REFUSE } gh_session_policy_t;

/* How sessions.db commits: normal survives a process crash (WAL, synchronous=NORMAL), full also
 * a power loss (synchronous=FULL: an fsync per login and per logout). */
typedef enum { GH_DURABILITY_NORMAL = 0, GH_DURABILITY_FULL } gh_durability_t;

#endif
