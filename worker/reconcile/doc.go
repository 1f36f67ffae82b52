// Package reconcile makes the database converge on Stripe's truth whatever
// happened to the deliveries: `worker reconcile` stores the events Stripe
// never delivered, `worker resync` applies accounts' current state, and
// the worker runs both periodically when STRIPE_API_KEY is set.
//
// Nothing is lost once Stripe delivers. But Stripe stops delivering: it
// retries an event for three days and then drops it; an endpoint it
// disabled receives nothing created meanwhile; a deploy with a wrong
// secret answers 400 to everything until someone notices.
//
// # Reconcile
//
// [Reconciler] lists, through Stripe's API (pkg/stripeapi), the events of
// the types the worker handles created in a window, on the platform and on
// every connected account (those with a row, and those GET /v1/accounts
// lists): Connect events live on the connected account and are listed with
// its Stripe-Account header. Each event id not in webhook_events is stored
// through the same INSERT … ON CONFLICT DO NOTHING as a delivery (a
// delivery before, during or after is a duplicate of it, never a second
// row), queued, and logged once ("event missing from deliveries; stored
// from Stripe's API", with its id, type and account); the workers then
// apply it like any other. Events of the mode STRIPE_LIVEMODE never
// applies are not stored.
//
// The window never reaches past Stripe's 30 days of events, nor past
// WEBHOOK_RETENTION less 15 minutes: an older event may have been applied
// and deleted by retention, and stored again it would be applied twice. A
// --since beyond that is clipped, with a line saying so. The limit is taken
// again as each account starts, and for each page of 100 events just
// before it is compared with webhook_events, so a retention run during a
// long reconcile cannot make a deleted event look missing; the 15 minutes
// cover clock differences. With WEBHOOK_RETENTION=0 only the 30 days
// apply.
//
// A connected account that deauthorized the platform is skipped: one whose
// row has deauthorized_at and that GET /v1/accounts no longer lists costs
// no request; one Stripe refuses as revoked (401 or 403 with
// account_invalid, or "does not have access to account … Application
// access may have been revoked") is counted skipped, not failed; one the
// list still names is tried, since it may have authorized the platform
// again by an event that was missed. An account that cannot be listed for
// any other reason (its requests failed after retries) is reported, and
// the command exits 1; the others are reconciled all the same. Ctrl-C
// stops after the account in hand (exit 1, saying how many are left); a
// rerun is safe.
//
// # Resync
//
// [Resyncer] fetches an account's current state (the account with its
// capabilities, then every page of its external accounts) and applies it
// in one transaction as a snapshot taken when the fetch began: it
// overwrites what is older and never what a newer event wrote (the
// handlers' per-object rules; what an event of the snapshot's own second
// wrote is kept, and such an event applied after the snapshot is a tie it
// follows only if its previous values are the snapshot's state), deletes
// the account's resync request once the request's ties are older than the
// snapshot, and marks deleted the external accounts Stripe no longer has.
// deauthorized_at is left as it is. --all pages GET /v1/accounts, so
// accounts whose events were all missed appear too. An account whose state
// differed is logged "account drifted from Stripe's state; resynced".
//
// # Periodic runs
//
// With STRIPE_API_KEY set, the worker reconciles every
// STRIPE_RECONCILE_INTERVAL, one replica per period (claimed in Postgres
// like the sweeper's, with a deadline of 8/10 of the interval: package
// maintenance). A run takes first the accounts never reconciled (the
// platform, then those only Stripe's list names, then those with a row),
// then the least recently taken, as recorded per account in
// reconcile_accounts. It starts no account after 9/10 of its time, so the
// account in hand finishes before the deadline, and the next run goes on
// with those left. Each account's window starts where its last successful
// one ended, less an hour of overlap (the first reaches back as far as the
// limits above allow), and ends five minutes ago, so that an event whose
// first delivery is still in flight is not taken for missing; an account
// reached only every few runs has no gap. A run is ok when every account
// it took was listed or skipped, even if time ran out before the last
// ones, and failed when an account could not be listed. A connected
// account found missing events is then resynced: what was missed may be
// older than Stripe's 30 days of events, and only its current state
// restores it. With the key the worker also resyncs, every third of
// STRIPE_RESYNC_DEBOUNCE (at least every second), the accounts whose
// same-second ties the events could not settle (package handler). Without
// a key both are off, the worker says so at start, and an event Stripe
// never delivers stays missing with nothing to say so.
//
// # Cost and bound
//
// Reconcile makes one GET /v1/events per account and per 100 events in the
// window (at least one), plus one per 100 accounts to list them; resync
// makes one GET /v1/accounts/{id} and one GET …/external_accounts per 100
// external accounts. Requests are spaced by a client-side rate limit
// (STRIPE_API_RATE), each has a 30 s timeout, and 429s and 5xx answers are
// retried with backoff (see pkg/stripeapi). At the default 20 requests/s a
// platform of 1,000 quiet accounts reconciles in about 51 s.
//
// A periodic run at the defaults (1 h interval; accounts started for 43
// minutes) sends about 51,800 requests, so it reaches C ≈ 51,800 − N/100
// quiet accounts of a platform of N (two fewer for each account found
// missing events, for its resync). Every account is reached within ⌈N / C⌉
// runs; accounts that appear meanwhile count in N: one run up to about
// 51,300 accounts, 2 runs (2 h) for 100,000, 24 runs for 1 million. The
// windows leave no gap while ⌈N / C⌉ intervals plus the hour of overlap fit
// within WEBHOOK_RETENTION less 15 minutes (and 30 days): at the 72 h
// minimum, up to 70 runs, about 2.1 million quiet accounts at the
// defaults. Beyond that the worker logs "accounts last reconciled before
// what a run may reach back to"; raise STRIPE_API_RATE or the retention.
//
// On a terminal both commands draw a progress bar (accounts done of total,
// events found missing, API calls, rate); in logs, and in the periodic run,
// a progress line every 30 s.
//
// # The key
//
// STRIPE_API_KEY is a restricted key (rk_live_…) with read access to Events
// and to Connect (accounts, their capabilities and external accounts) and
// nothing else. It never appears in a log line or an error message (errors
// from Stripe that quote it are scrubbed).
//
// worker/reconcile_test.go runs both commands and the periodic run against
// a scripted Stripe; pkg/stripeapi's tests run the client against
// stripe-mock.
package reconcile
