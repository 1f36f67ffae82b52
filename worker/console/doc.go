// Package console serves the web UI's pages of what Postgres holds, the
// events, the connected accounts and the audit log, and its one write:
// replaying events. `worker webui` mounts it beside the gocraft/work job
// UI, behind the same login, roles, cross-site refusal and audit trail
// (packages webui and access); its nav bar links to the job UI at / and
// names the user and their role. It reads DATABASE_URL for the pages,
// Redis for the dead set's size, and STRIPE_LIVEMODE for replays, as the
// workers do.
//
// # Pages
//
//   - /overview: the events per status now (waiting, failing and waiting
//     for a retry, dead, processed; counted exactly, so on a table of many
//     millions of rows it takes as long as an index-only count), the age of
//     the oldest event neither processed nor dead, the size of the job dead
//     set in Redis, the last sweeper and retention runs, and an SVG chart,
//     drawn on the server, of deliveries (events stored) and applications
//     (events processed) per minute over the last 24 hours.
//   - /events: newest first; filter with status (waiting, failing, dead,
//     processed), type, account (acct_…), id (an exact evt_…), from and to
//     (UTC, such as 2026-03-01T12:00); limit sets the page's size (50, at
//     most 500). "Older" pages by a keyset cursor on (created_at, id), so a
//     deep page costs what the first does.
//   - /events/{evt_…}: the event's fields, error, retry count, next
//     attempt, received and processed times, and its payload
//     pretty-printed.
//   - /accounts/{acct_…}: charges, payouts, details submitted,
//     requirements, capabilities with the time of the event that set each,
//     external accounts (last four digits only), deauthorization, and the
//     events that touched it, newest first (events stored before migration
//     00008 have no account column and are not listed there).
//   - /audit: every change made through the web UI (package access),
//     newest first: when, who in which role, the action with its method
//     and path, the events (linked; past five, folded in a list that
//     opens) and jobs it named, its result, the answer's status and the
//     error. Filter with user (exact) and action; "Older" pages by a
//     keyset cursor on the entry's id, each filter walking its own index
//     (TestAuditListQueriesUseIndexes in pkg/store checks the plans).
//
// Every answer carries a strict Content-Security-Policy (its own style
// sheet, no script at all), X-Frame-Options: DENY and Cache-Control:
// no-store; with a login configured, pages and assets alike answer 401
// without it.
//
// # Replay
//
// An event's page has a Replay button: it applies the event again exactly
// as `worker replay --event evt_…` does (package replay: under the row
// lock, with the handlers' out-of-order guards, never an event of the mode
// STRIPE_LIVEMODE excludes), within 20 s, then returns to the page with the
// result. Replay is a POST only (a GET of its path replays nothing), for
// operators only: a viewer's pages have no Replay button, and their POST
// is 403. Every replay is recorded in the audit trail (action replay, the
// event id, the result), and logged as a "console action" with the user,
// the action and the event id, never the payload.
//
// From an events list filtered to failing or dead, "Replay these…" opens a
// confirmation page saying how many events match (at most 1,000 at once;
// when more match, only the newest 1,000 are replayed), and its button
// replays them the same way, then shows how many were replayed and how
// many failed. A bulk replay is recorded in the audit trail (action
// replay_bulk, every event id, the counts), and logged with the user,
// action=replay_bulk, the count and the event ids, in lines of at most 100
// ids.
//
// # Timings
//
// Every list query walks an index: TestConsoleListQueriesUseIndexesOnAMillionEvents
// (pkg/store) generates 1,000,000 rows in Postgres and fails on any
// sequential scan in the plan of a list query, for every filter, first
// page and 500,000 rows deep. There a page of 50 takes 0.03–0.17 ms in
// Postgres and 0.4–1.5 ms through the store, median of 5, first or deep
// alike; a status filter that matches few events walks the unprocessed
// rows (229 ms with 20,000 of them and no match).
//
// worker/console_browser_test.go drives the console in headless Chromium
// as an on-call engineer would (no login: 401; the overview counts a
// failing event, the failing filter lists it, its page replays it, a
// reload shows it processed once) and fails on any error in the browser's
// console, such as a Content-Security-Policy violation. It writes a
// screenshot of each page to $TEST_OUTPUT_DIR (a new folder under the
// system's temporary directory otherwise, named in the test's log).
package console
